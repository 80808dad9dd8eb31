"""The agent's RAK3172 single-channel receiver input end to end: a real streetlight node (the firmware in micropython on
an emulated SX1276) transmits on the rig's air, the rig's RAK3172 emulator in P2P continuous receive on a real pty hears
it on 868.1 MHz SF7, the real agent process reads that pty (pyserial) and the reading arrives decoded on a real
Mosquitto with the pseudo-gateway as its reception; a downlink requested meanwhile finds no gateway that can send it.
Then the module is reset (a power glitch): the agent sees the boot banner, configures it again, and the next reading
arrives too. There is no Semtech gateway at first: the RAK3172 is the only receiver, and the port appears only after
the agent started (the agent waits for it). Then a Semtech gateway joins: a frame both hear is one event with both
receptions, and the downlink goes out through the gateway that can send."""
from __future__ import annotations

import pytest

from dos_rig.fleet import GATEWAY_EUI, Fleet, make_node

pytestmark = pytest.mark.hil

GATEWAY_ID = "rak3172-ttyRAK0"
WAIT_S = 120


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rak-receiver")
    link = workdir / "ttyRAK0"
    config = workdir / "agent.toml"
    config.write_text(f'[rak3172]\nport = "{link}"\nfrequency_hz = 868100000\nsf = 7\nbw_khz = 125\n')
    nodes = [make_node(1, interval_s=30, adr=False, position=(150.0, 40.0))]
    with Fleet(workdir, nodes, speed=20, gateways=(), agent_args=("--config", str(config))) as fleet:
        fleet.rak = fleet.rig.add_rak3172("rak1", (0.0, 0.0), link=link)
        yield fleet


def wait(fleet, condition, what: str) -> None:
    assert fleet.tap.wait_for(lambda _m: condition(), WAIT_S), (
        f"timed out waiting for {what}; agent log tail:\n{fleet.agent.log_text()[-3000:]}")


def heard_by_rak(fleet, asset_id: str) -> list[dict]:
    return [u for u in fleet.uplinks(asset_id) if [r["gateway_id"] for r in u["receptions"]] == [GATEWAY_ID]]


def test_the_rak_receiver_hears_a_node_and_recovers_after_a_module_reset(fleet):
    node = fleet.nodes[0]
    wait(fleet, lambda: heard_by_rak(fleet, node.asset_id), "a reading heard by the RAK3172")
    first = heard_by_rak(fleet, node.asset_id)[0]
    assert first["gateway_id"] == GATEWAY_ID and first["dev_eui"] == node.dev_eui.lower()
    assert first["fport"] == 1 and first["readings"]["ambient_light"]["unit"] == "lx"
    assert first["decode_error"] is None and first["rssi"] < 0
    module = fleet.rak.module
    assert module.settings.work_mode == 0 and module.settings.p2p[:3] == (868_100_000, 7, 0)
    assert fleet.uplinks(node.asset_id) == heard_by_rak(fleet, node.asset_id)  # the only receiver there is

    # a downlink cannot go through the RAK3172: it waits (too late for every window heard) and is counted
    fleet.downlink(node.asset_id, {"fport": 10, "confirmed": False, "data": "0102"})
    wait(fleet, lambda: any(e["reason"] == "too_late" for e in fleet.events(node.asset_id, "downlink")),
         "the downlink to find no gateway that can send it")
    assert not any(e["status"] in ("sent", "acked") for e in fleet.events(node.asset_id, "downlink"))

    fleet.rak.reset()  # a power glitch: factory settings (LoRaWAN mode), no receive, a boot banner
    wait(fleet, lambda: fleet.agent.log_text().count(f"{GATEWAY_ID} receiving on") >= 2,
         "the agent to configure the module again")
    assert f"{GATEWAY_ID}: module_reset: boot banner" in fleet.agent.log_text()
    reset_fcnt = max(u["fcnt"] for u in fleet.uplinks(node.asset_id))
    wait(fleet, lambda: any(u["fcnt"] > reset_fcnt for u in heard_by_rak(fleet, node.asset_id)),
         "a reading heard after the reset")
    assert module.resets == 1 and module.settings.work_mode == 0 and module.settings.sync_word == 0x3444
    # the pseudo-gateway is in the agent's retained counters, with the frames it brought counted as accepted
    def counters() -> dict:
        published = fleet.tap.on(lambda t: t == f"{fleet.prefix}/agent/counters")
        return published[-1] if published else {"gateways": {}, "frames": {}}

    wait(fleet, lambda: counters()["frames"].get("accepted", 0) >= 2, "the counters of both readings")
    assert GATEWAY_ID in counters()["gateways"] and counters()["downlinks"]["no_downlink_window"] >= 1


def test_with_a_semtech_gateway_beside_it_frames_are_merged_and_downlinks_go_through_the_gateway(fleet):
    node = fleet.nodes[0]
    gateway_id = GATEWAY_EUI.lower()
    fleet.rig.add_gateway(GATEWAY_EUI, (20.0, 0.0))
    wait(fleet, lambda: any({r["gateway_id"] for r in u["receptions"]} == {GATEWAY_ID, gateway_id}
                            for u in fleet.uplinks(node.asset_id)), "a reading heard by both receivers")
    both = next(u for u in fleet.uplinks(node.asset_id) if len(u["receptions"]) == 2)
    by_gateway = {r["gateway_id"]: r for r in both["receptions"]}
    assert by_gateway[GATEWAY_ID]["frequency"] == by_gateway[gateway_id]["frequency"] == 868_100_000
    fleet.downlink(node.asset_id, {"fport": 10, "confirmed": False, "data": "0304"})
    wait(fleet, lambda: any(e["status"] == "sent" for e in fleet.events(node.asset_id, "downlink")),
         "a downlink sent through the Semtech gateway")
    # on the air: the Semtech gateway sent it and the node received it (the RAK3172 never transmits); "sent" comes with
    # the gateway's TX_ACK, the air logs the reception at the end of the transmission
    fleet.rig.run_until(lambda: any(e["sender"] == GATEWAY_EUI and e["receiver"] == node.board_id and e["result"] == "ok"
                                    for e in fleet.rig.air_log()), timeout_s=WAIT_S)
    assert not fleet.rak.module.transmitted
