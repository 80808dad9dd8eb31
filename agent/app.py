"""The agent: registry, GWMP server, session layer, schema decode, events and the MQTT sink, on one asyncio loop.

This is the session layer's I/O edge: it runs the dedup timers the session layer asks for (`CollectAt`), sends its
`Transmit`s as PULL_RESP and hands the gateways' TX_ACKs back, feeds it the downlink requests from MQTT, and counts,
logs and publishes its events. Every frame gets one structured log line (key=value; never a key, never payload
bytes), as does every downlink step. A housekeeping tick commits frame counters, picks up registry changes made by
other processes, ends downlinks whose TX_ACK never came, and publishes the counters (retained) at most once per second
when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from dos_codecs.errors import CodecError

from dos_agent.counters import Counters
from dos_agent.events import SchemaBook, asset_event, encode_event, iso_utc, uplink_event
from dos_agent.gwmp_server import GwmpServer
from dos_agent.http_status import StatusServer
from dos_agent.chirpstack_input import ChirpStackInput
from dos_agent.mqtt_sink import DEFAULT_INFLIGHT, BrokerSettings, MqttSink
from dos_agent.outbox import DEFAULT_MAX_AGE_S, DEFAULT_MAX_ROWS, Outbox
from dos_agent.outputs import Outputs
from dos_agent.rak_input import RadioSettings, RakInput
from dos_agent.registry import DeviceRecord, Registry
from dos_agent.session import (
    CollectAt,
    DownlinkDropped,
    DownlinkStatus,
    FcntReset,
    JoinAccepted,
    JoinRejected,
    MacEvent,
    Output,
    Reception,
    SessionLayer,
    Transmit,
    UplinkAccepted,
    UplinkRejected,
    UplinkRepeated,
)
from dos_agent.status import ShownOutputs, StatusModel

log = logging.getLogger("dos_agent")

TICK_S = 0.25
#: The asset event type (`<prefix>/assets/<asset_id>/event/<type>`) of each registry journal entry type; an undone
#: swap is a swap event with `undo` true.
JOURNAL_EVENT_TYPES = {"swap": "swap", "undo": "swap", "retire": "device_retired", "retire_asset": "asset_retired",
                       "unbind": "device_moved"}
COUNTERS_EVERY_S = 1.0
#: A PULL_RESP token is forgotten this long after it was sent (its TX_ACK is not coming any more).
TX_TOKEN_TTL_S = 10.0


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
    dedup_ms: int = 200
    net_id: int = 0
    adr_margin_db: float = 10.0
    #: The status page and Prometheus /metrics (`dos_agent.http_status`); off when the port is None.
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    #: MQTT security: TLS when a CA file is given (client certificate and key optional), username/password.
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    #: The store-and-forward queue (`dos_agent.outbox`); its file defaults to `<registry>.outbox` beside the registry.
    outbox_path: Path | None = None
    outbox_max_rows: int = DEFAULT_MAX_ROWS
    outbox_max_age_s: float = DEFAULT_MAX_AGE_S
    outbox_fsync: bool = False
    #: Outputs beside ours (`dos_agent.outputs`): ChirpStack-compatible uplinks under this application (None: off),
    #: Home Assistant discovery under this prefix (None: off).
    outputs_chirpstack_application: str | None = None
    homeassistant_discovery_prefix: str | None = None
    #: The ChirpStack MQTT integration input (`dos_agent.chirpstack_input`): its broker (None: off).
    chirpstack_host: str | None = None
    chirpstack_port: int = 1883
    chirpstack_ca_file: Path | None = None
    chirpstack_cert_file: Path | None = None
    chirpstack_key_file: Path | None = None
    chirpstack_username: str | None = None
    chirpstack_password: str | None = field(default=None, repr=False)
    #: A RAK3172 single-channel receiver on this serial port (`dos_agent.rak_input`; None: off), listening on one
    #: channel and SF; its receptions come from gateway `rak3172_gateway_id` (default `rak3172-<port name>`).
    rak3172_port: str | None = None
    rak3172_frequency_hz: int = 868_100_000
    rak3172_sf: int = 7
    rak3172_bw_khz: int = 125
    rak3172_gateway_id: str | None = None

    def __post_init__(self) -> None:
        self.rak3172_radio()  # a channel the module cannot take is a configuration error, found at once

    def rak3172_radio(self) -> RadioSettings:
        """The RAK3172 receiver's channel; ValueError when the module cannot take it."""
        return RadioSettings(self.rak3172_frequency_hz, self.rak3172_sf, self.rak3172_bw_khz)

    def mqtt_broker(self) -> BrokerSettings:
        """Our broker's address, TLS files and credentials."""
        return BrokerSettings(self.mqtt_host, self.mqtt_port, self.mqtt_ca_file, self.mqtt_cert_file,
                              self.mqtt_key_file, self.mqtt_username, self.mqtt_password)

    def chirpstack_broker(self) -> BrokerSettings | None:
        """The ChirpStack broker of the input, None when the input is off."""
        if self.chirpstack_host is None:
            return None
        return BrokerSettings(self.chirpstack_host, self.chirpstack_port, self.chirpstack_ca_file,
                              self.chirpstack_cert_file, self.chirpstack_key_file, self.chirpstack_username,
                              self.chirpstack_password)

    def outbox_file(self) -> Path:
        """Where the outbox lives."""
        return self.outbox_path or self.registry.with_name(self.registry.name + ".outbox")


