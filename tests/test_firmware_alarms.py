"""Alarms and the features around them in micropython: limits with hysteresis, alarm episodes and the battery's low flag
(apps/runtime.py); and whole apps on fake boards with a radio that acknowledges confirmed uplinks: the waste fire
alarm (at once, confirmed, repeated until acknowledged, once per episode), the bridge's threshold alarms naming what
tripped, and the streetlight's presence raising the lamp, its night dimming from the dusk switch-on and its
low-battery flag."""
from __future__ import annotations

import json

import test_firmware_app as streetlight_test
import test_firmware_bridge as bridge_test
import test_firmware_waste as waste_test
from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import DataFrame, MType, parse_data_frame
from dos_codecs.schema import load_schema
from firmware_support import run_firmware, run_micropython

ACKING_RADIO = '''
from fwtest import ScriptedRadio


class AckingRadio(ScriptedRadio):
    """Answers confirmed uplinks in RX1 with the ACK downlinks `acks` (hex) in turn, after leaving the first
    `unanswered` confirmed transmissions unanswered; nothing else is heard."""

    def __init__(self, acks, unanswered=0, **options):
        ScriptedRadio.__init__(self, [], **options)
        self.acks, self.unanswered, self.answer = list(acks), unanswered, False

    def send(self, frame, tx_at_ms=None):
        confirmed = frame[0] >> 5 == 4
        if confirmed and self.unanswered:
            self.unanswered -= 1
            confirmed = False
        self.answer = confirmed and bool(self.acks)
        return ScriptedRadio.send(self, frame, tx_at_ms)

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        if self.answer:
            self.answer = False
            self.replies = [self.acks.pop(0)]
        return ScriptedRadio.recv(self, timeout_ms, rx_length, rx_packet)
'''
NWK_S_KEY, APP_S_KEY = waste_test.NWK_S_KEY, waste_test.APP_S_KEY
KEYS = SessionKeys(nwk_s_key=bytes.fromhex(NWK_S_KEY), app_s_key=bytes.fromhex(APP_S_KEY))


def acks(dev_addr: str, count: int) -> list[str]:
    """ACK downlinks with FCntDown 0 .. count-1 for the ABP session."""
    addr = int(dev_addr, 16)
    return [KEYS.seal(DataFrame(mtype=MType.UNCONFIRMED_DOWN, dev_addr=addr, fcnt16=n, ack=True), n).hex()
            for n in range(count)]


def uplinks(lines: list, kind: str) -> list[dict]:
    """Every data uplink transmitted: {fport, confirmed, fcnt, start_ms, message, values}."""
    schema = load_schema(kind)
    found = []
    for line in lines:
        if isinstance(line, dict) and "tx" in line:
            frame = parse_data_frame(bytes.fromhex(line["tx"]))
            decoded = schema.decode(frame.fport, KEYS.open(frame, frame.fcnt16))
            assert decoded.warnings == [], decoded.warnings
            found.append({"fport": frame.fport, "confirmed": frame.mtype == MType.CONFIRMED_UP, "fcnt": frame.fcnt16,
                          "start_ms": line["start_ms"], "message": decoded.message,
                          "values": {k: v["value"] for k, v in decoded.readings.items()}})
    return found


def parsed(output: str) -> list:
    return [json.loads(line) if line.startswith("{") else line for line in output.splitlines()]


# ---- apps/runtime.py on its own

