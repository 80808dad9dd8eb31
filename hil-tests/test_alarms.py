"""Alarms and the features around them end to end, driven by the scenario files in hil-tests/scenarios: real firmware on
emulated boards, through the air, the packet forwarder and the agent to Mosquitto.

- waste_fire: the container's temperature starts rising 4 °C a minute; one confirmed fire alarm with the measured
  temperature and rise rate reaches MQTT within two temperature checks, ahead of the next reading.
- heavy_vehicle: a vehicle loads the span and excites it; a confirmed threshold alarm naming the strain channel over
  its limit within a strain check, one naming the vibration peak with the first reading under load, once each.
- streetlight_night_presence: people pass the lit lamp; readings within presence_hold_s of a presence show the lamp
  raised to presence_level (and the INA219 metering it), the others the dim level, and count the presence events.
- low_battery: the backup battery sags; battery_low turns on in the first reading under battery_low_v and stays on.

Each test runs its own fleet of one node; scenario time 0 is when the node's first reading arrived.
"""
import time

import pytest

from dos_rig.fleet import Fleet, make_node
from dos_rig.scenarios import load_scenario
from test_node_kinds import virtual_us

pytestmark = pytest.mark.hil

INTERVAL_S = 30
TILT_POLL_S = 20
FIRE_RISE_LIMIT = 3.0  # °C/min: the scenario's 4 °C/min trips it
STRAIN_LIMIT_UE, VIBRATION_PEAK_LIMIT_G = 500, 0.04
STRAIN_CHECK_S = 10  # the bridge app's default
READING_AGE_S = 15  # the most a reading's measurement can be older than its uplink: an alarm went ahead of it
DIM_LEVEL, PRESENCE_LEVEL, PRESENCE_HOLD_S = 30, 100, 60  # a raise outlasts the longest gap between readings
BATTERY_LOW_V = 3.43
RATED_W = 36.0  # the rig's default lamp power
LAST_S = 500  # scenario seconds the presence test needs
ALARM_FPORT = 2
READING_FPORT = 1


NODES = {
    "waste_fire": make_node(1, kind="waste", prefix="WC-AL", interval_s=60, scenario="waste_fire",
                            settings={"tilt_poll_s": TILT_POLL_S, "fire_rise_c_per_min": FIRE_RISE_LIMIT}),
    "heavy_vehicle": make_node(2, kind="bridge", prefix="BR-AL", interval_s=INTERVAL_S, scenario="heavy_vehicle",
                               settings={"strain_limit_ue": STRAIN_LIMIT_UE,
                                         "vibration_peak_limit": VIBRATION_PEAK_LIMIT_G}),
    "streetlight_night_presence": make_node(3, prefix="SL-PR", interval_s=INTERVAL_S,
                                            scenario="streetlight_night_presence",
                                            settings={"dim_level": DIM_LEVEL, "presence_level": PRESENCE_LEVEL,
                                                      "presence_hold_s": PRESENCE_HOLD_S}),
    "low_battery": make_node(4, prefix="SL-BA", interval_s=INTERVAL_S, scenario="low_battery",
                             settings={"battery_low_v": BATTERY_LOW_V}),
}


@pytest.fixture
def fleet(request, tmp_path):
    """A fleet of the one node the test's scenario (the fixture's parameter) needs. Scenario time 0 is when the node's
    first reading arrived: while a board is installed or boots it is silent, and the rig's clock may run on to the
    scenario's next events meanwhile (the PIR's edges), so the scenario starts once the node is in its loop."""
    node = NODES[request.param]
    with Fleet(tmp_path, [node]) as fleet:
        assert fleet.tap.wait_for(lambda _m: fleet.uplinks(node.asset_id), timeout_s=120), node.board.console[-3000:]
        fleet.origin_s = fleet.rig.now_us() / 1e6
        fleet.rig.call(lambda: node.board.scenario.set_origin(fleet.origin_s))
        yield fleet


def scenario_us(fleet, scenario_s):
    """Rig µs of a scenario instant."""
    return round((fleet.origin_s + scenario_s) * 1e6)


def uplinks_past(fleet, node, scenario_s):
    """Wait until `node` reported past scenario second `scenario_s`; its uplinks as (event, sent µs)."""
    until_us = scenario_us(fleet, scenario_s)

    def past(_msgs):
        return any(virtual_us(fleet, e["gateway_time"]) > until_us for e in fleet.uplinks(node.asset_id))

    assert fleet.tap.wait_for(past, timeout_s=420), (
        f"{node.asset_id} did not report past scenario second {scenario_s}; agent log:\n"
        + fleet.agent.log_text()[-2000:] + f"\n--- {node.board_id}\n{node.board.console[-3000:]}")
    return [(e, virtual_us(fleet, e["gateway_time"])) for e in fleet.uplinks(node.asset_id)]


