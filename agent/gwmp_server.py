"""The Semtech UDP (GWMP) server: acknowledges packet forwarders and feeds every received frame to the session layer.

PUSH_DATA is answered with PUSH_ACK and PULL_DATA with PULL_ACK (same version and token bytes). Each gateway's address
from its last PULL_DATA is remembered for PULL_RESP. Every rxpk with a good CRC goes to the session layer
(`SessionLayer.receive`); its outputs go to `on_output`. A TX_ACK's error goes to `on_tx_ack(gateway, token, error)`.
Malformed datagrams and rxpk objects are counted by reason and logged (rate-limited); nothing a datagram holds can
stop the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from dos_codecs.errors import DatagramError
from dos_codecs.gwmp import (
    Datagram,
    GwmpKind,
    Rxpk,
    Txpk,
    build_datagram,
    parse_datagram,
    parse_rxpk,
    parse_tx_ack_error,
    txpk_to_json,
)

from dos_agent.counters import Counters
from dos_agent.events import iso_utc
from dos_agent.session import Output, Reception, SessionLayer

log = logging.getLogger("dos_agent.gwmp")

#: Per reason, at most one log line per this many seconds about malformed input.
LOG_INTERVAL_S = 10.0


class RateLimitedLog:
    """Logs a warning at most once per `interval_s` per key, saying how many were suppressed in between."""

    def __init__(self, logger: logging.Logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, now: float) -> None:
        """Log `message` unless `key` was logged less than the interval ago."""
        if now < self._next.get(key, 0.0):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        suffix = f" ({suppressed} more like it suppressed)" if suppressed else ""
        self._logger.warning("%s%s", message, suffix)
        self._next[key] = now + self._interval_s


@dataclass
class GatewayState:
    """What the server knows about one gateway (EUI as hex)."""

    eui: str
    last_seen: float
    pull_addr: tuple[str, int] | None = None
    pull_version: int = 2


def reception_of(rxpk: Rxpk, gateway_eui: str, can_transmit: bool = True) -> Reception:
    """The session layer's reception metadata of an rxpk (frequency and bandwidth in Hz)."""
    return Reception(
        gateway_eui=gateway_eui,
        tmst=rxpk.tmst,
        freq=round(rxpk.freq * 1_000_000),
        sf=rxpk.sf,
        bw=rxpk.bw_khz * 1000,
        rssi=rxpk.rssi,
        snr=rxpk.lsnr,
        time=rxpk.time,
        can_transmit=can_transmit,
    )


class GwmpServer(asyncio.DatagramProtocol):
    """The UDP protocol object; create it with `loop.create_datagram_endpoint(lambda: server, local_addr=...)`."""

    def __init__(
        self,
        session: SessionLayer,
        counters: Counters,
        on_output: Callable[[Output], None],
        on_tx_ack: Callable[[str, bytes, str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.counters = counters
        self.on_output = on_output
        self.on_tx_ack = on_tx_ack
        self.clock = clock
        self.gateways: dict[str, GatewayState] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._bad_input_log = RateLimitedLog(log)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:  # noqa: D102
        log.warning("gwmp: socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # noqa: D102
        now = self.clock()
        try:
            self._handle_datagram(data, addr, now)
        except Exception:  # the server outlives any bug in a handler
            self.counters.count_datagram("internal_error")
            log.exception("gwmp: internal error handling a datagram from %s:%d", addr[0], addr[1])

    def _handle_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        try:
            datagram = parse_datagram(data)
        except DatagramError as exc:
            self.counters.count_datagram(exc.reason)
            self._bad_input_log.warning(exc.reason, f"gwmp: bad datagram from {addr[0]}:{addr[1]}: {exc}", now)
            return
        if datagram.gateway_eui is None:
            reason = f"unexpected_{datagram.kind.name.lower()}"
            self.counters.count_datagram(reason)
            self._bad_input_log.warning(reason, f"gwmp: {datagram.kind.name} from {addr[0]}:{addr[1]} ignored", now)
            return
        self.counters.count_datagram(datagram.kind.name.lower())
        gateway = self._gateway_seen(datagram.gateway_eui.hex(), now)
        if datagram.kind == GwmpKind.PULL_DATA:
            gateway.pull_addr = addr
            gateway.pull_version = datagram.version
            self._send(Datagram(datagram.version, datagram.token, GwmpKind.PULL_ACK), addr)
        elif datagram.kind == GwmpKind.PUSH_DATA:
            self._send(Datagram(datagram.version, datagram.token, GwmpKind.PUSH_ACK), addr)
            self._push_data(datagram, gateway, now)
        else:
            try:
                error = parse_tx_ack_error(datagram.payload)
            except DatagramError as exc:
                self.counters.count_datagram(exc.reason)
                self._bad_input_log.warning(exc.reason, f"gwmp: bad TX_ACK from {gateway.eui}: {exc}", now)
                return
            self.on_tx_ack(gateway.eui, datagram.token, error)

    def _gateway_seen(self, eui: str, now: float) -> GatewayState:
        gateway = self.gateways.get(eui)
        if gateway is None:
            gateway = self.gateways[eui] = GatewayState(eui, now)
            log.info("gwmp: gateway %s connected", eui)
        gateway.last_seen = now
        self.counters.gateway_seen(eui, iso_utc(now))
        return gateway

    def _push_data(self, datagram: Datagram, gateway: GatewayState, now: float) -> None:
        gateway_eui = gateway.eui
        rxpks = datagram.payload.get("rxpk", [])
        if not isinstance(rxpks, list):
            self.counters.count_datagram("rxpk_not_list")
            self._bad_input_log.warning("rxpk_not_list", f"gwmp: rxpk from {gateway_eui} is not a list", now)
            return
        for obj in rxpks:
            try:
                rxpk = parse_rxpk(obj)
            except DatagramError as exc:
                self.counters.count_frame(exc.reason)
                self._bad_input_log.warning(exc.reason, f"gwmp: bad rxpk from {gateway_eui}: {exc}", now)
                continue
            if rxpk.stat != 1:
                self.counters.count_frame("crc_error")
                continue
            reception = reception_of(rxpk, gateway_eui, gateway.pull_addr is not None)
            for output in self.session.receive(rxpk.data, reception, now):
                self.on_output(output)

    def _send(self, datagram: Datagram, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(build_datagram(datagram), addr)

    def send_pull_resp(self, gateway_eui: str, txpk: Txpk) -> bytes:
        """Send one downlink to a gateway through the address of its last PULL_DATA; returns the token used.
        Raises LookupError when the gateway has not sent PULL_DATA yet."""
        gateway = self.gateways.get(gateway_eui.lower())
        if gateway is None or gateway.pull_addr is None:
            raise LookupError(f"gateway {gateway_eui} has no downlink path (no PULL_DATA seen)")
        token = os.urandom(2)
        datagram = Datagram(gateway.pull_version, token, GwmpKind.PULL_RESP, payload=txpk_to_json(txpk))
        self._send(datagram, gateway.pull_addr)
        return token
