"""The LoRaWAN session layer, sans-IO: a PHYPayload, its reception metadata and the time go in, events come out.

For a data uplink: structural parse (reasons from `dos_codecs.lorawan`), candidate devices by DevAddr, 32-bit FCnt
rebuild, MIC check over the candidates, replay check, decryption, the new FCnt stored in the registry, and an
`UplinkAccepted`. Anything else yields an `UplinkRejected` with a short reason (a counter label) and a detail line
that never holds a key or a payload.
"""

from __future__ import annotations

from dataclasses import dataclass

from dos_codecs.crypto import SessionKeys
from dos_codecs.errors import FrameError
from dos_codecs.lorawan import DataFrame, JoinRequest, parse_phy

from dos_agent.registry import DeviceRecord, Registry

#: Largest accepted step of the 32-bit uplink counter over the last accepted value.
MAX_FCNT_GAP = 16384
FCNT_MAX = 0xFFFFFFFF
_FCNT16 = 0x10000


@dataclass(frozen=True, slots=True)
class Reception:
    """How a frame was received. `freq` and `bw` are in Hz; `tmst` is the concentrator's µs counter; `time` is the
    gateway's own timestamp (ISO 8601) when it has one. Unknown values are None."""

    gateway_eui: str
    tmst: int | None = None
    freq: int | None = None
    sf: int | None = None
    bw: int | None = None
    rssi: float | None = None
    snr: float | None = None
    time: str | None = None


@dataclass(frozen=True, slots=True)
class UplinkAccepted:
    """An authenticated, fresh data uplink. `payload` is the decrypted FRMPayload (empty without FPort); `device` is
    the record after storing `fcnt`. `received_at` is the agent's clock (Unix seconds)."""

    device: DeviceRecord
    fcnt: int
    fport: int | None
    payload: bytes
    confirmed: bool
    reception: Reception
    received_at: float


@dataclass(frozen=True, slots=True)
class UplinkRejected:
    """A frame that was not accepted. `reason` is a counter label; `detail` explains it (no keys, no payload)."""

    reason: str
    detail: str
    reception: Reception
    received_at: float
    dev_addr: str | None = None
    dev_eui: str | None = None


Event = UplinkAccepted | UplinkRejected


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


class SessionLayer:
    """Turns received PHYPayloads into events, keeping frame counters in `registry`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._keys: dict[tuple[str, str | None], SessionKeys] = {}

    def _session_keys(self, device: DeviceRecord) -> SessionKeys:
        """Keyed crypto contexts of the device's current session, built once per session."""
        cache_key = (device.dev_eui, device.session_id)
        keys = self._keys.get(cache_key)
        if keys is None:
            keys = SessionKeys(bytes.fromhex(device.nwk_s_key), bytes.fromhex(device.app_s_key))
            self._keys[cache_key] = keys
        return keys

    def handle_uplink(self, phy: bytes, reception: Reception, now: float) -> list[Event]:
        """Process one received PHYPayload (CRC ok) into events; never raises on any input bytes."""
        try:
            frame = parse_phy(phy)
        except FrameError as exc:
            return [UplinkRejected(exc.reason, exc.detail, reception, now)]
        if isinstance(frame, JoinRequest):
            detail = f"JoinRequest from DevEUI {frame.dev_eui.hex()}"
            return [UplinkRejected("join_not_supported_yet", detail, reception, now, dev_eui=frame.dev_eui.hex())]
        if not isinstance(frame, DataFrame) or not frame.uplink:
            return [UplinkRejected("not_uplink", f"{type(frame).__name__} is not an uplink", reception, now)]
        return [self._data_uplink(frame, reception, now)]

    def _data_uplink(self, frame: DataFrame, reception: Reception, now: float) -> Event:
        dev_addr = f"{frame.dev_addr:08x}"
        candidates = [d for d in self.registry.devices_by_dev_addr(frame.dev_addr) if d.nwk_s_key and d.app_s_key]
        if not candidates:
            return UplinkRejected("unknown_dev_addr", f"no device holds DevAddr {dev_addr}", reception, now, dev_addr)
        for device in candidates:
            fcnt = next_fcnt(device.fcnt_up, frame.fcnt16)
            if fcnt is None:
                continue
            try:
                payload = self._session_keys(device).open(frame, fcnt)
            except FrameError:
                continue
            device = self.registry.record_uplink(device, fcnt)
            return UplinkAccepted(device, fcnt, frame.fport, payload, frame.confirmed, reception, now)
        return self._explain_rejection(frame, candidates, reception, now, dev_addr)

    def _explain_rejection(
        self, frame: DataFrame, candidates: list[DeviceRecord], reception: Reception, now: float, dev_addr: str
    ) -> UplinkRejected:
        """No candidate accepts the frame: find whether one of them sent it with a stale or far-ahead counter."""
        for device in candidates:
            if device.fcnt_up is None:
                continue
            keys = self._session_keys(device)
            stale = previous_fcnt(device.fcnt_up, frame.fcnt16)
            if stale is not None and _mic_ok(keys, frame, stale):
                detail = f"FCnt {stale} is not above the last accepted {device.fcnt_up}"
                return UplinkRejected("fcnt_replay", detail, reception, now, dev_addr, device.dev_eui)
            ahead = forward_fcnt(device.fcnt_up, frame.fcnt16)
            if ahead is not None and ahead - device.fcnt_up > MAX_FCNT_GAP and _mic_ok(keys, frame, ahead):
                detail = f"FCnt {ahead} is {ahead - device.fcnt_up} past the last accepted {device.fcnt_up}"
                return UplinkRejected("fcnt_gap", detail, reception, now, dev_addr, device.dev_eui)
        detail = f"MIC verifies for none of {len(candidates)} device(s) with DevAddr {dev_addr} (FCnt16 {frame.fcnt16})"
        return UplinkRejected("mic_failed", detail, reception, now, dev_addr)


def _mic_ok(keys: SessionKeys, frame: DataFrame, fcnt: int) -> bool:
    try:
        keys.open(frame, fcnt)
    except FrameError:
        return False
    return True
