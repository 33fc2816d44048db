"""The first build of an extension says so on stderr, with its time; a loaded one says nothing; a failed
one says what runs meanwhile (issue #25). The compiler is replaced by a stand-in: the real build is
what ``make`` runs before the suite."""

from __future__ import annotations

import types

import pytest
from torch.utils import cpp_extension

import rnnkit._ext as ext


@pytest.fixture
def fake_sources(tmp_path, monkeypatch):
    csrc = tmp_path / "csrc"
    (csrc / "demo").mkdir(parents=True)
    (csrc / "common").mkdir()
    (csrc / "demo" / "demo.cpp").write_text("// a stand-in\n")
    monkeypatch.setattr(ext, "CSRC", csrc)
    monkeypatch.setattr(ext, "COMMON", csrc / "common")
    monkeypatch.setenv("RNNKIT_EXT_DIR", str(tmp_path / "cache"))
    return csrc


def _compiler(fail: bool = False):
    def load(name, sources, build_directory, **kwargs):
        if fail:
            raise RuntimeError("Error building extension 'rnnkit_demo'")
        open(f"{build_directory}/{name}.so", "w").close()
        return types.SimpleNamespace(name=name)
    return load


def test_first_build_is_announced_and_timed_then_silent(fake_sources, monkeypatch, capsys):
    monkeypatch.setattr(cpp_extension, "load", _compiler())
    assert not ext.is_built("demo")
    module, reason = ext.load_extension.__wrapped__("demo")
    assert module is not None and reason is None
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("rnnkit: building the C++ extension 'demo'") and "about a minute" in err[0]
    assert err[1].startswith("rnnkit: built 'demo' in ") and len(err) == 2
    assert ext.is_built("demo")
    ext.load_extension.__wrapped__("demo")  # built: nothing to say
    assert capsys.readouterr().err == ""


def test_a_changed_source_is_a_new_build(fake_sources, monkeypatch, capsys):
    monkeypatch.setattr(cpp_extension, "load", _compiler())
    ext.load_extension.__wrapped__("demo")
    before = ext.build_dir("demo")
    (fake_sources / "demo" / "demo.cpp").write_text("// changed\n")
    assert ext.build_dir("demo") != before and not ext.is_built("demo")


def test_a_failed_build_says_what_runs_meanwhile(fake_sources, monkeypatch, capsys):
    monkeypatch.setattr(cpp_extension, "load", _compiler(fail=True))
    module, reason = ext.load_extension.__wrapped__("demo")
    assert module is None and "building the 'demo' extension failed" in reason
    assert "Python executors meanwhile" in reason and "rnnkit._ext -v" in reason
