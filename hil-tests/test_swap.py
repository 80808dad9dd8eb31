"""Device swap (Gerätetausch) while the agent runs: a streetlight's node is replaced by a second board flashed with
`flash.sh --replace`. The asset keeps its id and topic, its energy series goes on monotonic across the swap, the swap
event names both DevEUIs, the old node (still transmitting) is rejected as a retired device and reported, never
published as the asset's data, and the asset's history shows both bindings."""
from __future__ import annotations

import json
import subprocess

import pytest

from dos_codecs.schema import load_schema
from dos_rig.fleet import Fleet, dos_edge, make_node

from test_flash import flash

pytestmark = pytest.mark.hil

INTERVAL_S = 60
READING_FPORT = load_schema("streetlight").message("reading").fport
#: The lamp is on (dark) on both boards, so energy grows by about 36 W * interval each reading.
DARK = {"lux": 5}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    node = make_node(1, interval_s=INTERVAL_S, scenario=DARK)
    with Fleet(tmp_path_factory.mktemp("swap"), [node]) as fleet:
        yield fleet


def readings(fleet, asset_id):
    return [e for e in fleet.uplinks(asset_id) if e["fport"] == READING_FPORT]


def wait(fleet, predicate, what, timeout_s=300):
    node = fleet.nodes[0]
    assert fleet.tap.wait_for(lambda _msgs: predicate(), timeout_s=timeout_s), (
        f"{what}; agent log:\n{fleet.agent.log_text()[-4000:]}\n--- {node.board_id}\n{node.board.console[-2000:]}")


def test_a_swapped_node_keeps_the_asset_whole(fleet, tmp_path):
    old = fleet.nodes[0]
    asset_id = old.asset_id
    wait(fleet, lambda: any(e["readings"]["energy"]["value"] >= 2 for e in readings(fleet, asset_id)),
         "the old node's energy never reached 2 Wh")

    board = fleet.rig.add_board("node2", fleet.workdir / "boards" / "node2", (300.0, 50.0), scenario=DARK)
    done = flash("--port", board.link, "--kind", "streetlight", "--asset", asset_id, "--registry",
                 fleet.agent.registry, "--replace", "--out", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    new_dev_eui = json.loads((board.folder / "config.json").read_text())["dev_eui"]
    assert new_dev_eui != old.dev_eui.lower()

    wait(fleet, lambda: fleet.events(asset_id, "swap"), "no swap event")
    [swap] = fleet.events(asset_id, "swap")
    assert (swap["old_dev_eui"], swap["new_dev_eui"], swap["undo"]) == (old.dev_eui.lower(), new_dev_eui, False)
    assert swap["at"].endswith("Z")

    # the new node joins (OTAA) and reports; the old one goes on transmitting and is turned away
    wait(fleet, lambda: sum(e["dev_eui"] == new_dev_eui for e in readings(fleet, asset_id)) >= 2
         and fleet.events(asset_id, "rejected"), "no readings from the new node, or no rejection of the old one")
    series = readings(fleet, asset_id)
    energy = [e["readings"]["energy"]["value"] for e in series]
    assert energy == sorted(energy), f"energy went back across the swap: {energy}"
    devices = [e["dev_eui"] for e in series]
    first_new = devices.index(new_dev_eui)
    assert set(devices[:first_new]) == {old.dev_eui.lower()} and set(devices[first_new:]) == {new_dev_eui}, (
        "a retired node's frame was published as the asset's data")
    assert energy[first_new] >= energy[first_new - 1] >= 2

    rejected = fleet.events(asset_id, "rejected")
    assert all(r["reason"] == "retired_device" and r["dev_eui"] == old.dev_eui.lower() for r in rejected)
    assert "frame=rejected reason=retired_device" in fleet.agent.log_text()
    counters = [body for topic, body in fleet.tap.messages if topic.endswith("/agent/counters")]
    wait(fleet, lambda: "retired_device" in json.dumps(
        [body for topic, body in fleet.tap.messages if topic.endswith("/agent/counters")][-1:]),
        f"retired_device not counted: {counters[-1:]}", timeout_s=10)

    history = subprocess.run(dos_edge("assets", "history", asset_id, "--registry", str(fleet.agent.registry)),
                             capture_output=True, text=True, timeout=30)
    lines = history.stdout.splitlines()
    assert history.returncode == 0 and lines[1].split()[0] == old.dev_eui.lower()
    assert lines[2].split()[0] == new_dev_eui and lines[2].split()[-1] == "now"
    assert any(f"swap: old {old.dev_eui.lower()} new {new_dev_eui}" in line for line in lines)