def test_limits_with_hysteresis_episodes_and_the_low_battery_flag():
    out = run_micropython("""
import json
from apps.runtime import alarm_due, battery_level, measure_battery, over_limit

over, seen = False, []
for value in (10, 50, 51, 47, 46, 44, 60):
    over = over_limit(over, value, 50, 5)
    seen.append(over)
print(json.dumps(seen))
class App:  # an app's alarm conditions: two bit masks
    alarms_active = alarms_acked = 0

app, due = App(), []  # condition 3 fed, condition 0 never
for active, ack in ((False, False), (True, False), (True, True), (True, False), (False, False), (True, False)):
    due.append(alarm_due(app, active, 3))
    if ack:
        app.alarms_acked |= 1 << 3
print(json.dumps(due))
print(json.dumps([app.alarms_active, app.alarms_acked]))

class Board:
    BATTERY_DIVIDER = 2
    volts = [3.6, 3.39, 3.45, 3.49, 3.51, 3.38]
    def battery_volts(self, divider):
        return self.volts.pop(0)

from config import battery_calibration
app.battery, app.battery_low = (Board(),) + battery_calibration({}, Board.BATTERY_DIVIDER), False
print(json.dumps([(measure_battery(app, 3.4), app.battery_low)[1] for _ in range(6)]), battery_level(app.battery, 3.75))
""").splitlines()
    assert json.loads(out[0]) == [False, False, True, True, True, False, True]  # over above 50, back below 45
    # due from the start of an episode until acknowledged; an acknowledged episode is quiet until it ends
    assert json.loads(out[1]) == [False, True, True, False, False, True]
    assert json.loads(out[2]) == [1 << 3, 0]  # condition 3 at its own bit, active, its ack cleared at the end
    low, level = out[3].rsplit(" ", 1)
    assert json.loads(low) == [False, True, True, True, False, True]  # low below 3.4 V, clear only above 3.5 V
    assert int(level) == 1 + round(253 * (3.75 - 3.3) / (4.2 - 3.3))


# ---- waste: fire alarm

FIRE_RISE_C_PER_MIN = 12  # over the default 8 °C/min limit
# 21.4 °C, a fire from 300 s (to at most 90 °C), cooled down again from 700 s, a second fire from 900 s
FIRE_PROFILE = ("21.4 if t_ms < 300000 else min(90.0, 21.4 + (t_ms - 300000) * %(r)d / 60000) if t_ms < 700000 "
                "else 21.4 if t_ms < 900000 else min(90.0, 21.4 + (t_ms - 900000) * %(r)d / 60000)"
                % {"r": FIRE_RISE_C_PER_MIN})


def test_waste_fire_alarm_at_once_confirmed_repeated_until_acknowledged_once_per_episode(tmp_path):
    config = waste_test.CONFIG
    radio = f"AckingRadio({acks(config['dev_addr'], 4)!r}, unanswered=8, exit_on_send=45)"
    code = ACKING_RADIO + waste_test.APP_RUN % {"config": json.dumps(config), "temperature": FIRE_PROFILE,
                                                "radio": radio}
    lines = parsed(run_firmware(code, cwd=tmp_path))
    sent = uplinks(lines, "waste")
    alarm_fport = load_schema("waste").message("alarm").fport
    alarms = [u for u in sent if u["fport"] == alarm_fport]
    assert alarms and all(u["confirmed"] and u["message"] == "alarm" for u in alarms)
    by_fcnt = {}
    for alarm in alarms:
        by_fcnt.setdefault(alarm["fcnt"], []).append(alarm)
    # the first alarm went unanswered through all its tries and went again with the next reading; the second
    # episode's alarm was acknowledged at once
    assert [len(tries) for tries in by_fcnt.values()] == [8, 1, 1], {f: len(t) for f, t in by_fcnt.items()}
    first, repeat, second = (tries[0] for tries in by_fcnt.values())
    assert 300_000 < first["start_ms"] <= 360_000 + 3_000, "detected within two temperature checks of the fire"
    assert 360_000 < repeat["start_ms"] < 700_000 and 900_000 < second["start_ms"] <= 960_000 + 3_000
    for alarm in (first, repeat, second):
        assert alarm["values"]["fire"] is True and alarm["values"]["rise_rate"] >= 8
        assert alarm["values"]["temperature"] > 21.4
    # the alarm goes ahead of a reading brought forward with it
    after_first = [u for u in sent if u["start_ms"] > by_fcnt[first["fcnt"]][-1]["start_ms"]]
    assert after_first[0]["fport"] == 1 and after_first[0]["start_ms"] - first["start_ms"] < 60_000
    readings = [u for u in sent if u["fport"] == 1]
    assert all(r["values"]["battery_low"] is False for r in readings)
    hot = [r["values"]["temperature"] for r in readings if 400_000 < r["start_ms"] < 700_000]
    assert hot and max(hot) > 70
    text = [line for line in lines if isinstance(line, str)]
    assert sum(line.startswith("alarm: fire: temperature=") for line in text) == 3


