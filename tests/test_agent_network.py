"""The edge network server end to end: the real Agent over real UDP on 127.0.0.1 (packet forwarders played by test
sockets) and a real Mosquitto. OTAA join with a JoinAccept at tmst + 5 s that decrypts with the codecs, DevNonce reuse,
two gateways giving one event with two receptions and the ACK through the better one, downlinks from MQTT sent at
tmst + 1 s (or in RX2 after TOO_LATE) and acked, counter resets under both policies, bad requests answered with a
failed event, and sessions that survive restarting the agent process."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.app import AgentConfig
from dos_agent.registry import Registry
from dos_codecs.crypto import open_join_accept, seal_join_request
from dos_codecs.gwmp import Datagram, GwmpKind, Rxpk, build_datagram, parse_datagram, parse_txpk, rxpk_to_json
from dos_codecs.lorawan import JoinRequest, MType
from dos_codecs.schema import load_schema
from test_agent_gwmp import AgentThread
from test_agent_session import LoRaNode

WAIT_S = 5.0
APP_KEY = bytes.fromhex("0123456789abcdef0123456789abcdef")
OTAA = {
    "dev_eui": "70b3d57ed0000e01", "asset_id": "bin-do-0001", "kind": "waste", "activation": "otaa",
    "app_key": APP_KEY.hex(), "join_eui": "70b3d57ed0000000",
}
LAMP = {
    "dev_eui": "70b3d57ed0000e02", "asset_id": "lamp-do-0002", "kind": "streetlight", "activation": "abp",
    "dev_addr": "26011e02", "nwk_s_key": "7c" * 16, "app_s_key": "c7" * 16,
}
LAMP_ACCEPTING = dict(LAMP, dev_eui="70b3d57ed0000e03", asset_id="lamp-do-0003", dev_addr="26011e03",
                      fcnt_reset_policy="accept")
READING = load_schema("streetlight").encode("reading", {"lamp_on": True, "dim_level": 70})


class Tap:
    """Every message under `<prefix>/#`, collected by a paho client on its own thread."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.seen: list[tuple[str, dict]] = []
        self._incoming: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tap-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda c, u, msg: self._incoming.put(msg)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/#", qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S), "subscription not confirmed"

    def wait_for(self, suffix: str, match=lambda doc: True, timeout: float = WAIT_S) -> dict:  # noqa: ANN001
        """The first message on `<prefix>/<suffix>` whose JSON satisfies `match` (seen before or arriving in time)."""
        topic = f"{self.prefix}/{suffix}"
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for seen_topic, doc in self.seen[checked:]:
                if seen_topic == topic and match(doc):
                    return doc
            checked = len(self.seen)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing on {topic} matched; seen: {[t for t, _ in self.seen]}")
            try:
                message = self._incoming.get(timeout=remaining)
            except queue.Empty:
                continue
            if message.topic.endswith(("/down", "/agent/status")):  # requests, and the plain-text online/offline
                continue
            self.seen.append((message.topic, json.loads(message.payload)))

    def on(self, suffix: str) -> list[dict]:
        """Messages seen so far on `<prefix>/<suffix>` (after draining what has arrived)."""
        while not self._incoming.empty():
            message = self._incoming.get()
            if not message.topic.endswith(("/down", "/agent/status")):
                self.seen.append((message.topic, json.loads(message.payload)))
        return [doc for topic, doc in self.seen if topic == f"{self.prefix}/{suffix}"]

    def publish(self, suffix: str, payload: bytes) -> None:
        self.client.publish(f"{self.prefix}/{suffix}", payload, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Forwarder:
    """A Semtech packet forwarder's socket: PULL_DATA to open the downlink path, PUSH_DATA, PULL_RESP, TX_ACK."""

    def __init__(self, eui: str, agent_addr: tuple[str, int], handshake_s: float = WAIT_S) -> None:
        self.eui = bytes.fromhex(eui)
        self.agent_addr = agent_addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(WAIT_S)
        self.downlinks: list[Datagram] = []  # PULL_RESPs that came while waiting for an acknowledgement
        self.send(Datagram(2, b"\x00\x01", GwmpKind.PULL_DATA, self.eui))
        try:
            assert self.receive(handshake_s).kind == GwmpKind.PULL_ACK
        except BaseException:
            self.sock.close()
            raise

    def send(self, datagram: Datagram) -> None:
        self.sock.sendto(build_datagram(datagram), self.agent_addr)

    def receive(self, timeout: float = WAIT_S) -> Datagram:
        self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(65535)
        assert addr == self.agent_addr
        return parse_datagram(data)

    def push(self, phy: bytes, tmst: int, snr: float = 9.0, rssi: int = -60, sf: int = 7,
             freq: float = 868.1) -> None:
        rxpk = Rxpk(tmst=tmst, freq=freq, chan=0, rfch=0, stat=1, sf=sf, bw_khz=125, codr="4/5", rssi=rssi, lsnr=snr,
                    data=phy, time="2026-11-22T08:30:00.000000Z")
        token = os.urandom(2)
        self.send(Datagram(2, token, GwmpKind.PUSH_DATA, self.eui, {"rxpk": [rxpk_to_json(rxpk)]}))
        while True:
            datagram = self.receive()
            if datagram.kind != GwmpKind.PULL_RESP:
                break
            self.downlinks.append(datagram)
        assert (datagram.kind, datagram.token) == (GwmpKind.PUSH_ACK, token)

    def pull_resp(self, timeout: float = WAIT_S) -> Datagram:
        datagram = self.downlinks.pop(0) if self.downlinks else self.receive(timeout)
        assert datagram.kind == GwmpKind.PULL_RESP
        return datagram

    def answer_downlinks(self, timeout: float = 0.6) -> int:
        """TX_ACK NONE every PULL_RESP that comes within `timeout` s (e.g. a session's first DevStatusReq)."""
        answered = 0
        with contextlib.suppress(TimeoutError):
            while True:
                self.tx_ack(self.pull_resp(timeout))
                answered += 1
        return answered

    def tx_ack(self, pull_resp: Datagram, error: str = "NONE") -> None:
        self.send(Datagram(2, pull_resp.token, GwmpKind.TX_ACK, self.eui, {"txpk_ack": {"error": error}}))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def prefix() -> str:
    return f"n{uuid.uuid4().hex[:10]}"


@pytest.fixture
def network(mosquitto, tmp_path: Path, prefix: str):
    """(agent thread, tap, forwarder factory) around a registry holding OTAA, LAMP and LAMP_ACCEPTING."""
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.import_devices([OTAA, LAMP, LAMP_ACCEPTING])
    config = AgentConfig(registry=path, udp_host="127.0.0.1", udp_port=0, mqtt_host=mosquitto.host,
                         mqtt_port=mosquitto.port, prefix=prefix)
    tap = Tap(mosquitto.host, mosquitto.port, prefix)
    forwarders: list[Forwarder] = []
    with AgentThread(config) as agent_thread:
        def forwarder(eui: str = "aa555a0000000e01") -> Forwarder:
            forwarders.append(Forwarder(eui, agent_thread.agent.udp_address))
            return forwarders[-1]

        yield agent_thread, tap, forwarder
        for f in forwarders:
            f.close()
    tap.close()


def join_request(dev_nonce: int) -> bytes:
    request = JoinRequest(bytes.fromhex(OTAA["join_eui"]), bytes.fromhex(OTAA["dev_eui"]), dev_nonce)
    return seal_join_request(request, APP_KEY)


def txpk_of(datagram: Datagram):  # noqa: ANN201
    return parse_txpk(datagram.payload)


def test_otaa_join_over_udp_then_the_node_is_heard_and_a_reused_nonce_is_refused(network) -> None:
    agent_thread, tap, forwarder = network
    gateway = forwarder()
    gateway.push(join_request(1), tmst=7_000_000, sf=10, freq=868.3)
    resp = gateway.pull_resp()
    txpk = txpk_of(resp)
    assert (txpk.tmst, txpk.freq, txpk.sf, txpk.bw_khz, txpk.ipol, txpk.powe) == (12_000_000, 868.3, 10, 125, True, 14)
    gateway.tx_ack(resp)
    node = LoRaNode.from_join_accept(txpk.data, APP_KEY, 1)
    joined = tap.wait_for(f"assets/{OTAA['asset_id']}/event/join")
    assert (joined["type"], joined["dev_eui"], joined["dev_addr"], joined["dev_nonce"]) == (
        "join", OTAA["dev_eui"], f"{node.dev_addr:08x}", 1)
    assert open_join_accept(txpk.data, APP_KEY).cf_list is not None

    reading = load_schema("waste").encode("reading", {"fill_level": 55})
    gateway.push(node.uplink(reading), tmst=30_000_000, sf=10)
    event = tap.wait_for(f"assets/{OTAA['asset_id']}/up")
    assert (event["fcnt"], event["readings"]["fill_level"]["value"], event["dr"]) == (0, 55, 2)
    assert gateway.answer_downlinks() == 1  # the session's first DevStatusReq

    gateway.push(join_request(1), tmst=60_000_000)
    refused = tap.wait_for(f"assets/{OTAA['asset_id']}/event/join_rejected")
    assert (refused["reason"], refused["dev_nonce"], refused["last_dev_nonce"]) == ("dev_nonce_reused", 1, 1)
    counters = agent_thread.call(agent_thread.agent.counters.snapshot)
    assert counters["frames"]["joined"] == 1 and counters["frames"]["join_dev_nonce_reused"] == 1
    everything = json.dumps(tap.seen)
    assert APP_KEY.hex() not in everything and node.nwk_s_key.hex() not in everything


def test_two_gateways_give_one_event_and_the_ack_goes_through_the_better_one(network) -> None:
    agent_thread, tap, forwarder = network
    near, far = forwarder("aa555a0000000e0a"), forwarder("aa555a0000000e0b")
    node = LoRaNode.from_entry(LAMP)
    phy = node.uplink(READING, confirmed=True)
    far.push(phy, tmst=1_000_000, snr=-4.5, rssi=-117)
    near.push(phy, tmst=2_000_000, snr=8.5, rssi=-71)
    event = tap.wait_for(f"assets/{LAMP['asset_id']}/up")
    assert [(r["gateway_id"], r["snr"], r["tmst"]) for r in event["receptions"]] == [
        ("aa555a0000000e0a", 8.5, 2_000_000), ("aa555a0000000e0b", -4.5, 1_000_000)]
    assert (event["gateway_id"], event["snr"], event["confirmed"], event["adr"], event["dr"]) == (
        "aa555a0000000e0a", 8.5, True, False, 5)
    resp = near.pull_resp()
    assert txpk_of(resp).tmst == 3_000_000
    frame, _ = node.open_downlink(txpk_of(resp).data, 0)
    assert frame.ack
    near.tx_ack(resp)
    with pytest.raises(TimeoutError):
        far.receive(timeout=0.5)  # neither an ACK nor a PULL_RESP for the weaker gateway
    time.sleep(0.3)
    assert len(tap.on(f"assets/{LAMP['asset_id']}/up")) == 1
    assert agent_thread.call(lambda: dict(agent_thread.agent.counters.frames)) == {"accepted": 1, "duplicate": 1}


def test_a_downlink_from_mqtt_goes_at_tmst_plus_1s_and_is_sent_then_acked(network) -> None:
    _agent_thread, tap, forwarder = network
    gateway = forwarder()
    node = LoRaNode.from_entry(LAMP)
    config = {"interval_s": 900, "dusk_lux": 20}
    tap.publish(f"assets/{LAMP['asset_id']}/down", json.dumps({"id": "cfg-1", "fport": 3, "confirmed": True,
                                                                  "object": config}).encode())
    events = f"assets/{LAMP['asset_id']}/event/downlink"
    queued = tap.wait_for(events, lambda d: d["status"] == "queued")
    assert (queued["id"], queued["fport"], queued["reason"]) == ("cfg-1", 3, None)

    gateway.push(node.uplink(READING), tmst=40_000_000, sf=8, freq=867.5)
    resp = gateway.pull_resp()
    txpk = txpk_of(resp)
    assert (txpk.tmst, txpk.freq, txpk.sf) == (41_000_000, 867.5, 8)
    frame, payload = node.open_downlink(txpk.data, 0)
    assert (frame.mtype, frame.fport, payload) == (MType.CONFIRMED_DOWN, 3, load_schema("streetlight").encode(
        "config", config))
    gateway.tx_ack(resp)
    sent = tap.wait_for(events, lambda d: d["status"] == "sent")
    assert (sent["id"], sent["fcnt_down"], sent["dev_eui"]) == ("cfg-1", 0, LAMP["dev_eui"])

    gateway.push(node.uplink(READING, ack=True), tmst=80_000_000)
    acked = tap.wait_for(events, lambda d: d["status"] == "acked")
    assert (acked["id"], acked["fcnt_down"]) == ("cfg-1", 0)


def test_too_late_in_rx1_is_sent_in_rx2(network) -> None:
    _agent_thread, tap, forwarder = network
    gateway = forwarder()
    node = LoRaNode.from_entry(LAMP)
    tap.publish(f"assets/{LAMP['asset_id']}/down", json.dumps({"id": "dim-1", "fport": 3, "data": "a10418"}).encode())
    events = f"assets/{LAMP['asset_id']}/event/downlink"
    tap.wait_for(events, lambda d: d["status"] == "queued")
    gateway.push(node.uplink(READING), tmst=50_000_000)
    rx1 = gateway.pull_resp()
    gateway.tx_ack(rx1, "TOO_LATE")
    rx2 = gateway.pull_resp()
    txpk = txpk_of(rx2)
    assert (txpk.tmst, txpk.freq, txpk.sf, txpk.bw_khz) == (52_000_000, 869.525, 12, 125)
    assert txpk.data == txpk_of(rx1).data
    gateway.tx_ack(rx2)
    sent = tap.wait_for(events, lambda d: d["status"] == "sent")
    assert (sent["id"], sent["fcnt_down"]) == ("dim-1", 0)


def test_counter_resets_are_published_under_both_policies(network) -> None:
    _agent_thread, tap, forwarder = network
    gateway = forwarder()
    for entry, accepted in ((LAMP, False), (LAMP_ACCEPTING, True)):
        node = LoRaNode.from_entry(entry)
        node.fcnt = 900
        gateway.push(node.uplink(READING), tmst=1_000)
        tap.wait_for(f"assets/{entry['asset_id']}/up", lambda d: d["fcnt"] == 900)
        node.fcnt = 0
        gateway.push(node.uplink(READING), tmst=9_000_000)
        reset = tap.wait_for(f"assets/{entry['asset_id']}/event/fcnt_reset")
        assert (reset["last_fcnt"], reset["fcnt16"], reset["accepted"], reset["policy"]) == (
            900, 0, accepted, entry.get("fcnt_reset_policy", "reject"))
    tap.wait_for(f"assets/{LAMP_ACCEPTING['asset_id']}/up", lambda d: d["fcnt"] == 0)
    assert [d["fcnt"] for d in tap.on(f"assets/{LAMP['asset_id']}/up")] == [900]


def test_bad_downlink_requests_are_answered_with_a_failed_event(network) -> None:
    _agent_thread, tap, _forwarder = network
    tap.publish(f"assets/{LAMP['asset_id']}/down", b'{"fport": 3, "data": ')
    failed = tap.wait_for(f"assets/{LAMP['asset_id']}/event/downlink")
    assert (failed["status"], failed["reason"], failed["dev_eui"]) == ("failed", "bad_json", LAMP["dev_eui"])
    tap.publish(f"assets/{LAMP['asset_id']}/down", json.dumps({"id": "o-1", "fport": 3,
                                                                  "object": {"interval_s": 1}}).encode())
    failed = tap.wait_for(f"assets/{LAMP['asset_id']}/event/downlink", lambda d: d["id"] == "o-1")
    assert (failed["status"], failed["reason"]) == ("failed", "out_of_range")
    tap.publish("assets/nobody-here/down", json.dumps({"id": "n-1", "fport": 3, "data": "00"}).encode())
    failed = tap.wait_for("assets/nobody-here/event/downlink")
    assert (failed["id"], failed["status"], failed["reason"], failed["dev_eui"]) == (
        "n-1", "failed", "unknown_asset", None)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_agent(registry: Path, port: int, mosquitto, prefix: str) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from dos_agent.cli import main; sys.exit(main())", "agent", "run",
         "--registry", str(registry), "--udp", f"127.0.0.1:{port}", "--mqtt-host", mosquitto.host,
         "--mqtt-port", str(mosquitto.port), "--prefix", prefix, "--dedup-ms", "100", "--net-id", "000013"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _stop_agent(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate(timeout=5)
    return err


def _forwarder_when_up(port: int, proc: subprocess.Popen) -> Forwarder:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return Forwarder("aa555a0000000e0f", ("127.0.0.1", port), handshake_s=0.2)
        except (TimeoutError, ConnectionRefusedError):
            continue
    raise AssertionError("the agent did not answer PULL_DATA")


def test_sessions_survive_restarting_the_agent_process(tmp_path: Path, mosquitto, prefix: str) -> None:
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.import_devices([OTAA])
    tap = Tap(mosquitto.host, mosquitto.port, prefix)
    port = _free_udp_port()
    proc = _start_agent(path, port, mosquitto, prefix)
    try:
        gateway = _forwarder_when_up(port, proc)
        gateway.push(join_request(5), tmst=3_000_000)
        resp = gateway.pull_resp()
        gateway.tx_ack(resp)
        node = LoRaNode.from_join_accept(txpk_of(resp).data, APP_KEY, 5)
        assert node.dev_addr >> 25 == 0x13  # the NetID's block
        reading = load_schema("waste").encode("reading", {"fill_level": 10})
        gateway.push(node.uplink(reading), tmst=10_000_000)
        assert tap.wait_for(f"assets/{OTAA['asset_id']}/up")["fcnt"] == 0
        gateway.close()
        err = _stop_agent(proc)
        assert "agent: stopped" in err and APP_KEY.hex() not in err

        proc = _start_agent(path, port, mosquitto, prefix)
        gateway = _forwarder_when_up(port, proc)
        gateway.push(node.uplink(load_schema("waste").encode("reading", {"fill_level": 11})), tmst=20_000_000)
        event = tap.wait_for(f"assets/{OTAA['asset_id']}/up", lambda d: d["fcnt"] == 1)
        assert event["readings"]["fill_level"]["value"] == 11
        gateway.push(join_request(5), tmst=30_000_000)  # the nonce is remembered across the restart too
        refused = tap.wait_for(f"assets/{OTAA['asset_id']}/event/join_rejected")
        assert refused["reason"] == "dev_nonce_reused"
        gateway.close()
    finally:
        _stop_agent(proc)
        tap.close()
