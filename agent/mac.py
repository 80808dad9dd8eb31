"""The network side of the LoRaWAN 1.0.4 MAC for one device, pure (no I/O, no clock): MAC state, answers to the
node's requests, the node's answers applied to the state, and the requests to send next (ADR, DevStatus, resends).

One uplink, as the session layer drives it:

    result = layer.on_uplink(state, parse_mac_commands(fopts or fport0_payload, uplink=True), info)
    requests = layer.plan_downlink(result.state, info)          # ordered by priority
    in_fopts, rest = split_fopts(result.answers + requests)     # <= 15 bytes in FOpts; rest waits or goes on FPort 0
    ... send the downlink (a downlink is due when answers or requests exist, or result.downlink_required) ...
    state = layer.on_downlink_sent(result.state, sent_commands, time_unix)

A request takes effect in the state only when the node's answer acknowledges it (LinkADRAns with all three bits,
RXParamSetupAns with all three, NewChannelAns with both, RXTimingSetupAns, DutyCycleAns); a NACK is an event. A request
left unanswered for `resend_after_uplinks` uplinks is sent again, up to `max_attempts` times, then dropped with a
`no_answer` event. The state serialises to JSON (`to_dict`/`from_dict`; unknown keys are ignored, missing ones take
their defaults, commands are kept as their wire bytes in hex), so it can live in the registry beside the session.

EU868 tables (LoRaWAN Regional Parameters RP002-1.0.x):

    DR  modulation        required SNR        TX power index  EIRP
    0   LoRa SF12 125 kHz   -20.0 dB          0               16 dBm (max EIRP)
    1   LoRa SF11 125 kHz   -17.5 dB          1               14 dBm
    2   LoRa SF10 125 kHz   -15.0 dB          2               12 dBm
    3   LoRa SF9  125 kHz   -12.5 dB          3               10 dBm
    4   LoRa SF8  125 kHz   -10.0 dB          4                8 dBm
    5   LoRa SF7  125 kHz    -7.5 dB          5                6 dBm
    6   LoRa SF7  250 kHz    -7.5 dB          6                4 dBm
    7   FSK 50 kbps          -                7                2 dBm

Default channels 0..2: 868.1, 868.3, 868.5 MHz (DR0..5); a JoinAccept CFList adds channels 3..7. RX2 869.525 MHz DR0,
RX1 delay 1 s. LinkCheckAns margin = best SNR of the uplink - required SNR of its DR (dB, 0..254). DeviceTimeAns is the
GPS time (epoch 1980-01-06 00:00:00 UTC, 18 leap seconds ahead of UTC since 2017) of the uplink's reception.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from dos_codecs.errors import FrameError
from dos_codecs.lorawan import MAX_FOPTS_LEN
from dos_codecs.mac_commands import (
    DevStatusAns,
    DevStatusReq,
    DeviceTimeAns,
    DeviceTimeReq,
    DutyCycleAns,
    DutyCycleReq,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    LinkCheckReq,
    MacCommand,
    NewChannelAns,
    NewChannelReq,
    RXParamSetupAns,
    RXParamSetupReq,
    RXTimingSetupAns,
    RXTimingSetupReq,
    build_mac_command,
    parse_mac_commands,
)

from dos_agent.adr import DEFAULT_MARGIN_DB, MAX_HISTORY, REQUIRED_SNR_DB, UplinkRecord, adr_decision

DEFAULT_CHANNELS_HZ = (868_100_000, 868_300_000, 868_500_000)
MAX_CHANNELS = 16
#: Data-rate range of the default and CFList channels.
CHANNEL_MIN_DR, CHANNEL_MAX_DR = 0, 5
RX2_FREQUENCY_HZ = 869_525_000
RX2_DR = 0
RX_DELAY_S = 1
#: Unix time of the GPS epoch (1980-01-06 00:00:00 UTC) and GPS - UTC in seconds (since 2017-01-01).
GPS_EPOCH_UNIX = 315_964_800
GPS_LEAP_SECONDS = 18
DEFAULT_DEV_STATUS_EVERY = 100
DEFAULT_RESEND_AFTER_UPLINKS = 2
DEFAULT_MAX_ATTEMPTS = 3
#: Order in which requests go out (and into FOpts) when several are due: lower first.
_PRIORITY = {LinkADRReq: 0, RXParamSetupReq: 1, RXTimingSetupReq: 2, NewChannelReq: 3, DutyCycleReq: 4, DevStatusReq: 5}
REQUEST_TYPES = tuple(_PRIORITY)
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Channel:
    """An uplink channel the node knows: its index (0..15), frequency and data-rate range."""

    index: int
    frequency_hz: int
    min_dr: int = CHANNEL_MIN_DR
    max_dr: int = CHANNEL_MAX_DR


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request sent to the node and not answered yet: when it was sent (the state's uplink count and Unix time) and
    how many times."""

    command: MacCommand
    sent_uplink: int
    sent_time: float
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class DevStatus:
    """The node's last DevStatusAns: battery (0 external power, 1..254 level, 255 unknown), SNR margin of the
    DevStatusReq downlink in dB, and when it came (Unix time)."""

    battery: int
    margin: int
    time: float