# ---- bridge: threshold alarms

STRAIN_SEQUENCE = [(100, 0, 0), (100, 800, 0), (100, 470, 0), (100, 900, 0), (100, 400, -600), (100, 700, -600),
                   (100, 700, -600)]


def test_bridge_threshold_alarms_name_what_tripped_and_clear_only_below_the_hysteresis(tmp_path):
    config = {**bridge_test.CONFIG, "calibration": {"strain_zero_ue": [0, 0, 0], "crack_mm_per_v": 5.0},
              "settings": {"strain_limit_ue": 500, "hysteresis_pct": 10, "strain_check_s": 0}}  # with readings only
    radio = f"AckingRadio({acks(config['dev_addr'], 5)!r}, exit_on_send={len(STRAIN_SEQUENCE) + 3 + 1})"
    sequence = "%r[min(read, %d) - 1]" % (STRAIN_SEQUENCE, len(STRAIN_SEQUENCE))
    code = ACKING_RADIO + bridge_test.APP_RUN % {"config": json.dumps(config), "strain_ue": sequence,
                                                 "counts_per_ue": bridge_test.COUNTS_PER_UE, "radio": radio}
    lines = parsed(run_firmware(code, cwd=tmp_path))
    sent = uplinks(lines, "bridge")
    # which reading each alarm went ahead of, and what it named
    alarms, readings_seen = [], 0
    for uplink in sent:
        if uplink["message"] == "alarm":
            assert uplink["confirmed"]
            alarms.append((readings_seen, uplink["values"]))
        else:
            readings_seen += 1
    assert alarms == [(1, {"strain_2": 800}), (4, {"strain_3": -600}), (5, {"strain_2": 700})]
    text = [line for line in lines if isinstance(line, str)]
    assert any(line.startswith("alarm: strain_2=800 -> fcnt ") and line.endswith(" acked") for line in text), text


VEHICLE_MS = (100_000, 112_000)  # a heavy vehicle on the span between two readings


def test_bridge_strain_is_checked_between_readings_so_a_passing_vehicle_is_alarmed(tmp_path):
    found = {}
    for check_s in (5, 0):
        config = {**bridge_test.CONFIG, "calibration": {"strain_zero_ue": [0, 0, 0], "crack_mm_per_v": 5.0},
                  "settings": {"strain_limit_ue": 500, "strain_check_s": check_s}}
        radio = f"AckingRadio({acks(config['dev_addr'], 2)!r}, exit_on_send=5)"
        strain = "(0, 800, 0) if %d <= t_ms < %d else (0, 20, 0)" % VEHICLE_MS
        code = ACKING_RADIO + bridge_test.APP_RUN % {"config": json.dumps(config), "strain_ue": strain,
                                                     "counts_per_ue": bridge_test.COUNTS_PER_UE, "radio": radio}
        folder = tmp_path / str(check_s)
        folder.mkdir()
        found[check_s] = uplinks(parsed(run_firmware(code, cwd=folder)), "bridge")
    alarms = [u for u in found[5] if u["message"] == "alarm"]
    assert [a["values"] for a in alarms] == [{"strain_2": 800}]
    assert alarms[0]["confirmed"] and VEHICLE_MS[0] <= alarms[0]["start_ms"] <= VEHICLE_MS[1] + 3_000
    readings = [u for u in found[5] if u["message"] == "reading"]
    assert len(readings) == 3 and all(r["values"]["strain_2"] == 20 for r in readings), "no reading saw the vehicle"
    assert [u["message"] for u in found[0]] == ["reading"] * 4, "checked with readings only, the vehicle goes unseen"


# ---- streetlight: presence, night dimming, low battery

STREETLIGHT_ABP = {**{k: v for k, v in streetlight_test.CONFIG.items() if k not in ("join_eui", "app_key")},
                   "activation": "abp", "dev_addr": "26aa0301", "nwk_s_key": NWK_S_KEY, "app_s_key": APP_S_KEY,
                   "settings": {"dim_level": 30, "presence_level": 90, "presence_hold_s": 20, "night_dim_after_min": 5,
                                "night_dim_level": 10, "night_dim_for_min": 3}}
