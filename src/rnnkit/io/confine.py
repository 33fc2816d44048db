"""Path confinement: a path rnnkit deletes or overwrites in a run directory must resolve inside it.

A run directory may come from someone else (a colleague's ``runs/``, a CI artifact), so the paths its
files name (``..``, absolute paths) and the symlinks it holds are untrusted. :func:`inside_run_dir` is
the one check; every writer and remover of run-directory files goes through it (see
``docs/security.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

from rnnkit.errors import UserError


class OutsideRunDir(UserError):
    """A path that should lie inside a run directory resolves outside it."""


def inside_run_dir(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` fully resolved (symlinks, ``..``); raises :class:`OutsideRunDir` unless it is inside
    ``run_dir`` (itself resolved) or is ``run_dir``.

    A relative ``path`` is taken relative to ``run_dir``. Symlinks are followed even in the last
    component: a link inside the run directory that points outside it is refused, not written through
    or removed. A path that does not exist yet is resolved as far as it exists.
    """
    root = Path(os.path.realpath(run_dir))
    target = Path(path)
    if not target.is_absolute():
        target = Path(run_dir) / target
    resolved = Path(os.path.realpath(target))
    if resolved != root and root not in resolved.parents:
        # repr: a crafted path may hold newlines, and the message stays one line
        raise OutsideRunDir(f"{os.fspath(path)!r} resolves outside the run directory {os.fspath(run_dir)!r}: "
                            "refused (a run directory's files may only name paths inside it)")
    return resolved


def remove_in_run_dir(run_dir: str | os.PathLike, path: str | os.PathLike) -> None:
    """Delete the file ``path`` after :func:`inside_run_dir` has accepted it (missing is fine)."""
    inside_run_dir(run_dir, path)
    target = Path(path) if Path(path).is_absolute() else Path(run_dir) / path
    target.unlink(missing_ok=True)


def recorded_path(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """How ``config.json`` records a data file: relative to the run directory when the file lies
    inside it (an example written there, the Python API's copy of its data), so that a copied or
    moved run still finds it through :func:`config_path`; any other file as given."""
    try:
        return Path(path).resolve().relative_to(Path(run_dir).resolve()).as_posix()
    except ValueError:
        return os.fspath(path)


def config_path(run_dir: str | os.PathLike, value: object, what: str, flag: str) -> Path:
    """A data path read from a run directory's ``config.json``, confined to the run directory.

    A relative ``value`` is taken relative to ``run_dir`` (falling back to the working directory, how
    older runs recorded a file written into the run directory); either way it must resolve inside
    ``run_dir``. A file outside it is read only when the user names it on the command line (``flag``):
    the error says so, and never quotes the file.
    """
    if not isinstance(value, str) or not value or "\0" in value:
        raise UserError(f"{os.fspath(run_dir)}/config.json: {what} must be a path; give the file with {flag}")
    given = Path(value)
    candidates = [given] if given.is_absolute() else [Path(run_dir) / given, given]
    for candidate in candidates:
        try:
            resolved = inside_run_dir(run_dir, candidate.absolute())
        except OutsideRunDir:
            continue
        if resolved.exists() or candidate is candidates[-1]:
            return resolved
    raise OutsideRunDir(f"{os.fspath(run_dir)}/config.json: {what} names a file outside the run directory, "
                        f"which rnnkit reads only when you name it: give it with {flag}")
