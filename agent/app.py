"""The agent: registry, GWMP server, session layer, schema decode, events and the MQTT sink, on one asyncio loop.

Every accepted or rejected frame gets one structured log line (key=value; never a key, never payload bytes). A
housekeeping tick commits frame counters, picks up registry changes made by other processes, and publishes the
counters (retained) at most once per second when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from dos_agent.counters import Counters
from dos_agent.events import SchemaBook, encode_event, uplink_event
from dos_agent.gwmp_server import GwmpServer
from dos_agent.mqtt_sink import DEFAULT_INFLIGHT, MqttSink
from dos_agent.registry import Registry
from dos_agent.session import Event, SessionLayer, UplinkAccepted

log = logging.getLogger("dos_agent")

TICK_S = 0.25
COUNTERS_EVERY_S = 1.0


@dataclass(frozen=True)
class AgentConfig:
    """Where the agent listens and publishes."""

    registry: Path
    udp_host: str = "0.0.0.0"
    udp_port: int = 1700
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    prefix: str = "dos"
    max_inflight: int = DEFAULT_INFLIGHT


def _fmt(value: object) -> str:
    text = str(value)
    return f'"{text}"' if " " in text or not text else text


def log_line(outcome: str, **fields: object) -> str:
    """`frame=<outcome> key=value ...` with None fields left out."""
    return " ".join([f"frame={outcome}"] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None])


class Agent:
    """The gateway agent. `await start()`, then `await stop()` (or use `run(stop_event)`)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.registry = Registry(config.registry)
        self.counters = Counters()
        self.session = SessionLayer(self.registry)
        self.schemas = SchemaBook()
        self.sink = MqttSink(config.mqtt_host, config.mqtt_port, config.prefix, config.max_inflight)
        self.server = GwmpServer(self.session, self.counters, self.handle_event)
        self.udp_address: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._tick: asyncio.Task[None] | None = None
        self._published_version = -1

    async def start(self) -> None:
        """Bind the UDP port, connect to the broker (reconnecting in the background), start housekeeping."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self.server, local_addr=(self.config.udp_host, self.config.udp_port)
        )
        self.udp_address = self._transport.get_extra_info("sockname")[:2]
        await self.sink.start()
        self._tick = asyncio.create_task(self._housekeeping(), name="agent-housekeeping")
        log.info(
            "agent: listening on udp %s:%d, publishing to mqtt %s:%d under %s/, %d device(s) in %s",
            *self.udp_address, self.config.mqtt_host, self.config.mqtt_port, self.config.prefix,
            len(self.registry.devices()), self.config.registry,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Start, run until `stop` is set, stop."""
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close the UDP port, publish the final counters, drain and close MQTT, commit and close the registry."""
        if self._transport is not None:
            self._transport.close()
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
        self._publish_counters()
        await self.sink.stop()
        self.registry.close()
        log.info("agent: stopped")

    def handle_event(self, event: Event) -> None:
        """Count, log and (for application uplinks) publish one session-layer event."""
        logging_frames = log.isEnabledFor(logging.INFO)
        if not isinstance(event, UplinkAccepted):
            self.counters.count_frame(event.reason)
            if logging_frames:
                log.info(log_line(
                    "rejected", reason=event.reason, dev_addr=event.dev_addr, dev_eui=event.dev_eui,
                    gateway=event.reception.gateway_eui, rssi=event.reception.rssi, snr=event.reception.snr,
                    detail=event.detail,
                ))
            return
        self.counters.count_frame("accepted")
        device = event.device
        published = False
        decode_error = None
        if event.fport:  # without FPort, or on FPort 0 (MAC commands only), there is no application data
            document = uplink_event(event, self.schemas)
            decode_error = document["decode_error"]
            published = self.sink.publish_event(device.asset_id, encode_event(document))
            if not published:
                self.counters.count_sink("dropped")
        if logging_frames:
            log.info(log_line(
                "accepted", dev_eui=device.dev_eui, asset=device.asset_id, fcnt=event.fcnt, fport=event.fport,
                gateway=event.reception.gateway_eui, rssi=event.reception.rssi, snr=event.reception.snr,
                decode_error=decode_error, published=published,
            ))

    def _publish_counters(self) -> None:
        if self.counters.version == self._published_version:
            return
        self._published_version = self.counters.version
        self.sink.publish_counters(json.dumps(self.counters.snapshot(), separators=(",", ":")).encode())

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        next_counters = loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            try:
                if self.registry.flush() and self.registry.reload_if_changed():
                    log.info("agent: registry changed on disk, %d device(s)", len(self.registry.devices()))
                if loop.time() >= next_counters:
                    self._publish_counters()
                    next_counters = loop.time() + COUNTERS_EVERY_S
            except Exception:  # housekeeping must outlive a locked file or a bug
                log.exception("agent: housekeeping failed; retrying next tick")
