"""MQTT for the agent: a paho-mqtt 2.x client driven by the asyncio loop (no extra thread), and the sink that publishes
the agent's events through the persistent outbox at QoS 1.

`MqttClient`: paho's socket callbacks register its socket with the event loop (`loop_read` when readable,
`loop_write` while it has bytes to send); a housekeeping task calls `loop_misc` every second for keepalive and
reconnects with back-off while the broker is away. TLS (CA file, optional client certificate and key) and
username/password come from `BrokerSettings`. Subscriptions are made again on every connect, so a reconnect (to a
broker that lost the session) never loses one.

`MqttSink`: every event is added to the `Outbox` (SQLite) and committed once per loop turn; committed events go to
paho in order, at most a window of them at a time, and each is deleted from the outbox only on its PUBACK. While the
broker is away the backlog waits on disk; messages paho already holds are resent by paho on reconnect (before any
newer one), then the outbox feeds the rest. Latest-value topics (the gateway status, counters, Home Assistant
discovery, the outbox's drop report) are retained and published again on every connect. The last will publishes
`offline` (retained) on the status topic when the agent vanishes; the agent publishes `online` on connect and
`offline` when it stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from dos_agent.events import iso_utc
from dos_agent.outbox import DropReport, Outbox

log = logging.getLogger("dos_agent.mqtt")

#: paho scans its in-flight set on every PUBACK: keep the window between these bounds.
MIN_INFLIGHT = 20
MAX_INFLIGHT = 100
DEFAULT_INFLIGHT = 50
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
HOUSEKEEPING_S = 1.0
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"


def event_topic(prefix: str, asset_id: str) -> str:
    """Topic of an asset's uplink events."""
    return f"{prefix}/assets/{asset_id}/up"


def asset_event_topic(prefix: str, asset_id: str, event_type: str) -> str:
    """Topic of an asset's other events (join, downlink, fcnt_reset, ...)."""
    return f"{prefix}/assets/{asset_id}/event/{event_type}"


def downlink_topic(prefix: str, asset_id: str = "+") -> str:
    """Topic of an asset's downlink requests (with the default "+", the filter for every asset)."""
    return f"{prefix}/assets/{asset_id}/down"


def counters_topic(prefix: str) -> str:
    """Topic of the agent's retained counters."""
    return f"{prefix}/agent/counters"


def status_topic(prefix: str) -> str:
    """Topic of the agent's retained status: `online` or `offline` (also the last will)."""
    return f"{prefix}/agent/status"


def agent_event_topic(prefix: str, event_type: str) -> str:
    """Topic of the agent's own events (`outbox_dropped`)."""
    return f"{prefix}/agent/event/{event_type}"


def check_prefix(prefix: str) -> str:
    """The prefix itself when it is a plain topic path (no wildcards, no leading or trailing '/'); else ValueError."""
    if not prefix or any(c in prefix for c in "+#\0") or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"topic prefix {prefix!r} is not a plain topic path")
    return prefix


@dataclass(frozen=True)
class BrokerSettings:
    """How to reach one broker: address, TLS files (CA; client certificate and key optional) and credentials."""

    host: str = "127.0.0.1"
    port: int = 1883
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 30

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("a client certificate needs TLS: give ca_file too")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name} {path} is not a readable file")

    @property
    def tls(self) -> bool:
        """True when the connection uses TLS."""
        return self.ca_file is not None

    def describe(self) -> str:
        """host:port with the security in use, for logs (never the password)."""
        return (f"{self.host}:{self.port} ({'tls' if self.tls else 'plain'}"
                f"{', client cert' if self.cert_file else ''}{', user ' + self.username if self.username else ''})")


