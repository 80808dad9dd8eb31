"""The agent's status page in a real browser: a fleet of streetlight nodes (real firmware, emulated air) reports through
the real agent process started with `--http`; headless Chromium loads the page, and each asset's row shows the live
values (FCnt, RSSI, SNR, battery) of an uplink the agent published on MQTT. /metrics agrees with what MQTT carried."""
from __future__ import annotations

import html
import re
import subprocess
import urllib.request

import pytest

from dos_rig.broker import free_port, stop_process
from dos_rig.fleet import GATEWAY_EUI, Fleet, make_nodes

pytestmark = pytest.mark.hil

READINGS_PER_NODE = 2
BROWSER_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def fleet_with_http(tmp_path_factory):
    port = free_port()
    nodes = make_nodes(2, interval_s=60)
    with Fleet(tmp_path_factory.mktemp("status-page"), nodes, agent_args=("--http", f"127.0.0.1:{port}")) as fleet:
        yield fleet, port


def browser_dom(url: str, profile) -> str:  # noqa: ANN001
    """The DOM of `url` after headless Chromium loaded it (the process stopped by PID whatever happens)."""
    proc = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                             "--dump-dom", url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out.decode()


def cells(row: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_headless_chromium_finds_the_live_values(fleet_with_http, tmp_path) -> None:
    fleet, port = fleet_with_http
    assert fleet.tap.wait_for(lambda _m: all(len(fleet.uplinks(n.asset_id)) >= READINGS_PER_NODE
                                             for n in fleet.nodes), timeout_s=120), fleet.agent.log_text()[-3000:]
    dom = browser_dom(f"http://127.0.0.1:{port}/", tmp_path / "chromium")
    assert "<h1>DOS Edge agent</h1>" in dom
    assert GATEWAY_EUI.lower() in dom
    rows = re.findall(r"<tr>(.*?)</tr>", dom.split('id="assets"', 1)[1].split("</table>", 1)[0], re.S)
    for node in fleet.nodes:
        (row,) = [cells(r) for r in rows if f"<td>{node.asset_id}</td>" in r]
        # asset, kind, DevEUI, last seen, FCnt, gateway, RSSI, SNR, battery, alarms, downlink, readings
        assert row[:3] == [node.asset_id, "streetlight", node.dev_eui.lower()]
        by_fcnt = {str(e["fcnt"]): e for e in fleet.uplinks(node.asset_id)}
        assert row[4] in by_fcnt, f"{node.asset_id}: the page shows FCnt {row[4]}, MQTT carried {sorted(by_fcnt)}"
        event = by_fcnt[row[4]]
        assert row[5] == event["gateway_id"]
        assert float(row[6]) == event["rssi"] and float(row[7]) == event["snr"]
        battery = event["readings"]["battery"]
        assert row[8] == f"{battery['value']:g} {battery['unit']}"
        assert row[3] == event["received_at"]


def test_metrics_agree_with_mqtt(fleet_with_http) -> None:
    fleet, port = fleet_with_http
    assert fleet.tap.wait_for(lambda _m: all(fleet.uplinks(n.asset_id) for n in fleet.nodes), timeout_s=120)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for node in fleet.nodes:
        uplinks = len(fleet.uplinks(node.asset_id))  # read after MQTT carried them: the agent counted them first
        match = re.search(rf'^dos_edge_device_uplinks_total\{{asset_id="{node.asset_id}",dev_eui="[0-9a-f]+"\}} (\d+)$',
                          text, re.M)
        assert match and int(match[1]) >= uplinks, f"{node.asset_id}: {match and match[0]} vs {uplinks} on MQTT"
    assert re.search(r"^dos_edge_mqtt_connected 1$", text, re.M)
    assert re.search(rf'^dos_edge_gateway_last_seen_timestamp_seconds\{{gateway_id="{GATEWAY_EUI.lower()}"\}} \d',
                     text, re.M)
