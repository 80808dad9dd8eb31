"""Store-and-forward end to end: the agent as a real `dos-edge agent run` process, a packet forwarder played by a UDP
socket, a real Mosquitto stopped and restarted under it. Events received while the broker is away wait in the outbox
on disk and arrive in order once it is back; `kill -9` of the agent during a backlog loses nothing (the next start
delivers it all); the last will turns the retained status `offline` when the agent vanishes."""

from __future__ import annotations

import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.registry import Registry
from dos_rig.broker import Mosquitto, stop_process
from test_agent_network import LAMP, READING, Forwarder, _free_udp_port
from test_agent_session import LoRaNode

WAIT_S = 20.0


class OrderedTap:
    """Every message on `topics` in arrival order, resubscribing after a broker restart."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sf-tap-{uuid.uuid4().hex[:8]}")
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S)

    def fcnts(self, count: int, topic: str) -> list[int]:
        """The FCnts of the next `count` distinct uplink events on `topic` (repeats dropped by event_id)."""
        import json

        seen_ids: set[str] = set()
        got: list[int] = []
        deadline = time.monotonic() + WAIT_S
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {got} arrived"
            try:
                message_topic, payload, _ = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if message_topic != topic:
                continue
            event = json.loads(payload)
            if event["event_id"] not in seen_ids:
                seen_ids.add(event["event_id"])
                got.append(event["fcnt"])
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_agent(registry: Path, udp_port: int, mqtt_port: int, prefix: str, log: Path) -> subprocess.Popen:
    """`dos-edge agent run` as its own process (the console script of this environment)."""
    command = Path(sys.executable).with_name("dos-edge")
    return subprocess.Popen(
        [str(command), "agent", "run", "--registry", str(registry), "--udp", f"127.0.0.1:{udp_port}",
         "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt_port), "--prefix", prefix, "--dedup-ms", "0"],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True,
    )


def forwarder_when_up(port: int, proc: subprocess.Popen) -> Forwarder:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return Forwarder("aa555a0000000f01", ("127.0.0.1", port), handshake_s=0.3)
        except (TimeoutError, ConnectionRefusedError):
            continue
    raise AssertionError("the agent did not answer PULL_DATA")


def outbox_depth(path: Path) -> int:
    with sqlite3.connect(path, timeout=5) as db:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def wait_depth(path: Path, depth: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if path.exists() and outbox_depth(path) == depth:
            return
        time.sleep(0.05)
    raise AssertionError(f"the outbox holds {outbox_depth(path)} events, expected {depth}")


def retained(port: int, topic: str) -> bytes | None:
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sf-ret-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: got.put(m.payload) if m.retain else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        return got.get(timeout=2)
    except queue.Empty:
        return None
    finally:
        client.disconnect()
        client.loop_stop()


def test_broker_outage_and_kill_9_lose_nothing_and_keep_the_order(tmp_path: Path) -> None:
    registry_path = tmp_path / "registry.sqlite"
    with Registry(registry_path) as registry:
        registry.import_devices([LAMP])
    outbox_path = registry_path.with_name(registry_path.name + ".outbox")
    prefix = f"sf{uuid.uuid4().hex[:8]}"
    up = f"{prefix}/assets/{LAMP['asset_id']}/up"
    status = f"{prefix}/agent/status"
    node = LoRaNode.from_entry(LAMP)
    udp_port = _free_udp_port()
    log = tmp_path / "agent.log"
    with Mosquitto(tmp_path / "broker", persistence=True) as broker:
        tap = OrderedTap(broker.port, [up])
        agent = start_agent(registry_path, udp_port, broker.port, prefix, log)
        try:
            gateway = forwarder_when_up(udp_port, agent)
            tmst = 1_000_000

            def push(count: int) -> None:
                nonlocal tmst
                for _ in range(count):
                    gateway.push(node.uplink(READING), tmst=tmst)
                    tmst += 2_000_000

            push(5)
            assert tap.fcnts(5, up) == [0, 1, 2, 3, 4]
            assert retained(broker.port, status) == b"online"

            broker.stop()  # the backend goes away: events wait on disk
            push(20)
            wait_depth(outbox_path, 20)
            broker.restart()
            assert tap.fcnts(20, up) == list(range(5, 25))  # all of them, in order
            wait_depth(outbox_path, 0)  # and deleted once acknowledged

            broker.stop()
            push(20)
            wait_depth(outbox_path, 20)
            agent.send_signal(signal.SIGKILL)  # kill -9 during the backlog
            assert agent.wait(timeout=10) == -signal.SIGKILL
            gateway.close()
            broker.restart()
            agent = start_agent(registry_path, udp_port, broker.port, prefix, log)
            assert tap.fcnts(20, up) == list(range(25, 45))  # the next start delivered the whole backlog, in order
            wait_depth(outbox_path, 0)

            deadline = time.monotonic() + WAIT_S
            while retained(broker.port, status) != b"online" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert retained(broker.port, status) == b"online"
            agent.send_signal(signal.SIGKILL)  # vanishing with the broker up: the last will says so
            agent.wait(timeout=10)
            deadline = time.monotonic() + WAIT_S
            while retained(broker.port, status) != b"offline" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert retained(broker.port, status) == b"offline"
        finally:
            stop_process(agent)
            tap.close()
    text = log.read_text(errors="replace")
    assert LAMP["nwk_s_key"] not in text and LAMP["app_s_key"] not in text
