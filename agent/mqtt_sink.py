"""The MQTT sink: paho-mqtt 2.x driven by the asyncio loop (no extra thread), QoS 1, reconnecting.

paho's socket callbacks register its socket with the event loop (`loop_read` when readable, `loop_write` while it has
bytes to send); a housekeeping task calls `loop_misc` every second for keepalive and reconnects with back-off while
the broker is away. Messages published while disconnected wait in paho's queue (bounded) and go out on reconnect.
Downlink requests (`<prefix>/assets/+/down`) are subscribed at QoS 1 on every connect, so a reconnect (to a broker
that lost the session) never loses the subscription; they reach the callback on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

log = logging.getLogger("dos_agent.mqtt")

#: paho scans its in-flight set on every PUBACK: keep the window between these bounds.
MIN_INFLIGHT = 20
MAX_INFLIGHT = 100
DEFAULT_INFLIGHT = 50
#: Messages held in memory while the broker is away; past this, new events are dropped (and counted).
MAX_QUEUED = 100_000
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
HOUSEKEEPING_S = 1.0


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


class MqttSink:
    """Publishes events at QoS 1 to one broker. Call `start()` inside a running loop, `stop()` to drain and close."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "dos",
        max_inflight: int = DEFAULT_INFLIGHT,
        client_id: str | None = None,
        keepalive: int = 30,
        connect_timeout: float = 3.0,
    ) -> None:
        if not MIN_INFLIGHT <= max_inflight <= MAX_INFLIGHT:
            raise ValueError(f"max_inflight {max_inflight} is outside {MIN_INFLIGHT}..{MAX_INFLIGHT}")
        if not prefix or any(c in prefix for c in "+#\0") or prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"topic prefix {prefix!r} is not a plain topic path")
        self.host = host
        self.port = port
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.published = 0
        self.acked = 0
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self._on_downlink: Callable[[str, bytes], None] | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"dos-edge-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv311,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(MAX_QUEUED)
        self._client.connect_timeout = connect_timeout
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_socket_register_write
        self._client.on_socket_unregister_write = self._on_socket_unregister_write
        self._client.connect_async(host, port, keepalive)

    # --- public -------------------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up."""
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        """Events and counters published but not acknowledged by the broker yet."""
        return self.published - self.acked

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

    def publish_event(self, asset_id: str, payload: bytes) -> bool:
        """Queue one event on the asset's topic at QoS 1; False (and counted in `dropped`) when the queue is full."""
        return self._publish(event_topic(self.prefix, asset_id), payload, retain=False)

    def publish_asset_event(self, asset_id: str, event_type: str, payload: bytes) -> bool:
        """Queue one asset event on `<prefix>/assets/<asset_id>/event/<type>` at QoS 1; False when the queue is full."""
        return self._publish(asset_event_topic(self.prefix, asset_id, event_type), payload, retain=False)

    def subscribe_downlinks(self, on_downlink: Callable[[str, bytes], None]) -> None:
        """Deliver every downlink request as on_downlink(asset_id, payload), from now on and after every reconnect."""
        self._on_downlink = on_downlink
        if self.connected:
            self._client.subscribe(downlink_topic(self.prefix), qos=1)

    def publish_counters(self, payload: bytes) -> bool:
        """Publish the agent's counters, retained, at QoS 1."""
        return self._publish(counters_topic(self.prefix), payload, retain=True)

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Wait up to `drain_timeout` s for unacknowledged messages while connected, then disconnect and close."""
        self._stopping = True
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        deadline = asyncio.get_running_loop().time() + drain_timeout
        while self.pending and self.connected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self.pending:
            log.warning("mqtt: stopping with %d unacknowledged message(s)", self.pending)
        if self._client.socket() is not None:
            self._client.disconnect()
            close_by = asyncio.get_running_loop().time() + 1.0
            while self._client.socket() is not None and asyncio.get_running_loop().time() < close_by:
                await asyncio.sleep(0.01)
        sock = self._client.socket()
        if sock is not None:  # the broker never answered: let go of the socket ourselves
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            sock.close()
        self._connected.clear()

    # --- internals ----------------------------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            return False
        self.published += 1
        return True

    async def _try_connect(self) -> bool:
        """One connection attempt. The TCP reachability probe is asynchronous so an unreachable broker never blocks
        the loop for paho's synchronous connect."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.connect_timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._client.reconnect()
        except (OSError, TimeoutError) as exc:
            log.warning("mqtt: cannot reach broker %s:%d: %s", self.host, self.port, exc or type(exc).__name__)
            return False
        return True

    async def _keep_alive(self) -> None:
        backoff = RECONNECT_MIN_S
        next_attempt = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self._client.loop_misc()
                if self._client.socket() is not None:
                    backoff = RECONNECT_MIN_S
                    continue
                if loop.time() < next_attempt:
                    continue
                connected = await self._try_connect()
            except Exception:  # keep trying whatever paho raised
                log.exception("mqtt: housekeeping failed")
                connected = False
            if not connected:
                next_attempt = loop.time() + backoff
                backoff = min(backoff * 2, RECONNECT_MAX_S)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.warning("mqtt: broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        log.info("mqtt: connected to %s:%d", self.host, self.port)
        if self._on_downlink is not None:
            client.subscribe(downlink_topic(self.prefix), qos=1)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self._connected.clear()
        if not self._stopping:
            log.warning("mqtt: disconnected from %s:%d (%s); reconnecting", self.host, self.port, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        self.acked += 1

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        levels = message.topic.split("/")
        prefix_levels = self.prefix.count("/") + 1
        if self._on_downlink is None or len(levels) != prefix_levels + 3 or levels[-1] != "down":
            return
        try:
            self._on_downlink(levels[-2], message.payload)
        except Exception:  # a bad request or a bug must not take the MQTT client down
            log.exception("mqtt: handling a downlink request on %s failed", message.topic)

    def _on_socket_open(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.remove_reader(sock)

    def _on_socket_register_write(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.add_writer(sock, client.loop_write)

    def _on_socket_unregister_write(self, client, userdata, sock: socket.socket) -> None:  # noqa: ANN001
        self._loop.remove_writer(sock)
