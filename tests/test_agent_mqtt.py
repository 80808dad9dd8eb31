"""The MQTT sink against real Mosquitto processes: QoS 1 delivery, the in-flight bounds, an absent broker, a broker
restart in the middle (events published while it is away arrive after the sink reconnects), and downlink requests
that keep arriving after a restart (the subscription is made again on every connect)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.mqtt_sink import MqttSink, counters_topic, event_topic
from dos_rig.broker import find_mosquitto

WAIT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_persistent_broker(workdir: Path, port: int) -> subprocess.Popen:
    """A Mosquitto on 127.0.0.1:port that keeps sessions across restarts (persistence in workdir)."""
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {workdir}/\nlog_dest file {workdir / 'mosquitto.log'}\n"
    )
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            assert proc.poll() is None, (workdir / "mosquitto.log").read_text()
            time.sleep(0.02)
    stop_broker(proc)
    raise AssertionError("mosquitto did not start")


def stop_broker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class DurableSubscriber:
    """A subscriber with a persistent session (clean_session False), reconnecting on its own thread."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sink-test-subscriber", clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: None if f.session_present else c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S)

    def get(self) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("max_inflight", [19, 101, 0])
def test_max_inflight_stays_within_bounds(max_inflight: int) -> None:
    with pytest.raises(ValueError, match="max_inflight"):
        MqttSink(max_inflight=max_inflight)


@pytest.mark.parametrize("prefix", ["", "a/+/b", "#", "/dos", "dos/"])
def test_the_prefix_is_a_plain_topic_path(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        MqttSink(prefix=prefix)


def test_an_absent_broker_neither_raises_nor_blocks() -> None:
    async def scenario() -> None:
        sink = MqttSink("127.0.0.1", _free_port(), connect_timeout=0.5)
        started = time.monotonic()
        await sink.start()
        assert not sink.connected
        assert sink.publish_event("lamp-1", b"{}")  # queued for later
        assert sink.pending == 1
        await sink.stop(drain_timeout=0.1)
        assert time.monotonic() - started < 3

    asyncio.run(scenario())


def test_events_and_retained_counters_arrive_and_survive_a_broker_restart(tmp_path: Path) -> None:
    port = _free_port()
    broker = start_persistent_broker(tmp_path, port)
    subscriber = DurableSubscriber(port, "sinktest/#")

    async def scenario() -> None:
        nonlocal broker
        sink = MqttSink("127.0.0.1", port, prefix="sinktest", max_inflight=20)
        await sink.start()
        assert await sink.wait_connected(WAIT_S)
        assert sink.publish_event("lamp-1", b'{"n":1}') and sink.publish_counters(b'{"frames":{}}')
        got = {await asyncio.to_thread(subscriber.get) for _ in range(2)}
        assert got == {(event_topic("sinktest", "lamp-1"), b'{"n":1}', False),
                       (counters_topic("sinktest"), b'{"frames":{}}', False)}  # retain flag: live delivery

        await asyncio.to_thread(stop_broker, broker)
        deadline = time.monotonic() + WAIT_S
        while sink.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not sink.connected
        for n in (2, 3):
            assert sink.publish_event("lamp-1", b'{"n":%d}' % n)
        assert sink.pending == 2

        broker = await asyncio.to_thread(start_persistent_broker, tmp_path, port)
        assert await sink.wait_connected(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while sink.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert sink.pending == 0 and sink.acked == 4
        payloads = {(await asyncio.to_thread(subscriber.get))[1] for _ in range(2)}
        assert payloads == {b'{"n":2}', b'{"n":3}'}
        await sink.stop()
        assert not sink.connected

    try:
        asyncio.run(scenario())
    finally:
        subscriber.close()
        stop_broker(broker)


def test_downlink_requests_arrive_and_the_subscription_survives_a_broker_restart(tmp_path: Path) -> None:
    port = _free_port()
    broker = start_persistent_broker(tmp_path, port)

    def publish(topic: str, payload: bytes) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dl-pub-{time.monotonic_ns()}")
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)
        client.disconnect()
        client.loop_stop()

    async def delivered(received: asyncio.Queue, asset: str, payload: bytes) -> tuple[str, bytes]:
        """Publish until the sink hands the request over (its SUBSCRIBE may still be on its way)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            await asyncio.to_thread(publish, f"dl/test/assets/{asset}/down", payload)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(received.get(), 0.3)
        raise AssertionError("the downlink request never reached the callback")

    async def scenario() -> None:
        nonlocal broker
        received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        sink = MqttSink("127.0.0.1", port, prefix="dl/test", max_inflight=20)
        sink.subscribe_downlinks(lambda asset, payload: received.put_nowait((asset, payload)))
        await sink.start()
        assert await sink.wait_connected(WAIT_S)
        assert await delivered(received, "lamp-7", b'{"n":1}') == ("lamp-7", b'{"n":1}')
        await asyncio.to_thread(publish, "dl/test/assets/lamp-7/up", b"{}")  # not a request: never handed over
        await asyncio.to_thread(publish, "dl/other/assets/lamp-7/down", b"{}")

        await asyncio.to_thread(stop_broker, broker)
        deadline = time.monotonic() + WAIT_S
        while sink.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not sink.connected
        broker = await asyncio.to_thread(start_persistent_broker, tmp_path, port)
        assert await sink.wait_connected(WAIT_S)
        got = await delivered(received, "lamp-8", b'{"n":2}')
        while got[1] == b'{"n":1}':  # repeats of the first request published before the restart
            got = await asyncio.wait_for(received.get(), WAIT_S)
        assert got == ("lamp-8", b'{"n":2}')
        await sink.stop()

    try:
        asyncio.run(scenario())
    finally:
        stop_broker(broker)
