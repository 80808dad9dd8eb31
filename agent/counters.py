"""The agent's counters: frames by outcome, datagrams by kind or rejection reason, downlinks by status or reason,
gateways by last seen, and what the MQTT sink had to drop.

`version` moves on every change, so a publisher can tell cheaply whether there is anything new to publish.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class Counters:
    """In-memory counters, published retained as JSON by the MQTT sink."""

    def __init__(self) -> None:
        self.frames: Counter[str] = Counter()
        self.datagrams: Counter[str] = Counter()
        self.downlinks: Counter[str] = Counter()
        self.gateways: dict[str, str] = {}
        self.sink: Counter[str] = Counter()
        self.version = 0

    def count_frame(self, outcome: str) -> None:
        """One received frame (rxpk) whose outcome is `accepted` or a rejection reason."""
        self.frames[outcome] += 1
        self.version += 1

    def count_datagram(self, outcome: str) -> None:
        """One received datagram: its kind (push_data, pull_data, tx_ack) or a rejection reason."""
        self.datagrams[outcome] += 1
        self.version += 1

    def count_frame_copies(self, copies: int) -> None:
        """Receptions folded into a frame another reception already counted (multi-gateway duplicates)."""
        if copies:
            self.frames["duplicate"] += copies
            self.version += 1

    def count_downlink(self, outcome: str) -> None:
        """A downlink moved (queued, sent, acked, failed), a gateway answered a PULL_RESP (tx_<error>), or a frame
        for a device could not go (its reason)."""
        self.downlinks[outcome] += 1
        self.version += 1

    def count_sink(self, outcome: str, count: int = 1) -> None:
        """Events the outbox dropped by its limits or could never deliver (`outbox_size`, `outbox_age`,
        `outbox_store_error`, `outbox_undeliverable`)."""
        self.sink[outcome] += count
        self.version += 1

    def gateway_seen(self, gateway_eui: str, when: str) -> None:
        """A gateway sent a valid datagram at `when` (ISO 8601)."""
        self.gateways[gateway_eui] = when
        self.version += 1

    def snapshot(self) -> dict[str, Any]:
        """{"frames": {...}, "datagrams": {...}, "downlinks": {...}, "gateways": {eui: last_seen}, "sink": {...}},
        keys sorted."""
        return {
            "frames": dict(sorted(self.frames.items())),
            "datagrams": dict(sorted(self.datagrams.items())),
            "downlinks": dict(sorted(self.downlinks.items())),
            "gateways": dict(sorted(self.gateways.items())),
            "sink": dict(sorted(self.sink.items())),
        }
