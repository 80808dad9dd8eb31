"""The agent's HTTP port, for real: the Agent on its own loop with UDP and HTTP on 127.0.0.1 and a real Mosquitto, fed
real frames by a test packet forwarder (a reading, an alarm, a forgery). /metrics parses as Prometheus text and says
what happened; /status.json and the page show the assets' live values; bad requests get their 4xx, are counted, and
the server keeps answering; no key appears anywhere. Uplinks of the ChirpStack input show too."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from dos_agent.app import AgentConfig
from dos_agent.http_status import PROMETHEUS_CONTENT_TYPE, StatusServer, render_metrics
from dos_agent.registry import Registry
from dos_codecs.schema import load_schema
from test_agent_chirpstack_input import BIN, chirpstack_up
from test_agent_gwmp import AgentThread
from test_agent_network import LAMP, Forwarder
from test_agent_session import LoRaNode

WAIT_S = 5.0
GATEWAY = "aa555a0000000f01"
UNHEARD = dict(LAMP, dev_eui="70b3d57ed0000f09", asset_id="lamp-do-0909", dev_addr="26011f09",
               nwk_s_key="5a" * 16, app_s_key="a5" * 16)
STREETLIGHT = load_schema("streetlight")
READING = STREETLIGHT.encode("reading", {"lamp_on": True, "dim_level": 70, "battery": 3.71})
ALARM = STREETLIGHT.encode("alarm", {"lamp_fault": True})

# Prometheus text exposition format 0.0.4, one regex per kind of line
_HELP = re.compile(r"# HELP (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) .+")
_TYPE = re.compile(r"# TYPE (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<kind>counter|gauge|histogram|summary|untyped)")
_SAMPLE = re.compile(r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
                     r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})?'
                     r" (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|Inf|NaN))")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, labels): value}; fails the test on any line that is not HELP, TYPE or a sample of a declared family."""
    assert text.endswith("\n")
    declared: dict[str, str] = {}
    samples: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if match := _HELP.fullmatch(line):
            continue
        if match := _TYPE.fullmatch(line):
            assert match["name"] not in declared, f"family declared twice: {line}"
            declared[match["name"]] = match["kind"]
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, f"not a Prometheus line: {line!r}"
        assert match["name"] in declared, f"sample before its TYPE: {line}"
        labels = frozenset(_LABEL.findall(match["labels"] or ""))
        key = (match["name"], labels)
        assert key not in samples, f"sample twice: {line}"
        samples[key] = float(match["value"])
    return samples


def get(port: int, path: str, method: str = "GET") -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        connection.close()


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


@pytest.fixture
def agent_with_http(mosquitto, tmp_path: Path):
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.import_devices([LAMP, UNHEARD])
    config = AgentConfig(registry=path, udp_host="127.0.0.1", udp_port=0, mqtt_host=mosquitto.host,
                         mqtt_port=mosquitto.port, prefix=f"h{time.monotonic_ns()}", dedup_ms=0,
                         http_host="127.0.0.1", http_port=0)
    with AgentThread(config) as agent_thread:
        forwarder = Forwarder(GATEWAY, agent_thread.agent.udp_address)
        yield agent_thread, forwarder
        forwarder.close()


def wait_status(port: int, done) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + WAIT_S
    while True:
        status, content_type, body = get(port, "/status.json")
        assert (status, content_type) == (200, "application/json")
        snapshot = json.loads(body)
        if done(snapshot):
            return snapshot
        assert time.monotonic() < deadline, f"status never got there: {snapshot}"
        time.sleep(0.05)


def heard(port: int) -> dict:
    """Push a reading, an alarm and a forgery; wait until the status shows the two accepted frames."""
    return wait_status(port, lambda s: s["counters"]["frames"].get("accepted") == 2
                       and s["counters"]["frames"].get("mic_mismatch", 0) + s["counters"]["frames"].get("bad_mic", 0)
                       + sum(n for r, n in s["counters"]["frames"].items() if "mic" in r) >= 1)


