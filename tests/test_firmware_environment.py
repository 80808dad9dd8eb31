"""The environment kind in micropython: the SCD41 driver (Sensirion CRC-8, the measurement words decoded with the
datasheet's formulas, a corrupted word refused) and the whole app on a fake board with a scripted radio: readings
decoded by the CPython schema codec carry the sensor's values, and CO2 over the limit sends the ventilate alarm at once,
confirmed, before the reading, once per episode (the episode ends only under the limit minus the hysteresis)."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import DataFrame, MType, parse_data_frame
from dos_codecs.schema import load_schema
from dos_rig.sensors import sensirion_words
from firmware_support import run_firmware, run_micropython

NWK_S_KEY, APP_S_KEY = "2b7e151628aed2a6abf7158809cf4f3c", "000102030405060708090a0b0c0d0e0f"
DEV_ADDR = 0x26AA0301
CONFIG = {"board": "emu", "kind": "environment", "asset_id": "ENV-T-1", "activation": "abp",
          "dev_eui": "70b3d57ed0050301", "dev_addr": f"{DEV_ADDR:08x}", "nwk_s_key": NWK_S_KEY, "app_s_key": APP_S_KEY,
          "interval_s": 120, "settings": {}, "calibration": {}}
KEYS = SessionKeys(nwk_s_key=bytes.fromhex(NWK_S_KEY), app_s_key=bytes.fromhex(APP_S_KEY))
SCHEMA = load_schema("environment")
ALARM_FPORT, READING_FPORT = SCHEMA.message("alarm").fport, SCHEMA.message("reading").fport
MAX_READING_BYTES = 24


def temperature_word(celsius: float) -> int:
    return round((celsius + 45) * 65535 / 175)


def humidity_word(percent: float) -> int:
    return round(percent * 65535 / 100)


def test_crc8_is_sensirions():
    out = run_micropython("from drivers.scd41 import crc8\nprint(crc8(bytes((0xBE, 0xEF))), crc8(bytes((0, 0))))")
    assert out.split() == [str(0x92), str(0x81)]  # the datasheet's example; 0x0000 checked by hand


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40000), st.integers(-100, 600), st.integers(0, 1000)), min_size=1,
                max_size=20))
def test_the_driver_decodes_measurement_words_to_the_schema_resolution(measurements):
    answers = [sensirion_words(co2, temperature_word(dc / 10), humidity_word(dp / 10)).hex()
               for co2, dc, dp in measurements]
    out = run_micropython(f"""
from drivers.scd41 import SCD41


class OneAnswer:
    def __init__(self, answer):
        self.answer = answer

    def writeto(self, address, data):
        assert address == 0x62 and bytes(data) == bytes((0xEC, 0x05))

    def readfrom_into(self, address, buf):
        for i in range(len(buf)):
            buf[i] = self.answer[i]


for answer in {answers!r}:
    co2, celsius, humidity = SCD41(OneAnswer(bytes.fromhex(answer))).read_measurement()
    print(co2, round(celsius * 10), round(humidity * 10))
""")
    assert [tuple(map(int, line.split())) for line in out.splitlines()] == measurements


def test_a_corrupted_word_is_refused():
    good = bytearray(sensirion_words(800, temperature_word(21.0), humidity_word(40.0)))
    good[4] ^= 0x01  # a bit of the temperature word
    out = run_micropython(f"""
from drivers.scd41 import SCD41


class Bus:
    def writeto(self, address, data):
        pass

    def readfrom_into(self, address, buf):
        for i, b in enumerate(bytes.fromhex({good.hex()!r})):
            buf[i] = b


try:
    SCD41(Bus()).read_measurement()
except OSError as exc:
    print(type(exc).__name__, isinstance(exc, OSError), exc)
""")
    assert out.strip() == "OSError True SCD41 answer word 1 fails its CRC"


APP_RUN = """
import json
from apps.environment import App, run
from fwtest import ScriptedRadio
from lorawan.node import node_from_config
from store import Store

NOT_READY, READY = bytes.fromhex(%(not_ready)r), bytes.fromhex(%(ready)r)
ANSWERS = [bytes.fromhex(h) for h in %(answers)r]


class FakeSCD41Bus:
    '''An SCD41 on I2C 0x62: a measurement is ready at every second get_data_ready_status; read_measurement answers
    ANSWERS in turn. Every command is printed.'''

    def __init__(self):
        self.command, self.polls, self.measurements = None, 0, 0

    def writeto(self, address, data):
        assert address == 0x62
        self.command = data[0] << 8 | data[1]
        print(json.dumps({"scd41": "%%04x" %% self.command}))

    def readfrom_into(self, address, buf):
        if self.command == 0xE4B8:
            self.polls += 1
            answer = READY if self.polls %% 2 == 0 else NOT_READY
        else:
            answer = ANSWERS[self.measurements]
            self.measurements += 1
        for i in range(len(buf)):
            buf[i] = answer[i]


