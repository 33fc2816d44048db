"""The extensions are built with the interpreter's own ninja (issue #25: a system ninja and the
virtualenv's, taking turns on one build folder, rebuilt it on every switch)."""

from __future__ import annotations

import os
import sys

import rnnkit._ext as ext


def test_the_interpreters_ninja_comes_first_while_building(tmp_path, monkeypatch):
    (tmp_path / "ninja").write_text("")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with ext._one_ninja():
        assert os.environ["PATH"].split(os.pathsep) == [str(tmp_path), "/usr/bin", "/bin"]
    assert os.environ["PATH"] == "/usr/bin:/bin"


def test_without_its_own_ninja_path_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with ext._one_ninja():
        assert os.environ["PATH"] == "/usr/bin:/bin"

