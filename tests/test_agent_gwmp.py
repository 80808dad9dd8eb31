"""The agent end to end over real UDP on 127.0.0.1 and a real Mosquitto: GWMP acknowledgements, uplink events on MQTT,
malformed datagrams counted by reason without stopping the server, PULL_RESP through the PULL_DATA address."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import queue
import socket
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.app import Agent, AgentConfig
from dos_agent.events import EVENT_KEYS
from dos_agent.gwmp_server import RateLimitedLog
from dos_codecs.crypto import SessionKeys
from dos_codecs.gwmp import Datagram, GwmpKind, Rxpk, Txpk, build_datagram, parse_datagram, parse_txpk, rxpk_to_json
from dos_codecs.lorawan import DataFrame, MType
from dos_codecs.schema import load_schema

GATEWAY_EUI = bytes.fromhex("aa555a0000000101")
DEVICE = {
    "dev_eui": "70b3d57ed0000001",
    "asset_id": "lamp-dortmund-0001",
    "kind": "streetlight",
    "activation": "abp",
    "dev_addr": "26011f01",
    "nwk_s_key": "0f0e0d0c0b0a09080706050403020100",
    "app_s_key": "000102030405060708090a0b0c0d0e0f",
}
WAIT_S = 5.0


class AgentThread:
    """The real Agent on its own asyncio loop in a thread, UDP on a free 127.0.0.1 port."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.agent: Agent | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="agent", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.agent = Agent(self.config)
        await self.agent.start()
        await self.agent.sink.wait_connected(WAIT_S)
        self._started.set()
        await self._stop.wait()
        await self.agent.stop()

    def call(self, fn, *args):  # noqa: ANN001, ANN201
        """Run fn(*args) on the agent's loop and return its result."""
        done: queue.Queue = queue.Queue()

        def run() -> None:
            try:
                done.put((True, fn(*args)))
            except Exception as exc:  # handed to the caller
                done.put((False, exc))

        self._loop.call_soon_threadsafe(run)
        ok, result = done.get(timeout=WAIT_S)
        if not ok:
            raise result
        return result

    def __enter__(self) -> AgentThread:
        self._thread.start()
        assert self._started.wait(WAIT_S * 2), "agent did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT_S * 2)
        assert not self._thread.is_alive(), "agent did not stop"


class Subscriber:
    """A paho client in its own thread collecting messages of one topic filter."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "subscription not confirmed"

    def get(self, timeout: float = WAIT_S) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Gateway:
    """A packet forwarder's socket: sends datagrams to the agent and reads its answers."""

    def __init__(self, agent_addr: tuple[str, int]) -> None:
        self.agent_addr = agent_addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT_S)

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.agent_addr)

    def receive(self) -> Datagram:
        data, addr = self.sock.recvfrom(65535)
        assert addr == self.agent_addr
        return parse_datagram(data)

    def close(self) -> None:
        self.sock.close()


def sealed_uplink(fcnt: int, values: dict, device: dict = DEVICE) -> bytes:
    payload = load_schema(device["kind"]).encode("reading", values)
    frame = DataFrame(
        mtype=MType.UNCONFIRMED_UP, dev_addr=int(device["dev_addr"], 16), fcnt16=fcnt & 0xFFFF, fport=1,
        frm_payload=payload,
    )
    keys = SessionKeys(bytes.fromhex(device["nwk_s_key"]), bytes.fromhex(device["app_s_key"]))
    return keys.seal(frame, fcnt)


def rxpk_json(phy: bytes, **changes: object) -> dict:
    rxpk = Rxpk(
        tmst=3_512_348_611, freq=868.1, chan=0, rfch=0, stat=1, sf=7, bw_khz=125, codr="4/5", rssi=-57, lsnr=9.5,
        data=phy, time="2026-11-22T08:30:00.000000Z",
    )
    obj = rxpk_to_json(rxpk)
    obj.update(changes)
    return obj


def push_data(token: bytes, *rxpks: dict) -> bytes:
    return build_datagram(Datagram(2, token, GwmpKind.PUSH_DATA, GATEWAY_EUI, {"rxpk": list(rxpks)}))


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    path = tmp_path / "registry.sqlite"
    provisioning = tmp_path / "devices.json"
    provisioning.write_text(json.dumps({"device": [DEVICE]}))
    from dos_agent.registry import Registry

    with Registry(path) as registry:
        registry.import_file(provisioning)
    return path


@pytest.fixture
def running(mosquitto, registry_path: Path, prefix: str):
    config = AgentConfig(
        registry=registry_path, udp_host="127.0.0.1", udp_port=0, mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port, prefix=prefix,
    )
    subscriber = Subscriber(mosquitto.host, mosquitto.port, f"{prefix}/assets/+/up")
    with AgentThread(config) as agent_thread:
        gateway = Gateway(agent_thread.agent.udp_address)
        yield agent_thread, gateway, subscriber
        gateway.close()
    subscriber.close()


