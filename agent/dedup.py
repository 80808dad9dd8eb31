"""Multi-gateway deduplication, sans-IO: receptions of the same PHYPayload within a window become one frame.

The first reception of a PHYPayload opens a bucket due `window_s` later (the caller runs a timer to `next_deadline()`);
further receptions of the same bytes join it, one per gateway (a gateway's better copy replaces its
worse one). `due(now)` hands over every bucket whose deadline has come. After a bucket closed, a copy from a gateway
that was not in it is a *late duplicate* for `late_s` more seconds (its backhaul was slow); a copy from a gateway that
already delivered the frame is new traffic (a retransmission or a replay) and opens a new bucket.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dos_agent.session import Reception

#: Default window in which copies of one frame from several gateways are gathered.
DEFAULT_WINDOW_S = 0.2
#: How long after its bucket closed a copy from another gateway still counts as a late duplicate. Shorter than a
#: node's fastest retransmission (RX2 ends ~2 s after the uplink, then at least 1 s of back-off).
LATE_S = 1.0


def snr_rank(reception: Reception) -> tuple[float, float]:
    """Sort key of a reception's quality: SNR first, RSSI second (unknown values rank lowest)."""
    snr = reception.snr if reception.snr is not None else float("-inf")
    rssi = reception.rssi if reception.rssi is not None else float("-inf")
    return snr, rssi


class Admitted(enum.Enum):
    """What `Deduplicator.add` did with a reception."""

    OPENED = "opened"  # the first copy: a new bucket, due window_s from now
    JOINED = "joined"  # another copy of a frame in an open bucket
    LATE = "late"  # a copy of a frame already handed over, from another gateway: drop it


@dataclass(slots=True)
class Collected:
    """One frame with every gateway's best reception (best first), when its first copy came, and how many extra copies
    (same gateway again) were folded in."""

    phy: bytes
    first_at: float
    deadline: float
    receptions: dict[str, Reception] = field(default_factory=dict)
    extra_copies: int = 0

    def ordered(self) -> tuple[Reception, ...]:
        """Receptions, best SNR first."""
        return tuple(sorted(self.receptions.values(), key=snr_rank, reverse=True))


class Deduplicator:
    """Gathers copies of frames; see the module docstring."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, late_s: float = LATE_S) -> None:
        if window_s < 0:
            raise ValueError(f"dedup window {window_s} s is negative")
        self.window_s = window_s
        self.late_s = late_s
        self._open: OrderedDict[bytes, Collected] = OrderedDict()
        self._closed: OrderedDict[bytes, tuple[float, set[str]]] = OrderedDict()

    def add(self, phy: bytes, reception: Reception, now: float) -> Admitted:
        """Take one reception of `phy`."""
        bucket = self._open.get(phy)
        if bucket is not None:
            held = bucket.receptions.get(reception.gateway_eui)
            if held is None:
                bucket.receptions[reception.gateway_eui] = reception
            else:
                bucket.extra_copies += 1
                if snr_rank(reception) > snr_rank(held):
                    bucket.receptions[reception.gateway_eui] = reception
            return Admitted.JOINED
        self._forget_closed(now)
        closed = self._closed.get(phy)
        if closed is not None and reception.gateway_eui not in closed[1]:
            closed[1].add(reception.gateway_eui)
            return Admitted.LATE
        self._open[phy] = Collected(phy, now, now + self.window_s, {reception.gateway_eui: reception})
        return Admitted.OPENED

    def due(self, now: float) -> list[Collected]:
        """Every bucket whose deadline has come, oldest first; they are closed."""
        ready: list[Collected] = []
        while self._open:
            phy, bucket = next(iter(self._open.items()))
            if bucket.deadline > now:
                break
            del self._open[phy]
            self._closed.pop(phy, None)
            self._closed[phy] = (now + self.late_s, set(bucket.receptions))
            ready.append(bucket)
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest open bucket is due (None when none is open)."""
        for bucket in self._open.values():
            return bucket.deadline
        return None

    def _forget_closed(self, now: float) -> None:
        while self._closed:
            phy, (expires, _gateways) = next(iter(self._closed.items()))
            if expires > now:
                break
            del self._closed[phy]
