"""The environment kind end to end: the real firmware on an emulated board with the SCD41 kit, through the air, the
packet forwarder and the agent to Mosquitto, in the school_day scenario: the rig's clock starts at 06:55 UTC on a
Monday, the first lesson (07:00-07:45 UTC) fills the room with CO2, the short break lets some out. Readings must carry
what the sensor served and follow the day; the one ventilate alarm comes, confirmed, with the first reading over the
limit (the break does not bring CO2 under limit - hysteresis, so the episode goes on)."""
from datetime import datetime

import pytest

from dos_codecs.schema import load_schema
from dos_rig.fleet import Fleet, make_node
from dos_rig.scenarios import load_scenario
from dos_rig.sensors import Scenario, hours

pytestmark = pytest.mark.hil

EPOCH = "2026-01-12T06:55:00Z"  # a Monday, five minutes before the first lesson
INTERVAL_S = 120
CO2_LIMIT_PPM = 1000  # the app's default co2_limit_ppm
RUN_UNTIL = "07:58"  # virtual UTC: the first lesson, the break (07:45-07:50) and the start of the second
SCHEMA = load_schema("environment")
READING_FPORT, ALARM_FPORT = SCHEMA.message("reading").fport, SCHEMA.message("alarm").fport
SENSOR_FIELDS = (("scd41_co2", "co2"), ("scd41_temperature", "temperature"), ("scd41_humidity", "humidity"),
                 ("battery", "battery"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    node = make_node(1, kind="environment", prefix="ENV-DO", interval_s=INTERVAL_S, scenario="school_day")
    with Fleet(tmp_path_factory.mktemp("environment"), [node], epoch=EPOCH) as fleet:
        yield fleet


def virtual_us(fleet, iso_time):
    when = datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
    return round((when - fleet.rig.epoch_s) * 1e6)


def rig_us(fleet, hh_mm: str) -> int:
    """Rig time (µs) of a virtual UTC time of day on the epoch's day."""
    return round((hours(hh_mm) * 3600 - fleet.rig.epoch_s % 86400) * 1e6)


def uplinks_until(fleet, hh_mm: str) -> list[tuple[dict, int]]:
    """The node's uplink events as (event, gateway µs) once one was sent past hh_mm."""
    node = fleet.nodes[0]
    until_us = rig_us(fleet, hh_mm)

    def past(_msgs):
        return any(virtual_us(fleet, e["gateway_time"]) > until_us for e in fleet.uplinks(node.asset_id))

    assert fleet.tap.wait_for(past, timeout_s=400), (
        "readings did not arrive; agent log:\n" + fleet.agent.log_text()[-3000:]
        + f"\n--- {node.board_id}\n{node.board.console[-3000:]}")
    return [(e, virtual_us(fleet, e["gateway_time"])) for e in fleet.uplinks(node.asset_id)]


def served_before(log, sensor, t_us):
    values = [entry["value"] for entry in log if entry["sensor"] == sensor and entry["t_us"] <= t_us]
    assert values, f"no {sensor} value served before {t_us} µs"
    return values[-1]


def values_of(event: dict) -> dict:
    return {name: reading["value"] for name, reading in event["readings"].items()}


def test_readings_carry_what_the_scd41_served_and_follow_the_day(fleet):
    uplinks = uplinks_until(fleet, RUN_UNTIL)
    node = fleet.nodes[0]
    log = fleet.rig.sensor_log(node.board_id)
    readings = [(e, t) for e, t in uplinks if e["fport"] == READING_FPORT]
    assert len(readings) >= 10, [t for _e, t in readings]
    curve = Scenario(load_scenario("school_day"), fleet.rig.epoch_s)
    for event, sent_us in readings:
        assert event["kind"] == "environment" and event["warnings"] == [] and event["decode_error"] is None
        values = values_of(event)
        for sensor, field in SENSOR_FIELDS:
            assert values[field] == served_before(log, sensor, sent_us), (field, sent_us)
        # the measurement is at most one SCD41 interval (5 s) and the reading's own wait older than the uplink; the
        # curve is sampled over that span, since it turns at a lesson's end (CO2 peaks at 07:45, then falls)
        measured = [curve.co2_ppm(sent_us - 15_000_000 + step * 250_000) for step in range(61)]
        assert min(measured) <= values["co2"] <= max(measured), sent_us
        assert values["temperature"] == 21.5 and values["humidity"] == 48.5 and values["battery_low"] is False
    margin_us = 20_000_000  # longer than a measurement's age at the uplink

    def co2_between(start: str, end: str) -> list[int]:
        return [values_of(e)["co2"] for e, t in readings if rig_us(fleet, start) + margin_us < t < rig_us(fleet, end)]

    before, lesson = co2_between("06:00", "07:00"), co2_between("07:00", "07:45")
    short_break, second_lesson = co2_between("07:45", "07:50"), co2_between("07:50", "08:35")
    assert before and set(before) == {420}, before
    assert len(lesson) > 10 and lesson == sorted(lesson) and len(set(lesson)) == len(lesson), lesson  # rising
    assert lesson[-1] > CO2_LIMIT_PPM + 300
    peak = curve.co2_ppm(rig_us(fleet, "07:45"))  # the end of the lesson
    assert lesson[-1] <= peak and short_break and short_break == sorted(short_break, reverse=True)  # falling
    assert max(short_break) < peak
    assert second_lesson and second_lesson == sorted(second_lesson)  # rising again


def test_one_confirmed_ventilate_alarm_with_the_first_reading_over_the_limit(fleet):
    uplinks = uplinks_until(fleet, RUN_UNTIL)
    alarms = [(i, e) for i, (e, _t) in enumerate(uplinks) if e["fport"] == ALARM_FPORT]
    assert len(alarms) == 1, [values_of(e) for _i, e in alarms]
    index, alarm = alarms[0]
    assert alarm["confirmed"] is True and alarm["warnings"] == [] and alarm["decode_error"] is None
    following = uplinks[index + 1][0]  # the reading the alarm went ahead of
    assert following["fport"] == READING_FPORT
    co2 = values_of(following)["co2"]
    assert values_of(alarm) == {"ventilate": True, "co2": co2, "co2_limit": CO2_LIMIT_PPM} and co2 > CO2_LIMIT_PPM
    earlier = [values_of(e)["co2"] for e, _t in uplinks[:index] if e["fport"] == READING_FPORT]
    assert earlier and max(earlier) <= CO2_LIMIT_PPM
    assert "alarm: ventilate: co2=%dppm limit=%dppm -> fcnt" % (co2, CO2_LIMIT_PPM) in fleet.nodes[0].board.console


def test_a_config_downlink_raises_the_limit_and_a_new_episode_starts_over_it(fleet):
    """A city platform raises the limit to 2000 ppm (the agent encodes the object through the environment schema): the
    running episode ends under the new limit minus hysteresis, and the next alarm comes once CO2 passes 2000 ppm in the
    second lesson."""
    node = fleet.nodes[0]
    uplinks_until(fleet, RUN_UNTIL)  # the first episode's alarm went before
    fleet.downlink(node.asset_id, {"fport": 3, "object": {"co2_limit_ppm": 2000, "co2_hysteresis_ppm": 100},
                                   "id": "env-limit-2000"})

    def second_alarm_and_its_reading(_msgs):
        uplinks = fleet.uplinks(node.asset_id)
        return any(e["fport"] == ALARM_FPORT and values_of(e)["co2_limit"] == 2000 for e in uplinks[:-1])

    assert fleet.tap.wait_for(second_alarm_and_its_reading, timeout_s=300), node.board.console[-3000:]
    uplinks = fleet.uplinks(node.asset_id)
    assert "config: co2_limit_ppm 1000 -> 2000 (downlink fcnt" in node.board.console
    statuses = [e["status"] for e in fleet.events(node.asset_id, "downlink") if e["id"] == "env-limit-2000"]
    assert statuses[0] == "queued" and "sent" in statuses and "failed" not in statuses
    alarms = [(i, values_of(e)) for i, e in enumerate(uplinks) if e["fport"] == ALARM_FPORT]
    assert [a["co2_limit"] for _i, a in alarms] == [CO2_LIMIT_PPM, 2000]
    index, alarm = alarms[1]
    assert alarm["co2"] > 2000 and values_of(uplinks[index + 1])["co2"] == alarm["co2"]
    between = [values_of(e)["co2"] for e in uplinks[alarms[0][0] + 1:index] if e["fport"] == READING_FPORT]
    assert between and max(between) <= 2000
