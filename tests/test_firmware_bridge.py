"""The bridge app in micropython: strain with per-channel zero offsets, the HX711
bit-banged read (sign, timeout), the vibration window's RMS / peak / Goertzel frequency, and the whole app on a fake
board with a scripted radio: a reading decoded by the CPython schema codec carries the sensors' values in <= 24
bytes, the fields beyond the strains and the vibration peak taking turns."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import parse_data_frame
from dos_codecs.schema import load_schema
from firmware_support import run_firmware, run_micropython

NWK_S_KEY, APP_S_KEY = "2b7e151628aed2a6abf7158809cf4f3c", "000102030405060708090a0b0c0d0e0f"
COUNTS_PER_UE = 1073.74
CONFIG = {"board": "emu", "kind": "bridge", "asset_id": "BR-T-1", "activation": "abp", "dev_eui": "70b3d57ed0050201",
          "dev_addr": "26aa0201", "nwk_s_key": NWK_S_KEY, "app_s_key": APP_S_KEY, "interval_s": 60, "settings": {},
          "calibration": {"strain_zero_ue": [100, 0, -50], "crack_mm_per_v": 5.0}}
MAX_READING_BYTES = 24


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(st.integers(-7000, 7000), min_size=3, max_size=3),
                          st.lists(st.integers(-2000, 2000), min_size=3, max_size=3)), min_size=1, max_size=20))
def test_strain_is_the_gauge_strain_minus_the_zero_offset(cases):
    rows = [([round(s * COUNTS_PER_UE) for s in strains], zero) for strains, zero in cases]
    out = run_micropython(f"from apps.bridge import strains\nfor counts, zero in {rows!r}:\n"
                          f"    print(strains(counts, {COUNTS_PER_UE}, zero))\n")
    assert [json.loads(line) for line in out.splitlines()] == [
        [s - z for s, z in zip(strains, zero)] for strains, zero in cases]


def test_hx711_bank_shifts_signed_counts_out_and_times_out_when_not_ready():
    out = run_firmware("""
from drivers.hx711 import HX711Bank

class Chip:
    def __init__(self, value):
        self.value, self.bits = value & 0xFFFFFF, 0
class Clock:
    def __init__(self, chips):
        self.chips, self.level = chips, 0
    def __call__(self, level):
        if level and not self.level:
            for chip in self.chips:
                chip.bits += 1
        self.level = level
class Data:
    def __init__(self, chip, ready=True):
        self.chip, self.ready = chip, ready
    def __call__(self):
        if not 1 <= self.chip.bits <= 24:
            return 0 if self.ready else 1
        return (self.chip.value >> (24 - self.chip.bits)) & 1

chips = [Chip(v) for v in (1234567, -1, -8388608)]
bank = HX711Bank(Clock(chips), [Data(c) for c in chips])
print(bank.read(), [c.bits for c in chips])
try:
    HX711Bank(Clock([]), [Data(Chip(0), ready=False)]).read()
except OSError as exc:  # the bank raises OSError: the chip is off the bus
    print("error", exc)
""").splitlines()
    assert out[0] == "[1234567, -1, -8388608] [25, 25, 25]"  # the 25th pulse selects channel A, gain 128
    assert out[1] == "error HX711 not ready after 400 ms"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 31), st.integers(3, 2000), st.floats(0, 2 * math.pi)), min_size=1, max_size=8))
def test_vibration_window_rms_peak_and_dominant_frequency(tones):
    """A tone on a bin of the 64-sample window at 50 Hz, in whole counts on 1 g: its bin's frequency, RMS within one
    count of amplitude / sqrt(2), peak at most the amplitude."""
    windows = [[1 + round(amp * math.sin(2 * math.pi * k * i / 64 + phase)) / 256 for i in range(64)]
               for k, amp, phase in tones]
    out = run_micropython(f"from drivers.vibration import vibration\nfor w in {windows!r}:\n"
                          f"    print(list(vibration(w, 50, floor=1 / 256)))\n")
    for (k, amp, _phase), line in zip(tones, out.splitlines()):
        rms, peak, freq = json.loads(line)
        assert freq == k * 50 / 64
        assert abs(rms - amp / 256 / math.sqrt(2)) <= 1 / 256
        assert peak <= (amp + 1) / 256


def test_no_vibration_has_no_frequency():
    out = run_micropython("from drivers.vibration import vibration\nprint(vibration([1.0] * 64, 50, floor=1 / 256))")
    assert out.strip() == "(0.0, 0.0, 0.0)"


APP_RUN = """
import json, math, time
from apps.bridge import App, run
from fwtest import ScriptedRadio
from lorawan.node import node_from_config
from store import Store



