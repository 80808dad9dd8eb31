"""The air: LoRa transmissions travelling from one radio to every radio that listens on the same settings.

A receiver hears a transmission when, at the instant its preamble starts, it listens on the same frequency, spreading factor,
bandwidth and sync word with matching IQ polarity (`Receiver.hears`). RSSI comes from a log-distance path-loss model between
the two positions, SNR from RSSI against the thermal noise floor; below the per-SF demodulation floor nothing is detected.
Same-frequency, same-SF transmissions that overlap in time collide unless the wanted one is at least 6 dB stronger (capture).
Fault injection for tests: `drop_next` (the next frame of a sender is not detected) and `corrupt_next` (it is delivered with
a valid LoRa CRC but a flipped bit, an undetected corruption). Every reception attempt by a matching receiver is logged
(`log`, and as JSON lines to `log_path` when given).
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dos_rig.airtime import DEMOD_FLOOR_DB, noise_floor_dbm, time_on_air_us
from dos_rig.clock import VirtualClock

CAPTURE_THRESHOLD_DB = 6.0
# LoRa receivers report SNR up to about +10..+13 dB however strong the signal: the estimate saturates.
SNR_SATURATION_DB = 12.0
SPEED_OF_LIGHT = 299_792_458.0


@dataclass(frozen=True)
class Modulation:
    """LoRa settings of a transmission (or of a receiver listening)."""

    freq_hz: float
    sf: int
    bw_hz: int
    sync_word: int = 0x34
    iq_inverted: bool = False
    cr: int = 1  # 1..4 = 4/5..4/8
    crc: bool = True
    preamble: int = 8
    implicit_header: bool = False
    ldro: bool = False  # LowDataRateOptimize

    @property
    def datr(self) -> str:
        return f"SF{self.sf}BW{self.bw_hz // 1000}"

    @property
    def codr(self) -> str:
        return f"4/{self.cr + 4}"


@dataclass
class Transmission:
    """One packet on the air, from start_us (preamble start) to end_us."""

    sender: str
    position: tuple
    power_dbm: float
    mod: Modulation
    phy: bytes
    start_us: int
    end_us: int
    aborted: bool = False
    faults: list = field(default_factory=list)  # (kind, receiver or None, flip_bit)


@dataclass
class Reception:
    """A receiver's attempt at a transmission; `result` is 'ok', 'corrupted' or a reason it was lost."""

    tx: Transmission
    receiver: "Receiver"
    listening: Modulation
    rssi: float
    snr: float
    phy: bytes
    result: str = "ok"

    @property
    def delivered(self) -> bool:
        return self.result in ("ok", "corrupted")


class Receiver(Protocol):
    """A radio on the air (a board's SX1276, a gateway's concentrator)."""

    receiver_id: str
    position: tuple

    def hears(self, tx: Transmission) -> Modulation | None:
        """The settings it listens with if they match tx right now (frequency, SF, BW, sync word, IQ), else None."""

    def begin_reception(self, rx: Reception) -> None:
        """The preamble was detected: it is now locked on this packet."""

    def still_receiving(self, rx: Reception) -> bool:
        """Whether it still listens for rx (it may have changed mode since the preamble)."""

    def end_reception(self, rx: Reception) -> None:
        """The packet ended: rx.result says whether it arrived intact."""


def same_frequency(a_hz: float, b_hz: float, tolerance_hz: float = 5000.0) -> bool:
    return abs(a_hz - b_hz) <= tolerance_hz


def modulation_matches(listening: Modulation, sent: Modulation, tolerance_hz: float = 5000.0) -> bool:
    """Frequency (within tolerance), SF, bandwidth, sync word and IQ polarity all match."""
    return (same_frequency(listening.freq_hz, sent.freq_hz, tolerance_hz) and listening.sf == sent.sf
            and listening.bw_hz == sent.bw_hz and listening.sync_word == sent.sync_word
            and listening.iq_inverted == sent.iq_inverted)