def _fmt(value: object) -> str:
    text = str(value)
    return f'"{text}"' if " " in text or not text else text


def log_line(outcome: str, what: str = "frame", **fields: object) -> str:
    """`<what>=<outcome> key=value ...` with None fields left out."""
    return " ".join([f"{what}={outcome}"] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None])


class Agent:
    """The gateway agent. `await start()`, then `await stop()` (or use `run(stop_event)`)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.registry = Registry(config.registry)
        self.counters = Counters()
        self.schemas = SchemaBook()
        self.clock = time.time
        self.session = SessionLayer(self.registry, self.schemas, config.net_id, config.dedup_ms / 1000,
                                    config.adr_margin_db)
        outbox = Outbox(config.outbox_file(), config.outbox_max_rows, config.outbox_max_age_s, config.outbox_fsync)
        self.sink = MqttSink(config.mqtt_broker(), config.prefix, config.max_inflight, outbox)
        self.sink.subscribe_downlinks(self.handle_downlink_request)
        self.outputs = Outputs(self.sink, self.schemas, config.outputs_chirpstack_application,
                               config.homeassistant_discovery_prefix)
        self.status = StatusModel(self.clock)
        chirpstack = config.chirpstack_broker()
        self.chirpstack_input = None if chirpstack is None else ChirpStackInput(
            chirpstack, self.registry, self.schemas, ShownOutputs(self.outputs, self.status), self.clock,
            ignore_application=config.outputs_chirpstack_application)
        self.server = GwmpServer(self.session, self.counters, self.handle_event, self.handle_tx_ack, self.clock)
        self.rak_input = None if config.rak3172_port is None else RakInput(
            config.rak3172_port, config.rak3172_radio(), self.handle_reception, config.rak3172_gateway_id,
            self.counters, self.clock)
        self.http = (None if config.http_port is None else
                     StatusServer(lambda: self.status.snapshot(self), config.http_host, config.http_port))
        self.udp_address: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._tick: asyncio.Task[None] | None = None
        self._published_version = -1
        self._collect_timer: asyncio.TimerHandle | None = None
        self._collect_at: float | None = None
        self._tx_tokens: dict[tuple[str, bytes], tuple[int, float]] = {}
        self._cumulative_fields: dict[tuple[str, int], tuple] = {}  # (kind, fport) -> cumulative Fields
        self._journal_due = True  # unpublished journal entries may be waiting (set again when the registry changes)

    async def start(self) -> None:
        """Bind the UDP port, connect to the broker (reconnecting in the background), start housekeeping."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self.server, local_addr=(self.config.udp_host, self.config.udp_port)
        )
        self.udp_address = self._transport.get_extra_info("sockname")[:2]
        await self.sink.start()
        for device in self.registry.devices():
            self.outputs.announce(device.asset_id, device.kind, device.dev_eui)
        if self.chirpstack_input is not None:
            await self.chirpstack_input.start()
        if self.rak_input is not None:
            await self.rak_input.start()
        self._tick = asyncio.create_task(self._housekeeping(), name="agent-housekeeping")
        if self.http is not None:
            log.info("agent: status page on http://%s:%d/ (metrics at /metrics)", *await self.http.start())
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
        if self.http is not None:
            await self.http.stop()
        if self.rak_input is not None:
            await self.rak_input.stop()
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
        if self._collect_timer is not None:
            self._collect_timer.cancel()
        # frames still gathering copies are handled, not lost
        for output in self.session.collect(self.clock() + self.session.dedup.window_s):
            if not isinstance(output, Transmit):
                self.handle_event(output)
        if self.chirpstack_input is not None:
            await self.chirpstack_input.stop()
        self._publish_counters()
        await self.sink.stop()
        self.registry.close()
        log.info("agent: stopped")

    def handle_reception(self, phy: bytes, reception: Reception, now: float) -> None:
        """A frame heard by an input other than the GWMP server (the RAK3172 receiver), for the session layer."""
        for output in self.session.receive(phy, reception, now):
            self.handle_event(output)

    def handle_event(self, output: Output) -> None:
        """Count, log, publish or carry out one session-layer output."""
        if isinstance(output, UplinkAccepted):
            self._accepted(output)
        elif isinstance(output, CollectAt):
            self._arm_collect(output.deadline)
        elif isinstance(output, Transmit):
            self._transmit(output)
        elif isinstance(output, UplinkRejected):
            self.counters.count_frame(output.reason)
            self.counters.count_frame_copies(output.duplicates)
            if log.isEnabledFor(logging.INFO):
                log.info(log_line(
                    "rejected", reason=output.reason, dev_addr=output.dev_addr, dev_eui=output.dev_eui,
                    gateway=output.reception.gateway_eui, rssi=output.reception.rssi, snr=output.reception.snr,
                    detail=output.detail,
                ))
            if output.reason == "retired_device":
                self._retired_device_frame(output)
        elif isinstance(output, UplinkRepeated):
            self.counters.count_frame("retransmission")
            self.counters.count_frame_copies(output.duplicates)
            log.info(log_line("retransmission", dev_eui=output.device.dev_eui, asset=output.device.asset_id,
                              fcnt=output.fcnt, gateway=output.reception.gateway_eui))
        elif isinstance(output, DownlinkStatus):
            self._downlink_status(output)
        else:
            self._device_event(output)

    def _accepted(self, event: UplinkAccepted) -> None:
        self.counters.count_frame("accepted")
        self.counters.count_frame_copies(event.duplicates)
        device = event.device
        published = False
        decode_error = None
        if event.fport:  # without FPort, or on FPort 0 (MAC commands only), there is no application data
            document = uplink_event(event, self.schemas)
            self._continue_cumulative(device, event.fport, document["readings"])
            decode_error = document["decode_error"]
            self.status.uplink(document, event.received_at)
            self.outputs.publish_uplink(document, device.dev_addr)
            published = True
        if log.isEnabledFor(logging.INFO):
            log.info(log_line(
                "accepted", dev_eui=device.dev_eui, asset=device.asset_id, fcnt=event.fcnt, fport=event.fport,
                gateway=event.reception.gateway_eui, rssi=event.reception.rssi, snr=event.reception.snr,
                gateways=len(event.receptions) or 1, confirmed=event.confirmed or None, decode_error=decode_error,
                published=published,
            ))

    def _continue_cumulative(self, device: DeviceRecord, fport: int, readings: dict) -> None:
        """Cumulative readings (schema `cumulative = true`, e.g. the streetlight's energy) become the asset's series:
        the device's value plus its binding's offset, so they go on across device swaps."""
        fields = self._cumulative_fields.get((device.kind, fport))
        if fields is None:
            try:
                message = self.schemas.get(device.kind).message_for_fport(fport)
            except CodecError:
                message = None
            fields = self._cumulative_fields[(device.kind, fport)] = tuple(
                f for f in (message.fields if message else ()) if f.cumulative)
        present = {f.name: f for f in fields if f.name in readings}
        if not present:
            return
        totals = self.registry.continue_cumulative(device.dev_eui, {n: readings[n]["value"] for n in present})
        for name, total in totals.items():
            readings[name]["value"] = present[name].value_of(present[name].raw_of(total))

    def _retired_device_frame(self, rejected: UplinkRejected) -> None:
        """A retired device's frame: reported on its last asset's event topic (never as the asset's data)."""
        device = self.registry.get(rejected.dev_eui)
        if device is not None:
            self._publish_asset_event(asset_event("rejected", device.asset_id, device.dev_eui, rejected.received_at,
                                                  reason=rejected.reason, detail=rejected.detail))

    def _publish_journal(self) -> None:
        """Publish the registry's unpublished swaps and retirements (written by `dos-edge swap`, `... retire`, even
        while the agent was down) as asset events, oldest first; an entry is marked once the outbox holds its event."""
        done = []
        self._journal_due = False
        for entry in self.registry.unpublished_journal():
            document = asset_event(
                JOURNAL_EVENT_TYPES[entry.type], entry.asset_id, entry.new_dev_eui or entry.old_dev_eui, entry.at,
                old_dev_eui=entry.old_dev_eui, new_dev_eui=entry.new_dev_eui, undo=entry.type == "undo",
            )
            document["at"] = iso_utc(entry.at)
            self.sink.publish_asset_event(entry.asset_id, document["type"], encode_event(document))
            log.info(log_line(entry.type, "journal", asset=entry.asset_id, old_dev_eui=entry.old_dev_eui,
                              new_dev_eui=entry.new_dev_eui))
            done.append(entry.id)
        if done:
            self.registry.mark_published(done)

    def _device_event(self, output: JoinAccepted | JoinRejected | FcntReset | DownlinkDropped | MacEvent) -> None:
        """Joins, refused joins, counter resets, dropped downlinks and MAC reports: counted, logged, published."""
        if isinstance(output, JoinAccepted):
            device = output.device
            self.counters.count_frame("joined")
            self.counters.count_frame_copies(output.duplicates)
            log.info(log_line("joined", dev_eui=device.dev_eui, asset=device.asset_id, dev_addr=device.dev_addr,
                              dev_nonce=output.dev_nonce, gateway=output.reception.gateway_eui))
            self._publish_asset_event(asset_event("join", device.asset_id, device.dev_eui, output.received_at,
                                                  dev_addr=device.dev_addr, dev_nonce=output.dev_nonce))
        elif isinstance(output, JoinRejected):
            self.counters.count_frame(f"join_{output.reason}")
            self.counters.count_frame_copies(output.duplicates)
            log.info(log_line("join_rejected", reason=output.reason, dev_eui=output.dev_eui,
                              dev_nonce=output.dev_nonce, gateway=output.reception.gateway_eui, detail=output.detail))
            if output.device is not None:
                self._publish_asset_event(asset_event(
                    "join_rejected", output.device.asset_id, output.dev_eui, output.received_at, reason=output.reason,
                    detail=output.detail, dev_nonce=output.dev_nonce, last_dev_nonce=output.last_dev_nonce,
                ))
        elif isinstance(output, FcntReset):
            device = output.device
            log.warning(log_line("fcnt_reset", dev_eui=device.dev_eui, asset=device.asset_id,
                                 last_fcnt=output.last_fcnt, fcnt16=output.fcnt16, policy=output.policy,
                                 accepted=output.accepted))
            self._publish_asset_event(asset_event(
                "fcnt_reset", device.asset_id, device.dev_eui, output.at, last_fcnt=output.last_fcnt,
                fcnt16=output.fcnt16, accepted=output.accepted, policy=output.policy,
            ))
        elif isinstance(output, DownlinkDropped):
            self.counters.count_downlink(output.reason)
            log.info(log_line("dropped", "downlink", dev_eui=output.dev_eui, reason=output.reason,
                              detail=output.detail))
        else:
            device = output.device
            log.info(log_line(output.kind, "mac", dev_eui=device.dev_eui, asset=device.asset_id,
                              **{k: v for k, v in output.fields.items() if isinstance(v, (int, float, str))}))
            self._publish_asset_event(asset_event(output.kind, device.asset_id, device.dev_eui, output.at,
                                                  **output.fields))

    def _downlink_status(self, status: DownlinkStatus) -> None:
        self.counters.count_downlink(status.status)
        log.info(log_line(status.status, "downlink", asset=status.asset_id, dev_eui=status.dev_eui,
                          id=status.downlink_id, fport=status.fport, fcnt_down=status.fcnt_down, reason=status.reason))
        self._publish_asset_event(asset_event(
            "downlink", status.asset_id, status.dev_eui, status.at, id=status.downlink_id, status=status.status,
            reason=status.reason, fcnt_down=status.fcnt_down, fport=status.fport,
        ))

    def _publish_asset_event(self, document: dict) -> None:
        self.status.asset_event(document)
        self.sink.publish_asset_event(document["asset_id"], document["type"], encode_event(document))

    def handle_downlink_request(self, asset_id: str, payload: bytes) -> None:
        """A downlink request from MQTT (`<prefix>/assets/<asset_id>/down`)."""
        for output in self.session.request_downlink(asset_id, payload, self.clock()):
            self.handle_event(output)

    def handle_tx_ack(self, gateway_eui: str, token: bytes, error: str) -> None:
        """A gateway's TX_ACK: matched to its PULL_RESP by token, handed to the session layer."""
        entry = self._tx_tokens.pop((gateway_eui, token), None)
        if entry is None:
            self.counters.count_downlink("tx_ack_unknown_token")
            return
        self.counters.count_downlink(f"tx_{error.lower()}")
        for output in self.session.tx_ack(entry[0], error, self.clock()):
            self.handle_event(output)

    def _transmit(self, transmit: Transmit) -> None:
        try:
            token = self.server.send_pull_resp(transmit.gateway_eui, transmit.txpk)
        except LookupError:
            self.counters.count_downlink("tx_no_downlink_path")
            for output in self.session.tx_ack(transmit.ref, "NO_DOWNLINK_PATH", self.clock()):
                self.handle_event(output)
            return
        self._tx_tokens[(transmit.gateway_eui, token)] = (transmit.ref, self.clock())
        log.debug("downlink: PULL_RESP to %s tmst=%s freq=%s %s size=%d", transmit.gateway_eui, transmit.txpk.tmst,
                  transmit.txpk.freq, transmit.txpk.datr, transmit.txpk.size)

    def _arm_collect(self, deadline: float) -> None:
        """Run `collect` at `deadline` (session clock) unless an earlier run is already set."""
        if self._collect_at is not None and self._collect_at <= deadline:
            return
        if self._collect_timer is not None:
            self._collect_timer.cancel()
        self._collect_at = deadline
        self._collect_timer = asyncio.get_running_loop().call_later(max(0.0, deadline - self.clock()), self._collect)

    def _collect(self) -> None:
        self._collect_timer = self._collect_at = None
        try:
            for output in self.session.collect(self.clock()):
                self.handle_event(output)
        except Exception:  # the timer must outlive a bug in one frame's handling
            log.exception("agent: handling collected frames failed")
        deadline = self.session.next_deadline()
        if deadline is not None:
            self._arm_collect(deadline)

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
                now = self.clock()
                for output in self.session.expire(now):
                    self.handle_event(output)
                self._tx_tokens = {k: v for k, v in self._tx_tokens.items() if now - v[1] < TX_TOKEN_TTL_S}
                if self.registry.flush() and self.registry.reload_if_changed():
                    log.info("agent: registry changed on disk, %d device(s)", len(self.registry.devices()))
                    self._journal_due = True
                    for output in self.session.drop_inactive_queues(now):
                        self.handle_event(output)
                if self._journal_due:
                    self._publish_journal()
                if loop.time() >= next_counters:
                    dropped = self.sink.housekeeping()
                    for reason, count in (dropped.count if dropped else {}).items():
                        self.counters.count_sink(f"outbox_{reason}", count)
                    self._publish_counters()
                    next_counters = loop.time() + COUNTERS_EVERY_S
            except Exception:  # housekeeping must outlive a locked file or a bug
                log.exception("agent: housekeeping failed; retrying next tick")
