"""The MQTT sink against real Mosquitto processes: QoS 1 delivery, the in-flight bounds, an absent broker, a broker
restart in the middle (events published while it is away arrive after the sink reconnects), and downlink requests
that keep arriving after a restart (the subscription is made again on every connect)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.mqtt_sink import (
    BrokerSettings,
    MqttSink,
    agent_event_topic,
    counters_topic,
    event_topic,
    status_topic,
)
from dos_agent.outbox import Outbox
from dos_rig.broker import Mosquitto

WAIT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _broker(port: int) -> BrokerSettings:
    return BrokerSettings("127.0.0.1", port)


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
        sink = MqttSink(_broker(_free_port()), connect_timeout=0.5)
        started = time.monotonic()
        await sink.start()
        assert not sink.connected
        sink.publish_event("lamp-1", b"{}")  # queued for later
        await asyncio.sleep(0)
        assert sink.pending == 1 and sink.outbox.depth == 1  # committed at the end of the loop turn
        await sink.stop(drain_timeout=0.1)
        assert time.monotonic() - started < 3

    asyncio.run(scenario())


def _wait_until(condition, timeout: float = WAIT_S) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


async def _await_until(condition, timeout: float = WAIT_S) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return condition()


def retained_value(port: int, topic: str) -> bytes | None:
    """The retained message on `topic` as a fresh subscriber sees it (None when there is none)."""
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"retained-{time.monotonic_ns()}")
    client.on_message = lambda c, u, m: got.put(m.payload) if m.retain else None
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        return got.get(timeout=1.0)
    except queue.Empty:
        return None
    finally:
        client.disconnect()
        client.loop_stop()


def test_events_in_order_and_retained_counters_survive_a_broker_restart(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, persistence=True) as broker:
        subscriber = DurableSubscriber(broker.port, "sinktest/#")

        async def scenario() -> None:
            sink = MqttSink(_broker(broker.port), prefix="sinktest", max_inflight=20)
            await sink.start()
            assert await sink.wait_connected(WAIT_S)
            sink.publish_event("lamp-1", b'{"n":1}')
            assert sink.publish_counters(b'{"frames":{}}')
            got = {await asyncio.to_thread(subscriber.get) for _ in range(3)}
            assert got == {(event_topic("sinktest", "lamp-1"), b'{"n":1}', False),
                           (status_topic("sinktest"), b"online", False),
                           (counters_topic("sinktest"), b'{"frames":{}}', False)}  # retain flag: live delivery

            await asyncio.to_thread(broker.stop)
            assert await _await_until(lambda: not sink.connected)
            for n in range(2, 40):
                sink.publish_event("lamp-1", b'{"n":%d}' % n)
            assert await _await_until(lambda: sink.outbox.depth == 38)  # on disk while the broker is away

            await asyncio.to_thread(broker.restart)
            assert await sink.wait_connected(WAIT_S)
            assert await _await_until(lambda: sink.pending == 0)
            assert sink.outbox.delivered == 39
            events: list[bytes] = []
            while len(events) < 38:
                topic, payload, _ = await asyncio.to_thread(subscriber.get)
                # at-least-once: the broker may hand its subscriber n=1 again after the restart
                if topic == event_topic("sinktest", "lamp-1") and payload != b'{"n":1}' and payload not in events:
                    events.append(payload)
            assert events == [b'{"n":%d}' % n for n in range(2, 40)]  # all of them, in order
            await sink.stop()
            assert not sink.connected

        try:
            asyncio.run(scenario())
        finally:
            subscriber.close()
        assert retained_value(broker.port, status_topic("sinktest")) == b"offline"  # said so on a clean stop
        assert retained_value(broker.port, counters_topic("sinktest")) == b'{"frames":{}}'


def publish_once(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dl-pub-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)
    client.disconnect()
    client.loop_stop()


def test_downlink_requests_arrive_and_the_subscription_survives_a_broker_restart(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, persistence=False) as broker:  # the broker forgets the subscription on restart

        async def delivered(received: asyncio.Queue, asset: str, payload: bytes) -> tuple[str, bytes]:
            """Publish until the sink hands the request over (its SUBSCRIBE may still be on its way)."""
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                await asyncio.to_thread(publish_once, broker.port, f"dl/test/assets/{asset}/down", payload)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(received.get(), 0.3)
            raise AssertionError("the downlink request never reached the callback")

        async def scenario() -> None:
            received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
            every: list[tuple[str, bytes]] = []
            sink = MqttSink(_broker(broker.port), prefix="dl/test", max_inflight=20)
            sink.subscribe_downlinks(lambda *request: (every.append(request), received.put_nowait(request)))
            await sink.start()
            assert await sink.wait_connected(WAIT_S)
            assert await delivered(received, "lamp-7", b'{"n":1}') == ("lamp-7", b'{"n":1}')
            await asyncio.to_thread(publish_once, broker.port, "dl/test/assets/lamp-7/up", b"{}")  # not a request
            await asyncio.to_thread(publish_once, broker.port, "dl/other/assets/lamp-7/down", b"{}")

            await asyncio.to_thread(broker.restart)
            assert await sink.wait_connected(WAIT_S)
            got = await delivered(received, "lamp-8", b'{"n":2}')
            while got[1] == b'{"n":1}':  # repeats of the first request published before the restart
                got = await asyncio.wait_for(received.get(), WAIT_S)
            assert got == ("lamp-8", b'{"n":2}')
            assert ("lamp-7", b"{}") not in every  # neither the /up nor the other prefix reached the callback
            await sink.stop()

        asyncio.run(scenario())


def test_an_outbox_overflow_is_reported_retained_and_the_newest_events_go_out(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker", persistence=True) as broker:
        subscriber = DurableSubscriber(broker.port, "overflow/assets/#")

        async def scenario() -> None:
            sink = MqttSink(_broker(broker.port), prefix="overflow", outbox=Outbox(tmp_path / "o.sqlite", max_rows=3))
            await sink.start()
            assert await sink.wait_connected(WAIT_S)
            await asyncio.to_thread(broker.stop)
            assert await _await_until(lambda: not sink.connected)
            for n in range(5):
                sink.publish_event("bin-1", b'{"n":%d}' % n)
            await asyncio.sleep(0.01)
            report = sink.housekeeping()
            assert report is not None and report.count == {"size": 2}
            assert sink.housekeeping() is None  # reported once
            await asyncio.to_thread(broker.restart)
            assert await sink.wait_connected(WAIT_S)
            got = [(await asyncio.to_thread(subscriber.get))[1] for _ in range(3)]
            assert got == [b'{"n":2}', b'{"n":3}', b'{"n":4}']  # the oldest two were dropped, the rest in order
            await sink.stop()

        try:
            asyncio.run(scenario())
        finally:
            subscriber.close()
        document = json.loads(retained_value(broker.port, agent_event_topic("overflow", "outbox_dropped")))
        assert document["type"] == "outbox_dropped"
        assert document["latest"] == document["total"] == {"size": 2} and document["max_rows"] == 3


def test_a_message_mqtt_cannot_carry_is_dropped_and_counted_not_blocking_the_queue(mosquitto) -> None:
    subscriber_port = mosquitto.port

    async def scenario() -> None:
        sink = MqttSink(_broker(subscriber_port), prefix="poison")
        await sink.start()
        assert await sink.wait_connected(WAIT_S)
        sink.publish_event("lamp/#", b'{"n":0}')  # a wildcard in a topic: no broker takes it
        sink.publish_event("lamp-2", b'{"n":1}')
        assert await _await_until(lambda: sink.pending == 0)
        assert sink.outbox.dropped == {"undeliverable": 1} and sink.outbox.delivered == 1
        report = sink.housekeeping()
        assert report is not None and report.count == {"undeliverable": 1}
        await sink.stop()

    asyncio.run(scenario())
