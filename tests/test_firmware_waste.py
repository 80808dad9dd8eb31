"""The waste-container app in micropython: the median drops spurious echoes, fill
from the container geometry, emptying detection, and the whole app on a fake board with a scripted radio: readings
decoded by the CPython schema codec carry the sensors' values, the interval halves above 80 % and an emptying is
reported at once."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import parse_data_frame
from dos_codecs.schema import load_schema
from firmware_support import run_firmware, run_micropython

NWK_S_KEY, APP_S_KEY = "2b7e151628aed2a6abf7158809cf4f3c", "000102030405060708090a0b0c0d0e0f"
CONFIG = {"board": "emu", "kind": "waste", "asset_id": "WC-T-1", "activation": "abp", "dev_eui": "70b3d57ed0050101",
          "dev_addr": "26aa0101", "nwk_s_key": NWK_S_KEY, "app_s_key": APP_S_KEY, "interval_s": 60, "settings": {},
          "calibration": {}}
MAX_READING_BYTES = 24


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(30, 600), st.lists(st.integers(0, 1000), max_size=2), st.integers(0, 2)),
                min_size=1, max_size=20))
def test_the_median_of_pings_drops_a_minority_of_spurious_echoes(cases):
    """Five pings of which up to two are spurious (anywhere in the order) give the true distance."""
    pings = []
    for true_cm, spurious, at in cases:
        values = [true_cm] * (5 - len(spurious))
        for value in spurious:
            values.insert(at, value)
        pings.append(values)
    out = run_micropython(f"from drivers.mb7040 import median\nfor p in {pings!r}:\n    print(median(p))\n")
    assert [int(line) for line in out.split()] == [true_cm for true_cm, _s, _a in cases]


def test_fill_from_the_container_geometry_and_emptying_detection():
    out = run_micropython("""
from apps.waste import TiltWatch
from apps.waste_reading import fill_percent
for d in (1.3, 1.25, 0.7, 0.34, 0.1, 0.05, 2.0):
    print(fill_percent(d, 1.2, 0.1))
watch = TiltWatch(60, 20)
print([watch.update(t) for t in (0, 5, 45, 70, 120, 90, 30, 15, 3, 70, 10)], watch.emptyings)
""").split("\n")
    assert out[:7] == ["0", "4", "50", "80", "100", "100", "0"]
    # tipped beyond 60 then back below 20 is one emptying; a later tip and return is the next one
    assert out[7] == "[False, False, False, False, False, False, False, True, False, False, True] 2"


APP_RUN = """
import json, time
from apps.waste import App, run
from fwtest import ScriptedRadio
from lorawan.node import node_from_config
from store import Store

EMPTYING_MS = (600000, 660000)


def temperature_c(t_ms):
    return %(temperature)s


def distance_cm(t_ms):
    '''40 cm (75 %%) filling by 1 cm a minute, 125 cm once emptied.'''
    return 125 if t_ms >= EMPTYING_MS[1] else 40 - t_ms // 60000


class FakeI2C:
    '''MB7040 (0x70: every 4th ping a spurious 25 cm echo), TMP102 (0x48), ADXL345 (0x53: tipped to 120 deg while
    emptied).'''

    def __init__(self):
        self.pings = 0

    def writeto(self, address, data):
        if address == 0x70 and data[0] == 0x51:
            self.pings += 1

    def readfrom_into(self, address, buf):
        cm = 25 if self.pings %% 4 == 0 else distance_cm(time.ticks_ms())
        if cm != 25:
            print(json.dumps({"served_cm": cm, "t_ms": time.ticks_ms()}))
        buf[0], buf[1] = cm >> 8, cm & 0xFF

    def readfrom_mem(self, address, register, n):
        return bytes((0xE5,))

    def writeto_mem(self, address, register, data):
        pass

    def readfrom_mem_into(self, address, register, buf):
        if address == 0x48:
            count = round(temperature_c(time.ticks_ms()) / 0.0625) & 0xFFF
            buf[0], buf[1] = count >> 4, (count & 0xF) << 4
            return
        tipped = EMPTYING_MS[0] <= time.ticks_ms() < EMPTYING_MS[1]
        x, z = (222, -128) if tipped else (0, 256)
        for i, v in enumerate((x, 0, z)):
            buf[2 * i], buf[2 * i + 1] = v & 0xFF, (v >> 8) & 0xFF


class FakeBoard:
    BATTERY_DIVIDER = 2

    def __init__(self):
        self._i2c = FakeI2C()

    def i2c(self):
        return self._i2c

    def battery_volts(self, divider):
        return 3.62


config = json.loads(%(config)r)
store = Store()
radio = %(radio)s
node = node_from_config(config, lambda: radio, store)
run(App(FakeBoard(), config, store), node)
"""


def test_waste_app_reports_faster_near_full_and_at_once_after_an_emptying(tmp_path):
    code = APP_RUN % {"config": json.dumps(CONFIG), "temperature": "21.4",
                      "radio": "ScriptedRadio([], exit_on_send=19)"}
    output = run_firmware(code, cwd=tmp_path).splitlines()
    lines = [json.loads(line) if line.startswith("{") else line for line in output]
    text = [line for line in lines if isinstance(line, str)]
    transmissions = [line for line in lines if isinstance(line, dict) and "tx" in line]
    keys = SessionKeys(nwk_s_key=bytes.fromhex(NWK_S_KEY), app_s_key=bytes.fromhex(APP_S_KEY))
    frames = [parse_data_frame(bytes.fromhex(t["tx"])) for t in transmissions]
    payloads = [keys.open(f, f.fcnt16) for f in frames]
    assert all(len(p) <= MAX_READING_BYTES for p in payloads), [len(p) for p in payloads]
    readings = [{k: v["value"] for k, v in load_schema("waste").decode(1, p).readings.items()} for p in payloads]
    starts = [t["start_ms"] for t in transmissions]
    served = [line for line in lines if isinstance(line, dict) and "served_cm" in line]
    for reading, start in zip(readings, starts):
        # the median of the pings just before the uplink: never the spurious 25 cm echo
        assert reading["distance"] == [s["served_cm"] for s in served if s["t_ms"] <= start][-1] / 100
        assert reading["fill_level"] == max(0, min(100, round((1.3 - reading["distance"]) / 1.2 * 100)))
        assert reading["temperature"] == 21.4 and reading["battery"] == 3.62
        assert reading["tilt"] == (120 if 600_000 <= start < 660_000 else 0)  # read just before the uplink
    emptied_at = [i for i, r in enumerate(readings) if r["fill_level"] < 10]
    assert emptied_at, readings
    first_empty = emptied_at[0]
    assert "emptied: tipped to 120 deg and back (emptying 1); fill restarts" in text
    exchange_ms = 3_000  # airtime and two receive windows
    # the emptying is reported at the first tilt check after it (every 30 s, counted from the end of the last
    # exchange: a reading just before 660 s puts the next check up to an exchange later), not at the next interval
    assert 660_000 <= starts[first_empty] <= 660_000 + 30_000 + exchange_ms
    for i in range(1, len(starts)):
        if i == first_empty:
            continue
        interval = 30_000 if readings[i - 1]["fill_level"] > 80 else 60_000
        assert interval <= starts[i] - starts[i - 1] <= interval + exchange_ms, (i, readings[i - 1], starts)
    assert any(r["fill_level"] > 80 for r in readings[:first_empty]), "the container got nearly full before"
    assert readings[first_empty + 1:], "readings went on after the emptying"
