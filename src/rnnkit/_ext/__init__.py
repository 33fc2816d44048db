"""Building and loading rnnkit's C++ extensions.

Each extension is one folder ``src/rnnkit/csrc/<name>/`` of ``*.cpp`` files (and the ``*.h`` files they
include, in that folder and its subfolders, which are part of the cache key and on the include path;
headers shared by all extensions live in ``csrc/common/``),
compiled with ``torch.utils.cpp_extension.load`` into a cache directory (``$RNNKIT_EXT_DIR``, default
``~/.cache/rnnkit/ext/torch-<version>/<name>/<hash of the sources>``), so a changed source builds
anew beside the old library instead of overwriting one that a running process has loaded. The set-up
(``make``) builds every extension ahead of time with ``python -m rnnkit._ext``; at run time
:func:`load_extension` returns the module, or None and the reason (no compiler, build error), so that
importing rnnkit never fails and the dispatcher can fall back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

CSRC = Path(__file__).resolve().parent.parent / "csrc"
COMMON = CSRC / "common"  # headers every extension may include (on the include path)


def extension_names() -> list[str]:
    return sorted(p.name for p in CSRC.iterdir() if p.is_dir() and any(p.glob("*.cpp")))


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "rnnkit" / "ext" / f"torch-{torch.__version__}"
    return Path(os.environ.get("RNNKIT_EXT_DIR", default))


@cache
def load_extension(name: str, verbose: bool = False) -> tuple[ModuleType | None, str | None]:
    """The compiled extension ``name`` (building it if needed), or (None, why it is unavailable)."""
    if os.environ.get("RNNKIT_NO_EXT"):
        return None, "disabled by RNNKIT_NO_EXT"
    sources = _sources(name)
    if not sources:
        return None, f"no C++ sources for extension {name!r}"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return None, "no C++ compiler found (install g++ and run `make`)"
    from torch.utils import cpp_extension

    build = build_dir(name)
    build.mkdir(parents=True, exist_ok=True)
    fresh = not _library(build, name).is_file()
    if fresh:  # the first build takes a minute or two: say so, on stderr (stdout may be a program's)
        print(f"rnnkit: building the C++ extension {name!r} (once per source change; about a minute) ...",
              file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        with build_lock(build), _one_ninja():
            module = cpp_extension.load(
                name=f"rnnkit_{name}",
                sources=sources,
                build_directory=str(build),
                extra_include_paths=[str(COMMON), str(CSRC / name)],
                extra_cflags=["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp"],
                extra_ldflags=["-fopenmp"],
                verbose=verbose,
            )
    except Exception as exc:  # a failed build must not break rnnkit: report and fall back
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (f"building the {name!r} extension failed: {first} (rnnkit runs its Python executors "
                      "meanwhile; `python -m rnnkit._ext -v` shows the compiler's output)")
    if fresh:
        print(f"rnnkit: built {name!r} in {time.perf_counter() - started:.0f} s ({build})", file=sys.stderr,
              flush=True)
    return module, None


def _sources(name: str) -> list[str]:
    return sorted(str(p) for p in (CSRC / name).glob("*.cpp"))


def build_dir(name: str) -> Path:
    """The cache folder of extension ``name`` for the current sources.

    One folder per source hash (headers included): a rebuild never overwrites a library another
    process has loaded. The sources' location is part of the hash: ninja's build file names the
    source paths, so two checkouts sharing one folder rebuilt it against each other on every load."""
    hashed = _sources(name) + sorted(str(p) for folder in (CSRC / name, COMMON) for p in folder.rglob("*.h"))
    digest = hashlib.sha256(str(CSRC).encode() + b"".join(Path(p).read_bytes() for p in hashed))
    return cache_dir() / name / digest.hexdigest()[:16]


def _library(build: Path, name: str) -> Path:
    return build / f"rnnkit_{name}.so"  # what torch's build writes there


def is_built(name: str) -> bool:
    """Whether the library of ``name`` for the current sources is in the cache (loading it compiles nothing)."""
    return _library(build_dir(name), name).is_file()


@contextlib.contextmanager
def _one_ninja() -> Iterator[None]:
    """Put the interpreter's own ninja (the virtualenv's) first on PATH while torch builds: ninja
    versions disagree on the build log's format, so a system ninja and the venv's one, taking turns on
    one build folder (a shell with the venv activated, ``make`` without), rebuilt it every time."""
    own = Path(sys.executable).parent
    if not (own / "ninja").is_file():
        yield
        return
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(own), before]) if before else str(own)
    try:
        yield
    finally:
        os.environ["PATH"] = before


STALE_LOCK_SECONDS = 600.0
#: held (flock) around every ``cpp_extension.load`` of a build folder; the kernel drops it when its holder dies
FLOCK_FILE = "rnnkit.flock"


@contextlib.contextmanager
def build_lock(build: Path) -> Iterator[None]:
    """Serialise loads of one build folder with an advisory ``flock`` that dies with its process.

    torch's own build lock (``build/lock``) is a file created for every load, even one with nothing to
    build, and removed afterwards; a process killed in that window (SIGKILL, the OOM killer: seen in the
    crash harness, issue #21) leaves it behind, and every later load of the extension, in any process,
    sleeps on it. Every rnnkit load takes this flock first, so a ``lock`` file found while holding it
    belongs to a dead loader and is removed. Without fcntl (Windows) only the age rule applies."""
    try:
        import fcntl
    except ImportError:
        _clear_stale_lock(build / "lock")
        yield
        return
    fd = os.open(build / FLOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            (build / "lock").unlink()
        yield
    finally:
        os.close(fd)  # releases the flock


def _clear_stale_lock(lock: Path) -> None:
    """torch waits forever on a build lock whose builder was killed; a build takes minutes, so a lock
    untouched for ``STALE_LOCK_SECONDS`` is left over from such a crash and is removed."""
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
            lock.unlink()
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Build every extension now; exit 1 if one fails (so `make` shows it)."""
    failed = 0
    for name in extension_names():
        module, reason = load_extension(name, verbose="-v" in (argv or sys.argv[1:]))
        print(f"rnnkit extension {name}: " + ("ok" if module is not None else f"unavailable ({reason})"))
        failed += module is None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
