"""The scenario files and the sensor simulations they drive, without processes: every file loads and names a kit, bad
names and keys are refused clearly, and the new models (fire temperature, strain events, growing crack, PIR presence
with its IRQ edges, the SCD41 CO2 sensor and its school-day curve) serve what the scenario says, on the bus."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_rig.air import Air
from dos_rig.clock import VirtualClock
from dos_rig.fleet import make_node
from dos_rig.hardware import IRQ_FALLING, IRQ_RISING, BoardHardware
from dos_rig.scenarios import ScenarioError, available_scenarios, load_scenario
from dos_rig.sensors import (KITS, PIN_PIR, SCD41, SCD41_ADDRESS, TMP102, CrackGauge, HX711Bank, Scenario, SensorLog,
                             sensirion_crc8)

I2C_PINS = (15, 4)
EXPECTED_SCENARIOS = {"waste_three_days": "waste", "lamp_fails": "streetlight", "heavy_vehicle": "bridge",
                      "waste_fire": "waste", "streetlight_night_presence": "streetlight", "low_battery": "streetlight",
                      "school_day": "environment"}


def hardware(values: dict, clock: VirtualClock | None = None, irqs: list | None = None) -> BoardHardware:
    clock = clock or VirtualClock()
    sink = irqs if irqs is not None else []
    return BoardHardware("b", clock, Air(clock), (0.0, 0.0), Scenario(values), SensorLog("b"),
                         on_irq=lambda pin: sink.append((clock.now_us, pin)), on_radio_event=lambda: None)


def run_until(clock: VirtualClock, t_us: int) -> None:
    clock.call_at(t_us, lambda: None)
    while clock.now_us < t_us:
        clock.step(0.0)


# --- files ------------------------------------------------------------------------------------------------------------
def test_every_expected_scenario_has_a_file_with_a_description_and_its_kit():
    found = available_scenarios()
    assert set(EXPECTED_SCENARIOS) <= set(found)
    for name, description in found.items():
        values = load_scenario(name)
        assert description.strip() and values["kit"] in KITS and "description" not in values
        assert values["kit"] == EXPECTED_SCENARIOS.get(name, values["kit"]), name
        Scenario(values)  # the rig accepts it


def test_unknown_names_keys_and_broken_files_are_refused_clearly(tmp_path: Path):
    with pytest.raises(ScenarioError, match="no scenario 'no_such_thing'.*school_day"):
        load_scenario("no_such_thing")
    typo = tmp_path / "typo.toml"
    typo.write_text('description = "x"\nkit = "waste"\nfill_pc = 3\n')
    with pytest.raises(ScenarioError, match=r"typo.toml: unknown scenario keys: \['fill_pc'\]"):
        load_scenario(typo)
    no_description = tmp_path / "bare.toml"
    no_description.write_text('kit = "waste"\n')
    with pytest.raises(ScenarioError, match=r"missing \['description'\]"):
        load_scenario(no_description)
    bad_kit = tmp_path / "kit.toml"
    bad_kit.write_text('description = "x"\nkit = "toaster"\n')
    with pytest.raises(ScenarioError, match="unknown sensor kit 'toaster'"):
        load_scenario(bad_kit)
    broken = tmp_path / "broken.toml"
    broken.write_text('description = "x\n')
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(broken)


@pytest.mark.parametrize("values, message", [
    ({"temperature_c": {"base": 18, "fire_at": 300}}, r"temperature_c: unknown keys \['fire_at'\]"),
    ({"vibration": {"at_s": 1, "duration_s": 2, "freq_hz": 3}}, r"vibration: .*missing \['amplitude_g'\]"),
    ({"strain_events": [{"at_s": 1, "duration_s": 2}]}, r"strain_events: .*missing \['peak_ue'\]"),
    ({"lux": "bright"}, "lux: expected a number or a table, got 'bright'"),
    ({"presence_at_s": [1, "two"]}, "presence_at_s: expected a list of numbers"),
    ({"lamp_fails_at_s": True}, "lamp_fails_at_s: expected a number"),
    ({"co2_ppm": {"lessons": [["8:00"]]}}, r"co2_ppm: a lesson is \[start, end\]"),
    ({"co2_ppm": {"lessons": [["09:00", "08:15"]]}}, "does not run forward"),
])
def test_values_of_the_wrong_shape_are_refused_with_their_key(values, message):
    with pytest.raises(ValueError, match=message):
        Scenario(values)
    scenario = Scenario()
    with pytest.raises(ValueError, match=message):
        scenario.update(**values)
    with pytest.raises(ValueError, match="unknown scenario keys"):
        scenario.update(lux_typo=3)
    assert scenario.values["lux"] == 250  # a refused change changes nothing


def test_make_node_takes_a_scenario_file_name_or_a_dict_and_matches_the_kit_to_the_kind():
    assert make_node(1, kind="waste", scenario="waste_fire").scenario == load_scenario("waste_fire")
    assert make_node(2, kind="environment", scenario={"co2_ppm": 800}).scenario == {"co2_ppm": 800,
                                                                                 "kit": "environment"}
    assert make_node(3, kind="bridge").scenario == {"kit": "bridge"}
    with pytest.raises(ScenarioError, match="a streetlight node cannot run a scenario for the waste kit"):
        make_node(4, scenario="waste_three_days")


# --- models -----------------------------------------------------------------------------------------------------------
def test_waste_three_days_fills_over_three_days_and_restarts_after_the_emptying():
    scenario = Scenario(load_scenario("waste_three_days"))
    spec = scenario.values["fill_pct"]
    emptied_s = scenario.values["emptied_at_s"][0]
    day_us = 86400 * 10**6
    fills = [scenario.fill_pct(quarter * day_us // 4) for quarter in range(11)]  # up to the emptying
    assert fills == sorted(fills) and fills[0] == spec["start"]
    assert scenario.fill_pct(emptied_s * 10**6 - 1) > 90
    assert scenario.tilt_deg((emptied_s + 30) * 10**6) == scenario.values["tip_deg"]
    assert scenario.fill_pct((emptied_s + scenario.values["emptying_s"]) * 10**6) == spec["after_pct"]
    assert scenario.fill_pct(3 * day_us) < 20


def test_fire_temperature_holds_then_rises_at_its_rate_to_its_ceiling_on_the_tmp102():
    now = {"us": 0}
    values = load_scenario("waste_fire")
    spec = values["temperature_c"]
    scenario, log = Scenario(values), SensorLog("b")
    sensor = TMP102(scenario, lambda: now["us"], log)

    def served_c(t_s: float) -> float:
        now["us"] = round(t_s * 1e6)
        raw = int.from_bytes(sensor.read(2), "big") >> 4
        return raw * 0.0625

    assert served_c(spec["fire_at_s"] - 1) == pytest.approx(spec["base"], abs=0.0625)
    assert served_c(spec["fire_at_s"] + 120) == pytest.approx(spec["base"] + 2 * spec["rise_c_per_min"], abs=0.0625)
    assert served_c(spec["fire_at_s"] + 3600) == pytest.approx(spec["max_c"], abs=0.0625)
    assert [e["value"] for e in log.snapshot()] == [spec["base"], round(spec["base"] + 2 * spec["rise_c_per_min"], 1),
                                                   spec["max_c"]]


def shift_out(bank: HX711Bank, now: dict, t_us: int) -> list[int]:
    """Clock one 24-bit conversion out of every channel at t_us (as the node's driver does)."""
    now["us"] = t_us
    counts = [0] * bank.channels
    for _ in range(24):
        bank.clock(1)
        for channel in range(bank.channels):
            counts[channel] = (counts[channel] << 1) | bank.data(channel)
        bank.clock(0)
    bank.clock(1)
    bank.clock(0)
    return [c - (1 << 24) if c & 0x800000 else c for c in counts]


def test_a_heavy_vehicle_adds_its_load_to_the_strain_only_while_on_the_span():
    values = load_scenario("heavy_vehicle")
    event = values["strain_events"][0]
    scenario, now = Scenario(values), {"us": 0}
    bank = HX711Bank(scenario, lambda: now["us"], SensorLog("b"))
    per_ue = scenario.values["strain_counts_per_ue"]

    def strain_at(t_s: float) -> list[int]:
        return [round(c / per_ue) for c in shift_out(bank, now, round(t_s * 1e6))]

    assert strain_at(event["at_s"] - 1) == values["strain_ue"]
    loaded = [s + p for s, p in zip(values["strain_ue"], event["peak_ue"])]
    assert strain_at(event["at_s"]) == loaded
    assert strain_at(event["at_s"] + event["duration_s"] - 1) == loaded
    assert strain_at(event["at_s"] + event["duration_s"]) == values["strain_ue"]
    assert scenario.vibration(round((event["at_s"] + 1) * 1e6), 50) is not None


def test_a_growing_crack_is_served_through_the_gauge_at_0_01_mm():
    scenario, now = Scenario({"kit": "bridge", "crack_mm": {"start": 0.40, "per_day": 0.06}}), {"us": 0}
    gauge = CrackGauge(scenario, lambda: now["us"], SensorLog("b"))
    for days, expected_mm in ((0, 0.40), (0.5, 0.43), (2, 0.52)):
        now["us"] = round(days * 86400e6)
        microvolts, _reading = gauge.read()
        assert round(microvolts / 1e6 * scenario.values["crack_mm_per_v"], 2) == expected_mm


def test_the_origin_moves_every_scenario_instant():
    scenario = Scenario({"lamp_fails_at_s": 90, "battery_v": {"start": 3.45, "per_day": -7.2}})
    assert scenario.lamp_failed(90_000_000)
    scenario.set_origin(100)
    assert not scenario.lamp_failed(189_000_000) and scenario.lamp_failed(190_000_000)
    assert scenario.battery_v(100_000_000) == 3.45 and scenario.battery_v(700_000_000) == 3.4


def test_a_held_scenario_stays_at_time_0_until_its_origin_is_set():
    clock, irqs = VirtualClock(), []
    fire = {"base": 18, "fire_at_s": 0, "rise_c_per_min": 6}
    board = hardware({"lamp_fails_at_s": 30, "presence_at_s": [20], "temperature_c": fire}, clock, irqs)
    board.pin_irq(PIN_PIR, IRQ_RISING)
    board.scenario.hold()
    run_until(clock, 500 * 10**6)  # e.g. the other boards of a fleet being installed
    scenario = board.scenario
    assert irqs == [] and not scenario.lamp_failed(clock.now_us) and scenario.temperature_c(clock.now_us) == 18
    scenario.set_origin(500)
    run_until(clock, 530 * 10**6)
    assert [t // 10**6 for t, _pin in irqs] == [520]
    assert scenario.lamp_failed(clock.now_us) and scenario.temperature_c(clock.now_us) == 21.0


def test_pir_is_high_for_the_hold_after_each_presence_and_raises_its_irq_on_each_edge():
    clock, irqs = VirtualClock(), []
    values = load_scenario("streetlight_night_presence")
    board = hardware(values, clock, irqs)
    board.pin_irq(PIN_PIR, IRQ_RISING | IRQ_FALLING)
    hold = values["presence_hold_s"]
    run_until(clock, 2000 * 10**6)
    edges = [t // 10**6 for t, pin in irqs if pin == PIN_PIR]
    # 400 and 405 overlap: one pulse from 400 to 415
    assert edges == [120, 120 + hold, 400, 405 + hold, 900, 900 + hold, 1500, 1500 + hold]
    board.scenario.update(presence_at_s=[2100])
    board.pin_irq(PIN_PIR, IRQ_RISING)
    run_until(clock, 2050 * 10**6)
    assert board.pin_read(PIN_PIR) == 0
    run_until(clock, 2105 * 10**6)
    assert board.pin_read(PIN_PIR) == 1
    run_until(clock, 2200 * 10**6)
    assert [t // 10**6 for t, _pin in irqs][-1] == 2100  # rising edges only now
    assert [(e["t_us"] // 10**6, e["value"]) for e in board.sensor_log.snapshot() if e["sensor"] == "pir"] == [
        (2050, 0), (2105, 1)]


def test_pir_is_only_on_the_streetlight_kit():
    board = hardware({"kit": "waste", "presence_at_s": [0]})
    assert board.pin_read(PIN_PIR) == 0


# --- SCD41 ------------------------------------------------------------------------------------------------------------
def test_sensirion_crc_matches_the_datasheet_example():
    assert sensirion_crc8(bytes([0xBE, 0xEF])) == 0x92


def words(data: bytes) -> list[int]:
    """Check every word's CRC and return the words."""
    out = []
    for i in range(0, len(data), 3):
        assert sensirion_crc8(data[i:i + 2]) == data[i + 2], data.hex()
        out.append(int.from_bytes(data[i:i + 2], "big"))
    return out


def command(board: BoardHardware, code: int, answer_bytes: int = 0) -> tuple[int, bytes]:
    err, _acked = board.i2c_write(*I2C_PINS, SCD41_ADDRESS, code.to_bytes(2, "big"))
    if err or not answer_bytes:
        return err, b""
    return board.i2c_read(*I2C_PINS, SCD41_ADDRESS, answer_bytes)


def test_scd41_periodic_measurement_on_the_bus_follows_the_school_day():
    clock = VirtualClock()
    board = hardware(load_scenario("school_day"), clock)
    assert SCD41_ADDRESS in board.i2c_scan(*I2C_PINS)
    assert command(board, SCD41.SERIAL_NUMBER, 9)[0] == 0
    half_lesson_us = (7 * 3600 + 30 * 60) * 10**6  # 07:30 UTC, 30 minutes into the first lesson
    run_until(clock, half_lesson_us - 5_000_000)
    assert command(board, SCD41.START_PERIODIC) == (0, b"")
    err, ready = command(board, SCD41.DATA_READY, 3)
    assert err == 0 and words(ready)[0] & 0x07FF == 0
    assert command(board, SCD41.READ_MEASUREMENT, 9)[0] == errno.ENODEV  # nothing measured yet: not acknowledged
    assert command(board, SCD41.SERIAL_NUMBER)[0] == errno.ENODEV  # not accepted while measuring periodically
    run_until(clock, half_lesson_us)
    assert words(command(board, SCD41.DATA_READY, 3)[1])[0] & 0x07FF
    err, data = command(board, SCD41.READ_MEASUREMENT, 9)
    co2, temperature, humidity = words(data)
    assert err == 0 and co2 == 420 + 30 * 30
    assert round(-45 + 175 * temperature / 65535, 1) == 21.5 and round(100 * humidity / 65535, 1) == 48.5
    assert command(board, SCD41.READ_MEASUREMENT, 9)[0] == errno.ENODEV  # read out already
    assert command(board, SCD41.STOP_PERIODIC) == (0, b"")
    run_until(clock, half_lesson_us + 1_000_000)
    assert command(board, SCD41.SINGLE_SHOT) == (0, b"")
    run_until(clock, half_lesson_us + 5_900_000)
    assert command(board, SCD41.READ_MEASUREMENT, 9)[0] == errno.ENODEV  # the single shot takes 5 s
    run_until(clock, half_lesson_us + 6_000_000)
    assert words(command(board, SCD41.READ_MEASUREMENT, 9)[1])[0] == 420 + 30 * 30 + 30 * 6 // 60
    served = {e["sensor"]: e["value"] for e in board.sensor_log.snapshot() if e["sensor"].startswith("scd41")}
    assert served == {"scd41_co2": 1323, "scd41_temperature": 21.5, "scd41_humidity": 48.5}


def test_the_school_day_curve_rises_in_lessons_falls_in_breaks_and_rests_at_night():
    spec = load_scenario("school_day")["co2_ppm"]
    scenario = Scenario({"kit": "environment", "co2_ppm": spec})
    outdoor, rise, fall = spec["outdoor_ppm"], spec["rise_ppm_per_min"], spec["fall_ppm_per_min"]

    def at(hh_mm: str) -> int:
        hh, mm = map(int, hh_mm.split(":"))
        return scenario.co2_ppm((hh * 3600 + mm * 60) * 10**6)

    first_end = outdoor + 45 * rise
    assert at("06:00") == at("07:00") == outdoor
    assert at("07:45") == first_end
    assert at("07:50") == first_end - 5 * fall  # the short break
    assert at("08:35") == min(spec["max_ppm"], first_end - 5 * fall + 45 * rise)
    assert at("08:55") < at("08:35") and at("09:40") > at("08:55")
    assert at("20:00") == outdoor


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40000), st.integers(-100, 600), st.integers(0, 1000))
def test_scd41_words_decode_to_the_served_values_at_the_schema_resolution(co2, deci_c, deci_pct):
    celsius, humidity = deci_c / 10, deci_pct / 10
    board = hardware({"kit": "environment", "co2_ppm": co2, "temperature_c": celsius, "humidity_pct": humidity})
    command(board, SCD41.SINGLE_SHOT)
    board.clock.call_at(5_000_000, lambda: None)
    while board.clock.now_us < 5_000_000:
        board.clock.step(0.0)
    got_co2, temperature, humidity_word = words(command(board, SCD41.READ_MEASUREMENT, 9)[1])
    assert got_co2 == co2
    assert round(-45 + 175 * temperature / 65535, 1) == celsius
    assert round(100 * humidity_word / 65535, 1) == humidity
