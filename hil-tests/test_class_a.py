"""LoRaWAN 1.0.4 Class A on both ends, on the rig with the real firmware, the real agent and Mosquitto: OTAA, downlinks,
confirmed uplinks, ADR, reboots without counter or nonce reuse, and two gateways hearing one node. Every test runs
twice: on the SX1276 board (the firmware's own MAC) and on the RAK3172 board (the module's MAC, over AT commands)."""
import json
from datetime import datetime

import pytest

from dos_codecs.lorawan import DataFrame, parse_phy
from dos_rig.fleet import GATEWAY_EUI, Fleet, make_node

pytestmark = pytest.mark.hil

FAR_GATEWAY_EUI = "0016C001FF10A236"
# The second gateway stands 3 km away: it hears every node, but always worse than the first one.
GATEWAYS = ((GATEWAY_EUI, (0.0, 0.0)), (FAR_GATEWAY_EUI, (3000.0, 0.0)))


@pytest.fixture(scope="module", params=["emu", "emu_rak3172"])
def fleet(request, tmp_path_factory):
    board = request.param
    nodes = [
        make_node(1, activation="otaa", interval_s=60, board=board),  # join, downlink, reboot, two gateways
        make_node(2, activation="otaa", interval_s=60, data_rate=0, adr=True, board=board),  # starts at SF12: ADR
        make_node(3, activation="abp", interval_s=60, settings={"confirmed": True}, board=board),  # confirmed; reboot
    ]
    with Fleet(tmp_path_factory.mktemp(f"class-a-{board}"), nodes, gateways=GATEWAYS) as fleet:
        yield fleet


def wait(fleet, condition, timeout_s=120, what="condition"):
    assert fleet.tap.wait_for(lambda _m: condition(), timeout_s), (
        f"timed out waiting for {what}; agent log tail:\n{fleet.agent.log_text()[-2500:]}")


def virtual_s(fleet, iso_time):
    when = datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
    return when - fleet.rig.epoch_s


def node_frames(fleet, board_id):
    """(virtual end µs, DataFrame) of every data uplink the node put on the air, once per transmission."""
    seen, frames = set(), []
    for entry in fleet.rig.air_log():
        if entry["sender"] != board_id or (entry["t_us"], entry["phy"]) in seen:
            continue
        seen.add((entry["t_us"], entry["phy"]))
        frame = parse_phy(bytes.fromhex(entry["phy"]))
        if isinstance(frame, DataFrame):
            frames.append((entry["t_us"], frame))
    return frames


def test_otaa_join_then_uplinks(fleet):
    node = fleet.nodes[0]
    wait(fleet, lambda: fleet.events(node.asset_id, "join"), what="the join event")
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 2, what="uplinks after the join")
    join = fleet.events(node.asset_id, "join")[0]
    assert join["dev_eui"] == node.dev_eui.lower() and len(join["dev_addr"]) == 8
    published = json.dumps(fleet.tap.messages, default=lambda raw: raw.decode(errors="replace"))  # non-JSON bodies too
    assert node.app_key not in published.lower(), "the AppKey leaked to MQTT"
    first = fleet.uplinks(node.asset_id)[0]
    assert first["fcnt"] <= 1 and first["readings"]["ambient_light"]["unit"] == "lx"
    assert fleet.events(node.asset_id, "join_rejected") == []


def test_two_gateways_hearing_one_node_give_one_event_with_two_receptions(fleet):
    node = fleet.nodes[0]
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 3, what="three uplinks")
    events = fleet.uplinks(node.asset_id)
    fcnts = [e["fcnt"] for e in events]
    assert len(fcnts) == len(set(fcnts)), f"duplicate events: {fcnts}"
    # every gateway the air delivered the frame to is in its one event (a gateway is deaf while it transmits a
    # downlink to another node, so now and then one copy is missing on the air, and then in the event too)
    delivered: dict[int, dict[str, set[str]]] = {}  # FCnt -> air copy (its PHYPayload) -> gateways it reached intact
    for entry in fleet.rig.air_log():
        if entry["result"] == "ok" and entry["sender"] == node.board_id:
            frame = parse_phy(bytes.fromhex(entry["phy"]))
            if isinstance(frame, DataFrame):
                copies = delivered.setdefault(frame.fcnt16, {})
                copies.setdefault(entry["phy"], set()).add(entry["receiver"].lower())
    both = sorted([GATEWAY_EUI.lower(), FAR_GATEWAY_EUI.lower()])
    heard_by_both = 0
    for event in events:
        gateways = sorted(r["gateway_id"] for r in event["receptions"])
        assert set(gateways) in delivered[event["fcnt"] & 0xFFFF].values(), (event["receptions"], delivered)
        heard_by_both += gateways == both
        best = max(event["receptions"], key=lambda r: r["snr"])
        assert event["gateway_id"] == best["gateway_id"]
        assert GATEWAY_EUI.lower() not in gateways or event["gateway_id"] == GATEWAY_EUI.lower()
    assert heard_by_both >= 2, [e["receptions"] for e in events]


