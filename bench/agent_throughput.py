"""Agent throughput, measured in one run (never asserts; see bench/README.md).

1. decode-only: frames/s through the session layer (parse, FCnt, MIC, decrypt, MAC bookkeeping, counter store), schema
   decode and the event JSON, without MQTT, on one core.
2. end to end at QoS 1: the real agent process (`dos-edge agent run`) fed PUSH_DATA over UDP by a bench gateway that
   answers PULL_RESPs with TX_ACKs, until `mosquitto_sub` (C) has printed every event (events lost on the way are
   counted and printed); divided by a bare paho client publishing the same JSON at the same max_inflight, and by
   `mosquitto_pub -q 1` (the broker's ceiling).

The devices are settled, as on a gateway that has run for a while: ADR converged (DR5, lowest power, NbTrans 1, a full
SNR history), DevStatus answered shortly before the run (the next one is due after it), nothing pending. So no uplink of
the run needs a downlink; the script counts the downlinks the session layer plans and prints them.

This module is also the bench kit the latency bench imports (settled devices, sealed frames, bench gateway, C
subscriber).

All three publish with the agent's max_inflight (`dos_agent.mqtt_sink.DEFAULT_INFLIGHT`).

Usage: python bench/agent_throughput.py [--frames N] [--events N] [--rounds N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import pstats
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.adr import MAX_HISTORY, MAX_TX_POWER_INDEX, UplinkRecord
from dos_agent.events import SchemaBook, encode_event, uplink_event
from dos_agent.mac import DEFAULT_DEV_STATUS_EVERY, DevStatus, MacState
from dos_agent.mqtt_sink import DEFAULT_INFLIGHT
from dos_agent.registry import Registry
from dos_agent.session import Reception, SessionLayer, Transmit, UplinkAccepted
from dos_codecs.crypto import SessionKeys
from dos_codecs.gwmp import Datagram, GwmpKind, Rxpk, build_datagram, parse_datagram, rxpk_to_json
from dos_codecs.lorawan import DataFrame, MType
from dos_codecs.schema import load_schema
from dos_rig.broker import Mosquitto, free_port, stop_process
from dos_rig.fleet import AgentProcess

DECODE_GOAL_PER_S = 30_000
END_TO_END_GOAL = 0.80  # agent / bare paho
GATEWAY_EUI = "aa555a0000000101"
PUSH_ACK_TIMEOUT_S = 1.0
BENCH_SNR_DB = 8.5
BENCH_RSSI_DBM = -70
#: Uplinks each device had sent before the run (its registry counter and MAC state start there).
SETTLED_FCNT = 1000
#: Uplinks per device in a run: below DEFAULT_DEV_STATUS_EVERY, so no DevStatusReq falls due during it.
UPLINKS_PER_DEVICE = 50
RECEPTION = Reception(gateway_eui=GATEWAY_EUI, tmst=1, freq=868_100_000, sf=7, bw=125_000, rssi=BENCH_RSSI_DBM,
                      snr=BENCH_SNR_DB, time="2026-11-22T08:30:00.000000Z")

# One routine reading per node kind; devices take them in turn.
READINGS = [
    ("streetlight", {"lamp_on": True, "dim_level": 70, "power": 35.5, "energy": 123456, "ambient_light": 12,
                     "battery": 3.61}),
    ("waste", {"fill_level": 64, "distance": 0.412, "temperature": 12.3, "tilt": 2, "battery": 3.55}),
    ("bridge", {"strain_1": -120, "strain_2": 35, "strain_3": 8, "vibration_rms": 0.012, "tilt": 0.25,
                "temperature": 9.5, "battery": 3.4}),
]


@dataclass(frozen=True)
class BenchDevice:
    """One ABP device of the bench: its provisioning entry, session keys and routine payload."""

    entry: dict
    keys: SessionKeys
    payload: bytes


def bench_devices(count: int) -> list[BenchDevice]:
    """`count` ABP devices, kinds in turn, each with distinct keys."""
    payloads = {kind: load_schema(kind).encode("reading", values) for kind, values in READINGS}
    devices = []
    for i in range(count):
        kind = READINGS[i % len(READINGS)][0]
        nwk, app = (i * 2 + 1).to_bytes(16, "big"), (i * 2 + 2).to_bytes(16, "big")
        entry = {"dev_eui": f"70b3d57ed001{i:04x}", "asset_id": f"bench-{kind}-{i}", "kind": kind,
                 "activation": "abp", "dev_addr": f"2601{i:04x}", "nwk_s_key": nwk.hex(), "app_s_key": app.hex()}
        devices.append(BenchDevice(entry, SessionKeys(nwk, app), payloads[kind]))
    return devices


def devices_for(frames: int) -> int:
    """How many devices a run of `frames` uplinks needs so none sends more than UPLINKS_PER_DEVICE."""
    return max(len(READINGS), math.ceil(frames / UPLINKS_PER_DEVICE))


def settled_mac_state(dev_status_at: float) -> MacState:
    """The MAC state of a device that has run for a while: ADR converged at DR5 with the lowest power and NbTrans 1
    for the bench's SNR (ADR would change nothing), DevStatus answered at its last uplink, nothing pending."""
    history = tuple(UplinkRecord(fcnt, BENCH_SNR_DB, 1, 1)
                    for fcnt in range(SETTLED_FCNT - MAX_HISTORY + 1, SETTLED_FCNT + 1))
    return MacState(dr=5, tx_power_index=MAX_TX_POWER_INDEX, nb_trans=1, adr=True, history=history,
                    uplink_count=SETTLED_FCNT, last_fcnt=SETTLED_FCNT,
                    dev_status=DevStatus(200, 20, dev_status_at),
                    dev_status_due=SETTLED_FCNT + DEFAULT_DEV_STATUS_EVERY)


