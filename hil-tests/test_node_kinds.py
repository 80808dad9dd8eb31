"""The waste-container and bridge apps end to end: real firmware on emulated boards with their sensor kits, driven by
the scenario files waste_three_days (its last minutes: a nearly full container emptied) and heavy_vehicle (a bridge
with strain, a crack and a vehicle exciting it), through the air, the packet forwarder and the agent to Mosquitto.
Readings must carry the values the simulated sensors served."""
import math
from datetime import datetime

import pytest

from dos_rig.fleet import Fleet, make_node
from dos_rig.scenarios import load_scenario

pytestmark = pytest.mark.hil

INTERVAL_S = 60
# The bridge reports twice as often: its slow fields (seven, two or three fitting a reading beside the strains and the
# vibration peak) take turns, and the 200 s vehicle must see at least four readings (eight turns) so that RMS and
# frequency both go out during it; three readings could leave one of them out.
BRIDGE_INTERVAL_S = 30
TILT_POLL_S = 20
MEASURE_MARGIN_S = 5  # a reading's measurement (median of pings, vibration window) ends this long before its uplink
EMPTIED_AFTER_S = 240  # after the fleet is up (the clock runs while boards are installed)
WASTE = load_scenario("waste_three_days")
EMPTYING_S = WASTE["emptying_s"]
SAMPLE_RATE_HZ = 50  # the bridge app's ADXL345 output data rate
DEPTH_M, OFFSET_M = 1.2, 0.1  # the rig's and the firmware's default container geometry
VIBRATION = load_scenario("heavy_vehicle")["vibration"]
SENSOR_FIELDS = {
    "waste": (("mb7040", "distance"), ("tmp102", "temperature"), ("adxl345", "tilt"), ("battery", "battery")),
    "bridge": (("hx711_1", "strain_1"), ("hx711_2", "strain_2"), ("hx711_3", "strain_3"), ("tmp102", "temperature"),
               ("adxl345", "tilt"), ("crack_gauge", "crack_width"), ("battery", "battery")),
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    nodes = [make_node(1, kind="waste", prefix="WC-DO", interval_s=INTERVAL_S, settings={"tilt_poll_s": TILT_POLL_S},
                       scenario="waste_three_days"),
             make_node(2, kind="bridge", prefix="BR-DO", interval_s=BRIDGE_INTERVAL_S, scenario="heavy_vehicle")]
    with Fleet(tmp_path_factory.mktemp("kinds"), nodes) as fleet:
        up_s = fleet.rig.now_us() // 1_000_000
        # the container's last minutes before its emptying, the bridge's scenario from its start (the clock ran while
        # the boards were installed: what the nodes reported before is another scenario time)
        fleet.emptied_at_s = up_s + EMPTIED_AFTER_S
        fleet.rig.call(lambda: nodes[0].board.scenario.set_origin(fleet.emptied_at_s - WASTE["emptied_at_s"][0]))
        fleet.rig.call(lambda: nodes[1].board.scenario.set_origin(up_s))
        fleet.vibration_at_s = up_s + VIBRATION["at_s"]
        # a reading measured before the origins were set, and sent just after, still belongs to the old scenario time
        fleet.settled_s = fleet.rig.now_us() // 1_000_000 + MEASURE_MARGIN_S
        yield fleet


def virtual_us(fleet, iso_time):
    when = datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
    return round((when - fleet.rig.epoch_s) * 1e6)


def readings_until(fleet, virtual_s):
    """Wait for both nodes to report past virtual_s; their routine readings as (event, sent µs) lists by kind (the
    bridge's threshold alarm under the heavy vehicle is test_alarms' subject)."""
    def past(_msgs):
        return all(any(virtual_us(fleet, e["gateway_time"]) > virtual_s * 1e6 for e in fleet.uplinks(n.asset_id))
                   for n in fleet.nodes)

    assert fleet.tap.wait_for(past, timeout_s=300), (
        "readings did not arrive; agent log:\n" + fleet.agent.log_text()[-3000:]
        + "".join(f"\n--- {n.board_id}\n{n.board.console[-2000:]}" for n in fleet.nodes))
    return {n.kind: [(e, virtual_us(fleet, e["gateway_time"])) for e in fleet.uplinks(n.asset_id) if e["fport"] == 1]
            for n in fleet.nodes}


def served_before(log, sensor, t_us):
    values = [entry["value"] for entry in log if entry["sensor"] == sensor and entry["t_us"] <= t_us]
    assert values, f"no {sensor} value served before {t_us} µs"
    return values[-1]


def test_readings_carry_what_the_sensors_served(fleet):
    readings = readings_until(fleet, fleet.emptied_at_s + EMPTYING_S + INTERVAL_S)
    for node in fleet.nodes:
        log = fleet.rig.sensor_log(node.board_id)
        assert readings[node.kind], node.kind
        sent_fields = set()
        for event, sent_us in readings[node.kind]:
            assert event["kind"] == node.kind and event["warnings"] == [] and event["decode_error"] is None
            for sensor, field in SENSOR_FIELDS[node.kind]:
                if field in event["readings"]:  # the bridge's slow fields take turns within its 24-byte payload
                    sent_fields.add(field)
                    assert event["readings"][field]["value"] == served_before(log, sensor, sent_us), (node.kind, field)
        assert sent_fields == {field for _sensor, field in SENSOR_FIELDS[node.kind]}


def test_waste_fill_from_the_median_distance_and_drops_after_the_emptying(fleet):
    readings = readings_until(fleet, fleet.emptied_at_s + EMPTYING_S + INTERVAL_S)["waste"]
    node = fleet.nodes[0]
    log = fleet.rig.sensor_log(node.board_id)
    assert any(e["sensor"] == "mb7040_outlier" for e in log), "the scenario's spurious echoes were served"
    for event, _sent_us in readings:
        distance = event["readings"]["distance"]["value"]
        assert distance != 0.25, "a spurious echo reached the reading"
        expected = max(0, min(100, round((DEPTH_M + OFFSET_M - distance) / DEPTH_M * 100)))
        assert event["readings"]["fill_level"]["value"] == expected
    end_us = (fleet.emptied_at_s + EMPTYING_S) * 1e6
    before = [e["readings"]["fill_level"]["value"] for e, t in readings
              if fleet.settled_s * 1e6 < t < fleet.emptied_at_s * 1e6]
    after = [(e["readings"]["fill_level"]["value"], t) for e, t in readings if t > end_us]
    assert before and min(before) >= 90, before  # 92.5 % when emptied
    assert after and after[0][0] <= 10, f"fill after the emptying: {after}"
    # the emptying is noticed at the next tilt check and reported at once, not at the next interval
    assert after[0][1] - end_us <= (TILT_POLL_S + 5) * 1e6
    assert "emptied: tipped to 120 deg and back (emptying 1); fill restarts" in node.board.console
    tipped = [e["value"] for e in log if e["sensor"] == "adxl345"]
    assert 120 in tipped and tipped[-1] == 0


def test_bridge_vibration_matches_the_scenarios_event(fleet):
    readings = readings_until(fleet, fleet.vibration_at_s + VIBRATION["duration_s"] + INTERVAL_S)["bridge"]
    log = fleet.rig.sensor_log(fleet.nodes[1].board_id)
    events = [e["value"] for e in log if e["sensor"] == "vibration"]
    assert events, f"the vibration event was never sampled; readings at {[t for _e, t in readings]} µs"
    freq_hz, amplitude_g = events[0]["freq_hz"], events[0]["amplitude_g"]
    start_us, end_us = fleet.vibration_at_s * 1e6, (fleet.vibration_at_s + VIBRATION["duration_s"]) * 1e6
    during = [e["readings"] for e, t in readings if start_us + 3e6 <= t <= end_us]
    quiet = [e["readings"] for e, t in readings
             if fleet.settled_s * 1e6 < t < start_us or t > end_us + 3e6]  # before: another scenario time
    assert during and quiet, f"readings during {len(during)}, outside {len(quiet)} the event"
    lsb_g = 1 / 256
    # the peak goes with every reading; RMS and frequency take turns with the slow fields
    assert any("vibration_freq" in values for values in during) and any("vibration_rms" in values for values in during)
    for values in during:
        if "vibration_freq" in values:
            assert values["vibration_freq"]["value"] == round(freq_hz * 10) / 10
        if "vibration_rms" in values:
            assert abs(values["vibration_rms"]["value"] - amplitude_g / math.sqrt(2)) <= lsb_g
        # the window's samples may straddle the crest by up to half a sample period
        lowest_peak = amplitude_g * math.cos(math.pi * freq_hz / SAMPLE_RATE_HZ) - lsb_g
        assert lowest_peak <= values["vibration_peak"]["value"] <= amplitude_g + lsb_g
    for values in quiet:
        assert values["vibration_peak"]["value"] == 0
        assert all(values[name]["value"] == 0 for name in ("vibration_rms", "vibration_freq") if name in values)


# ---- the kits' bus models on their own (no boards)

def test_kit_models_answer_on_the_bus_as_the_chips_do():
    from dos_rig.sensors import ADXL345, HX711Bank, Scenario, SensorLog

    now = [0]
    scenario = Scenario({"kit": "bridge", "strain_ue": [-2, 5000, 0], "tilt_deg": 90})
    accel = ADXL345(scenario, "bridge", lambda: now[0], SensorLog("t"))
    accel.write(bytes([0x00]))
    assert accel.read(1) == b"\xe5"
    accel.write(bytes([0x32]))
    assert accel.read(6) == bytes(6), "no data before POWER_CTL sets measure"
    accel.write(bytes([0x2D, 0x08]))
    accel.write(bytes([0x31, 0x01]))  # +-4 g, 10 bits: 128 counts per g
    accel.write(bytes([0x32]))
    x, _y, z = (int.from_bytes(accel.read(6)[i:i + 2], "little", signed=True) for i in (0, 2, 4))
    assert (x, z) == (128, 0)
    bank = HX711Bank(scenario, lambda: now[0], SensorLog("t"))
    counts = [0, 0, 0]
    for _ in range(24):
        bank.clock(1)
        bank.clock(0)
        counts = [c << 1 | bank.data(i) for i, c in enumerate(counts)]
    bank.clock(1)
    bank.clock(0)
    signed = [c - (1 << 24) if c & 0x800000 else c for c in counts]
    assert signed == [round(-2 * 1073.74), round(5000 * 1073.74), 0]
    assert bank.data(0) == 1, "not ready again until the next conversion"
    now[0] += HX711Bank.CONVERSION_US
    assert bank.data(0) == 0


def test_scenario_kits_and_the_fill_curve():
    from dos_rig.sensors import Scenario

    with pytest.raises(ValueError, match="unknown sensor kit"):
        Scenario({"kit": "lamppost"})
    waste = Scenario({"kit": "waste", "fill_pct": {"start": 50, "per_day": 24, "after_pct": 2},
                      "emptied_at_s": [3600], "emptying_s": 60})
    assert waste.fill_pct(1800 * 10**6) == 50.5
    assert waste.tilt_deg(3630 * 10**6) == 120 and waste.fill_pct(3630 * 10**6) == 2
    assert waste.tilt_deg(3660 * 10**6) == 0 and waste.fill_pct((3660 + 3600) * 10**6) == 3
    assert waste.distance_cm((3660 + 3600) * 10**6) == round((0.1 + 1.2 * 0.97) * 100)
