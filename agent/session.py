"""The LoRaWAN session layer (the edge network server), sans-IO: PHYPayloads with their reception metadata, downlink
requests, TX_ACKs and the time go in; outputs come out (events to publish, `Transmit`s for the gateways, `CollectAt`
timers). It never sleeps, sends or reads a clock.

Uplinks: copies of one PHYPayload from several gateways within the dedup window are one frame (`receive` returns a
`CollectAt` for the edge to call `collect` then; `handle_uplink` takes a single reception at once). A frame is
parsed (structural reasons from `dos_codecs.lorawan`), then a JoinRequest goes to the join server and a data uplink
through candidate devices by DevAddr, the 32-bit FCnt rebuild and the MIC. A frame whose MIC verifies at a counter not
above the last accepted one is a confirmed retransmission (the last FCnt again, confirmed: ACKed again, published
once), a counter reset (it verifies at its bare 16-bit value, more than REPLAY_WINDOW below the last: the node lost its
state; an `FcntReset` event, then accepted or rejected per the device's policy), or a replay (`fcnt_replay`). A frame
that only a retired device's session verifies is rejected as `retired_device`.

Downlinks: after each accepted uplink, the device's MAC answers and requests, its oldest queued downlink and the ACK
of a confirmed uplink are packed into one frame (MAC commands in FOpts, or alone on FPort 0 encrypted with NwkSKey),
sealed with the next FCntDown (committed first), and sent through the best-SNR gateway at RX1 (uplink tmst + RxDelay),
or RX2 when RX1 has passed or the gateway answers TOO_LATE. Confirmed downlinks wait for the ACK bit of a later uplink.

Rejections carry a short reason (a counter label) and a detail that never holds a key or a payload.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import operator
import sqlite3
import uuid
from dataclasses import dataclass, replace

from dos_codecs.crypto import SessionKeys
from dos_codecs.errors import FrameError
from dos_codecs.gwmp import Txpk
from dos_codecs.lorawan import MAX_FOPTS_LEN, DataFrame, JoinRequest, MType, parse_phy
from dos_codecs.mac_commands import MacCommand, build_mac_command, parse_mac_commands_prefix

from dos_agent import eu868, join
from dos_agent.dedup import DEFAULT_WINDOW_S, Admitted, Collected, Deduplicator
from dos_agent.downlink import DownlinkRequestError, parse_downlink_request
from dos_agent.events import SchemaBook
from dos_agent.join import JoinGranted, JoinServer
from dos_agent.mac import MacLayer, MacResult, MacState, UplinkInfo
from dos_agent.registry import DeviceRecord, QueuedDownlink, Registry

log = logging.getLogger("dos_agent.session")

#: Largest accepted step of the 32-bit uplink counter over the last accepted value.
MAX_FCNT_GAP = 16384
FCNT_MAX = 0xFFFFFFFF
_FCNT16 = 0x10000
#: A frame verifying at a counter at most this far below the last accepted one is a replay, never a counter reset.
REPLAY_WINDOW = 16
#: Uplinks a confirmed downlink may go without the device's ACK (it is sent again after each) before it fails.
CONFIRMED_DOWNLINK_TRIES = 3
#: Downlinks a device may have queued.
MAX_QUEUE = 32
#: A receive window counts as reachable until this long before it opens (gateway path and scheduling latency).
SCHEDULE_MARGIN_S = 0.1
#: A TX_ACK not seen this long after its PULL_RESP never comes (old forwarders send none): the downlink counts as sent.
TX_ACK_TIMEOUT_S = 1.0
_US = 1_000_000
#: The MAC state changes with every uplink (ADR history, counts); those changes alone are written once per this many
#: uplinks (a restart forgets at most that much ADR history); any other change is written with its uplink.
MAC_STATE_WRITE_EVERY = 16
_UPLINK_BOOKKEEPING = {"dr", "adr", "adr_ack_req", "history", "uplink_count", "last_fcnt"}
#: The fields of a MacState other than that bookkeeping, as a tuple (a change in any of them is written at once).
_mac_settings = operator.attrgetter(
    *(f.name for f in dataclasses.fields(MacState) if f.name not in _UPLINK_BOOKKEEPING)
)


@dataclass(frozen=True, slots=True)
class Reception:
    """How a frame was received. `freq` and `bw` are in Hz; `tmst` is the concentrator's µs counter; `time` is the
    gateway's own timestamp (ISO 8601) when it has one. Unknown values are None. `can_transmit`: the gateway has a
    downlink path (it sent PULL_DATA)."""

    gateway_eui: str
    tmst: int | None = None
    freq: int | None = None
    sf: int | None = None
    bw: int | None = None
    rssi: float | None = None
    snr: float | None = None
    time: str | None = None
    can_transmit: bool = True


@dataclass(frozen=True, slots=True)
class UplinkAccepted:
    """An authenticated, fresh data uplink. `payload` is the decrypted FRMPayload (empty without FPort); `device` is
    the record after storing `fcnt`. `reception` is the best of `receptions` (every gateway that heard it, best SNR
    first); `duplicates` counts the copies beyond the first. `received_at` is the agent's clock (Unix seconds) at
    the first copy."""

    device: DeviceRecord
    fcnt: int
    fport: int | None
    payload: bytes
    confirmed: bool
    reception: Reception
    received_at: float
    receptions: tuple[Reception, ...] = ()
    adr: bool = False
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class UplinkRejected:
    """A frame that was not accepted. `reason` is a counter label; `detail` explains it (no keys, no payload)."""

    reason: str
    detail: str
    reception: Reception
    received_at: float
    dev_addr: str | None = None
    dev_eui: str | None = None
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class UplinkRepeated:
    """A confirmed uplink received again with its FCnt (the node missed the ACK): ACKed again, not published again."""

    device: DeviceRecord
    fcnt: int
    reception: Reception
    received_at: float
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class JoinAccepted:
    """An OTAA join: `device` holds the new session; the JoinAccept goes out as a `Transmit` after this."""

    device: DeviceRecord
    dev_nonce: int
    reception: Reception
    received_at: float
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class JoinRejected:
    """A refused JoinRequest (`device` None for an unknown DevEUI)."""

    reason: str
    detail: str
    dev_eui: str
    dev_nonce: int
    last_dev_nonce: int | None
    device: DeviceRecord | None
    reception: Reception
    received_at: float
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class FcntReset:
    """A device's uplink counter restarted low (it lost its state): `last_fcnt` was accepted before, `fcnt16` came
    now; `accepted` per the device's `policy`."""

    device: DeviceRecord
    last_fcnt: int
    fcnt16: int
    accepted: bool
    policy: str
    at: float