PRESENCE_MS = ((100_000, 110_000), (200_000, 205_000), (207_000, 209_000), (400_000, 402_000))


def levels(lines: list) -> list[tuple[int, int]]:
    """(virtual ms, lamp level %) at every dimmer write."""
    return [(line["t_ms"], round(line["pwm"] * 100 / 65535))
            for line in lines if isinstance(line, dict) and "pwm" in line]


def level_at(changes: list[tuple[int, int]], t_ms: int) -> int:
    return [level for at, level in changes if at <= t_ms][-1]


def test_presence_raises_the_lamp_night_dimming_follows_the_dusk_switch_on_and_battery_low_has_hysteresis(tmp_path):
    lines = streetlight_test.app_run(tmp_path, [], exit_on_send=11, config=STREETLIGHT_ABP, presence_ms=PRESENCE_MS,
                                     battery_v=(3.75, 3.35, 3.45, 3.55))
    sent = uplinks(lines, "streetlight")
    changes = levels(lines)
    switch_on = next(at for at, level in changes if level == 30)
    assert switch_on == sent[0]["start_ms"] and switch_on < 30_000, "lit at the first reading, in the dark"
    night_start, night_end = switch_on + 5 * 60_000, switch_on + 8 * 60_000
    # raised within a PIR poll (1 s) of each presence, lowered presence_hold_s after the last one sensed
    margin = 1_000 + 3_000  # a poll, or a reading's radio exchange
    for start, end, base in ((100_000, 110_000, 30), (200_000, 209_000, 30), (400_000, 402_000, 10)):
        assert level_at(changes, start + margin) == 90, (start, changes)
        assert level_at(changes, end + 20_000 - 1_000) == 90, (end, changes)
        assert level_at(changes, end + 20_000 + margin) == base, (end, changes)
    assert level_at(changes, 150_000) == 30
    assert level_at(changes, night_start - 2_000) == 30 and level_at(changes, night_start + margin) == 10
    assert level_at(changes, night_end - 2_000) == 10 and level_at(changes, night_end + margin) == 30
    text = [line for line in lines if isinstance(line, str)]
    assert text.count("night dimming: 10%") == 1 and text.count("night dimming: over") == 1
    readings = [u for u in sent if u["fport"] == 1]
    assert len(readings) == 10
    for reading in readings:
        assert reading["values"]["dim_level"] == level_at(changes, reading["start_ms"])
        if "energy" in reading["values"]:  # the fake INA219 measures 36 W at every level: energy from the switch-on
            assert abs(reading["values"]["energy"] - 36 * (reading["start_ms"] - switch_on) / 3_600_000) <= 0.5
    assert sum("energy" in r["values"] for r in readings) >= 5
    # four presence events, each counted once in the reading after it (the PIR low and high again is a new one)
    assert sum(r["values"]["presence"] for r in readings) == 4
    for start, _end in PRESENCE_MS:
        after = next(r for r in readings if r["start_ms"] > start)
        assert after["values"]["presence"] >= 1
    # battery 3.75, 3.35 (low), 3.45 (still low: clears only above 3.5 V), 3.55 (clear), then 3.55
    assert [r["values"]["battery_low"] for r in readings[:5]] == [False, True, True, False, False]


def test_a_sensor_failing_between_readings_is_logged_and_the_lamp_control_goes_on(tmp_path):
    # INA219 reads: one per reading, one per level change; the third is the one after the lamp was raised at 100 s
    lines = streetlight_test.app_run(tmp_path, [], exit_on_send=5, config=STREETLIGHT_ABP, presence_ms=PRESENCE_MS[:1],
                                     power_failures=(2,))
    text = [line for line in lines if isinstance(line, str)]
    assert "control failed: OSError: [Errno 5] EIO; trying again every 10 s" in text, text
    changes = levels(lines)
    assert level_at(changes, 105_000) == 90 and level_at(changes, 140_000) == 30, "the control went on"
    assert len([u for u in uplinks(lines, "streetlight") if u["fport"] == 1]) == 4
