"""main.py, config checks and the install manifest in micropython: a missing or broken config stops the node with one
clear line (no traceback), no error message ever carries a key, and the manifest installs every module needed."""
from __future__ import annotations

import json
import shutil

import pytest

from dos_agent.firmware_install import FIRMWARE_DIR, firmware_files
from firmware_support import run_micropython

NWK = "2b7e151628aed2a6abf7158809cf4f3c"
APP = "000102030405060708090a0b0c0d0e0f"
GOOD = {"board": "emu", "kind": "streetlight", "asset_id": "SL-DO-0001", "dev_eui": "70B3D57ED0050001",
        "activation": "abp", "dev_addr": "26010001", "nwk_s_key": NWK, "app_s_key": APP, "interval_s": 60,
        "settings": {}, "calibration": {}}


def boot(folder, config_text: str | None) -> list[str]:
    if config_text is not None:
        (folder / "config.json").write_text(config_text)
    return run_micropython("import main\n", cwd=folder).splitlines()


@pytest.mark.parametrize("config_text, expected", [
    (None, "config: config.json is missing; node stopped"),
    ('{"board": "emu", ', "config: config.json is not valid JSON; node stopped"),
    ("[1, 2]", "config: config.json does not hold a JSON object; node stopped"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "interval_s"}), "config: config.json has no interval_s; node stopped"),
    (json.dumps({**GOOD, "board": "nosuch"}), "config: cannot load boards.nosuch"),
    (json.dumps({**GOOD, "kind": "lamppost"}), "config: cannot load "),
])
def test_bad_config_prints_one_line_and_stops(tmp_path, config_text, expected):
    lines = boot(tmp_path, config_text)
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize("change, message", [
    ({"nwk_s_key": NWK[:-1]}, "nwk_s_key must be 32 hex digits"),
    ({"app_s_key": "zz" + APP[2:]}, "app_s_key must be 32 hex digits"),
    ({"dev_addr": 26010001}, "dev_addr must be 8 hex digits"),
    ({"activation": "abc"}, "activation 'abc' is not supported (abp, otaa)"),
    ({"activation": "otaa"}, "join_eui must be 16 hex digits"),
    ({"activation": "otaa", "join_eui": "70B3D57ED0000000", "app_key": APP[:-2]}, "app_key must be 32 hex digits"),
    ({"activation": "otaa", "join_eui": "70B3D57ED0000000", "app_key": APP, "dev_eui": "70B3"},
     "dev_eui must be 16 hex digits"),
    ({"data_rate": 7}, "config.data_rate must be a number in [0, 5]"),
    ({"adr": "yes"}, "config.adr must be true or false"),
])
def test_lorawan_config_errors_name_the_setting_and_never_the_key(tmp_path, change, message):
    config = {**GOOD, **change}
    out = run_micropython(f"""
import json
from config import ConfigError
from lorawan.node import node_from_config
from store import Store

def radio():
    raise AssertionError('the radio must not be started with a bad config')

try:
    node_from_config(json.loads({json.dumps(json.dumps(config))}), radio, Store())
    print('accepted')
except ConfigError as exc:
    print(exc)
""", cwd=tmp_path).strip()
    assert out == message
    assert NWK[:20] not in out and APP[2:20] not in out
    assert not (tmp_path / "state.json").exists(), "no counter lease is taken for a config that cannot run"


def test_app_settings_are_checked(tmp_path):
    out = run_micropython("""
from config import ConfigError, number, section
for table, key in (({'dusk_lux': -1}, 'dusk_lux'), ({'dim_level': True}, 'dim_level'), ({'dim_level': '50'}, 'dim_level')):
    try:
        number(table, key, 1, 0, 100)
        print('accepted')
    except ConfigError as exc:
        print(exc)
try:
    section({'settings': [1]}, 'settings')
except ConfigError as exc:
    print(exc)
print(number({}, 'dim_level', 100, 0, 100), section({}, 'settings'))
""", cwd=tmp_path).splitlines()
    assert out == ["settings.dusk_lux must be a number in [0, 100]", "settings.dim_level must be a number in [0, 100]",
                   "settings.dim_level must be a number in [0, 100]", "settings must be a JSON object", "100 {}"]


def test_the_manifest_installs_every_module_the_app_imports(tmp_path):
    """What flash.sh copies (firmware/manifest.toml) is enough: the app and the LoRaWAN stack import from it alone."""
    for rel in firmware_files("emu", "streetlight"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(FIRMWARE_DIR / rel, tmp_path / rel)
    out = run_micropython("""
import apps.streetlight, lorawan.node, selftest
print('imported')
""", path=[tmp_path], cwd=tmp_path).splitlines()
    assert out[-1] == "imported"