def console_shows(node, text, timeout_s=10.0):
    """Whether the board's console shows `text` within timeout_s (a line is printed after its uplink's exchange, which
    may end after MQTT already has the event)."""
    deadline = time.monotonic() + timeout_s
    while text not in node.board.console:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def values(event):
    return {name: r["value"] for name, r in event["readings"].items()}


def served_before(fleet, node, sensor, t_us):
    served = [e["value"] for e in fleet.rig.sensor_log(node.board_id) if e["sensor"] == sensor and e["t_us"] <= t_us]
    assert served, f"no {sensor} value served before {t_us} µs"
    return served[-1]


@pytest.mark.parametrize("fleet", ["waste_fire"], indirect=True)
def test_waste_fire_is_alarmed_once_confirmed_within_two_temperature_checks(fleet):
    node = fleet.nodes[0]
    fire = load_scenario("waste_fire")["temperature_c"]
    uplinks = uplinks_past(fleet, node, fire["fire_at_s"] + 3 * 60)
    fire_us = scenario_us(fleet, fire["fire_at_s"])
    alarms = [(e, t) for e, t in uplinks if e["fport"] == ALARM_FPORT]
    assert len(alarms) == 1, ([values(e) for e, _t in alarms], node.board.console[-4000:])
    alarm, alarm_us = alarms[0]
    assert alarm["confirmed"] is True and alarm["warnings"] == [] and alarm["decode_error"] is None
    assert fire_us < alarm_us <= fire_us + (2 * TILT_POLL_S + 5) * 1e6, (alarm_us - fire_us) / 1e6
    got = values(alarm)
    assert got["fire"] is True
    assert abs(got["rise_rate"] - fire["rise_c_per_min"]) <= 0.5, got
    assert got["temperature"] == served_before(fleet, node, "tmp102", alarm_us)
    readings = [(e, t) for e, t in uplinks if e["fport"] == READING_FPORT]
    before = [t for _e, t in readings if t < fire_us]
    after = [t for _e, t in readings if t > alarm_us]
    assert before and after and after[0] - alarm_us < 15e6, "the reading brought forward follows the alarm (duty cycle)"
    assert console_shows(node, f"alarm: fire: temperature={got['temperature']:.1f}C")


@pytest.mark.parametrize("fleet", ["heavy_vehicle"], indirect=True)
def test_a_heavy_vehicle_trips_the_strain_alarm_at_once_and_the_vibration_alarm_with_a_reading(fleet):
    node = fleet.nodes[0]
    scenario = load_scenario("heavy_vehicle")
    event = scenario["strain_events"][0]
    loaded = [s + p for s, p in zip(scenario["strain_ue"], event["peak_ue"])]
    tripped = [f"strain_{i + 1}" for i, ue in enumerate(loaded) if abs(ue) > STRAIN_LIMIT_UE]
    assert tripped == ["strain_3"], "the scenario loads one channel over the limit"
    start_us, end_us = scenario_us(fleet, event["at_s"]), scenario_us(fleet, event["at_s"] + event["duration_s"])
    uplinks = uplinks_past(fleet, node, event["at_s"] + event["duration_s"] + 2 * INTERVAL_S)
    alarms = [(e, t) for e, t in uplinks if e["fport"] == ALARM_FPORT]
    named = sorted(name for e, _t in alarms for name in values(e))
    assert named == ["strain_3", "vibration_peak"], [values(e) for e, _t in alarms]  # each once: one per episode
    assert all(e["confirmed"] is True and e["warnings"] == [] for e, _t in alarms)
    strain_alarm, strain_us = next((e, t) for e, t in alarms if "strain_3" in values(e))
    vibration_alarm, vibration_us = next((e, t) for e, t in alarms if "vibration_peak" in values(e))
    # the strains are checked every strain_check_s between readings (and with each reading), the vibration window with
    # a reading: which one trips first depends on where the load finds the node's slot
    assert start_us < strain_us <= start_us + (STRAIN_CHECK_S + 5) * 1e6
    assert values(strain_alarm)["strain_3"] == loaded[2]
    # with the first reading under load; its uplink may wait out the duty-cycle off-time of the strain alarm just before
    assert start_us < vibration_us <= start_us + (INTERVAL_S + READING_AGE_S) * 1e6, (vibration_us - start_us) / 1e6
    peak = values(vibration_alarm)["vibration_peak"]
    assert peak > VIBRATION_PEAK_LIMIT_G
    reading = next(e for e, t in uplinks if e["fport"] == READING_FPORT and t > vibration_us)
    assert values(reading)["vibration_peak"] == peak, "alarm and reading come from one measurement"
    # a reading sent up to READING_AGE_S after the load came (or went) may have read the strains before it: an alarm,
    # confirmed, with its receive windows and the duty-cycle off-time, can go ahead of it
    age_us = READING_AGE_S * 1e6
    during = [values(e) for e, t in uplinks if e["fport"] == READING_FPORT and start_us + age_us < t < end_us]
    assert len(during) >= 3 and all(v["strain_3"] == loaded[2] for v in during), "one alarm per episode"
    quiet = [values(e) for e, t in uplinks if e["fport"] == READING_FPORT and (t < start_us or t > end_us + age_us)]
    assert quiet and all(v["strain_3"] == scenario["strain_ue"][2] for v in quiet)