def test_push_data_is_acknowledged_and_the_reading_published(running, prefix: str) -> None:
    agent_thread, gateway, subscriber = running
    phy = sealed_uplink(7, {"lamp_on": True, "dim_level": 80, "power": 35.5, "energy": 123456, "battery": 3.61})
    token = os.urandom(2)
    gateway.send(push_data(token, rxpk_json(phy)))

    ack = gateway.receive()
    assert (ack.kind, ack.token, ack.version) == (GwmpKind.PUSH_ACK, token, 2)

    message = subscriber.get()
    assert message.topic == f"{prefix}/assets/{DEVICE['asset_id']}/up"
    assert message.qos == 1
    event = json.loads(message.payload)
    assert list(event) == list(EVENT_KEYS)
    assert event["readings"] == {
        "lamp_on": {"value": True, "unit": ""},
        "dim_level": {"value": 80, "unit": "%"},
        "power": {"value": 35.5, "unit": "W"},
        "energy": {"value": 123456, "unit": "Wh"},
        "battery": {"value": 3.61, "unit": "V"},
    }
    assert event["asset_id"] == DEVICE["asset_id"]
    assert event["dev_eui"] == DEVICE["dev_eui"]
    assert event["kind"] == "streetlight"
    assert event["schema_version"] == 1
    assert (event["fcnt"], event["fport"]) == (7, 1)
    assert event["gateway_id"] == GATEWAY_EUI.hex()
    assert (event["rssi"], event["snr"], event["frequency"], event["sf"], event["bw"]) == (-57, 9.5, 868_100_000, 7, 125_000)
    assert event["gateway_time"] == "2026-11-22T08:30:00.000000Z"
    assert event["received_at"].endswith("Z")
    assert event["warnings"] == [] and event["decode_error"] is None
    assert bytes.fromhex(event["payload_hex"]) == load_schema("streetlight").encode(
        "reading", {"lamp_on": True, "dim_level": 80, "power": 35.5, "energy": 123456, "battery": 3.61}
    )
    assert agent_thread.call(lambda: agent_thread.agent.registry.get(DEVICE["dev_eui"]).fcnt_up) == 7


def test_the_same_frame_again_is_rejected_as_replay(running) -> None:
    agent_thread, gateway, subscriber = running
    phy = sealed_uplink(3, {"lamp_on": False})
    gateway.send(push_data(b"\x01\x02", rxpk_json(phy)))
    assert gateway.receive().token == b"\x01\x02"
    assert json.loads(subscriber.get().payload)["fcnt"] == 3
    gateway.send(push_data(b"\x03\x04", rxpk_json(phy)))  # the same gateway again, after the frame was handled
    assert gateway.receive().token == b"\x03\x04"
    gateway.send(push_data(b"\x05\x06", rxpk_json(sealed_uplink(4, {"lamp_on": True}))))
    assert gateway.receive().token == b"\x05\x06"
    assert json.loads(subscriber.get().payload)["fcnt"] == 4  # the replay in between published nothing
    frames = agent_thread.call(lambda: dict(agent_thread.agent.counters.frames))
    assert frames == {"accepted": 2, "fcnt_replay": 1}


def test_garbage_is_counted_by_reason_and_the_next_good_datagram_goes_through(running) -> None:
    agent_thread, gateway, subscriber = running
    good = rxpk_json(sealed_uplink(1, {"dim_level": 40}))
    header = b"\x02\x11\x22\x00" + GATEWAY_EUI
    garbage = [
        os.urandom(3),  # shorter than a header
        b"\x07" + os.urandom(30),  # protocol version 7
        header + b'{"rxpk": [',  # JSON cut short
        push_data(b"\x00\x01", dict(good, data="!!not base64!!")),
        push_data(b"\x00\x02", dict(good, size=good["size"] + 5)),
        push_data(b"\x00\x03", rxpk_json(sealed_uplink(2, {"dim_level": 41}), stat=-1)),
    ]
    for datagram in garbage:
        gateway.send(datagram)
    for expected_token in (b"\x00\x01", b"\x00\x02", b"\x00\x03"):  # valid datagrams are acknowledged
        assert gateway.receive().token == expected_token

    gateway.send(push_data(b"\x99\x98", good))
    assert gateway.receive().token == b"\x99\x98"
    event = json.loads(subscriber.get().payload)
    assert event["readings"] == {"dim_level": {"value": 40, "unit": "%"}}

    counters = agent_thread.call(agent_thread.agent.counters.snapshot)
    assert counters["datagrams"] == {"too_short": 1, "bad_version": 1, "bad_json": 1, "push_data": 4}
    assert counters["frames"] == {"bad_rxpk_data": 1, "bad_rxpk_size": 1, "crc_error": 1, "accepted": 1}
    assert list(counters["gateways"]) == [GATEWAY_EUI.hex()]