@dataclass(frozen=True, slots=True)
class LinkCheck:
    """The last LinkCheckAns given to the node, and when."""

    margin: int
    gw_count: int
    time: float


def _default_channels() -> tuple[Channel, ...]:
    return tuple(Channel(index, hz) for index, hz in enumerate(DEFAULT_CHANNELS_HZ))


def _mask_of(channels: Iterable[Channel]) -> int:
    return sum(1 << channel.index for channel in channels)


@dataclass(frozen=True, slots=True)
class MacState:
    """What the network knows of one device's MAC settings and exchanges. Immutable: the layer returns new states.

    `dr` is the data rate of the last uplink; `tx_power_index`, `nb_trans`, `ch_mask`, `channels`, the RX settings and
    `max_duty_cycle` change when the node acknowledges a request. `history` holds the last MAX_HISTORY uplinks for
    ADR; `uplink_count` counts distinct uplinks (FCnts) of the session; `queued` holds requests asked for by the
    operator and not sent yet; `dev_status_due` is the uplink count from which the next DevStatusReq is due."""

    dr: int = 0
    tx_power_index: int = 0
    nb_trans: int = 1
    ch_mask: int = _mask_of(_default_channels())
    channels: tuple[Channel, ...] = field(default_factory=_default_channels)
    rx1_dr_offset: int = 0
    rx2_dr: int = RX2_DR
    rx2_frequency_hz: int = RX2_FREQUENCY_HZ
    rx_delay_s: int = RX_DELAY_S
    max_duty_cycle: int = 0
    adr: bool = False
    adr_ack_req: bool = False
    history: tuple[UplinkRecord, ...] = ()
    uplink_count: int = 0
    last_fcnt: int | None = None
    pending: tuple[PendingRequest, ...] = ()
    queued: tuple[MacCommand, ...] = ()
    dev_status: DevStatus | None = None
    dev_status_due: int = 0
    link_check: LinkCheck | None = None

    @classmethod
    def after_join(
        cls,
        cf_list_hz: Sequence[int] = (),
        rx1_dr_offset: int = 0,
        rx2_dr: int = RX2_DR,
        rx_delay_s: int = RX_DELAY_S,
    ) -> MacState:
        """The state of a node that has just joined with a JoinAccept carrying these settings: the default channels
        plus the CFList frequencies as channels 3.. (0 = no channel), all enabled. An RxDelay of 0 means 1 s."""
        if len(cf_list_hz) > 5:
            raise ValueError("an EU868 CFList holds at most five frequencies")
        extra = tuple(
            Channel(len(DEFAULT_CHANNELS_HZ) + i, hz) for i, hz in enumerate(cf_list_hz) if hz
        )
        channels = _default_channels() + extra
        return cls(
            ch_mask=_mask_of(channels), channels=channels, rx1_dr_offset=rx1_dr_offset, rx2_dr=rx2_dr,
            rx_delay_s=rx_delay_s or 1,
        )

    def enabled_frequencies_hz(self) -> list[int]:
        """Frequencies of the channels the node may use (defined and enabled in the channel mask)."""
        return [c.frequency_hz for c in self.channels if self.ch_mask >> c.index & 1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see `from_dict`)."""
        return {
            "version": _STATE_VERSION,
            "dr": self.dr,
            "tx_power_index": self.tx_power_index,
            "nb_trans": self.nb_trans,
            "ch_mask": self.ch_mask,
            "channels": [
                {"index": c.index, "frequency_hz": c.frequency_hz, "min_dr": c.min_dr, "max_dr": c.max_dr}
                for c in self.channels
            ],
            "rx1_dr_offset": self.rx1_dr_offset,
            "rx2_dr": self.rx2_dr,
            "rx2_frequency_hz": self.rx2_frequency_hz,
            "rx_delay_s": self.rx_delay_s,
            "max_duty_cycle": self.max_duty_cycle,
            "adr": self.adr,
            "adr_ack_req": self.adr_ack_req,
            "history": [
                {"fcnt": r.fcnt, "snr": r.snr, "gateway_count": r.gateway_count, "nb_trans": r.nb_trans}
                for r in self.history
            ],
            "uplink_count": self.uplink_count,
            "last_fcnt": self.last_fcnt,
            "pending": [
                {"command": build_mac_command(p.command).hex(), "sent_uplink": p.sent_uplink,
                 "sent_time": p.sent_time, "attempts": p.attempts}
                for p in self.pending
            ],
            "queued": [build_mac_command(command).hex() for command in self.queued],
            "dev_status": None if self.dev_status is None else {
                "battery": self.dev_status.battery, "margin": self.dev_status.margin, "time": self.dev_status.time,
            },
            "dev_status_due": self.dev_status_due,
            "link_check": None if self.link_check is None else {
                "margin": self.link_check.margin, "gw_count": self.link_check.gw_count, "time": self.link_check.time,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MacState:
        """The state `to_dict` gave, from any version: unknown keys are ignored, missing keys take their defaults.
        ValueError for a value of the wrong shape."""
        if not isinstance(data, dict):
            raise ValueError(f"a MAC state is a JSON object, not {type(data).__name__}")
        try:
            return _state_from_dict(cls, data)
        except (KeyError, TypeError, AttributeError, FrameError) as exc:
            raise ValueError(f"MAC state does not load: {exc}") from exc


_STATE_FIELDS = tuple(f.name for f in fields(MacState))
_STATE_INDEX = {name: index for index, name in enumerate(_STATE_FIELDS)}
_state_values = operator.attrgetter(*_STATE_FIELDS)


def evolve(state: MacState, **changes: Any) -> MacState:
    """`state` with `changes`: `dataclasses.replace` without its per-field checks (every MacState field is an init
    field), a third of its cost on the per-uplink path."""
    values = list(_state_values(state))
    for name, value in changes.items():
        values[_STATE_INDEX[name]] = value
    return MacState(*values)


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"MAC state {name} {value!r} is not an int")
    return value


def _number(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"MAC state {name} {value!r} is not a number")
    return value


def _downlink_command(hex_text: str) -> MacCommand:
    commands = parse_mac_commands(bytes.fromhex(hex_text), uplink=False)
    if len(commands) != 1:
        raise ValueError(f"MAC state holds {hex_text!r}, not one command")
    return commands[0]


def _state_from_dict(cls: type[MacState], data: dict[str, Any]) -> MacState:
    defaults = cls()
    values: dict[str, Any] = {}
    for name in ("dr", "tx_power_index", "nb_trans", "ch_mask", "rx1_dr_offset", "rx2_dr", "rx2_frequency_hz",
                 "rx_delay_s", "max_duty_cycle", "uplink_count", "dev_status_due"):
        if name in data:
            values[name] = _int(data[name], name)
    for name in ("adr", "adr_ack_req"):
        if name in data:
            values[name] = bool(data[name])
    if data.get("last_fcnt") is not None:
        values["last_fcnt"] = _int(data["last_fcnt"], "last_fcnt")
    if "channels" in data:
        values["channels"] = tuple(
            Channel(_int(c["index"], "channel index"), _int(c["frequency_hz"], "channel frequency"),
                    _int(c.get("min_dr", CHANNEL_MIN_DR), "channel min_dr"),
                    _int(c.get("max_dr", CHANNEL_MAX_DR), "channel max_dr"))
            for c in data["channels"]
        )
    if "history" in data:
        values["history"] = tuple(
            UplinkRecord(_int(r["fcnt"], "history fcnt"), _number(r["snr"], "history snr"),
                         _int(r.get("gateway_count", 1), "history gateway_count"),
                         _int(r.get("nb_trans", 1), "history nb_trans"))
            for r in data["history"]
        )[-MAX_HISTORY:]
    if "pending" in data:
        values["pending"] = tuple(
            PendingRequest(_downlink_command(p["command"]), _int(p["sent_uplink"], "pending sent_uplink"),
                           _number(p.get("sent_time", 0.0), "pending sent_time"),
                           _int(p.get("attempts", 1), "pending attempts"))
            for p in data["pending"]
        )
    if "queued" in data:
        values["queued"] = tuple(_downlink_command(text) for text in data["queued"])
    if data.get("dev_status") is not None:
        status = data["dev_status"]
        values["dev_status"] = DevStatus(_int(status["battery"], "battery"), _int(status["margin"], "margin"),
                                         _number(status.get("time", 0.0), "dev_status time"))
    if data.get("link_check") is not None:
        check = data["link_check"]
        values["link_check"] = LinkCheck(_int(check["margin"], "margin"), _int(check["gw_count"], "gw_count"),
                                         _number(check.get("time", 0.0), "link_check time"))
    return evolve(defaults, **values)


@dataclass(frozen=True, slots=True)
class UplinkInfo:
    """What the MAC needs of an accepted uplink: its 32-bit FCnt, data rate, best SNR over the gateways that heard it
    (None when no gateway reported one), how many gateways heard it, its FCtrl ADR and ADRACKReq bits, and when it was
    received (Unix seconds)."""

    fcnt: int
    dr: int
    best_snr: float | None
    gateway_count: int
    adr: bool
    adr_ack_req: bool
    time_unix: float


@dataclass(frozen=True, slots=True)
class MacResult:
    """What one uplink's MAC commands gave: `answers` to put in the next downlink (before any request), `events`
    (dicts with a "type" key), the new `state`, and `downlink_required`: the node needs a downlink even if it carries
    nothing (it set ADRACKReq, or repeats RXParamSetupAns/RXTimingSetupAns until it hears one)."""

    answers: list[MacCommand]
    events: list[dict[str, Any]]
    state: MacState
    downlink_required: bool


def gps_time(time_unix: float) -> tuple[int, int]:
    """(whole GPS seconds, fraction in 1/256 s) of a Unix time."""
    gps = time_unix - GPS_EPOCH_UNIX + GPS_LEAP_SECONDS
    seconds = math.floor(gps)
    return seconds, min(255, math.floor((gps - seconds) * 256))


def link_margin_db(best_snr: float | None, dr: int) -> int:
    """LinkCheckAns margin: dB of the uplink's SNR above the demodulation floor of its data rate, 0..254 (0 when the
    SNR or the floor is unknown)."""
    if best_snr is None or not 0 <= dr < len(REQUIRED_SNR_DB):
        return 0
    return max(0, min(254, math.floor(best_snr - REQUIRED_SNR_DB[dr])))


def split_fopts(
    commands: Sequence[MacCommand], limit: int = MAX_FOPTS_LEN
) -> tuple[list[MacCommand], list[MacCommand]]:
    """(commands for FOpts, the rest): in the given order, each command that still fits in `limit` bytes goes in."""
    in_fopts: list[MacCommand] = []
    rest: list[MacCommand] = []
    room = limit
    for command in commands:
        if command.size <= room:
            in_fopts.append(command)
            room -= command.size
        else:
            rest.append(command)
    return in_fopts, rest


def _same_slot(a: MacCommand, b: MacCommand) -> bool:
    """Two requests occupy the same slot (a newer one replaces the older) when of one type, and for NewChannelReq of
    one channel."""
    if type(a) is not type(b):
        return False
    return not isinstance(a, NewChannelReq) or a.ch_index == b.ch_index  # type: ignore[attr-defined]


def _mac_event(command: str, status: str, **details: Any) -> dict[str, Any]:
    return {"type": "mac", "command": command, "status": status, **details}


class MacLayer:
    """The MAC policy of the agent: ADR margin, how often DevStatus is asked, when unanswered requests are resent."""

    def __init__(
        self,
        adr_margin_db: float = DEFAULT_MARGIN_DB,
        dev_status_every: int = DEFAULT_DEV_STATUS_EVERY,
        resend_after_uplinks: int = DEFAULT_RESEND_AFTER_UPLINKS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if dev_status_every < 1 or resend_after_uplinks < 1 or max_attempts < 1:
            raise ValueError("dev_status_every, resend_after_uplinks and max_attempts are at least 1")
        self.adr_margin_db = adr_margin_db
        self.dev_status_every = dev_status_every
        self.resend_after_uplinks = resend_after_uplinks
        self.max_attempts = max_attempts

    # --- uplink -------------------------------------------------------------------------------------------------------

    def on_uplink(self, state: MacState, commands: Sequence[MacCommand], info: UplinkInfo) -> MacResult:
        """Apply one accepted uplink and its MAC commands (parsed with uplink=True) to `state`.

        A repetition of the last FCnt (NbTrans or a confirmed retry) only refreshes the best SNR and answers the
        node's requests again: answers to the network's requests were taken from its first copy. A FCnt below the
        last one means the node lost its state (an accepted counter reset): the MAC state starts over."""
        if state.last_fcnt is not None and info.fcnt < state.last_fcnt:
            state = evolve(MacState(), dev_status=state.dev_status)
        repeat = state.last_fcnt == info.fcnt
        answers: list[MacCommand] = []
        events: list[dict[str, Any]] = []
        pending = list(state.pending)
        downlink_required = info.adr_ack_req
        for command in commands:
            if isinstance(command, LinkCheckReq):
                margin = link_margin_db(info.best_snr, info.dr)
                gw_count = min(255, info.gateway_count)
                answers.append(LinkCheckAns(margin, gw_count))
                state = evolve(state, link_check=LinkCheck(margin, gw_count, info.time_unix))
                if not repeat:
                    events.append(_mac_event("LinkCheckReq", "answered", margin=margin, gw_count=gw_count))
            elif isinstance(command, DeviceTimeReq):
                answers.append(DeviceTimeAns(*gps_time(info.time_unix)))
            elif isinstance(command, (RXParamSetupAns, RXTimingSetupAns)):
                downlink_required = True  # repeated by the node until it hears a downlink
                if not repeat:
                    state = self._apply_answer(state, command, pending, info, events, quiet_if_unsolicited=True)
            elif not repeat:
                state = self._apply_answer(state, command, pending, info, events, quiet_if_unsolicited=False)
        if repeat:
            state = _refresh_last_record(state, info)
        else:
            state = self._record_uplink(state, info, pending, events)
        return MacResult(answers, events, state, downlink_required)

    def _apply_answer(
        self,
        state: MacState,
        answer: MacCommand,
        pending: list[PendingRequest],
        info: UplinkInfo,
        events: list[dict[str, Any]],
        quiet_if_unsolicited: bool,
    ) -> MacState:
        """Apply one of the node's answers to the request it answers (taken out of `pending`)."""
        if isinstance(answer, DevStatusAns):
            _take(pending, DevStatusReq)
            events.append(_dev_status_event(answer))
            return evolve(
                state, dev_status=DevStatus(answer.battery, answer.margin, info.time_unix),
                dev_status_due=state.uplink_count + 1 + self.dev_status_every,
            )
        request_type = _REQUEST_OF_ANSWER.get(type(answer))
        if request_type is None:
            raise TypeError(f"{answer.name} is not an uplink MAC command")
        request = _take(pending, request_type)
        if request is None:
            if not quiet_if_unsolicited:
                events.append(_mac_event(request_type.__name__, "unsolicited", answer=answer.to_dict()))
            return state
        accepted = getattr(answer, "accepted", True)
        details = {"request": request.to_dict(), "answer": answer.to_dict()}
        events.append(_mac_event(request.name, "applied" if accepted else "rejected", **details))
        return _apply_request(state, request) if accepted else state

    def _record_uplink(
        self, state: MacState, info: UplinkInfo, pending: list[PendingRequest], events: list[dict[str, Any]]
    ) -> MacState:
        """Count a new uplink, add it to the ADR history, and keep the `pending` requests (those still unanswered)
        that have attempts left."""
        history = state.history
        if info.best_snr is not None:
            record = UplinkRecord(info.fcnt, info.best_snr, info.gateway_count, state.nb_trans)
            history = (history + (record,))[-MAX_HISTORY:]
        count = state.uplink_count + 1
        kept = []
        dev_status_due = state.dev_status_due
        for request in pending:
            if count - request.sent_uplink >= self.resend_after_uplinks and request.attempts >= self.max_attempts:
                events.append(_mac_event(request.command.name, "no_answer", request=request.command.to_dict(),
                                         attempts=request.attempts))
                if isinstance(request.command, DevStatusReq):
                    dev_status_due = count + self.dev_status_every
            else:
                kept.append(request)
        return evolve(
            state, dr=info.dr, adr=info.adr, adr_ack_req=info.adr_ack_req, history=history, uplink_count=count,
            last_fcnt=info.fcnt, pending=tuple(kept), dev_status_due=dev_status_due,
        )

    # --- downlink -----------------------------------------------------------------------------------------------------

    def plan_downlink(self, state: MacState, info: UplinkInfo) -> list[MacCommand]:
        """The requests to send in the downlink that answers this uplink, highest priority first: LinkADRReq when ADR
        changes something (always when the node set ADRACKReq), requests due for a resend (a LinkADRReq is replaced by
        a fresh ADR decision, any other by a queued request of its slot), queued requests whose slot is free, and
        DevStatusReq every `dev_status_every` uplinks (and first thing in a session)."""
        due = [p.command for p in state.pending if state.uplink_count - p.sent_uplink >= self.resend_after_uplinks]
        waiting = [p.command for p in state.pending if p.command not in due]
        requests: list[MacCommand] = []
        adr_request = self._adr_request(state, info, waiting) if info.adr else None
        for command in due:
            if isinstance(command, LinkADRReq):
                if adr_request is None:  # ADR has nothing newer to say: resend the unanswered one
                    adr_request = command
            elif not any(_same_slot(command, newer) for newer in state.queued):
                requests.append(command)
        if adr_request is not None:
            requests.append(adr_request)
        for command in state.queued:
            if not any(_same_slot(command, other) for other in waiting + requests):
                requests.append(command)
        busy = waiting + requests
        if state.uplink_count >= state.dev_status_due and not any(isinstance(c, DevStatusReq) for c in busy):
            requests.append(DevStatusReq())
        return sorted(requests, key=lambda command: _PRIORITY[type(command)])

    def _adr_request(self, state: MacState, info: UplinkInfo, waiting: list[MacCommand]) -> LinkADRReq | None:
        """A LinkADRReq from a fresh ADR decision (none while an earlier one awaits its answer, unless the node asks
        with ADRACKReq, which is always answered: then with the current settings if nothing changes)."""
        if any(isinstance(c, LinkADRReq) for c in waiting) and not info.adr_ack_req:
            return None
        decision = adr_decision(state.history, state.dr, state.tx_power_index, state.nb_trans, self.adr_margin_db)
        if decision is not None:
            return LinkADRReq(decision.dr, decision.tx_power_index, state.ch_mask, 0, decision.nb_trans)
        if info.adr_ack_req:
            return LinkADRReq(state.dr, state.tx_power_index, state.ch_mask, 0, state.nb_trans)
        return None

    def on_downlink_sent(self, state: MacState, commands: Iterable[MacCommand], time_unix: float) -> MacState:
        """Record the requests among `commands` (answers are ignored) as sent now and awaiting the node's answer."""
        pending = list(state.pending)
        queued = list(state.queued)
        for command in commands:
            if not isinstance(command, REQUEST_TYPES):
                continue
            if command in queued:
                queued.remove(command)
            attempts = 1
            for index, earlier in enumerate(pending):
                if _same_slot(earlier.command, command):
                    attempts = earlier.attempts + 1 if earlier.command == command else 1
                    del pending[index]
                    break
            pending.append(PendingRequest(command, state.uplink_count, time_unix, attempts))
        return evolve(state, pending=tuple(pending), queued=tuple(queued))

    def enqueue(self, state: MacState, command: MacCommand) -> MacState:
        """Ask for a request (RXParamSetupReq, NewChannelReq, ...) to go out with the next downlink; a queued request
        of the same slot is replaced. FrameError 'bad_field' for a field out of range."""
        if not isinstance(command, REQUEST_TYPES):
            raise TypeError(f"{type(command).__name__} is not a request the network sends")
        build_mac_command(command)
        queued = [c for c in state.queued if not _same_slot(c, command)] + [command]
        return evolve(state, queued=tuple(queued))