@pytest.mark.parametrize("fleet", ["streetlight_night_presence"], indirect=True)
def test_presence_raises_the_lit_lamp_for_the_hold_time_and_is_counted(fleet):
    node = fleet.nodes[0]
    scenario = load_scenario("streetlight_night_presence")
    pulses = []  # (start, end of the PIR pulse) in scenario seconds, overlapping presences merged
    for at in sorted(scenario["presence_at_s"]):
        if pulses and at <= pulses[-1][1]:
            pulses[-1][1] = at + scenario["presence_hold_s"]
        else:
            pulses.append([at, at + scenario["presence_hold_s"]])
    pulses = [p for p in pulses if p[1] < LAST_S - 2 * INTERVAL_S]
    assert len(pulses) >= 2
    uplinks = uplinks_past(fleet, node, LAST_S)
    # from when a raise before the origin (another scenario time) is surely over
    settled_us = scenario_us(fleet, PRESENCE_HOLD_S + 5)
    readings = [(values(e), t) for e, t in uplinks if e["fport"] == READING_FPORT and t > settled_us]
    raised = quiet = 0
    for reading, t_us in readings:
        assert reading["lamp_on"] is True, "lit all night"
        if any(scenario_us(fleet, start) + 2e6 <= t_us <= scenario_us(fleet, end + PRESENCE_HOLD_S) - 2e6
               for start, end in pulses):
            expected, raised = PRESENCE_LEVEL, raised + 1
        elif all(not scenario_us(fleet, start) <= t_us <= scenario_us(fleet, end + PRESENCE_HOLD_S) + 5e6
                 for start, end in pulses):
            expected, quiet = DIM_LEVEL, quiet + 1
        else:
            continue  # at an edge of a raise: either level
        assert reading["dim_level"] == expected, (t_us, reading)
        assert reading["power"] == served_before(fleet, node, "ina219", t_us) == RATED_W * expected / 100
    levels = [(r["dim_level"], round(t / 1e6 - fleet.origin_s)) for r, t in readings]
    assert raised >= 2 and quiet >= 2, (raised, quiet, levels)
    counted = sum(r["presence"] for r, t in readings
                  if scenario_us(fleet, 2 * INTERVAL_S) < t <= scenario_us(fleet, pulses[-1][1] + 2 * INTERVAL_S))
    assert counted == len(pulses), "one presence event per PIR pulse"
    assert any(e["sensor"] == "pir" and e["value"] for e in fleet.rig.sensor_log(node.board_id))


@pytest.mark.parametrize("fleet", ["low_battery"], indirect=True)
def test_low_battery_flag_turns_on_under_the_limit_and_stays_on(fleet):
    node = fleet.nodes[0]
    uplinks = uplinks_past(fleet, node, 330)
    readings = [(values(e), t) for e, t in uplinks if e["fport"] == READING_FPORT]
    flags = [r["battery_low"] for r, _t in readings]
    assert False in flags and True in flags, [(r["battery"], r["battery_low"]) for r, _t in readings]
    first_low = flags.index(True)
    assert not any(flags[:first_low]) and all(flags[first_low:]), "set once, no flapping while the battery sags"
    assert readings[first_low][0]["battery"] < BATTERY_LOW_V <= readings[first_low - 1][0]["battery"]
    for reading, t_us in readings:
        assert reading["battery"] == served_before(fleet, node, "battery", t_us)
    assert console_shows(node, " LOW presence=")
