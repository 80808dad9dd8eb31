"""Walking skeleton, end to end: streetlight firmware on emulated boards -> SX1276 model -> air -> packet forwarder (real UDP)
-> agent -> Mosquitto. Boards are installed with mpremote; readings must carry exactly the values the simulated sensors produced."""
from datetime import datetime

import pytest

from dos_codecs.lorawan import parse_data_frame
from dos_rig.fleet import Fleet, make_nodes

pytestmark = pytest.mark.hil

READINGS_PER_NODE = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with Fleet(tmp_path_factory.mktemp("fleet"), make_nodes(3, interval_s=60)) as fleet:
        yield fleet


def virtual_us(fleet, iso_time):
    """Virtual µs of a gateway timestamp (the rig's clock starts at its epoch)."""
    when = datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
    return round((when - fleet.rig.epoch_s) * 1e6)


def have_readings(fleet, count):
    return lambda _msgs: all(len(fleet.uplinks(n.asset_id)) >= count for n in fleet.nodes)


def test_every_board_reports_what_its_sensors_produced(fleet):
    assert fleet.tap.wait_for(have_readings(fleet, READINGS_PER_NODE), timeout_s=90), (
        "not every node delivered readings; agent log:\n" + fleet.agent.log_text()[-3000:])
    for node in fleet.nodes:
        events = fleet.uplinks(node.asset_id)
        fcnts = [e["fcnt"] for e in events]
        assert fcnts == sorted(set(fcnts)), f"{node.asset_id}: fcnt not strictly increasing: {fcnts}"
        for event in events:
            assert event["dev_eui"] == node.dev_eui.lower() and event["kind"] == "streetlight"
            assert event["gateway_id"] == "0016c001ff10a235"
            assert event["warnings"] == [] and event["decode_error"] is None
        served = fleet.rig.sensor_log(node.board_id)
        for event in events:
            # the reading was taken just before the transmission the gateway stamped: the last value each sensor served
            sent_us = virtual_us(fleet, event["gateway_time"])
            for sensor, reading in (("bh1750", "ambient_light"), ("ina219", "power"), ("battery", "battery")):
                produced = [entry["value"] for entry in served if entry["sensor"] == sensor and entry["t_us"] <= sent_us]
                assert produced, f"{node.asset_id} fcnt {event['fcnt']}: no {sensor} read before the uplink"
                assert event["readings"][reading]["value"] == produced[-1], (
                    f"{node.asset_id} fcnt {event['fcnt']} {reading}: {event['readings'][reading]} vs sensor {produced[-1]}")


def test_frame_corrupted_on_air_counts_as_mic_failure_and_loses_nothing_else(fleet):
    assert fleet.tap.wait_for(have_readings(fleet, 1), timeout_s=90)
    node = fleet.nodes[1]
    others = [n for n in fleet.nodes if n is not node]
    before = len(fleet.uplinks(node.asset_id))
    others_before = {n.asset_id: len(fleet.uplinks(n.asset_id)) for n in others}
    fleet.rig.corrupt_next(node.board_id)

    def mic_failures(msgs):
        counters = [body for topic, body in msgs if topic == "dos/agent/counters"]
        return counters and counters[-1]["frames"].get("mic_failed", 0) >= 1

    assert fleet.tap.wait_for(mic_failures, timeout_s=60), "the agent did not count the corrupted frame as mic_failed"
    assert fleet.tap.wait_for(lambda _m: len(fleet.uplinks(node.asset_id)) >= before + 2, timeout_s=90)
    corrupted = [parse_data_frame(bytes.fromhex(entry["phy"])).fcnt16 for entry in fleet.rig.air_log()
                 if entry["sender"] == node.board_id and entry["result"] == "corrupted"]
    assert len(corrupted) == 1, f"one frame was corrupted on the air: {corrupted}"
    fcnts = [e["fcnt"] for e in fleet.uplinks(node.asset_id)]
    assert corrupted[0] not in fcnts, "the corrupted frame was published"
    assert max(fcnts) > corrupted[0], f"frames after the corrupted one still arrive: {fcnts}"
    # the other nodes kept reporting meanwhile
    assert all(len(fleet.uplinks(a)) > count for a, count in others_before.items())