@dataclass(frozen=True, slots=True)
class DownlinkStatus:
    """A queued downlink moved: status queued | sent | acked | failed, with a reason where there is one."""

    asset_id: str
    dev_eui: str | None
    downlink_id: str | None
    status: str
    reason: str | None
    fcnt_down: int | None
    fport: int | None
    at: float


@dataclass(frozen=True, slots=True)
class DownlinkDropped:
    """A frame for a device that could not be sent in this uplink's windows (an ACK, MAC commands, a JoinAccept):
    `reason` is a counter label. Queued application downlinks are never dropped: they stay queued."""

    dev_eui: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class MacEvent:
    """Something the MAC layer reports about a device (e.g. its battery from DevStatusAns): `kind` and JSON fields."""

    device: DeviceRecord
    kind: str
    fields: dict
    at: float


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send `txpk` through gateway `gateway_eui` (PULL_RESP), then report its TX_ACK with `tx_ack(ref, ...)`."""

    ref: int
    gateway_eui: str
    txpk: Txpk


@dataclass(frozen=True, slots=True)
class CollectAt:
    """Call `collect(now)` at `deadline` (the session's clock): frames gathered for deduplication are due then."""

    deadline: float


Output = (
    UplinkAccepted | UplinkRejected | UplinkRepeated | JoinAccepted | JoinRejected | FcntReset | DownlinkStatus
    | DownlinkDropped | MacEvent | Transmit | CollectAt
)


def next_fcnt(last: int | None, fcnt16: int) -> int | None:
    """The 32-bit counter of an uplink whose on-air counter is `fcnt16`, given the last accepted value `last`:
    the smallest value > last with those low 16 bits, if it is at most MAX_FCNT_GAP ahead (any value for a first
    uplink). None when there is no such value."""
    if last is None:
        return fcnt16
    candidate = forward_fcnt(last, fcnt16)
    if candidate is None or candidate - last > MAX_FCNT_GAP:
        return None
    return candidate


def forward_fcnt(last: int, fcnt16: int) -> int | None:
    """The smallest 32-bit value > last with low 16 bits `fcnt16`, however far ahead; None past 2^32 - 1."""
    candidate = (last & ~0xFFFF) | fcnt16
    if candidate <= last:
        candidate += _FCNT16
    return candidate if candidate <= FCNT_MAX else None


def previous_fcnt(last: int, fcnt16: int) -> int | None:
    """The largest value <= last with low 16 bits `fcnt16` (the counter a replayed frame carries); None below 0."""
    candidate = (last & ~0xFFFF) | fcnt16
    if candidate > last:
        candidate -= _FCNT16
    return candidate if candidate >= 0 else None


@dataclass(frozen=True, slots=True)
class _Window:
    """One receive window of an uplink: concentrator time, frequency (Hz), data rate, and the agent-clock instant
    after which it is out of reach."""

    number: int
    tmst: int
    freq: int
    dr: int
    reachable_until: float


@dataclass(frozen=True, slots=True)
class _Route:
    """Where and when a downlink for an uplink can go: through `gateway`, in `first` (RX1, or RX2 when RX1 is out of
    reach), with `fallback` (RX2) left when `first` is RX1. `rx1_dr` is the best data rate the uplink offers."""

    gateway: str
    first: _Window
    fallback: _Window | None
    rx1_dr: int


@dataclass(slots=True)
class _Flight:
    """A downlink handed to a gateway and waiting for its TX_ACK."""

    dev_eui: str
    asset_id: str
    session_id: str | None
    gateway_eui: str
    phy: bytes
    window: _Window
    rx2: _Window | None
    sent_at: float
    fcnt_down: int | None = None
    item: QueuedDownlink | None = None
    mac_commands: tuple[MacCommand, ...] = ()
    join: bool = False


def _txpk(window: _Window, phy: bytes) -> Txpk:
    sf, bw_hz = eu868.DATA_RATES[window.dr]
    return Txpk(
        freq=round(window.freq / _US, 6), rfch=eu868.DOWNLINK_RF_CHAIN, powe=eu868.DOWNLINK_POWER_DBM, sf=sf,
        bw_khz=bw_hz // 1000, codr="4/5", ipol=True, data=phy, tmst=window.tmst, ncrc=True,
    )


class SessionLayer:
    """The edge network server's state machine over `registry`. See the module docstring."""

    def __init__(
        self,
        registry: Registry,
        schemas: SchemaBook | None = None,
        net_id: int = 0,
        dedup_window_s: float = DEFAULT_WINDOW_S,
        adr_margin_db: float = 10.0,
    ) -> None:
        self.registry = registry
        self.schemas = schemas or SchemaBook()
        self.dedup = Deduplicator(dedup_window_s)
        self.joins = JoinServer(registry, net_id)
        self.mac = MacLayer(adr_margin_db=adr_margin_db)
        self._keys: dict[tuple[str, str | None], SessionKeys] = {}
        self._mac_states: dict[str, tuple[str, MacState]] = {}  # DevEUI -> (the JSON stored, its MacState)
        self._queues: dict[str, list[QueuedDownlink]] = registry.queued_downlinks()
        self._flights: dict[int, _Flight] = {}
        self._refs = itertools.count(1)

    # --- uplinks ------------------------------------------------------------------------------------------------------

    def receive(self, phy: bytes, reception: Reception, now: float) -> list[Output]:
        """Take one reception (CRC ok) for deduplication: a `CollectAt` when it is a frame's first copy (or, with a
        zero window, the frame's outputs at once), nothing for a copy that joins it, a `late_duplicate` rejection
        for a copy that came after its frame was handled."""
        phy = bytes(phy)
        admitted = self.dedup.add(phy, reception, now)
        if admitted is Admitted.LATE:
            detail = f"copy from gateway {reception.gateway_eui} came after the dedup window"
            return [UplinkRejected("late_duplicate", detail, reception, now)]
        if admitted is Admitted.OPENED:
            if self.dedup.window_s == 0:
                return self.collect(now)
            return [CollectAt(now + self.dedup.window_s)]
        return []

    def next_deadline(self) -> float | None:
        """When the next frame gathered for deduplication is due (None when none is)."""
        return self.dedup.next_deadline()

    def collect(self, now: float) -> list[Output]:
        """Handle every frame whose dedup window has closed."""
        outputs: list[Output] = []
        for collected in self.dedup.due(now):
            outputs.extend(self._frame(collected, now))
        return outputs

    def handle_uplink(self, phy: bytes, reception: Reception, now: float) -> list[Output]:
        """Handle one received PHYPayload (CRC ok) at once, without waiting for copies; never raises on any bytes."""
        phy = bytes(phy)
        return self._frame(Collected(phy, now, now, {reception.gateway_eui: reception}), now)

    def _frame(self, collected: Collected, now: float) -> list[Output]:
        receptions = collected.ordered()
        duplicates = len(receptions) - 1 + collected.extra_copies
        best, received_at = receptions[0], collected.first_at
        try:
            frame = parse_phy(collected.phy)
        except FrameError as exc:
            return [UplinkRejected(exc.reason, exc.detail, best, received_at, duplicates=duplicates)]
        if isinstance(frame, JoinRequest):
            return self._join(frame, receptions, received_at, now, duplicates)
        if not isinstance(frame, DataFrame) or not frame.uplink:
            detail = f"{type(frame).__name__} is not an uplink"
            return [UplinkRejected("not_uplink", detail, best, received_at, duplicates=duplicates)]
        return self._data_uplink(frame, receptions, received_at, now, duplicates)

    def _session_keys(self, device: DeviceRecord) -> SessionKeys:
        """Keyed crypto contexts of the device's current session, built once per session."""
        cache_key = (device.dev_eui, device.session_id)
        keys = self._keys.get(cache_key)
        if keys is None:
            keys = SessionKeys(bytes.fromhex(device.nwk_s_key), bytes.fromhex(device.app_s_key))
            self._keys[cache_key] = keys
        return keys

    def _data_uplink(
        self, frame: DataFrame, receptions: tuple[Reception, ...], received_at: float, now: float, duplicates: int
    ) -> list[Output]:
        best = receptions[0]
        dev_addr = f"{frame.dev_addr:08x}"
        candidates = [d for d in self.registry.devices_by_dev_addr(frame.dev_addr) if d.nwk_s_key and d.app_s_key]
        if not candidates:
            detail = f"no device holds DevAddr {dev_addr}"
            return [self._from_retired(frame, best, received_at, dev_addr, duplicates)
                    or UplinkRejected("unknown_dev_addr", detail, best, received_at, dev_addr, duplicates=duplicates)]
        for device in candidates:
            fcnt = next_fcnt(device.fcnt_up, frame.fcnt16)
            if fcnt is None:
                continue
            try:
                payload = self._session_keys(device).open(frame, fcnt)
            except FrameError:
                continue
            return self._accepted(device, frame, fcnt, payload, receptions, received_at, now, duplicates)
        return self._not_fresh(frame, candidates, receptions, received_at, now, duplicates, dev_addr)

    def _not_fresh(
        self, frame: DataFrame, candidates: list[DeviceRecord], receptions: tuple[Reception, ...], received_at: float,
        now: float, duplicates: int, dev_addr: str,
    ) -> list[Output]:
        """No candidate accepts the frame as a fresh uplink: find whether one of them sent it again, after losing
        its counter, with a stale counter, or with one too far ahead."""
        best = receptions[0]
        for device in candidates:
            last = device.fcnt_up
            if last is None:
                continue
            keys = self._session_keys(device)
            stale = previous_fcnt(last, frame.fcnt16)
            stale_ok = stale is not None and _mic_ok(keys, frame, stale)
            if stale_ok and stale == last and frame.confirmed:
                return self._repeated(device, frame, receptions, received_at, now, duplicates)
            reset = frame.fcnt16 if last - frame.fcnt16 > REPLAY_WINDOW else None
            reset_ok = reset is not None and (stale_ok if stale == reset else _mic_ok(keys, frame, reset))
            if reset_ok:
                return self._fcnt_reset(device, frame, reset, receptions, received_at, now, duplicates)
            if stale_ok:
                detail = f"FCnt {stale} is not above the last accepted {last}"
                return [UplinkRejected("fcnt_replay", detail, best, received_at, dev_addr, device.dev_eui, duplicates)]
            ahead = forward_fcnt(last, frame.fcnt16)
            if ahead is not None and ahead - last > MAX_FCNT_GAP and _mic_ok(keys, frame, ahead):
                detail = f"FCnt {ahead} is {ahead - last} past the last accepted {last}"
                return [UplinkRejected("fcnt_gap", detail, best, received_at, dev_addr, device.dev_eui, duplicates)]
        detail = f"MIC verifies for none of {len(candidates)} device(s) with DevAddr {dev_addr} (FCnt16 {frame.fcnt16})"
        return [self._from_retired(frame, best, received_at, dev_addr, duplicates)
                or UplinkRejected("mic_failed", detail, best, received_at, dev_addr, duplicates=duplicates)]

    def _from_retired(
        self, frame: DataFrame, best: Reception, received_at: float, dev_addr: str, duplicates: int
    ) -> UplinkRejected | None:
        """A frame that a retired device sent (its MIC verifies under the session it had): rejected as
        `retired_device`, never published as data; None when no retired device sent it."""
        for device in self.registry.retired_by_dev_addr(frame.dev_addr):
            if not (device.nwk_s_key and device.app_s_key):
                continue
            fcnt = frame.fcnt16 if device.fcnt_up is None else forward_fcnt(device.fcnt_up, frame.fcnt16)
            if fcnt is not None and _mic_ok(self._session_keys(device), frame, fcnt):
                detail = f"retired device {device.dev_eui} (last on asset {device.asset_id}) sent FCnt {fcnt}"
                return UplinkRejected("retired_device", detail, best, received_at, dev_addr, device.dev_eui,
                                      duplicates)
        return None

    def _fcnt_reset(
        self, device: DeviceRecord, frame: DataFrame, fcnt: int, receptions: tuple[Reception, ...], received_at: float,
        now: float, duplicates: int,
    ) -> list[Output]:
        accepted = device.fcnt_reset_policy == "accept"
        event = FcntReset(device, device.fcnt_up, frame.fcnt16, accepted, device.fcnt_reset_policy, received_at)
        if not accepted:
            detail = (f"FCnt restarted at {fcnt} below the last accepted {device.fcnt_up}; "
                      f"policy {device.fcnt_reset_policy}")
            rejected = UplinkRejected("fcnt_reset", detail, receptions[0], received_at, f"{frame.dev_addr:08x}",
                                      device.dev_eui, duplicates)
            return [event, rejected]
        payload = self._session_keys(device).open(frame, fcnt)
        return [event, *self._accepted(device, frame, fcnt, payload, receptions, received_at, now, duplicates)]

    def _accepted(
        self, device: DeviceRecord, frame: DataFrame, fcnt: int, payload: bytes, receptions: tuple[Reception, ...],
        received_at: float, now: float, duplicates: int,
    ) -> list[Output]:
        best = receptions[0]
        before = self._mac_state(device)
        result, info = self._mac_uplink(device, frame, fcnt, payload, receptions, received_at, before)
        device = self._record_uplink(device, fcnt, before, result.state)
        outputs: list[Output] = [
            UplinkAccepted(device, fcnt, frame.fport, payload, frame.confirmed, best, received_at, receptions,
                           frame.adr, duplicates)
        ]
        if result.events:
            outputs.extend(_mac_events(device, result.events, received_at))
        outputs.extend(self._settle_confirmed(device, frame.ack, now))
        commands = result.answers + self.mac.plan_downlink(result.state, info)
        outputs.extend(self._downlink_opportunity(device, frame, commands, result.downlink_required, receptions,
                                                  received_at, now))
        return outputs

    def _repeated(
        self, device: DeviceRecord, frame: DataFrame, receptions: tuple[Reception, ...], received_at: float,
        now: float, duplicates: int,
    ) -> list[Output]:
        """A confirmed uplink again with the last FCnt: not published again, but answered (ACK, MAC answers)."""
        payload = self._session_keys(device).open(frame, device.fcnt_up)
        result, info = self._mac_uplink(device, frame, device.fcnt_up, payload, receptions, received_at,
                                        self._mac_state(device))
        device = self.registry.record_uplink(device, device.fcnt_up, self._mac_json(device, result.state))
        outputs: list[Output] = [UplinkRepeated(device, device.fcnt_up, receptions[0], received_at, duplicates)]
        commands = result.answers + self.mac.plan_downlink(result.state, info)
        outputs.extend(self._downlink_opportunity(device, frame, commands, result.downlink_required, receptions,
                                                  received_at, now))
        return outputs

    def _mac_uplink(
        self, device: DeviceRecord, frame: DataFrame, fcnt: int, payload: bytes, receptions: tuple[Reception, ...],
        received_at: float, state: MacState,
    ) -> tuple[MacResult, UplinkInfo]:
        """The MAC layer's view of an uplink (the device's MAC `state` before it): its commands (FOpts, or the FPort
        0 payload) through `on_uplink`."""
        best = receptions[0]
        dr = eu868.data_rate(best.sf, best.bw)
        info = UplinkInfo(fcnt, state.dr if dr is None else dr, best.snr, len(receptions), frame.adr,
                          frame.adr_ack_req, received_at)
        data = payload if frame.fport == 0 else frame.fopts
        commands = self._uplink_commands(device, data) if data else []
        return self.mac.on_uplink(state, commands, info), info

    def _uplink_commands(self, device: DeviceRecord, data: bytes) -> list[MacCommand]:
        """The MAC commands of an uplink: up to the first one that does not parse (LoRaWAN 1.0.4 acts on those)."""
        commands, error = parse_mac_commands_prefix(data, uplink=True)
        if error is not None:
            log.warning("mac: device %s sent MAC commands that do not parse: %s", device.dev_eui, error)
        return commands

    def _mac_state(self, device: DeviceRecord) -> MacState:
        """The device's MAC state (the defaults when it has none, or when the stored one does not load), loaded
        once per stored version."""
        text = device.mac_state
        if text is None:
            return MacState()
        cached = self._mac_states.get(device.dev_eui)
        if cached is not None and (cached[0] is text or cached[0] == text):
            return cached[1]
        try:
            state = MacState.from_dict(json.loads(text))
        except ValueError as exc:
            log.error("mac: state of device %s does not load (%s); starting from the defaults", device.dev_eui, exc)
            state = MacState()
        self._mac_states[device.dev_eui] = (text, state)
        return state

    def _record_uplink(self, device: DeviceRecord, fcnt: int, before: MacState, state: MacState) -> DeviceRecord:
        """Store an accepted uplink's counter, and the MAC state's JSON only when more than the per-uplink
        bookkeeping changed (or every MAC_STATE_WRITE_EVERY uplinks): JSON and a row per uplink would cost more than
        the rest of the frame's handling."""
        if (device.mac_state is None or _mac_settings(before) != _mac_settings(state)
                or state.uplink_count % MAC_STATE_WRITE_EVERY == 0):
            return self.registry.record_uplink(device, fcnt, self._mac_json(device, state))
        updated = self.registry.record_uplink(device, fcnt)
        self._mac_states[device.dev_eui] = (updated.mac_state, state)  # newer than its stored JSON, kept in memory
        return updated

    def _mac_json(self, device: DeviceRecord, state: MacState) -> str:
        """The JSON to store for the device's new MAC state (remembered with the state it stands for)."""
        text = json.dumps(state.to_dict(), separators=(",", ":"))
        self._mac_states[device.dev_eui] = (text, state)
        return text

    # --- joins --------------------------------------------------------------------------------------------------------

    def _join(
        self, request: JoinRequest, receptions: tuple[Reception, ...], received_at: float, now: float, duplicates: int
    ) -> list[Output]:
        best = receptions[0]
        initial_state = MacState.after_join(eu868.CFLIST_FREQUENCIES_HZ, 0, eu868.RX2_DR, join.RX_DELAY_S)
        outcome = self.joins.handle(request, json.dumps(initial_state.to_dict(), separators=(",", ":")))
        if not isinstance(outcome, JoinGranted):
            return [JoinRejected(outcome.reason, outcome.detail, outcome.dev_eui, outcome.dev_nonce,
                                 outcome.last_dev_nonce, outcome.device, best, received_at, duplicates)]
        device = outcome.device
        outputs: list[Output] = [JoinAccepted(device, outcome.dev_nonce, best, received_at, duplicates)]
        self._keys = {key: keys for key, keys in self._keys.items() if key[0] != device.dev_eui}
        for item in list(self._queues.get(device.dev_eui, [])):
            if item.state == "awaiting_ack":  # sent in the old session; its ACK can no longer come
                outputs.extend(self._finish(device.asset_id, item, "failed", "rejoined_before_ack", now))
        route = self._route(receptions, received_at, now, eu868.JOIN_ACCEPT_DELAY1_S, 0,
                            eu868.RX2_FREQUENCY_HZ, eu868.RX2_DR)
        if route is None:
            detail = "no gateway with a downlink path reaches a JoinAccept window"
            outputs.append(DownlinkDropped(device.dev_eui, "join_accept_no_window", detail))
            return outputs
        flight = _Flight(device.dev_eui, device.asset_id, device.session_id, route.gateway, outcome.phy, route.first,
                         route.fallback, now, join=True)
        outputs.append(self._fly(flight))
        return outputs

    # --- downlinks ----------------------------------------------------------------------------------------------------

    def request_downlink(self, asset_id: str, raw: bytes, now: float) -> list[Output]:
        """Queue a downlink request (JSON bytes from `<prefix>/assets/<asset_id>/down`): a `queued` status, or a
        `failed` one with the reason."""
        device = self.registry.device_for_asset(asset_id)
        if device is None:
            return [DownlinkStatus(asset_id, None, _request_id(raw), "failed", "unknown_asset", None, None, now)]

        def failed(reason: str, downlink_id: str | None, fport: int | None) -> list[Output]:
            return [DownlinkStatus(asset_id, device.dev_eui, downlink_id, "failed", reason, None, fport, now)]

        try:
            item = parse_downlink_request(raw, device.dev_eui, lambda: self.schemas.get(device.kind), _new_id)
        except DownlinkRequestError as exc:
            log.info("downlink: request for %s refused: %s", asset_id, exc)
            return failed(exc.reason, exc.downlink_id, exc.fport)
        queue = self._queues.setdefault(device.dev_eui, [])
        if any(held.id == item.id for held in queue):
            return failed("duplicate_id", item.id, item.fport)
        if len(queue) >= MAX_QUEUE:
            return failed("queue_full", item.id, item.fport)
        try:
            self.registry.save_downlink(item)
        except sqlite3.Error as exc:
            log.error("downlink: cannot store a request for %s: %s", asset_id, exc)
            return failed("registry_unwritable", item.id, item.fport)
        queue.append(item)
        return [DownlinkStatus(asset_id, device.dev_eui, item.id, "queued", None, None, item.fport, now)]

    def queued(self, dev_eui: str) -> list[QueuedDownlink]:
        """The device's downlink queue, oldest first."""
        return list(self._queues.get(dev_eui, []))

    def _settle_confirmed(self, device: DeviceRecord, ack: bool, now: float) -> list[Output]:
        """A new uplink settles the confirmed downlink waiting at the head of the queue: acked by its ACK bit, else
        one more try (sent again in this uplink's window) or failed after CONFIRMED_DOWNLINK_TRIES."""
        queue = self._queues.get(device.dev_eui)
        if not queue or queue[0].state != "awaiting_ack":
            return []
        item = queue[0]
        if ack:
            return self._finish(device.asset_id, item, "acked", None, now)
        attempts = item.attempts + 1
        if attempts >= CONFIRMED_DOWNLINK_TRIES:
            return self._finish(device.asset_id, item, "failed", "no_ack", now)
        self._store_item(replace(item, state="queued", attempts=attempts))
        return []

    def _finish(self, asset_id: str, item: QueuedDownlink, status: str, reason: str | None,
                now: float) -> list[Output]:
        """Take an item off the queue with its final status."""
        queue = self._queues.get(item.dev_eui, [])
        queue[:] = [held for held in queue if held.id != item.id]
        try:
            self.registry.delete_downlink(item.id)
        except sqlite3.Error as exc:  # it stays in the file and comes back after a restart: say so
            log.error("downlink: %s is done (%s) but stays in the registry file: %s", item.id, status, exc)
        return [DownlinkStatus(asset_id, item.dev_eui, item.id, status, reason, item.fcnt_down, item.fport, now)]

    def drop_inactive_queues(self, now: float) -> list[Output]:
        """Downlinks queued for devices that are no longer active (retired, or unbound by an undone swap) can never
        go out: each fails with reason `device_inactive` (call after the registry changed)."""
        outputs: list[Output] = []
        for dev_eui in [eui for eui, queue in self._queues.items() if queue]:
            device = self.registry.get(dev_eui)
            if device is None or device.state != "active":
                asset_id = device.asset_id if device is not None else ""
                for item in list(self._queues[dev_eui]):
                    outputs.extend(self._finish(asset_id, item, "failed", "device_inactive", now))
        return outputs

    def _store_item(self, item: QueuedDownlink) -> None:
        """Replace an item in its queue (memory and file)."""
        queue = self._queues.get(item.dev_eui, [])
        for i, held in enumerate(queue):
            if held.id == item.id:
                queue[i] = item
        try:
            self.registry.save_downlink(item)
        except sqlite3.Error as exc:
            log.error("downlink: state of %s not written: %s", item.id, exc)

    def _next_item(self, dev_eui: str) -> QueuedDownlink | None:
        """The oldest queued downlink ready to go (none while the head waits for an ACK or is on its way)."""
        queue = self._queues.get(dev_eui)
        if not queue or queue[0].state != "queued":
            return None
        if any(flight.item is not None and flight.item.id == queue[0].id for flight in self._flights.values()):
            return None
        return queue[0]

    def _route(
        self, receptions: tuple[Reception, ...], received_at: float, now: float, delay_s: int, rx1_dr_offset: int,
        rx2_freq: int, rx2_dr: int,
    ) -> _Route | None:
        """The route through the best-SNR gateway that can send and gave the uplink's timing; None when there is no
        such gateway or both windows are out of reach."""
        for reception in receptions:
            uplink_dr = eu868.data_rate(reception.sf, reception.bw)
            if reception.can_transmit and reception.tmst is not None and reception.freq and uplink_dr is not None:
                break
        else:
            return None
        rx1_dr = eu868.rx1_data_rate(uplink_dr, rx1_dr_offset)
        rx1 = _Window(1, (reception.tmst + delay_s * _US) & 0xFFFFFFFF, reception.freq, rx1_dr,
                      received_at + delay_s - SCHEDULE_MARGIN_S)
        rx2 = _Window(2, (reception.tmst + (delay_s + 1) * _US) & 0xFFFFFFFF, rx2_freq, rx2_dr,
                      received_at + delay_s + 1 - SCHEDULE_MARGIN_S)
        if now < rx1.reachable_until:
            return _Route(reception.gateway_eui, rx1, rx2, rx1_dr)
        if now < rx2.reachable_until:
            return _Route(reception.gateway_eui, rx2, None, rx1_dr)
        return None

    def _downlink_opportunity(
        self, device: DeviceRecord, uplink: DataFrame, mac_commands: list[MacCommand], required: bool,
        receptions: tuple[Reception, ...], received_at: float, now: float,
    ) -> list[Output]:
        """Pack and schedule the device's downlink for this uplink, if it needs one (`required`: the MAC layer wants
        one even if it carries nothing)."""
        item = self._next_item(device.dev_eui)
        if not (uplink.confirmed or mac_commands or item or required):
            return []
        state = self._mac_state(device)
        route = self._route(receptions, received_at, now, state.rx_delay_s, state.rx1_dr_offset,
                            state.rx2_frequency_hz, state.rx2_dr)
        if route is None:
            outputs: list[Output] = [DownlinkDropped(device.dev_eui, "no_downlink_window",
                                                     "no gateway with a downlink path reaches a receive window")]
            if item is not None:
                outputs.append(DownlinkStatus(device.asset_id, device.dev_eui, item.id, "queued", "too_late", None,
                                              item.fport, now))
            return outputs
        outputs = []
        if item is not None and len(item.payload) > eu868.MAX_PAYLOAD[route.rx1_dr]:
            outputs.extend(self._finish(device.asset_id, item, "failed", f"too_long_for_dr{route.rx1_dr}", now))
            item = self._next_item(device.dev_eui)
        room = eu868.MAX_PAYLOAD[route.first.dr]
        built = [build_mac_command(command) for command in mac_commands]
        mac_bytes = b"".join(built)
        fopts = frm_payload = b""
        fport: int | None = None
        sent_item = None
        sent_commands: list[MacCommand] = []
        if item is not None and len(mac_bytes) <= MAX_FOPTS_LEN and len(item.payload) + len(mac_bytes) <= room:
            fport, frm_payload, fopts = item.fport, item.payload, mac_bytes
            sent_item, sent_commands = item, mac_commands
        elif mac_commands:  # alone on FPort 0: whole commands, as many as the window's data rate carries
            fport = 0
            for command, wire in zip(mac_commands, built):
                if len(frm_payload) + len(wire) <= room:
                    sent_commands.append(command)
                    frm_payload += wire
        elif item is not None and not (uplink.confirmed or required):
            return outputs  # nothing but an item this window cannot carry: it waits for the next uplink
        more = [held for held in self._queues.get(device.dev_eui, [])
                if held.state == "queued" and (sent_item is None or held.id != sent_item.id)]
        frame = DataFrame(
            mtype=MType.CONFIRMED_DOWN if sent_item is not None and sent_item.confirmed else MType.UNCONFIRMED_DOWN,
            dev_addr=int(device.dev_addr, 16), fcnt16=0, adr=uplink.adr, ack=uplink.confirmed, f_pending=bool(more),
            fopts=fopts, fport=fport, frm_payload=frm_payload,
        )
        try:
            reserved = self.registry.reserve_fcnt_down(device)
        except (LookupError, sqlite3.Error) as exc:
            outputs.append(DownlinkDropped(device.dev_eui, "fcnt_down_unavailable", str(exc)))
            return outputs
        fcnt_down = reserved.fcnt_down - 1
        phy = self._session_keys(device).seal(replace(frame, fcnt16=fcnt_down & 0xFFFF), fcnt_down)
        flight = _Flight(device.dev_eui, device.asset_id, device.session_id, route.gateway, phy, route.first,
                         route.fallback, now, fcnt_down, sent_item, tuple(sent_commands))
        outputs.append(self._fly(flight))
        return outputs

    def _fly(self, flight: _Flight) -> Transmit:
        ref = next(self._refs)
        self._flights[ref] = flight
        return Transmit(ref, flight.gateway_eui, _txpk(flight.window, flight.phy))

    def tx_ack(self, ref: int, error: str, now: float) -> list[Output]:
        """A gateway's TX_ACK for the `Transmit` with `ref`: `error` is txpk_ack.error ("NONE" when it went out)."""
        flight = self._flights.pop(ref, None)
        if flight is None:
            return []
        if error == "NONE":
            return self._sent(flight, None, now)
        rx2 = flight.rx2
        rx2_possible = rx2 is not None and now < rx2.reachable_until and eu868.fits(len(flight.phy), rx2.dr)
        if error == "TOO_LATE" and rx2_possible:
            flight.window, flight.rx2, flight.sent_at = rx2, None, now
            return [self._fly(flight)]
        reason = "too_late" if error == "TOO_LATE" else f"tx_{error.lower()}"
        if flight.item is None:
            what = "JoinAccept" if flight.join else "downlink"
            detail = f"gateway {flight.gateway_eui} refused the {what}: {error}"
            return [DownlinkDropped(flight.dev_eui, ("join_accept_" if flight.join else "downlink_") + reason, detail)]
        if error == "TOO_LATE":  # neither window: the item waits for the device's next uplink
            return [DownlinkStatus(flight.asset_id, flight.dev_eui, flight.item.id, "queued", reason, flight.fcnt_down,
                                   flight.item.fport, now)]
        return self._finish(flight.asset_id, replace(flight.item, fcnt_down=flight.fcnt_down), "failed", reason, now)

    def expire(self, now: float) -> list[Output]:
        """Downlinks whose TX_ACK did not come within TX_ACK_TIMEOUT_S count as sent (forwarders of protocol version
        1 send none)."""
        outputs: list[Output] = []
        for ref, flight in list(self._flights.items()):
            if now - flight.sent_at >= TX_ACK_TIMEOUT_S:
                del self._flights[ref]
                outputs.extend(self._sent(flight, "no_tx_ack", now))
        return outputs

    def _sent(self, flight: _Flight, reason: str | None, now: float) -> list[Output]:
        if flight.mac_commands:
            device = self.registry.get(flight.dev_eui)
            if device is not None and device.session_id == flight.session_id:
                state = self.mac.on_downlink_sent(self._mac_state(device), flight.mac_commands, now)
                self.registry.record_mac_state(device, self._mac_json(device, state))
        item = flight.item
        if item is None:
            return []
        item = replace(item, fcnt_down=flight.fcnt_down)
        if not item.confirmed:
            return self._finish(flight.asset_id, item, "sent", reason, now)
        self._store_item(replace(item, state="awaiting_ack"))
        return [DownlinkStatus(flight.asset_id, flight.dev_eui, item.id, "sent", reason, item.fcnt_down, item.fport,
                               now)]


def _mic_ok(keys: SessionKeys, frame: DataFrame, fcnt: int) -> bool:
    try:
        keys.open(frame, fcnt)
    except FrameError:
        return False
    return True


def _mac_events(device: DeviceRecord, events: list[dict], at: float) -> list[MacEvent]:
    """The MAC layer's event dicts ({"type": ..., fields}) as outputs."""
    outputs = []
    for event in events:
        fields = dict(event)
        outputs.append(MacEvent(device, str(fields.pop("type")), fields, at))
    return outputs



def _new_id() -> str:
    return uuid.uuid4().hex


def _request_id(raw: bytes) -> str | None:
    """The "id" of a downlink request that is otherwise refused, when it has a usable one."""
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    downlink_id = request.get("id") if isinstance(request, dict) else None
    return downlink_id if isinstance(downlink_id, str) and len(downlink_id) <= 64 else None

