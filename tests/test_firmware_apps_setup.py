"""Each app's set-up in micropython: its calibration and boot-only settings read from config.json by its set-up module
(apps/<kind>_setup.py, loaded while the app is set up and unloaded after), an out-of-range value a ConfigError that
names it, and nothing of the set-up module left loaded."""
from __future__ import annotations

import json

import pytest

from firmware_support import run_firmware
from test_firmware_memory import MEMTEST_BOARD

SETUP_RUN = """
import json, sys
sys.path.append('')  # the test's folder: memtest_board.py
import memtest_board as board
from store import Store
import apps.%(kind)s as app_module
from config import ConfigError
config = json.loads(%(config)r)
try:
    app = app_module.App(board, config, Store())
except ConfigError as exc:
    print('error', exc)
else:
    print(json.dumps([getattr(app, name) for name in %(attributes)r]))
    _board, divider, empty_v, full_v = app.battery
    print(divider, empty_v, full_v)
print(sorted(name for name in sys.modules if name.endswith(('_setup', '_settings')) or name in ('config', 'settings')))
"""

CASES = {
    "waste": ({"fast_fill_pct": 70, "tilt_poll_s": 15, "tip_deg": 50, "upright_deg": 25},
              {"container_depth_m": 1.5, "sensor_offset_m": 0.2, "pings": 7},
              ["fast_fill_pct", "tilt_poll_s", "depth_m", "offset_m", "pings"], [70, 15, 1.5, 0.2, 7],
              ({"settings": {"upright_deg": 55, "tip_deg": 50}}, "settings.upright_deg must be a number in [0, 50]")),
    "streetlight": ({"hysteresis_lux": 35}, {"ina219_shunt_ohm": 0.05, "lamp_rated_w": 60.0},
                    ["hysteresis_lux", "lamp_rated_w"], [35, 60.0],
                    ({"calibration": {"lamp_rated_w": 500}}, "calibration.lamp_rated_w must be a number in [0.1, 400]")),
    "bridge": ({"strain_check_s": 5}, {"strain_channels": 2, "strain_zero_ue": [4, -3], "tilt_zero_deg": 1.5},
               ["strain_check_ms", "zero_ue", "tilt_zero_deg"], [5000, [4, -3], 1.5],
               ({"calibration": {"strain_zero_ue": [1]}}, "calibration.strain_zero_ue must be a list of 3 numbers")),
}


def config_for(kind: str, settings: dict, calibration: dict) -> str:
    return json.dumps({"board": "memtest", "kind": kind, "asset_id": "T-1", "interval_s": 60, "settings": settings,
                       "calibration": {**calibration, "battery_divider": 3, "battery_empty_v": 3.1,
                                       "battery_full_v": 4.1}})


@pytest.mark.parametrize("kind", sorted(CASES))
def test_an_app_reads_its_calibration_at_set_up_and_unloads_the_code_that_did(tmp_path, kind):
    (tmp_path / "memtest_board.py").write_text(MEMTEST_BOARD)
    settings, calibration, attributes, expected, (bad, message) = CASES[kind]
    good = run_firmware(SETUP_RUN % {"kind": kind, "config": config_for(kind, settings, calibration),
                                     "attributes": attributes}, cwd=tmp_path).splitlines()
    assert good[-3:] == [json.dumps(expected), "3 3.1 4.1", "[]"], good
    bad_config = json.loads(config_for(kind, {}, {}))
    for section, values in bad.items():
        bad_config[section].update(values)
    out = run_firmware(SETUP_RUN % {"kind": kind, "config": json.dumps(bad_config), "attributes": attributes},
                       cwd=tmp_path).splitlines()
    assert out[-2] == "error " + message, out