def test_metrics_status_json_and_page_show_the_live_values(agent_with_http) -> None:
    agent_thread, forwarder = agent_with_http
    port = agent_thread.agent.http.port
    node = LoRaNode.from_entry(LAMP)
    before = time.time()
    forwarder.push(node.uplink(READING, fport=1), tmst=1_000_000, rssi=-71, snr=7.5)
    forwarder.push(node.uplink(ALARM, fport=2, confirmed=True), tmst=2_000_000, rssi=-73, snr=6.0)
    forged = bytearray(node.uplink(READING, fport=1))
    forged[-1] ^= 0x01  # MIC
    forwarder.push(bytes(forged), tmst=3_000_000)
    snapshot = heard(port)

    (lamp,) = [a for a in snapshot["assets"] if a["asset_id"] == LAMP["asset_id"]]
    assert (lamp["rssi"], lamp["snr"], lamp["fcnt"], lamp["gateway_id"]) == (-73, 6.0, 1, GATEWAY)
    assert lamp["battery"] == {"value": 3.71, "unit": "V"}
    assert lamp["alarms"] == 1 and lamp["last_alarm"]["readings"]["lamp_fault"]["value"] is True
    assert lamp["readings"]["dim_level"]["value"] == 70  # the reading, not replaced by the alarm
    (unheard,) = [a for a in snapshot["assets"] if a["asset_id"] == UNHEARD["asset_id"]]
    assert unheard["last_seen"] is None and unheard["uplinks"] == 0 and unheard["dev_eui"] == UNHEARD["dev_eui"]
    assert lamp["state"] == unheard["state"] == "active"
    assert {d["dev_eui"] for d in snapshot["devices"]} == {LAMP["dev_eui"], UNHEARD["dev_eui"]}

    status, content_type, text = get(port, "/metrics")
    assert (status, content_type) == (200, PROMETHEUS_CONTENT_TYPE)
    metrics = parse_prometheus(text)
    lamp_labels = frozenset({("asset_id", LAMP["asset_id"]), ("dev_eui", LAMP["dev_eui"])})
    assert metrics[("dos_edge_frames_total", frozenset({("result", "accepted")}))] == 2
    assert sum(v for (name, labels), v in metrics.items()
               if name == "dos_edge_frames_total" and any("mic" in value for _, value in labels)) == 1
    assert metrics[("dos_edge_device_rssi_dbm", lamp_labels)] == -73
    assert metrics[("dos_edge_device_snr_db", lamp_labels)] == 6.0
    assert metrics[("dos_edge_device_battery_volts", lamp_labels)] == 3.71
    assert metrics[("dos_edge_device_alarms_total", lamp_labels)] == 1
    assert metrics[("dos_edge_device_uplinks_total", lamp_labels)] == 2
    assert before <= metrics[("dos_edge_device_last_seen_timestamp_seconds", lamp_labels)] <= time.time()
    gateway_labels = frozenset({("gateway_id", GATEWAY)})
    assert before <= metrics[("dos_edge_gateway_last_seen_timestamp_seconds", gateway_labels)] <= time.time()
    assert metrics[("dos_edge_gateway_uplinks_total", gateway_labels)] == 2
    assert metrics[("dos_edge_mqtt_connected", frozenset())] == 1
    assert metrics[("dos_edge_queue_depth", frozenset())] >= 0
    assert metrics[("dos_edge_devices", frozenset({("state", "active")}))] == 2
    assert ("dos_edge_device_rssi_dbm", frozenset({("asset_id", UNHEARD["asset_id"]),
                                                   ("dev_eui", UNHEARD["dev_eui"])})) not in metrics

    status, content_type, page = get(port, "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert '<meta http-equiv="refresh"' in page
    for shown in (LAMP["asset_id"], UNHEARD["asset_id"], GATEWAY, "3.71 V", "<td>-73</td>", "<td>6</td>",
                  "lamp_fault True"):
        assert shown in page, shown

    for body in (text, page, json.dumps(snapshot)):
        for key in (LAMP["nwk_s_key"], LAMP["app_s_key"], UNHEARD["nwk_s_key"]):
            assert key not in body.lower()


def test_bad_requests_get_their_answer_are_counted_and_the_server_keeps_going(agent_with_http) -> None:
    agent_thread, _ = agent_with_http
    port = agent_thread.agent.http.port
    assert get(port, "/nope")[0] == 404
    assert get(port, "/metrics", "POST")[0] == 405
    assert raw_request(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_request(port, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    assert raw_request(port, b"GET / HTTP/1.1\r\n").startswith(b"HTTP/1.1 400 ")  # closed before the head ended
    head = raw_request(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # no body
    metrics = parse_prometheus(get(port, "/metrics")[2])
    for code, count in (("404", 1), ("405", 1), ("400", 2), ("431", 1)):
        assert metrics[("dos_edge_http_requests_total", frozenset({("code", code)}))] == count, code


def test_chirpstack_input_uplinks_and_rejections_show(mosquitto, tmp_path: Path) -> None:
    """The same Mosquitto plays the ChirpStack broker: its uplinks reach the status page, its counts /metrics."""
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.import_devices([BIN])
    config = AgentConfig(registry=path, udp_host="127.0.0.1", udp_port=0, mqtt_host=mosquitto.host,
                         mqtt_port=mosquitto.port, prefix=f"c{time.monotonic_ns()}", http_port=0,
                         chirpstack_host=mosquitto.host, chirpstack_port=mosquitto.port)
    with AgentThread(config) as agent_thread:
        port = agent_thread.agent.http.port
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cs-{time.monotonic_ns()}")
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        try:
            topic = f"application/a1/device/{BIN['dev_eui']}/event/up"
            deadline = time.monotonic() + WAIT_S
            while not agent_thread.agent.chirpstack_input.accepted:  # until the input's subscription is in place
                publisher.publish(topic, json.dumps(chirpstack_up()).encode(), qos=1).wait_for_publish(WAIT_S)
                assert time.monotonic() < deadline, "the ChirpStack input never took an uplink"
                time.sleep(0.2)
            publisher.publish(topic, b"{not json", qos=1).wait_for_publish(WAIT_S)
            snapshot = wait_status(port, lambda s: s["chirpstack_input"]["rejected"].get("bad_json"))
        finally:
            publisher.loop_stop()
            publisher.disconnect()
    (bin_status,) = [a for a in snapshot["assets"] if a["asset_id"] == BIN["asset_id"]]
    assert bin_status["fcnt"] == 77 and bin_status["rssi"] == -90 and bin_status["snr"] == 7.0
    assert bin_status["readings"]["fill_level"]["value"] == 42
    accepted = snapshot["chirpstack_input"]["accepted"]
    metrics = parse_prometheus(render_metrics(snapshot))
    assert metrics[("dos_edge_chirpstack_messages_total", frozenset({("result", "accepted")}))] == accepted >= 1
    assert metrics[("dos_edge_chirpstack_messages_total", frozenset({("result", "bad_json")}))] == 1


def test_a_slow_request_head_gets_408_and_the_server_keeps_answering() -> None:
    async def scenario() -> tuple[bytes, int, Counter]:
        server = StatusServer(lambda: {}, "127.0.0.1", 0, head_timeout_s=0.3)
        host, port = await server.start()
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /metr")  # and then nothing
            answer = await asyncio.wait_for(reader.read(), WAIT_S)
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /nope HTTP/1.1\r\n\r\n")
            second = await asyncio.wait_for(reader.read(), WAIT_S)
            writer.close()
            return answer, int(second.split(b" ")[1]), server.requests
        finally:
            await server.stop()

    answer, second_status, requests = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert second_status == 404
    assert requests == Counter({408: 1, 404: 1})