def settled_registry(path: Path, devices: list[BenchDevice]) -> Path:
    """A new registry holding `devices`, each at FCnt SETTLED_FCNT with the settled MAC state."""
    path.unlink(missing_ok=True)
    mac_json = json.dumps(settled_mac_state(time.time()).to_dict(), separators=(",", ":"))
    with Registry(path) as registry:
        registry.import_devices([device.entry for device in devices])
        for record in registry.devices():
            registry.record_uplink(record, SETTLED_FCNT, mac_json)
        registry.flush()
    return path


def build_frames(devices: list[BenchDevice], count: int) -> list[bytes]:
    """`count` sealed unconfirmed uplinks with the ADR bit, round-robin over the devices, counters following
    SETTLED_FCNT."""
    frames = []
    for n in range(count):
        device = devices[n % len(devices)]
        fcnt = SETTLED_FCNT + 1 + n // len(devices)
        frame = DataFrame(mtype=MType.UNCONFIRMED_UP, dev_addr=int(device.entry["dev_addr"], 16),
                          fcnt16=fcnt & 0xFFFF, adr=True, fport=1, frm_payload=device.payload)
        frames.append(device.keys.seal(frame, fcnt))
    return frames


# --- decode only ------------------------------------------------------------------------------------------------------

@dataclass
class DecodeRun:
    """Frames per wall second, frames per second of this process's CPU time (what other processes' load on the
    shared cores changes least), the event documents, and the downlinks the session layer planned."""

    rate: float
    cpu_rate: float
    documents: list[bytes]
    downlinks: int


def decode_only(frames: list[bytes], registry_path: Path) -> DecodeRun:
    """Session layer + schema decode + event JSON per frame; every planned downlink's TX_ACK is fed back at once."""
    with Registry(registry_path) as registry:
        session = SessionLayer(registry)
        schemas = SchemaBook()
        documents = []
        downlinks = 0
        now = time.time()
        started, cpu_started = time.perf_counter(), time.process_time()
        for phy in frames:
            for output in session.handle_uplink(phy, RECEPTION, now):
                if isinstance(output, UplinkAccepted):
                    documents.append(encode_event(uplink_event(output, schemas)))
                elif isinstance(output, Transmit):
                    downlinks += 1
                    session.tx_ack(output.ref, "NONE", now)
        registry.flush()
        elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    if len(documents) != len(frames):
        raise RuntimeError(f"only {len(documents)} of {len(frames)} frames were accepted")
    return DecodeRun(len(frames) / elapsed, len(frames) / cpu_elapsed, documents, downlinks)