def test_downlink_config_change_reaches_the_node_and_changes_its_interval(fleet):
    node = fleet.nodes[0]
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 2, what="uplinks before the change")
    fleet.downlink(node.asset_id, {"fport": 3, "object": {"interval_s": 20}, "id": "interval-20"})
    wait(fleet, lambda: any(e["status"] == "sent" and e["id"] == "interval-20"
                            for e in fleet.events(node.asset_id, "downlink")), what="the downlink to be sent")
    sent_at = len(fleet.uplinks(node.asset_id))
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= sent_at + 5, what="uplinks at the new interval")
    times = [virtual_s(fleet, e["gateway_time"]) for e in fleet.uplinks(node.asset_id)[sent_at:]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # readings go out at a random instant of each interval: gaps lie between 0 and 2 intervals, averaging one
    assert max(gaps) <= 2 * 20 + 3 and sum(gaps) / len(gaps) <= 30, f"gaps after interval_s=20: {gaps}"
    statuses = [e["status"] for e in fleet.events(node.asset_id, "downlink") if e["id"] == "interval-20"]
    assert statuses[0] == "queued" and "sent" in statuses and "failed" not in statuses


def test_confirmed_uplink_whose_ack_is_lost_is_retried_and_acked(fleet):
    node = fleet.nodes[2]
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 1, what="a first confirmed uplink")
    assert fleet.uplinks(node.asset_id)[0]["confirmed"] is True
    fleet.rig.drop_next(GATEWAY_EUI, receiver=node.board_id)  # the next ACK from the gateway never reaches the node
    before = len(fleet.uplinks(node.asset_id))
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= before + 2, what="uplinks after the lost ACK")
    dropped = [e for e in fleet.rig.air_log() if e["sender"] == GATEWAY_EUI and e["receiver"] == node.board_id
               and e["result"] == "dropped"]
    assert len(dropped) == 1
    lost_ack_at = dropped[0]["t_us"]
    retried = [f for t, f in node_frames(fleet, node.board_id) if t < lost_ack_at]
    fcnt = retried[-1].fcnt16  # the uplink whose ACK was lost
    tries = [f for _t, f in node_frames(fleet, node.board_id) if f.fcnt16 == fcnt]
    assert len(tries) == 2, f"the frame went out once more, then was acked: {len(tries)} transmissions"
    events = [e for e in fleet.uplinks(node.asset_id) if e["fcnt"] % 65536 == fcnt]
    assert len(events) == 1, "a retransmission is published once"


def test_adr_brings_a_strong_node_from_sf12_to_sf7(fleet):
    node = fleet.nodes[1]
    wait(fleet, lambda: any(e["sf"] == 7 for e in fleet.uplinks(node.asset_id)), timeout_s=240,
         what="ADR to reach SF7")
    events = fleet.uplinks(node.asset_id)
    assert events[0]["sf"] == 12
    reached = next(i for i, e in enumerate(events) if e["sf"] == 7)
    assert reached <= 5, f"SF7 only after {reached} uplinks: {[e['sf'] for e in events]}"
    assert events[reached]["dr"] == 5


def test_rebooted_nodes_reuse_no_devnonce_and_no_fcnt(fleet):
    otaa, abp = fleet.nodes[0], fleet.nodes[2]
    wait(fleet, lambda: fleet.events(otaa.asset_id, "join") and fleet.uplinks(abp.asset_id), what="both nodes up")
    joins_before = len(fleet.events(otaa.asset_id, "join"))
    nonces_before = [j["dev_nonce"] for j in fleet.events(otaa.asset_id, "join")]
    abp_before = len(fleet.uplinks(abp.asset_id))
    abp_last_fcnt = fleet.uplinks(abp.asset_id)[-1]["fcnt"]
    otaa.board.restart()
    abp.board.restart()
    wait(fleet, lambda: len(fleet.uplinks(abp.asset_id)) >= abp_before + 2, what="the ABP node after its reboot")
    wait(fleet, lambda: len(fleet.events(otaa.asset_id, "join")) > joins_before
         and fleet.uplinks(otaa.asset_id)[-1]["received_at"] > fleet.events(otaa.asset_id, "join")[-1]["time"],
         what="the OTAA node to rejoin and report")
    new_nonce = fleet.events(otaa.asset_id, "join")[-1]["dev_nonce"]
    assert new_nonce > max(nonces_before), "DevNonce reused after a reboot"
    assert fleet.events(otaa.asset_id, "join_rejected") == []
    after = [e["fcnt"] for e in fleet.uplinks(abp.asset_id)[abp_before:]]
    assert min(after) > abp_last_fcnt, f"ABP FCnt went back after the reboot: {abp_last_fcnt} -> {after}"
    assert fleet.events(abp.asset_id, "fcnt_reset") == []
