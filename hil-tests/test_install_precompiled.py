"""The installer against an emulated board over its link, as flash.sh uses it: a precompiled install leaves no source of
a module on the board (MicroPython would import x.py before x.mpy) and a source install leaves no stale .mpy; the
node then boots from what was installed."""
from __future__ import annotations

import re

import pytest

from dos_agent.firmware_install import install_firmware
from dos_rig.rig import Rig

pytestmark = pytest.mark.hil

CONFIG = {"board": "emu", "kind": "streetlight", "asset_id": "SL-INSTALL-1", "dev_eui": "70b3d57ed0050901",
          "activation": "abp", "dev_addr": "26010901", "nwk_s_key": "2b7e151628aed2a6abf7158809cf4f3c",
          "app_s_key": "000102030405060708090a0b0c0d0e0f", "interval_s": 60, "settings": {}, "calibration": {}}


def modules_on(folder) -> tuple[set[str], set[str]]:
    """(modules present as .py, modules present as .mpy) in a board folder, by path without the suffix."""
    sources = {str(p.relative_to(folder))[:-3] for p in folder.rglob("*.py")}
    compiled = {str(p.relative_to(folder))[:-4] for p in folder.rglob("*.mpy")}
    return sources, compiled


def test_reinstalling_switches_between_sources_and_mpy_without_leftovers(tmp_path):
    folder = tmp_path / "board"
    with Rig(tmp_path / "rig") as rig:
        board = rig.add_board("b1", folder)
        install_firmware(str(board.link), "emu", "streetlight", CONFIG, reset=False, log=lambda _line: None,
                         precompile=False)
        sources, compiled = modules_on(folder)
        assert "lorawan/mac" in sources and not compiled
        install_firmware(str(board.link), "emu", "streetlight", CONFIG, reset=False, log=lambda _line: None)
        sources, compiled = modules_on(folder)
        assert sources == {"main"}, "only main.py stays a source"
        assert {"lorawan/mac", "cbor", "apps/streetlight", "boards/emu"} <= compiled
        install_firmware(str(board.link), "emu", "streetlight", CONFIG, reset=False, log=lambda _line: None,
                         precompile=False)
        sources, compiled = modules_on(folder)
        assert "lorawan/mac" in sources and not compiled
        install_firmware(str(board.link), "emu", "streetlight", CONFIG, log=lambda _line: None)
        boot_line = re.compile(r"^DOS Edge streetlight SL-INSTALL-1 on emu: ABP DevAddr 26010901", re.M)
        rig.run_until(lambda: boot_line.search(board.console), 20)