def flip_bit(phy: bytes, bit: int | None) -> bytes:
    """phy with one bit inverted: bit n is bit n % 8 of byte n // 8; None picks bit 0 of the last byte (the MIC)."""
    if not phy:
        return phy
    index = 8 * (len(phy) - 1) if bit is None else bit % (8 * len(phy))
    altered = bytearray(phy)
    altered[index // 8] ^= 1 << (index % 8)
    return bytes(altered)


class Air:
    """Carries transmissions between receivers, with path loss, collisions, capture and fault injection."""

    def __init__(self, clock: VirtualClock, log_path: str | Path | None = None, path_loss_exponent: float = 2.7,
                 freq_tolerance_hz: float = 5000.0):
        self.clock = clock
        self.path_loss_exponent = path_loss_exponent
        self.freq_tolerance_hz = freq_tolerance_hz
        self.receivers: list[Receiver] = []
        self.transmissions: list[Transmission] = []  # recent ones (for collisions), pruned as time passes
        self.log: list[dict] = []
        self._log_lock = threading.Lock()
        self._log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self._faults: list[tuple[str, str, str | None, int | None]] = []  # (kind, sender, receiver, flip_bit)

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def attach(self, receiver: Receiver) -> None:
        self.receivers.append(receiver)

    def detach(self, receiver: Receiver) -> None:
        if receiver in self.receivers:
            self.receivers.remove(receiver)

    # --- fault injection --------------------------------------------------------------------------------------------
    def drop_next(self, sender_id: str, receiver: str | None = None) -> None:
        """The next frame sender_id transmits is not detected (by `receiver` only, or by anyone)."""
        self._faults.append(("drop", sender_id, receiver, None))

    def corrupt_next(self, sender_id: str, flip_bit: int | None = None, receiver: str | None = None) -> None:
        """The next frame sender_id transmits arrives with bit `flip_bit` inverted (default: in the last byte) and a
        valid LoRa CRC, at `receiver` only or everywhere."""
        self._faults.append(("corrupt", sender_id, receiver, flip_bit))

    # --- propagation --------------------------------------------------------------------------------------------------
    def path_loss_db(self, a: tuple, b: tuple, freq_hz: float) -> float:
        """Log-distance path loss: free space at 1 m, then 10 n log10(d)."""
        distance = max(math.dist(a, b), 1.0)
        at_one_metre = 20.0 * math.log10(4.0 * math.pi * freq_hz / SPEED_OF_LIGHT)
        return at_one_metre + 10.0 * self.path_loss_exponent * math.log10(distance)

    def rssi_at(self, tx: Transmission, position: tuple) -> float:
        return tx.power_dbm - self.path_loss_db(tx.position, position, tx.mod.freq_hz)

    def strongest_signal(self, freq_hz: float, position: tuple, sf: int | None = None, exclude: str = "") -> float | None:
        """RSSI of the strongest transmission on air now on freq_hz (and sf, when given) at position."""
        now = self.clock.now_us
        levels = [self.rssi_at(tx, position) for tx in self.transmissions
                  if tx.start_us <= now < tx.end_us and not tx.aborted and tx.sender != exclude
                  and same_frequency(tx.mod.freq_hz, freq_hz, self.freq_tolerance_hz) and (sf is None or tx.mod.sf == sf)]
        return max(levels) if levels else None

    # --- transmissions ----------------------------------------------------------------------------------------------
    def transmit(self, sender_id: str, position: tuple, mod: Modulation, phy: bytes, power_dbm: float) -> Transmission:
        """Put phy on the air now; receivers that listen now on matching settings start receiving it."""
        start = self.clock.now_us
        toa = time_on_air_us(len(phy), mod.sf, mod.bw_hz, mod.cr, mod.preamble, mod.crc, mod.implicit_header, mod.ldro)
        tx = Transmission(sender_id, tuple(position), power_dbm, mod, bytes(phy), start, start + toa)
        for fault in list(self._faults):
            if fault[1] == sender_id:
                self._faults.remove(fault)
                tx.faults.append((fault[0], fault[2], fault[3]))
                break
        self._prune(start)
        self.transmissions.append(tx)
        for receiver in list(self.receivers):
            if receiver.receiver_id == sender_id:
                continue
            listening = receiver.hears(tx)
            if listening is None:
                continue
            rssi = self.rssi_at(tx, receiver.position)
            snr = min(rssi - noise_floor_dbm(mod.bw_hz), SNR_SATURATION_DB)
            rx = Reception(tx, receiver, listening, rssi, snr, tx.phy)
            if self._fault_for(tx, receiver.receiver_id, "drop") is not None:
                self._record(rx, "dropped")
                continue
            if snr < DEMOD_FLOOR_DB[mod.sf]:
                self._record(rx, "too_weak")
                continue
            receiver.begin_reception(rx)
            self.clock.call_at(tx.end_us, self._finish, rx)
        return tx

    def abort(self, tx: Transmission) -> None:
        """The sender left TX before the end: every receiver of it loses the packet."""
        tx.aborted = True
        tx.end_us = min(tx.end_us, self.clock.now_us)

    def _fault_for(self, tx: Transmission, receiver_id: str, kind: str):
        for fault_kind, receiver, bit in tx.faults:
            if fault_kind == kind and receiver in (None, receiver_id):
                return (bit,)
        return None

    def _finish(self, rx: Reception) -> None:
        tx = rx.tx
        if not rx.receiver.still_receiving(rx):
            self._record(rx, "receiver_stopped")
            return
        if tx.aborted:
            rx.result = "aborted"
        elif rx.listening.ldro != tx.mod.ldro:
            rx.result = "ldro_mismatch"
        elif self._collides(rx):
            rx.result = "collision"
        else:
            corrupt = self._fault_for(tx, rx.receiver.receiver_id, "corrupt")
            if corrupt is not None:
                rx.phy = flip_bit(tx.phy, corrupt[0])
                rx.result = "corrupted"
        self._record(rx, rx.result)
        rx.receiver.end_reception(rx)

    def _collides(self, rx: Reception) -> bool:
        tx = rx.tx
        for other in self.transmissions:
            if other is tx or other.sender == tx.sender:
                continue
            if other.end_us <= tx.start_us or other.start_us >= tx.end_us:
                continue
            if other.mod.sf != tx.mod.sf or not same_frequency(other.mod.freq_hz, tx.mod.freq_hz, self.freq_tolerance_hz):
                continue
            if self.rssi_at(other, rx.receiver.position) > rx.rssi - CAPTURE_THRESHOLD_DB:
                return True
        return False

    def _prune(self, now_us: int) -> None:
        horizon = now_us - 30_000_000  # longest SF12 frame is < 10 s
        self.transmissions = [t for t in self.transmissions if t.end_us >= horizon]

    def _record(self, rx: Reception, result: str) -> None:
        tx = rx.tx
        entry = {"t_us": tx.end_us, "sender": tx.sender, "receiver": rx.receiver.receiver_id,
                 "freq_hz": round(tx.mod.freq_hz), "sf": tx.mod.sf, "bw_khz": tx.mod.bw_hz / 1000,
                 "phy": rx.phy.hex(), "rssi": round(rx.rssi, 1), "snr": round(rx.snr, 1), "result": result}
        with self._log_lock:
            self.log.append(entry)
            if self._log_file is not None:
                self._log_file.write(json.dumps(entry) + "\n")
                self._log_file.flush()

    def log_entries(self) -> list[dict]:
        """A copy of the air log (safe to call from any thread)."""
        with self._log_lock:
            return list(self.log)