def test_a_frame_with_a_bad_mic_is_rejected_counted_and_logged(running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dos_agent")
    agent_thread, gateway, subscriber = running
    phy = bytearray(sealed_uplink(9, {"lamp_on": True}))
    phy[-1] ^= 0x01
    gateway.send(push_data(b"\x0a\x0b", rxpk_json(bytes(phy))))
    assert gateway.receive().token == b"\x0a\x0b"
    gateway.send(push_data(b"\x0a\x0c", rxpk_json(sealed_uplink(10, {"lamp_on": True}))))
    assert gateway.receive().token == b"\x0a\x0c"
    assert json.loads(subscriber.get().payload)["fcnt"] == 10
    assert agent_thread.call(lambda: dict(agent_thread.agent.counters.frames)) == {"mic_failed": 1, "accepted": 1}
    frame_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("frame=")]
    assert frame_lines[0].startswith("frame=rejected reason=mic_failed dev_addr=26011f01 gateway=aa555a0000000101")
    assert frame_lines[1].startswith(f"frame=accepted dev_eui={DEVICE['dev_eui']} asset={DEVICE['asset_id']} fcnt=10")
    assert "published=True" in frame_lines[1]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert DEVICE["nwk_s_key"] not in logged and DEVICE["app_s_key"] not in logged


def test_counters_are_published_retained(running, mosquitto, prefix: str) -> None:
    agent_thread, gateway, _subscriber = running
    gateway.send(b"\x02\x00")
    gateway.send(push_data(b"\x00\x10", rxpk_json(sealed_uplink(5, {"lamp_on": True}))))
    assert gateway.receive().token == b"\x00\x10"
    counters_subscriber = Subscriber(mosquitto.host, mosquitto.port, f"{prefix}/agent/counters")
    try:
        while True:  # the retained one first, then at most one a second while they change
            counters = json.loads(counters_subscriber.get(timeout=WAIT_S).payload)
            if counters["frames"].get("accepted") == 1 and counters["datagrams"].get("too_short") == 1:
                break
    finally:
        counters_subscriber.close()
    assert counters["gateways"][GATEWAY_EUI.hex()].endswith("Z")
    assert set(counters) == {"frames", "datagrams", "downlinks", "gateways", "sink"}


def test_pull_data_is_acknowledged_and_opens_the_downlink_path(running) -> None:
    agent_thread, gateway, _subscriber = running
    server = agent_thread.agent.server
    txpk = Txpk(freq=869.525, rfch=0, powe=14, sf=12, bw_khz=125, codr="4/5", ipol=True, data=b"\x60\x01\x02", imme=True)
    with pytest.raises(LookupError):
        agent_thread.call(server.send_pull_resp, GATEWAY_EUI.hex(), txpk)

    gateway.send(build_datagram(Datagram(2, b"\x42\x43", GwmpKind.PULL_DATA, GATEWAY_EUI)))
    ack = gateway.receive()
    assert (ack.kind, ack.token) == (GwmpKind.PULL_ACK, b"\x42\x43")

    token = agent_thread.call(server.send_pull_resp, GATEWAY_EUI.hex(), txpk)
    resp = gateway.receive()
    assert (resp.kind, resp.token) == (GwmpKind.PULL_RESP, token)
    assert parse_txpk(resp.payload) == txpk
    assert base64.b64decode(resp.payload["txpk"]["data"]) == b"\x60\x01\x02"


def test_protocol_version_1_is_answered_in_version_1(running) -> None:
    _agent_thread, gateway, _subscriber = running
    gateway.send(build_datagram(Datagram(1, b"\x77\x78", GwmpKind.PULL_DATA, GATEWAY_EUI)))
    ack = gateway.receive()
    assert (ack.version, ack.kind, ack.token) == (1, GwmpKind.PULL_ACK, b"\x77\x78")


def test_a_frame_without_application_data_is_accepted_but_not_published(running) -> None:
    agent_thread, gateway, subscriber = running
    keys = SessionKeys(bytes.fromhex(DEVICE["nwk_s_key"]), bytes.fromhex(DEVICE["app_s_key"]))
    empty = keys.seal(DataFrame(mtype=MType.UNCONFIRMED_UP, dev_addr=int(DEVICE["dev_addr"], 16), fcnt16=20), 20)
    gateway.send(push_data(b"\x20\x20", rxpk_json(empty), rxpk_json(sealed_uplink(21, {"dim_level": 5}))))
    assert gateway.receive().token == b"\x20\x20"
    assert json.loads(subscriber.get().payload)["fcnt"] == 21  # the first published event is the second frame
    assert agent_thread.call(lambda: dict(agent_thread.agent.counters.frames)) == {"accepted": 2}


def test_bad_input_logging_is_rate_limited_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_agent_gwmp.rate")
    limited = RateLimitedLog(logger, interval_s=10.0)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for t in (0.0, 1.0, 2.0):
            limited.warning("bad_json", f"bad json at {t}", t)
        limited.warning("too_short", "too short", 2.5)
        limited.warning("bad_json", "bad json at 10.5", 10.5)
    assert [r.getMessage() for r in caplog.records] == [
        "bad json at 0.0", "too short", "bad json at 10.5 (2 more like it suppressed)",
    ]