_REQUEST_OF_ANSWER: dict[type[MacCommand], type[MacCommand]] = {
    LinkADRAns: LinkADRReq,
    RXParamSetupAns: RXParamSetupReq,
    RXTimingSetupAns: RXTimingSetupReq,
    NewChannelAns: NewChannelReq,
    DutyCycleAns: DutyCycleReq,
}


def _take(pending: list[PendingRequest], request_type: type[MacCommand]) -> MacCommand | None:
    """Remove and return the oldest pending request of a type."""
    for index, request in enumerate(pending):
        if isinstance(request.command, request_type):
            del pending[index]
            return request.command
    return None


def _apply_request(state: MacState, request: MacCommand) -> MacState:
    """The state once the node has acknowledged `request`."""
    if isinstance(request, LinkADRReq):
        ch_mask = request.ch_mask if request.ch_mask_cntl == 0 else _mask_of(state.channels)
        return evolve(
            state,
            dr=state.dr if request.data_rate == 0x0F else request.data_rate,
            tx_power_index=state.tx_power_index if request.tx_power == 0x0F else request.tx_power,
            ch_mask=ch_mask,
            nb_trans=request.nb_trans or state.nb_trans,
        )
    if isinstance(request, RXParamSetupReq):
        return evolve(state, rx1_dr_offset=request.rx1_dr_offset, rx2_dr=request.rx2_data_rate,
                       rx2_frequency_hz=request.frequency_hz)
    if isinstance(request, RXTimingSetupReq):
        return evolve(state, rx_delay_s=request.delay or 1)
    if isinstance(request, DutyCycleReq):
        return evolve(state, max_duty_cycle=request.max_duty_cycle)
    assert isinstance(request, NewChannelReq)
    others = tuple(c for c in state.channels if c.index != request.ch_index)
    bit = 1 << request.ch_index
    if request.frequency_hz == 0:
        return evolve(state, channels=others, ch_mask=state.ch_mask & ~bit)
    channel = Channel(request.ch_index, request.frequency_hz, request.min_dr, request.max_dr)
    channels = tuple(sorted(others + (channel,), key=lambda c: c.index))
    return evolve(state, channels=channels, ch_mask=state.ch_mask | bit)


def _refresh_last_record(state: MacState, info: UplinkInfo) -> MacState:
    """A repetition of the last uplink: keep the better SNR and gateway count in its history record."""
    if not state.history or state.history[-1].fcnt != info.fcnt or info.best_snr is None:
        return state
    last = state.history[-1]
    better = replace(last, snr=max(last.snr, info.best_snr), gateway_count=max(last.gateway_count, info.gateway_count))
    return evolve(state, history=state.history[:-1] + (better,))


def _dev_status_event(answer: DevStatusAns) -> dict[str, Any]:
    """DevStatus as an event: the raw battery byte, whether the node is on external power, the battery level in
    percent (1 -> 0 %, 254 -> 100 %; None when external or unknown) and the SNR margin."""
    level = None
    if 1 <= answer.battery <= 254:
        level = round((answer.battery - 1) * 100 / 253, 1)
    return {
        "type": "dev_status", "battery": answer.battery, "external_power": answer.battery == 0,
        "battery_level_pct": level, "margin": answer.margin,
    }