class MqttClient:
    """One connection to one broker on the running asyncio loop. `start()` inside the loop, `stop()` to close."""

    def __init__(
        self,
        broker: BrokerSettings,
        max_inflight: int = DEFAULT_INFLIGHT,
        client_id: str | None = None,
        connect_timeout: float = 3.0,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        if not MIN_INFLIGHT <= max_inflight <= MAX_INFLIGHT:
            raise ValueError(f"max_inflight {max_inflight} is outside {MIN_INFLIGHT}..{MAX_INFLIGHT}")
        self.broker = broker
        self.connect_timeout = connect_timeout
        self.on_connected: Callable[[], None] | None = None
        self.on_ack: Callable[[int], None] | None = None
        self._subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self._failures = 0
        self._next_attempt = 0.0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"dos-edge-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv311,
        )
        if broker.tls:
            self._client.tls_set(ca_certs=str(broker.ca_file), certfile=broker.cert_file and str(broker.cert_file),
                                 keyfile=broker.key_file and str(broker.key_file))
        if broker.username is not None:
            self._client.username_pw_set(broker.username, broker.password)
        if will is not None:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.connect_timeout = connect_timeout
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_socket_register_write
        self._client.on_socket_unregister_write = self._on_socket_unregister_write
        self._client.connect_async(broker.host, broker.port, broker.keepalive)

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Try to connect once now and keep (re)connecting in the background."""
        self._loop = asyncio.get_running_loop()
        await self._try_connect()
        self._housekeeping = asyncio.create_task(self._keep_alive(), name="mqtt-housekeeping")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until connected (True) or `timeout` seconds pass (False)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.connected

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Deliver every message matching `topic_filter` as handler(topic, payload), now and after every reconnect."""
        self._subscriptions[topic_filter] = handler
        if self.connected:
            self._client.subscribe(topic_filter, qos=1)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int | None:
        """Hand one message to paho at QoS 1; its message id (reported to `on_ack` on PUBACK), or None when paho
        refused it. ValueError for a topic or payload MQTT cannot carry."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("mqtt: publish to %s refused: %s", topic, mqtt.error_string(info.rc))
            return None
        return info.mid

    async def stop(self) -> None:
        """Disconnect and close (call `drain` before, when unacknowledged messages matter)."""
        self._stopping = True
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        if self._client.socket() is not None:
            self._client.disconnect()
            close_by = asyncio.get_running_loop().time() + 1.0
            while self._client.socket() is not None and asyncio.get_running_loop().time() < close_by:
                await asyncio.sleep(0.01)
        sock = self._client.socket()
        if sock is not None and self._loop is not None:  # the broker never answered: let go of the socket ourselves
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            sock.close()
        self._connected.clear()

    # --- internals ----------------------------------------------------------------------------------------------------

    async def _try_connect(self) -> bool:
        """One connection attempt. The TCP reachability probe is asynchronous so an unreachable broker never blocks
        the loop for paho's synchronous connect (a TLS handshake with a reachable broker still runs inline)."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.broker.host, self.broker.port), self.connect_timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._client.reconnect()
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            log.warning("mqtt: cannot reach broker %s: %s", self.broker.describe(), exc or type(exc).__name__)
            sock = self._client.socket()
            if sock is not None:
                self._on_socket_close(self._client, None, sock)
            return False
        return True

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self._client.loop_misc()
                if self._client.socket() is not None or self._loop.time() < self._next_attempt:
                    continue
                if not await self._try_connect():
                    self._attempt_failed()
            except Exception:  # keep trying whatever paho raised
                log.exception("mqtt: housekeeping failed")
                self._attempt_failed()

    def _attempt_failed(self) -> None:
        """Back off: the next attempt after 1, 2, 4, ... up to RECONNECT_MAX_S seconds."""
        self._failures += 1
        self._next_attempt = self._loop.time() + min(RECONNECT_MIN_S * 2 ** (self._failures - 1), RECONNECT_MAX_S)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.warning("mqtt: broker %s refused the connection: %s", self.broker.describe(), reason_code)
            self._attempt_failed()
            return
        self._failures = 0
        log.info("mqtt: connected to %s", self.broker.describe())
        for topic_filter in self._subscriptions:
            client.subscribe(topic_filter, qos=1)
        self._connected.set()
        if self.on_connected is not None:
            # after paho has resent what it held (it does so once this callback returns)
            self._loop.call_soon(self.on_connected)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self._connected.clear()
        if not self._stopping:
            log.warning("mqtt: disconnected from %s (%s); reconnecting", self.broker.describe(), reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        if self.on_ack is not None:
            self.on_ack(mid)

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        for topic_filter, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(topic_filter, message.topic):
                try:
                    handler(message.topic, message.payload)
                except Exception:  # a bad message or a bug must not take the MQTT client down
                    log.exception("mqtt: handling a message on %s failed", message.topic)

    def _on_socket_open(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _on_socket_register_write(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.add_writer(sock, client.loop_write)

    def _on_socket_unregister_write(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.remove_writer(sock)


class MqttSink:
    """Publishes the agent's events at QoS 1 through the outbox. Call `start()` inside a running loop, `stop()` to
    drain and close. Without an outbox given, an in-memory one is used (ordered, acknowledged, but not persistent)."""

    def __init__(
        self,
        broker: BrokerSettings | None = None,
        prefix: str = "dos",
        max_inflight: int = DEFAULT_INFLIGHT,
        outbox: Outbox | None = None,
        client_id: str | None = None,
        connect_timeout: float = 3.0,
    ) -> None:
        self.prefix = check_prefix(prefix)
        self.broker = broker or BrokerSettings()
        self.outbox = outbox or Outbox(":memory:")
        self.client = MqttClient(self.broker, max_inflight, client_id, connect_timeout,
                                 will=(status_topic(prefix), STATUS_OFFLINE))
        self.client.on_connected = self._connected_again
        self.client.on_ack = self._acked
        #: Outbox messages handed to paho at most at once: paho holds the rest of its window queued, ready to go.
        self.window = 2 * max_inflight
        self._in_flight: dict[int, int] = {}  # paho mid -> outbox id
        self._retained: dict[str, bytes] = {status_topic(prefix): STATUS_ONLINE}
        self._offline_mid: int | None = None
        self._turn_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_downlink: Callable[[str, bytes], None] | None = None

    # --- public -------------------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up."""
        return self.client.connected

    @property
    def pending(self) -> int:
        """Events stored in the outbox or buffered for it, not acknowledged by the broker yet."""
        return self.outbox.backlog

    async def start(self) -> None:
        """Connect (in the background while the broker is away) and start delivering the outbox."""
        self._loop = asyncio.get_running_loop()
        await self.client.start()
        self._schedule_turn()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until connected (True) or `timeout` seconds pass (False)."""
        return await self.client.wait_connected(timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one event on `topic` through the outbox (it takes everything: its limits drop the oldest, counted and
        reported)."""
        self.outbox.add(topic, payload)
        self._schedule_turn()

    def publish_event(self, asset_id: str, payload: bytes) -> None:
        """Queue one uplink event on the asset's topic."""
        self.publish(event_topic(self.prefix, asset_id), payload)

    def publish_asset_event(self, asset_id: str, event_type: str, payload: bytes) -> None:
        """Queue one asset event on `<prefix>/assets/<asset_id>/event/<type>`."""
        self.publish(asset_event_topic(self.prefix, asset_id, event_type), payload)

    def publish_retained(self, topic: str, payload: bytes) -> bool:
        """Publish a latest-value message, retained: now when connected, and again on every connect."""
        self._retained[topic] = payload
        if self.connected:
            return self.client.publish(topic, payload, retain=True) is not None
        return True

    def publish_counters(self, payload: bytes) -> bool:
        """Publish the agent's counters, retained."""
        return self.publish_retained(counters_topic(self.prefix), payload)

    def subscribe_downlinks(self, on_downlink: Callable[[str, bytes], None]) -> None:
        """Deliver every downlink request as on_downlink(asset_id, payload), from now on and after every reconnect."""
        self._on_downlink = on_downlink
        self.client.subscribe(downlink_topic(self.prefix), self._downlink_message)

    def housekeeping(self) -> DropReport | None:
        """Drop messages past the outbox's age limit and report what the outbox dropped since the last call (call
        about once a second): logged, and published retained on `<prefix>/agent/event/outbox_dropped` with the
        totals so far (a latest-value message: it never takes a queued event's place, and a consumer that was away
        still finds it). Returns the new drops (None when there were none)."""
        self.outbox.expire()
        report = self.outbox.take_drop_report()
        if report is not None:
            log.warning("outbox: dropped %d message(s) by its limits: %s", sum(report.count.values()), report.count)
            document = {"type": "outbox_dropped", "time": iso_utc(self.outbox.clock()), "latest": report.count,
                        "oldest_dropped_at": iso_utc(report.oldest_created), "total": dict(self.outbox.dropped),
                        "max_rows": self.outbox.max_rows, "max_age_s": self.outbox.max_age_s}
            self.publish_retained(agent_event_topic(self.prefix, "outbox_dropped"), json.dumps(document).encode())
        return report

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s while connected for every stored event to be acknowledged; True when none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._turn()
        while (self.pending or self._in_flight) and self.connected and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not self.pending

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Wait up to `drain_timeout` s for unacknowledged events while connected, publish `offline`, disconnect,
        close the outbox (what is left stays on disk for the next start)."""
        if not await self.drain(drain_timeout):
            log.warning("mqtt: stopping with %d unacknowledged event(s) kept in the outbox", self.pending)
        if self.connected:
            self._offline_mid = self.client.publish(status_topic(self.prefix), STATUS_OFFLINE, retain=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 1.0
            while self._offline_mid is not None and self.connected and loop.time() < deadline:
                await asyncio.sleep(0.01)
        await self.client.stop()
        if self._turn_scheduled:
            self._turn()
        self.outbox.close()

    # --- internals ----------------------------------------------------------------------------------------------------

    def _schedule_turn(self) -> None:
        if not self._turn_scheduled and self._loop is not None:
            self._turn_scheduled = True
            self._loop.call_soon(self._turn)

    def _turn(self) -> None:
        """End of a loop turn: commit what was added and acknowledged, then hand paho the next events."""
        self._turn_scheduled = False
        if self.outbox.uncommitted:
            try:
                self.outbox.commit()
            except sqlite3.Error as exc:  # counted by the outbox (store_error) and reported by housekeeping
                log.error("outbox: cannot write %s: %s", self.outbox.path, exc)
        if not self.connected:
            return
        for message in self.outbox.take(self.window - len(self._in_flight)):
            try:
                mid = self.client.publish(message.topic, message.payload, message.retain)
            except ValueError as exc:  # e.g. a wildcard in an asset id: it would block the queue forever
                log.error("outbox: message %d on %r can never be published (%s); dropped", message.id,
                          message.topic, exc)
                mid = None
            if mid is None:
                self.outbox.discard(message.id, "undeliverable")
                self._schedule_turn()
            else:
                self._in_flight[mid] = message.id

    def _acked(self, mid: int) -> None:
        message_id = self._in_flight.pop(mid, None)
        if message_id is not None:
            self.outbox.ack(message_id)
            self._schedule_turn()
        elif mid == self._offline_mid:
            self._offline_mid = None

    def _connected_again(self) -> None:
        for topic, payload in self._retained.items():
            self.client.publish(topic, payload, retain=True)
        self._schedule_turn()

    def _downlink_message(self, topic: str, payload: bytes) -> None:
        levels = topic.split("/")
        if self._on_downlink is not None and len(levels) == self.prefix.count("/") + 4:
            self._on_downlink(levels[-2], payload)