def profile_decode(frames: list[bytes], registry_path: Path) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    decode_only(frames, registry_path)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    return "cProfile of the decode-only path, top 20 by own time:\n" + out.getvalue().strip()


# --- the C subscriber -------------------------------------------------------------------------------------------------

READY_TOPIC = "bench/ready"


def mosquitto_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin")
    if not found:
        raise RuntimeError(f"{name} is not installed (Debian package mosquitto-clients; ./dev.sh installs it)")
    return found


class CSubscriber:
    """`mosquitto_sub` at QoS 1 writing `<unix time of receipt> <topic> <payload>` per message to a file (a pipe read
    by this process would slow it down, and Mosquitto drops QoS 1 messages queued past its limit for a slow client).
    Ready once a message on READY_TOPIC came through, so nothing published after is missed."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.topic_prefix = topic.split("+")[0].split("#")[0]
        handle, name = tempfile.mkstemp(prefix="dos-bench-sub-", suffix=".txt")
        self.path = Path(name)
        with open(handle, "wb") as out:
            self.proc = subprocess.Popen(
                [mosquitto_tool("mosquitto_sub"), "-h", broker.host, "-p", str(broker.port), "-q", "1",
                 "-t", READY_TOPIC, "-t", topic, "-F", "%U %t %p"],
                stdout=out, stderr=subprocess.DEVNULL, start_new_session=True)
        self._file = self.path.open("rb")
        self._partial = b""
        self.lines: list[tuple[float, str, str]] = []
        try:
            self._wait_ready(broker)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        """Take the complete lines written since the last call."""
        data = self._partial + self._file.read()
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            stamp, topic, payload = raw.decode().split(" ", 2)
            self.lines.append((float(stamp), topic, payload))

    def _wait_ready(self, broker: Mosquitto) -> None:
        pub = mosquitto_tool("mosquitto_pub")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            subprocess.run([pub, "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", READY_TOPIC,
                            "-m", "ready"], check=True, timeout=10)
            time.sleep(0.3)
            self._read()
            if self.lines:
                return
        raise RuntimeError("mosquitto_sub did not start receiving")

    def events(self) -> list[tuple[float, str]]:
        """(receipt time, payload) of every message on the bench topic so far."""
        self._read()
        return [(t, p) for t, topic, p in self.lines if topic.startswith(self.topic_prefix)]

    def wait_events(self, count: int, quiet_s: float) -> list[tuple[float, str]]:
        """The events once `count` came, or once none came for quiet_s (then fewer: the caller reports the loss)."""
        last_count, last_change = -1, time.monotonic()
        while True:
            events = self.events()
            if len(events) >= count:
                return events
            if len(events) != last_count:
                last_count, last_change = len(events), time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                return events
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)
        self._file.close()
        self.path.unlink(missing_ok=True)


def delivery_rate(events: list[tuple[float, str]]) -> float:
    """Events per second between the first and the last receipt (start-up and pipeline fill left out); 0 for fewer
    than two events."""
    span = events[-1][0] - events[0][0] if len(events) >= 2 else 0.0
    return (len(events) - 1) / span if span > 0 else 0.0


# --- baselines: bare paho and mosquitto_pub ---------------------------------------------------------------------------

def bare_paho(broker: Mosquitto, documents: list[bytes], max_inflight: int) -> tuple[float, int]:
    """(delivery rate, events delivered) of a bare paho client publishing the documents at QoS 1 with its no-thread
    loop."""
    topic = "bench/bare/up"
    subscriber = CSubscriber(broker, topic)
    try:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare")
        client.max_inflight_messages_set(max_inflight)
        client.connect(broker.host, broker.port)
        while not client.is_connected():
            client.loop(0.01)
        for i, document in enumerate(documents):
            client.publish(topic, document, qos=1)
            if i % 100 == 99:
                client.loop(0)
        delivered: list = []
        waiter = threading.Thread(target=lambda: delivered.append(subscriber.wait_events(len(documents), 10)))
        waiter.start()
        while waiter.is_alive():
            client.loop(0.001)
        client.disconnect()
        return delivery_rate(delivered[0]), len(delivered[0])
    finally:
        subscriber.stop()


def mosquitto_pub(broker: Mosquitto, documents: list[bytes], max_inflight: int, workdir: Path) -> tuple[float, int]:
    """(delivery rate, events delivered) of `mosquitto_pub -q 1 -l` (one message per stdin line) at the same
    max_inflight. It can outrun one subscriber: Mosquitto then drops QoS 1 messages queued for it past its
    max_queued_messages (1000 by default), so fewer may arrive."""
    topic = "bench/cpub/up"
    lines = workdir / "documents.txt"
    lines.write_bytes(b"\n".join(documents) + b"\n")
    subscriber = CSubscriber(broker, topic)
    try:
        with lines.open("rb") as stdin:
            subprocess.run([mosquitto_tool("mosquitto_pub"), "-h", broker.host, "-p", str(broker.port), "-q", "1",
                            "-M", str(max_inflight), "-t", topic, "-l"], stdin=stdin, check=True, timeout=120)
        events = subscriber.wait_events(len(documents), 2)
        return delivery_rate(events), len(events)
    finally:
        subscriber.stop()


# --- the agent, end to end --------------------------------------------------------------------------------------------

class BenchGateway:
    """A packet forwarder facing the agent over real UDP: PULL_DATA first (so it has a downlink path), then one
    PUSH_DATA per frame with at most `window` not yet PUSH_ACKed; every PULL_RESP is answered with a TX_ACK."""

    def __init__(self, agent_addr: tuple[str, int], window: int = 32) -> None:
        self.agent_addr, self.window = agent_addr, window
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.eui = bytes.fromhex(GATEWAY_EUI)
        self._token = 0
        self.unacked: dict[bytes, float] = {}  # token -> when its PUSH_DATA was sent
        self.lost_acks = 0
        self.pull_acked = False
        self.pull_resps = 0

    def _next_token(self) -> bytes:
        self._token = (self._token + 1) & 0xFFFF
        return self._token.to_bytes(2, "big")

    def push_datagram(self, phy: bytes, tmst: int) -> tuple[bytes, bytes]:
        """(token, PUSH_DATA bytes) carrying one rxpk of `phy`."""
        rxpk = Rxpk(tmst=tmst & 0xFFFFFFFF, freq=868.1, chan=0, rfch=0, stat=1, sf=7, bw_khz=125, codr="4/5",
                    rssi=BENCH_RSSI_DBM, lsnr=BENCH_SNR_DB, data=phy)
        token = self._next_token()
        return token, build_datagram(Datagram(2, token, GwmpKind.PUSH_DATA, self.eui, {"rxpk": [rxpk_to_json(rxpk)]}))

    def connect(self, timeout_s: float = 10.0) -> None:
        """PULL_DATA until the agent answers with PULL_ACK."""
        deadline = time.monotonic() + timeout_s
        while not self.pull_acked:
            if time.monotonic() > deadline:
                raise RuntimeError("the agent never answered PULL_DATA")
            self.sock.sendto(build_datagram(Datagram(2, self._next_token(), GwmpKind.PULL_DATA, self.eui)),
                             self.agent_addr)
            self.poll(0.2)

    def send(self, token: bytes, datagram: bytes) -> None:
        self.unacked[token] = time.monotonic()
        self.sock.sendto(datagram, self.agent_addr)

    def poll(self, timeout_s: float) -> None:
        """Handle what the agent sent (PUSH_ACK, PULL_ACK, PULL_RESP), waiting at most timeout_s for the first."""
        readable, _, _ = select.select([self.sock], [], [], timeout_s)
        while readable:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            datagram = parse_datagram(data)
            if datagram.kind == GwmpKind.PUSH_ACK:
                self.unacked.pop(datagram.token, None)
            elif datagram.kind == GwmpKind.PULL_ACK:
                self.pull_acked = True
            elif datagram.kind == GwmpKind.PULL_RESP:
                self.pull_resps += 1
                ack = Datagram(2, datagram.token, GwmpKind.TX_ACK, self.eui, {"txpk_ack": {"error": "NONE"}})
                self.sock.sendto(build_datagram(ack), self.agent_addr)

    def push_all(self, frames: list[bytes]) -> None:
        """Every frame, as fast as the agent acknowledges them (at most `window` outstanding)."""
        datagrams = [self.push_datagram(phy, 1_000_000 + i * 1000) for i, phy in enumerate(frames)]
        for token, datagram in datagrams:
            while len(self.unacked) >= self.window:
                self.poll(0.1)
                self._forget_lost(time.monotonic() - PUSH_ACK_TIMEOUT_S)
            self.send(token, datagram)
            self.poll(0)

    def _forget_lost(self, sent_before: float) -> None:
        """PUSH_DATA not acknowledged by then was lost (as a real forwarder, the bench never sends it again)."""
        for token, sent in list(self.unacked.items()):
            if sent < sent_before:
                del self.unacked[token]
                self.lost_acks += 1

    def close(self) -> None:
        self.sock.close()


class BenchAgent:
    """The real agent process on a settled registry, its C subscriber and a bench gateway; stops all by PID."""

    def __init__(self, broker: Mosquitto, workdir: Path, devices: list[BenchDevice], name: str,
                 dedup_ms: int = 200) -> None:
        self.prefix = f"bench/{name}"
        registry = settled_registry(workdir / f"{name}.sqlite", devices)
        udp_port = free_port(kind=socket.SOCK_DGRAM)
        self.agent = AgentProcess(workdir, registry, udp_port, broker.port, self.prefix,
                                  ("--log-level", "warning", "--dedup-ms", str(dedup_ms)))
        self.subscriber: CSubscriber | None = None
        self.gateway: BenchGateway | None = None
        try:
            self.agent.start()
            self._wait_bound(udp_port)
            self.subscriber = CSubscriber(broker, f"{self.prefix}/assets/+/up")
            self.gateway = BenchGateway(("127.0.0.1", udp_port))
            self.gateway.connect()
        except BaseException:
            self.stop()
            raise

    def _wait_bound(self, udp_port: int, timeout_s: float = 20.0) -> None:
        """The agent logs at warning level here, so wait for its UDP port to be taken instead of its log line."""
        deadline = time.monotonic() + timeout_s
        while True:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind(("127.0.0.1", udp_port))
            except OSError:
                return
            finally:
                probe.close()
            if self.agent.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not start:\n{self.agent.log_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        for part in (self.gateway, self.subscriber):
            if part is not None:
                (part.close if part is self.gateway else part.stop)()
        self.agent.stop()


def agent_end_to_end(broker: Mosquitto, workdir: Path, devices: list[BenchDevice], frames: list[bytes],
                     name: str) -> tuple[float, int, int]:
    """(delivery rate, events delivered, PULL_RESPs seen) of the agent (its MQTT sink at DEFAULT_INFLIGHT) from
    PUSH_DATA to mosquitto_sub."""
    bench = BenchAgent(broker, workdir, devices, name)
    try:
        bench.gateway.push_all(frames)
        delivered: list = []
        waiter = threading.Thread(target=lambda: delivered.append(bench.subscriber.wait_events(len(frames), 10)))
        waiter.start()
        while waiter.is_alive():
            bench.gateway.poll(0.05)
        return delivery_rate(delivered[0]), len(delivered[0]), bench.gateway.pull_resps
    finally:
        bench.stop()


def flag(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames for the decode-only measurement")
    parser.add_argument("--events", type=int, default=10_000, help="events for each end-to-end measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the decode-only path")
    args = parser.parse_args()

    count = max(args.frames, args.events)
    devices = bench_devices(devices_for(count))
    print(f"building {count} sealed uplinks for {len(devices)} settled ABP devices ...", flush=True)
    frames = build_frames(devices, count)
    with tempfile.TemporaryDirectory(prefix="dos-bench-") as tmp:
        workdir = Path(tmp)
        decode_runs = [decode_only(frames[: args.frames], settled_registry(workdir / f"decode{r}.sqlite", devices))
                       for r in range(args.rounds)]
        documents = decode_runs[0].documents[: args.events]
        publish_frames = frames[: args.events]
        bare, cpub, agent = [], [], []
        pull_resps = 0
        lost = {"cpub": 0, "bare": 0, "agent": 0}
        with Mosquitto(workdir / "mosquitto") as broker:
            for r in range(args.rounds):
                rate, delivered = mosquitto_pub(broker, documents, DEFAULT_INFLIGHT, workdir)
                cpub.append(rate)
                lost["cpub"] += len(documents) - delivered
                rate, delivered = bare_paho(broker, documents, DEFAULT_INFLIGHT)
                bare.append(rate)
                lost["bare"] += len(documents) - delivered
                rate, delivered, resps = agent_end_to_end(broker, workdir, devices, publish_frames, f"e2e{r}")
                agent.append(rate)
                lost["agent"] += len(publish_frames) - delivered
                pull_resps += resps
        if args.profile:
            print(profile_decode(frames[: args.frames], settled_registry(workdir / "profile.sqlite", devices)))

    decode_rate = max(run.rate for run in decode_runs)
    cpu_rate = max(run.cpu_rate for run in decode_runs)
    rounds = ", ".join(f"{run.rate:,.0f}" for run in decode_runs)
    print()
    print(f"decode-only (session + schema decode + event JSON, one core): {decode_rate:,.0f} frames/s "
          f"({1e6 / decode_rate:.1f} µs/frame; rounds {rounds})")
    print(f"  per second of its own CPU time: {cpu_rate:,.0f} frames/s ({1e6 / cpu_rate:.1f} µs of CPU per frame)")
    print(f"  goal >= {DECODE_GOAL_PER_S:,} frames/s of CPU time: {cpu_rate / DECODE_GOAL_PER_S:.2f} of it -> "
          f"{flag(cpu_rate >= DECODE_GOAL_PER_S)}")
    print(f"  downlinks planned: {decode_runs[0].downlinks} for {args.frames} uplinks of settled devices")
    best_bare, best_cpub, best_agent = max(bare), max(cpub), max(agent)
    sent = args.rounds * args.events
    print(f"mosquitto_pub -q 1 (broker ceiling):  {best_cpub:,.0f} events/s (max_inflight {DEFAULT_INFLIGHT}; "
          f"lost {lost['cpub']} of {sent}: Mosquitto drops QoS 1 messages queued past 1000 for a slower subscriber)")
    print(f"bare paho QoS 1:                      {best_bare:,.0f} events/s (lost {lost['bare']} of {sent})")
    print(f"agent, PUSH_DATA -> mosquitto_sub:    {best_agent:,.0f} events/s "
          f"(lost {lost['agent']} of {sent}; PULL_RESPs {pull_resps})")
    ratio = best_agent / best_bare
    print(f"ratio agent / bare paho:              {ratio:.2f}  (goal >= {END_TO_END_GOAL:.2f}: "
          f"{flag(ratio >= END_TO_END_GOAL)})")
    print(f"ratio agent / mosquitto_pub:          {best_agent / best_cpub:.2f}")
    print(f"ratio bare paho / mosquitto_pub:      {best_bare / best_cpub:.2f}")


if __name__ == "__main__":
    main()