def strain_ue(t_ms, read):
    '''The gauges' strain (3 channels) at t_ms, at the read-th read of the bank (from 1).'''
    return %(strain_ue)s

VIBRATION = (6.25, 20)  # Hz (bin 8 of 64 at 50 Hz), amplitude in counts


class FakeStrainAdcs:
    def __init__(self):
        self.reads = 0

    def read(self):
        self.reads += 1
        return [round(s * %(counts_per_ue)r) for s in strain_ue(time.ticks_ms(), self.reads)]


class FakeI2C:
    '''TMP102 (0x48) at -7.3 C, ADXL345 (0x53): x at 3 counts (tilt asin(3/256)), z 1 g plus the vibration.'''

    def readfrom_mem(self, address, register, n):
        return bytes((0xE5,))

    def writeto_mem(self, address, register, data):
        pass

    def readfrom_mem_into(self, address, register, buf):
        if address == 0x48:
            count = round(-7.3 / 0.0625) & 0xFFF
            buf[0], buf[1] = count >> 4, (count & 0xF) << 4
            return
        t = time.ticks_ms() / 1000
        z = 256 + round(VIBRATION[1] * math.sin(2 * math.pi * VIBRATION[0] * t))
        for i, v in enumerate((3, 0, z)):
            buf[2 * i], buf[2 * i + 1] = v & 0xFF, (v >> 8) & 0xFF


class FakeBoard:
    BATTERY_DIVIDER = 2

    def __init__(self):
        self._i2c = FakeI2C()

    def i2c(self):
        return self._i2c

    def strain_adcs(self, channels):
        return FakeStrainAdcs()

    def crack_gauge_volts(self):
        return 0.0836

    def battery_volts(self, divider):
        return 3.58


config = json.loads(%(config)r)
store = Store()
radio = %(radio)s
node = node_from_config(config, lambda: radio, store)
run(App(FakeBoard(), config, store), node)
"""


def test_bridge_app_reports_what_its_sensors_measured(tmp_path):
    code = APP_RUN % {"config": json.dumps(CONFIG), "counts_per_ue": COUNTS_PER_UE, "strain_ue": "(250, -40, 10)",
                      "radio": "ScriptedRadio([], exit_on_send=5)"}
    lines = run_firmware(code, cwd=tmp_path).splitlines()
    transmissions = [json.loads(line) for line in lines if line.startswith("{")]
    keys = SessionKeys(nwk_s_key=bytes.fromhex(NWK_S_KEY), app_s_key=bytes.fromhex(APP_S_KEY))
    frames = [parse_data_frame(bytes.fromhex(t["tx"])) for t in transmissions]
    assert len(frames) == 4
    rms = 20 / 256 / math.sqrt(2)
    expected_slow = {"vibration_freq": 6.2,  # 6.25 Hz at 0.1 Hz resolution
                     "tilt": round(math.degrees(math.asin(3 / 256)), 2), "crack_width": 0.42, "temperature": -7.3,
                     "battery": 3.58, "battery_low": False}
    slow_seen = []
    for frame in frames:
        payload = keys.open(frame, frame.fcnt16)
        assert len(payload) <= MAX_READING_BYTES
        decoded = load_schema("bridge").decode(frame.fport, payload)
        assert decoded.warnings == []
        values = {k: v["value"] for k, v in decoded.readings.items()}
        assert (values["strain_1"], values["strain_2"], values["strain_3"]) == (150, -40, 60)
        assert values["vibration_peak"] <= 21 / 256
        if "vibration_rms" in values:
            assert abs(values["vibration_rms"] - rms) <= 1 / 256
        slow = {name: value for name, value in values.items() if name in expected_slow}
        assert slow == {name: expected_slow[name] for name in slow}
        slow_seen.append(set(slow) | ({"vibration_rms"} & set(values)))
    # all eleven fields do not fit in 24 bytes: the others take turns, each sent within four readings
    assert all(seen and len(seen) < len(expected_slow) + 1 for seen in slow_seen), slow_seen
    assert set().union(*slow_seen) == set(expected_slow) | {"vibration_rms"}, slow_seen
    assert any(line.startswith("reading strain_1=150 strain_2=-40 strain_3=60 vibration rms=") for line in lines)
