"""The streetlight's lamp-fault alarm end to end: the real firmware on an emulated board in the dark, whose lamp fails a
few intervals after start (scenario file lamp_fails: the INA219 then measures 0 W whatever the relay and PWM say).
Exactly one alarm must reach MQTT, as a confirmed uplink on the schema's alarm FPort, before the next routine reading,
and the readings go on."""
import pytest

from dos_codecs.schema import load_schema
from dos_rig.fleet import Fleet, make_node
from dos_rig.scenarios import load_scenario
from test_node_kinds import virtual_us

pytestmark = pytest.mark.hil

INTERVAL_S = 30
READINGS_AFTER_FAILURE = 3
RATED_W = 36.0  # the rig's default lamp_power_w and the firmware's default lamp_rated_w
ALARM_FPORT = load_schema("streetlight").message("alarm").fport
READING_FPORT = load_schema("streetlight").message("reading").fport


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    node = make_node(1, interval_s=INTERVAL_S, scenario="lamp_fails")
    with Fleet(tmp_path_factory.mktemp("lamp-fault"), [node]) as fleet:
        origin_s = fleet.rig.now_us() / 1e6  # scenario time 0: the fleet is up
        fleet.rig.call(lambda: node.board.scenario.set_origin(origin_s))
        fleet.fails_at_s = origin_s + load_scenario("lamp_fails")["lamp_fails_at_s"]
        yield fleet


def uplinks_until_readings_after_failure(fleet):
    """The node's uplinks as (event, gateway µs) once READINGS_AFTER_FAILURE readings after the failure arrived."""
    node = fleet.nodes[0]
    fails_us = fleet.fails_at_s * 1e6

    def enough(_msgs):
        return sum(1 for e in fleet.uplinks(node.asset_id)
                   if e["fport"] == READING_FPORT and virtual_us(fleet, e["gateway_time"]) > fails_us
                   ) >= READINGS_AFTER_FAILURE

    assert fleet.tap.wait_for(enough, timeout_s=300), (
        "readings after the lamp failure did not arrive; agent log:\n" + fleet.agent.log_text()[-3000:]
        + f"\n--- {node.board_id}\n{node.board.console[-3000:]}")
    return [(e, virtual_us(fleet, e["gateway_time"])) for e in fleet.uplinks(node.asset_id)]


def test_a_failed_lamp_is_alarmed_once_confirmed_before_the_next_reading(fleet):
    uplinks = uplinks_until_readings_after_failure(fleet)
    fails_us = fleet.fails_at_s * 1e6
    alarms = [(e, t) for e, t in uplinks if e["fport"] == ALARM_FPORT]
    readings = [(e, t) for e, t in uplinks if e["fport"] == READING_FPORT]
    assert len(alarms) == 1, f"alarms: {[e['readings'] for e, _t in alarms]}"
    alarm, alarm_us = alarms[0]
    assert alarm["confirmed"] is True
    assert alarm["warnings"] == [] and alarm["decode_error"] is None
    assert {name: r["value"] for name, r in alarm["readings"].items()} == {
        "lamp_fault": True, "power": 0.0, "expected_power": RATED_W, "dim_level": 100}
    after = [t for _e, t in readings if t > fails_us]
    assert fails_us < alarm_us < after[0], "the alarm goes at once, ahead of the first reading after the failure"
    before = [e["readings"] for e, t in readings if t < fails_us]
    assert before and all(r["lamp_on"]["value"] and r["power"]["value"] == RATED_W for r in before)
    assert all(e["readings"]["power"]["value"] == 0.0 and e["readings"]["lamp_on"]["value"]
               for e, t in readings if t > fails_us), "the routine readings go on, showing the dark lamp"
    console = fleet.nodes[0].board.console
    assert console.count("alarm: lamp fault: power=0.0W expected=36.0W dim=100% -> ") == 1