class FakeBoard:
    BATTERY_DIVIDER = 2

    def __init__(self):
        self._i2c = FakeSCD41Bus()

    def i2c(self):
        return self._i2c

    def battery_volts(self, divider):
        return 3.62


config = json.loads(%(config)r)
store = Store()
radio = ScriptedRadio(%(replies)r, exit_on_send=%(exit_on_send)d)
node = node_from_config(config, lambda: radio, store)
run(App(FakeBoard(), config, store), node)
"""


def ack(fcnt_down: int) -> str:
    frame = DataFrame(mtype=MType.UNCONFIRMED_DOWN, dev_addr=DEV_ADDR, fcnt16=fcnt_down, ack=True)
    return KEYS.seal(frame, fcnt_down).hex()


def test_environment_app_reports_the_air_and_alarms_ventilate_once_per_episode(tmp_path):
    co2_series = [650, 1050, 1250, 900, 750, 1100]  # limit 1000, hysteresis 200: episodes from 1050 and from 1100
    answers = [sensirion_words(co2, temperature_word(21.4), humidity_word(48.3)).hex() for co2 in co2_series + [1000]]
    # two receive windows per unconfirmed uplink; each confirmed alarm is acknowledged in its first window
    replies = [None, None, ack(0), None, None, None, None, None, None, None, None, ack(1), None, None]
    code = APP_RUN % {"config": json.dumps(CONFIG), "answers": answers, "replies": replies, "exit_on_send": 9,
                      "not_ready": sensirion_words(0x8000).hex(), "ready": sensirion_words(0x8006).hex()}
    output = run_firmware(code, cwd=tmp_path).splitlines()
    lines = [json.loads(line) if line.startswith("{") else line for line in output]
    text = [line for line in lines if isinstance(line, str)]
    transmissions = [line for line in lines if isinstance(line, dict) and "tx" in line]
    frames = [parse_data_frame(bytes.fromhex(t["tx"])) for t in transmissions]
    uplinks = [(f.fport, f.mtype == MType.CONFIRMED_UP, SCHEMA.decode(f.fport, KEYS.open(f, f.fcnt16))) for f in frames]
    assert [(fport, confirmed) for fport, confirmed, _d in uplinks] == [
        (READING_FPORT, False), (ALARM_FPORT, True), (READING_FPORT, False), (READING_FPORT, False),
        (READING_FPORT, False), (READING_FPORT, False), (ALARM_FPORT, True), (READING_FPORT, False)]
    readings = [{k: v["value"] for k, v in d.readings.items()} for fport, _c, d in uplinks if fport == READING_FPORT]
    assert readings == [{"co2": co2, "temperature": 21.4, "humidity": 48.3, "battery": 3.62, "battery_low": False}
                        for co2 in co2_series]
    alarms = [{k: v["value"] for k, v in d.readings.items()} for fport, _c, d in uplinks if fport == ALARM_FPORT]
    assert alarms == [{"ventilate": True, "co2": 1050, "co2_limit": 1000}, {"ventilate": True, "co2": 1100,
                                                                          "co2_limit": 1000}]
    assert all(d.warnings == [] for _f, _c, d in uplinks)
    payloads = [KEYS.open(f, f.fcnt16) for f in frames]
    assert max(len(p) for p in payloads) <= MAX_READING_BYTES
    alarm_lines = [line for line in text if line.startswith("alarm: ")]
    assert len(alarm_lines) == 2 and alarm_lines[0].startswith("alarm: ventilate: co2=1050ppm limit=1000ppm -> fcnt 1")
    assert all(line.endswith(" acked") for line in alarm_lines), alarm_lines
    assert text[1].startswith("reading co2=650ppm temperature=21.4C humidity=48.3% battery=3.62V -> fcnt 0 "), text
    # the sensor: stopped (it may still be measuring from before a reset) and started once, then for each reading
    # polled until a measurement is ready and read out
    commands = [line["scd41"] for line in lines if isinstance(line, dict) and "scd41" in line]
    assert commands[:2] == ["3f86", "21b1"]
    assert commands[2:] == ["e4b8", "e4b8", "ec05"] * (len(co2_series) + 1)  # the last reading's send ends the run
    starts = [t["start_ms"] for t, (fport, _c, _d) in zip(transmissions, uplinks) if fport == READING_FPORT]
    exchange_ms = 3_000
    assert all(60_000 <= b - a <= 2 * 120_000 + exchange_ms for a, b in zip(starts, starts[1:])), starts
