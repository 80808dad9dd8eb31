"""A streetlight node whose radio is a RAK3172 modem on UART (board emu_rak3172, the firmware's drivers/rak3172.py
driving the rig's emulated module by AT commands) with the real agent and Mosquitto: it joins by OTAA, its readings
arrive decoded on MQTT, a config downlink reaches the app and changes its interval, and a confirmed uplink whose ACK was
lost is retried by the module and then acked; a module that resets itself is set up again; the installer's self-test
finds the module."""
import subprocess
import sys
from pathlib import Path

import pytest

from dos_codecs.lorawan import DataFrame, JoinRequest, parse_phy
from dos_rig.fleet import GATEWAY_EUI, Fleet, make_node

pytestmark = pytest.mark.hil

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    nodes = [
        make_node(1, activation="otaa", interval_s=60, board="emu_rak3172"),
        make_node(2, activation="otaa", interval_s=60, board="emu_rak3172", settings={"confirmed": True}),
    ]
    with Fleet(tmp_path_factory.mktemp("rak3172-node"), nodes) as fleet:
        yield fleet


def wait(fleet, condition, timeout_s=120, what="condition"):
    node_consoles = "\n".join(f"--- {n.board_id}\n{n.board.console[-1500:]}" for n in fleet.nodes)
    assert fleet.tap.wait_for(lambda _m: condition(), timeout_s), (
        f"timed out waiting for {what}; agent log tail:\n{fleet.agent.log_text()[-2000:]}\n{node_consoles}")


def frames_sent(fleet, board_id):
    """Every frame the node's module put on the air, once per transmission (parsed)."""
    seen, frames = set(), []
    for entry in fleet.rig.air_log():
        if entry["sender"] != board_id or (entry["t_us"], entry["phy"]) in seen:
            continue
        seen.add((entry["t_us"], entry["phy"]))
        frames.append((entry["t_us"], parse_phy(bytes.fromhex(entry["phy"]))))
    return frames


def test_rak_node_joins_and_its_readings_arrive_decoded(fleet):
    node = fleet.nodes[0]
    wait(fleet, lambda: fleet.events(node.asset_id, "join"), what="the join event")
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 2, what="two readings")
    join = fleet.events(node.asset_id, "join")[0]
    assert join["dev_eui"] == node.dev_eui.lower()
    reading = fleet.uplinks(node.asset_id)[0]
    assert reading["fcnt"] <= 1 and reading["fport"] == 1
    assert reading["readings"]["ambient_light"]["unit"] == "lx" and "battery" in reading["readings"]
    sent = frames_sent(fleet, node.board_id)
    assert isinstance(sent[0][1], JoinRequest) and sent[0][1].dev_eui.hex() == node.dev_eui.lower()
    assert node.app_key not in node.board.console.lower(), "the AppKey leaked to the console"
    assert "RAK3172 modem" in node.board.console and "joined: DevAddr" in node.board.console


def test_config_downlink_reaches_the_rak_node(fleet):
    node = fleet.nodes[0]
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 2, what="readings before the change")
    fleet.downlink(node.asset_id, {"fport": 3, "object": {"interval_s": 20}, "id": "rak-interval-20"})
    wait(fleet, lambda: "config: interval_s 60 -> 20" in node.board.console, timeout_s=180,
         what="the node to apply interval_s=20")
    statuses = [e["status"] for e in fleet.events(node.asset_id, "downlink") if e["id"] == "rak-interval-20"]
    assert "sent" in statuses and "failed" not in statuses
    applied_at = len(fleet.uplinks(node.asset_id))
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= applied_at + 3, what="readings at the new interval")
    times = [e["received_at"] for e in fleet.uplinks(node.asset_id)[applied_at:]]
    assert times == sorted(times)


def test_confirmed_uplink_whose_ack_is_lost_is_retried_and_acked(fleet):
    node = fleet.nodes[1]
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 1, what="a first confirmed reading")
    assert fleet.uplinks(node.asset_id)[0]["confirmed"] is True
    assert " acked" in node.board.console
    fleet.rig.drop_next(GATEWAY_EUI, receiver=node.board_id)  # the next ACK never reaches the module
    before = len(fleet.uplinks(node.asset_id))
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= before + 2, what="readings after the lost ACK")
    dropped = [e for e in fleet.rig.air_log() if e["sender"] == GATEWAY_EUI and e["receiver"] == node.board_id
               and e["result"] == "dropped"]
    assert len(dropped) == 1
    data = [(t, f) for t, f in frames_sent(fleet, node.board_id) if isinstance(f, DataFrame)]
    fcnt = [f for t, f in data if t < dropped[0]["t_us"]][-1].fcnt16
    assert len([f for _t, f in data if f.fcnt16 == fcnt]) == 2, "sent once more after the lost ACK"
    assert len([e for e in fleet.uplinks(node.asset_id) if e["fcnt"] % 65536 == fcnt]) == 1
    assert "not acked" not in node.board.console


def test_a_module_that_resets_itself_is_set_up_again_and_rejoins(fleet):
    node = fleet.nodes[0]
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 1, what="a reading")
    joins, before = len(fleet.events(node.asset_id, "join")), len(fleet.uplinks(node.asset_id))
    restarts = node.board.restarts
    fleet.rig.call(node.board.rak3172.reset)  # a power glitch on the module only: keys and session gone
    wait(fleet, lambda: len(fleet.events(node.asset_id, "join")) > joins
         and len(fleet.uplinks(node.asset_id)) >= before + 2, what="a new join and readings after the module reset")
    assert node.board.restarts == restarts, "the node recovered without rebooting"
    assert "not sent: not_joined (the module lost its session" in node.board.console


def test_selftest_finds_the_rak3172_and_the_sensors(fleet):
    """Last in this module: mpremote stops node 1's app to run the installer's self-test on the board."""
    node = fleet.nodes[0]
    wait(fleet, lambda: len(fleet.uplinks(node.asset_id)) >= 1, what="a reading")
    done = subprocess.run([MPREMOTE, "connect", str(node.board.link), "resume", "exec", "import selftest"],
                          capture_output=True, text=True, timeout=60)
    report = next(line for line in done.stdout.splitlines() if line.startswith("selftest "))
    assert report.startswith("selftest ok: RAK3172 answered (RUI_"), report
    assert "0x23" in report and "0x40" in report, report
