"""An emulated 8-channel EU868 gateway and its Semtech UDP packet forwarder (GWMP v2, reference/gwmp.md) on real UDP.

The concentrator listens on the eight usual EU868 channels (868.1/868.3/868.5 on radio 1, 867.1..867.9 on radio 0), SF7-12 at
125 kHz, normal IQ, sync word 0x34; it is half-duplex (deaf while transmitting). Every uplink it receives goes to the agent as
PUSH_DATA (rxpk with tmst = virtual µs at the end of reception, 32-bit wrapping; time from the virtual clock). PULL_DATA
keepalives go out every 10 s of wall time. A PULL_RESP's txpk is transmitted on the air at its tmst (or at once for imme)
and answered with TX_ACK: NONE, TOO_LATE when the tmst is already past, TOO_EARLY when it is further ahead than
max_advance_s. After each uplink the forwarder holds the virtual clock at the uplink's RX1 instant (1 s after its end, 5 s
for a JoinRequest) until the agent answered with a PULL_RESP for it or a real-time grace ran out, so the real agent is in
the loop and a late answer is a real TOO_LATE. The grace adapts (AnswerGrace): it learns how long the agent takes to
answer an uplink and holds a safe multiple of that, never longer than hold_grace_s; an uplink that needs no downlink
(most of them) then costs only that. Malformed datagrams are counted by reason and logged, never fatal.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dos_codecs.errors import DatagramError
from dos_codecs.gwmp import Datagram, GwmpKind, Rxpk, build_datagram, parse_datagram, parse_txpk, rxpk_to_json

from dos_rig.air import Air, Modulation, Reception, Transmission, same_frequency
from dos_rig.airtime import needs_low_data_rate_optimize
from dos_rig.clock import Hold, VirtualClock

log = logging.getLogger("dos_rig.forwarder")

# (frequency Hz, RF chain) of channels 0..7
EU868_CHANNELS = ((868_100_000, 1), (868_300_000, 1), (868_500_000, 1), (867_100_000, 0), (867_300_000, 0),
                  (867_500_000, 0), (867_700_000, 0), (867_900_000, 0))
UPLINK_SFS = range(7, 13)
UPLINK_BW_HZ = 125_000
LORAWAN_SYNC_WORD = 0x34
RX1_DELAY_US = 1_000_000
JOIN_ACCEPT_DELAY1_US = 5_000_000
RX2_AFTER_RX1_US = 1_000_000
TMST_MATCH_US = 1_000
PROTOCOL_VERSION = 2
#: Wall seconds an uplink waits for a (late) answer that still teaches AnswerGrace.
UNANSWERED_KEPT_S = 10.0


class AnswerGrace:
    """How long (wall seconds) to hold the clock at an uplink's RX1 for the agent's answer (sans-IO: latencies in,
    grace out). Until `min_samples` answers were seen it is `ceiling_s`; then `floor_s` (the agent's dedup window,
    which every answer waits out) + `margin` x the 95th percentile of the answers' latency beyond it over the last
    `window` answers, kept within [floor_s + min_extra_s, ceiling_s]. A late answer (after its hold ran out) still
    counts, so a loaded agent widens the grace again."""

    def __init__(self, ceiling_s: float, floor_s: float = 0.0, margin: float = 4.0, min_extra_s: float = 0.02,
                 min_samples: int = 5, window: int = 64):
        if ceiling_s <= 0 or floor_s < 0 or margin < 1 or min_samples < 1:
            raise ValueError("an answer grace needs ceiling_s > 0, floor_s >= 0, margin >= 1, min_samples >= 1")
        self.ceiling_s, self.floor_s, self.margin = ceiling_s, floor_s, margin
        self.min_extra_s, self.min_samples = min_extra_s, min_samples
        self._beyond_floor: deque[float] = deque(maxlen=window)

    def record(self, latency_s: float) -> None:
        """One answer came latency_s wall seconds after its uplink was sent to the agent."""
        self._beyond_floor.append(max(0.0, latency_s - self.floor_s))

    @property
    def samples(self) -> int:
        return len(self._beyond_floor)

    @property
    def grace_s(self) -> float:
        if len(self._beyond_floor) < self.min_samples:
            return self.ceiling_s
        ordered = sorted(self._beyond_floor)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        extra = max(self.min_extra_s, self.margin * p95)
        return min(self.ceiling_s, self.floor_s + extra)


@dataclass
class _Unanswered:
    """An uplink sent to the agent whose answer may still come: its hold and when (wall) it was sent."""
    hold: Hold
    sent_wall: float


def unwrap_tmst(tmst: int, now_us: int) -> int:
    """The virtual instant whose low 32 bits are tmst, nearest to now_us."""
    base = now_us - (now_us & 0xFFFFFFFF) + tmst
    candidates = (base - (1 << 32), base, base + (1 << 32))
    return min(candidates, key=lambda t: abs(t - now_us))


class Gateway:
    """One emulated gateway: a receiver on the air plus its packet forwarder talking GWMP to the agent over UDP."""

    def __init__(self, eui_hex: str, position: tuple, clock: VirtualClock, air: Air, agent_addr: tuple[str, int],
                 epoch_s: int = 0, hold_grace_s: float = 0.5, keepalive_s: float = 10.0, max_advance_s: float = 10.0,
                 channels=EU868_CHANNELS, agent_dedup_s: float = 0.0):
        """hold_grace_s: the longest real-time hold for the agent's answer to an uplink (AnswerGrace's ceiling);
        agent_dedup_s: the agent's dedup window, the least any answer takes (AnswerGrace's floor)."""
        self.eui = bytes.fromhex(eui_hex)
        if len(self.eui) != 8:
            raise ValueError(f"a gateway EUI is 8 bytes (16 hex digits), not {eui_hex!r}")
        self.receiver_id = eui_hex.upper()
        self.position = tuple(position)
        self.clock, self.air = clock, air
        self.agent_addr = agent_addr
        self.epoch_s = epoch_s
        self.keepalive_s, self.max_advance_s = keepalive_s, max_advance_s
        self.answer_grace = AnswerGrace(hold_grace_s, floor_s=agent_dedup_s)
        self.channels = channels
        self.counters: dict[str, int] = {}
        self.malformed: dict[str, int] = {}
        self.uplinks: list[dict] = []  # rxpk objects sent, in order
        self.downlinks: list[dict] = []  # {"t_us", "txpk", "error"} for every PULL_RESP handled
        self._receiving: set[int] = set()
        self._transmitting_until = -1
        self._unanswered: list[_Unanswered] = []  # uplinks the agent may still answer, held at their RX1
        self._push_tokens: set[bytes] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self.local_port = 0

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # --- UDP ----------------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        gateway = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr) -> None:
                gateway.datagram_received(data, addr)

            def error_received(self, exc: Exception) -> None:
                gateway._count("udp_errors")
                log.debug("gateway %s: UDP error %s", gateway.receiver_id, exc)

        self._transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
        self.local_port = self._transport.get_extra_info("sockname")[1]
        self._send_pull_data()

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for uplink in self._unanswered:
            uplink.hold.release()
        self._unanswered.clear()
        self.air.detach(self)

    def _send(self, kind: GwmpKind, token: bytes, payload: dict | None = None, eui: bool = True) -> None:
        if self._transport is None:
            return
        data = build_datagram(Datagram(PROTOCOL_VERSION, token, kind, self.eui if eui else None, payload))
        self._transport.sendto(data, self.agent_addr)

    def _send_pull_data(self) -> None:
        self._send(GwmpKind.PULL_DATA, secrets.token_bytes(2))
        self._count("pull_data_sent")
        self._keepalive = asyncio.get_running_loop().call_later(self.keepalive_s, self._send_pull_data)

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            datagram = parse_datagram(data)
        except DatagramError as exc:
            self.malformed[exc.reason] = self.malformed.get(exc.reason, 0) + 1
            log.warning("gateway %s: malformed datagram from %s (%s)", self.receiver_id, addr, exc)
            return
        if datagram.kind == GwmpKind.PUSH_ACK:
            if datagram.token in self._push_tokens:
                self._push_tokens.discard(datagram.token)
                self._count("push_ack")
            else:
                self._count("push_ack_unknown_token")
        elif datagram.kind == GwmpKind.PULL_ACK:
            self._count("pull_ack")
        elif datagram.kind == GwmpKind.PULL_RESP:
            self._pull_resp(datagram)
        else:
            self._count("unexpected_" + datagram.kind.name.lower())
            log.warning("gateway %s: unexpected %s from %s", self.receiver_id, datagram.kind.name, addr)

    # --- downlinks ----------------------------------------------------------------------------------------------------
    def _pull_resp(self, datagram: Datagram) -> None:
        try:
            txpk = parse_txpk(datagram.payload)
        except DatagramError as exc:
            self.malformed[exc.reason] = self.malformed.get(exc.reason, 0) + 1
            log.warning("gateway %s: malformed PULL_RESP (%s)", self.receiver_id, exc)
            return
        self._count("pull_resp")
        now = self.clock.now_us
        at = now if txpk.imme else unwrap_tmst(txpk.tmst, now)
        if at < now:
            error = "TOO_LATE"
        elif at - now > self.max_advance_s * 1e6:
            error = "TOO_EARLY"
        else:
            error = "NONE"
        self._count("tx_" + error.lower())
        self.downlinks.append({"t_us": now, "at_us": at, "txpk": datagram.payload["txpk"], "error": error})
        self._answered(at, txpk.imme)
        self._send(GwmpKind.TX_ACK, datagram.token, {"txpk_ack": {"error": error}})
        if error == "NONE":
            self.clock.call_at(at, self._transmit, txpk)

    def _answered(self, at_us: int, imme: bool) -> None:
        """A PULL_RESP for `at_us` releases the hold of every uplink whose RX1 is at or before it (an RX2 answer comes
        after RX1); the uplink whose RX1 or RX2 is `at_us` is the one it answers: its latency teaches the grace."""
        answered = [u for u in self._unanswered if imme or u.hold.limit_us <= at_us + TMST_MATCH_US]
        for uplink in answered:
            uplink.hold.release()
            self._unanswered.remove(uplink)
        window_opens = [u for u in answered if not imme and min(abs(at_us - u.hold.limit_us),
                                                                abs(at_us - u.hold.limit_us - RX2_AFTER_RX1_US))
                        <= TMST_MATCH_US]
        if window_opens:
            self.answer_grace.record(self.clock.wall() - max(u.sent_wall for u in window_opens))

    def _transmit(self, txpk) -> None:
        bw_hz = txpk.bw_khz * 1000
        mod = Modulation(freq_hz=txpk.freq * 1e6, sf=txpk.sf, bw_hz=bw_hz, sync_word=LORAWAN_SYNC_WORD,
                         iq_inverted=txpk.ipol, cr=int(txpk.codr[2]) - 4, crc=not txpk.ncrc, preamble=8,
                         ldro=needs_low_data_rate_optimize(txpk.sf, bw_hz))
        tx = self.air.transmit(self.receiver_id, self.position, mod, txpk.data, float(txpk.powe))
        self._transmitting_until = tx.end_us
        self._receiving.clear()  # half-duplex: whatever it was receiving is lost
        self._count("tx_sent")

    # --- the concentrator on the air ----------------------------------------------------------------------------------
    def _channel(self, freq_hz: float) -> int | None:
        for index, (channel_hz, _rfch) in enumerate(self.channels):
            if same_frequency(channel_hz, freq_hz, self.air.freq_tolerance_hz):
                return index
        return None

    def hears(self, tx: Transmission) -> Modulation | None:
        if self.clock.now_us < self._transmitting_until:
            return None
        mod = tx.mod
        if (mod.sf not in UPLINK_SFS or mod.bw_hz != UPLINK_BW_HZ or mod.iq_inverted
                or mod.sync_word != LORAWAN_SYNC_WORD):
            return None
        channel = self._channel(mod.freq_hz)
        if channel is None:
            return None
        return Modulation(freq_hz=self.channels[channel][0], sf=mod.sf, bw_hz=UPLINK_BW_HZ, sync_word=LORAWAN_SYNC_WORD,
                          iq_inverted=False, ldro=needs_low_data_rate_optimize(mod.sf, UPLINK_BW_HZ))

    def begin_reception(self, rx: Reception) -> None:
        self._receiving.add(id(rx))

    def still_receiving(self, rx: Reception) -> bool:
        return id(rx) in self._receiving

    def end_reception(self, rx: Reception) -> None:
        self._receiving.discard(id(rx))
        if not rx.delivered:
            self._count("rx_bad")
            return
        self._count("rx_ok")
        end_us = rx.tx.end_us
        channel = self._channel(rx.listening.freq_hz)
        freq_hz, rfch = self.channels[channel]
        when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=self.epoch_s, microseconds=end_us)
        rxpk = Rxpk(tmst=end_us & 0xFFFFFFFF, time=when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), freq=freq_hz / 1e6,
                    chan=channel, rfch=rfch, stat=1 if rx.tx.mod.crc else 0, sf=rx.tx.mod.sf, bw_khz=UPLINK_BW_HZ // 1000,
                    codr=rx.tx.mod.codr, rssi=round(rx.rssi), lsnr=round(rx.snr, 1), data=rx.phy)
        payload = {"rxpk": [rxpk_to_json(rxpk)]}
        token = secrets.token_bytes(2)
        self._push_tokens.add(token)
        self.uplinks.append(payload["rxpk"][0])
        self._send(GwmpKind.PUSH_DATA, token, payload)
        self._count("push_data_sent")
        is_join_request = bool(rx.phy) and rx.phy[0] >> 5 == 0
        rx1 = end_us + (JOIN_ACCEPT_DELAY1_US if is_join_request else RX1_DELAY_US)
        wall_now = self.clock.wall()
        # an answer later than this is no answer any more (the node's RX2 has long passed): forget the uplink
        forget_before = wall_now - UNANSWERED_KEPT_S
        self._unanswered = [u for u in self._unanswered if u.sent_wall > forget_before]
        hold = self.clock.hold(rx1, self.answer_grace.grace_s, f"RX1 of an uplink at {self.receiver_id}")
        self._unanswered.append(_Unanswered(hold, wall_now))
