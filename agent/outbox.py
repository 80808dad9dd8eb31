"""The outbox: a persistent, ordered queue (SQLite, WAL, file mode 0600) every MQTT event passes through.

The MQTT sink adds messages during a loop turn and commits them once at its end (group commit: one transaction per
turn, never one per event); only committed messages are handed to MQTT, in the order they were added, and a row is
deleted only after the broker acknowledged it (PUBACK). So a broker that is away, or an agent killed with `kill -9`,
loses nothing: what was not acknowledged is still on disk and goes out again (at-least-once; consumers drop repeats by
the events' `event_id`).

Limits: at most `max_rows` messages are kept and none older than `max_age_s`; beyond them the oldest messages not yet
handed to MQTT are dropped, counted by reason (`size`, `age`) and reported by `take_drop_report()` so the sink can
publish the loss as an event. With `fsync=False` (the default, SQLite `synchronous=NORMAL` in WAL mode) a commit
survives the process dying; `fsync=True` (`synchronous=FULL`) also a power cut, at the cost of one fsync per turn.

Not thread-safe: one event loop owns it. No network here: rows in, rows out.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Defaults: a million messages (a few hundred MB of events) or a week, whichever comes first.
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
#: Committed rows kept in memory for handing out without reading them back; past this, they are read from disk.
MEMORY_ROWS = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or is not an outbox."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One stored message: `id` gives the delivery order."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    created: float


@dataclass(frozen=True, slots=True)
class DropReport:
    """Messages dropped since the last report: `count` by reason (`size`, `age`, `store_error`, `undeliverable`)."""

    count: dict[str, int]
    oldest_created: float


def create_private_file(path: Path) -> None:
    """Create `path` with mode 0600 if missing and make sure it is 0600 (SQLite gives its -wal/-shm the same mode)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class Outbox:
    """The queue. `add()` buffers, `commit()` stores the buffer and the acknowledgements of the turn, `take(n)` hands
    out the next committed messages in order, `ack(id)` marks one delivered (deleted at the next commit)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        fsync: bool = False,
        clock: Callable[[], float] = time.time,
        memory_rows: int = MEMORY_ROWS,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"outbox max_rows must be at least 1, got {max_rows}")
        if not max_age_s > 0:
            raise ValueError(f"outbox max_age_s must be positive, got {max_age_s}")
        self.path = str(path)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.clock = clock
        self.memory_rows = memory_rows
        try:
            if self.path != ":memory:":
                create_private_file(Path(self.path))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.execute(_SCHEMA)
            self.depth, last_id = self._db.execute("SELECT count(*), coalesce(max(id), 0) FROM outbox").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        self.added = 0
        self.delivered = 0
        self.dropped: Counter[str] = Counter()
        self._next_id = last_id + 1
        self._buffer: list[tuple[int, str, bytes, int, float]] = []
        self._acked: list[tuple[int]] = []
        self._discarded: list[tuple[int]] = []
        self._cursor = 0  # highest id handed out by take()
        self._ready: deque[QueuedMessage] = deque()  # committed, not handed out; complete unless _on_disk
        self._on_disk = self.depth > 0  # rows after the cursor must be read back from disk
        self._unreported: Counter[str] = Counter()
        self._unreported_oldest = 0.0

    # --- the sink's side ----------------------------------------------------------------------------------------------

    def add(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Buffer one message until the next `commit()`; returns its id (its place in the order)."""
        message_id = self._next_id
        self._next_id += 1
        self._buffer.append((message_id, topic, payload, int(retain), self.clock()))
        self.added += 1
        return message_id

    @property
    def backlog(self) -> int:
        """Messages stored or buffered and not acknowledged yet."""
        return self.depth + len(self._buffer)

    @property
    def uncommitted(self) -> bool:
        """True when `commit()` has something to write (added messages or acknowledgements)."""
        return bool(self._buffer or self._acked or self._discarded)

    def commit(self) -> None:
        """Store the buffered messages and delete the acknowledged ones in one transaction, then enforce `max_rows`.
        A failed write (disk full, I/O error) drops the buffered messages, counted as `store_error`."""
        rows, self._buffer = self._buffer, []
        acked, self._acked = self._acked, []
        discarded, self._discarded = self._discarded, []
        try:
            with self._transaction():
                if rows:
                    self._db.executemany(
                        "INSERT INTO outbox (id, topic, payload, retain, created) VALUES (?, ?, ?, ?, ?)", rows)
                if acked or discarded:
                    self._db.executemany("DELETE FROM outbox WHERE id = ?", acked + discarded)
        except sqlite3.Error:
            self._acked, self._discarded = acked, discarded  # gone all the same: deleted by the next commit that works
            if rows:
                self._count_drop("store_error", len(rows), rows[0][4])
            raise
        self.depth += len(rows) - len(acked) - len(discarded)
        self.delivered += len(acked)
        if rows and not self._on_disk:
            self._ready.extend(QueuedMessage(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows)
            if len(self._ready) > self.memory_rows:
                self._ready.clear()
                self._on_disk = True
        if self.depth > self.max_rows:
            self._drop_oldest(self.depth - self.max_rows, "size")

    def take(self, count: int) -> list[QueuedMessage]:
        """Up to `count` committed messages after the last one taken, in order."""
        if count <= 0:
            return []
        if self._on_disk:
            taken = [QueuedMessage(i, t, p, bool(r), c) for i, t, p, r, c in self._db.execute(
                "SELECT id, topic, payload, retain, created FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (self._cursor, count),
            )]
            if len(taken) < count:
                self._on_disk = False  # caught up: later commits are kept in memory
        else:
            taken = [self._ready.popleft() for _ in range(min(count, len(self._ready)))]
        if taken:
            self._cursor = taken[-1].id
        return taken

    def ack(self, message_id: int) -> None:
        """The broker acknowledged the message: delete it at the next commit."""
        self._acked.append((message_id,))

    def discard(self, message_id: int, reason: str) -> None:
        """A handed-out message that can never be delivered: deleted at the next commit, counted as dropped."""
        self._discarded.append((message_id,))
        self._count_drop(reason, 1, self.clock())

    def expire(self) -> int:
        """Drop stored messages older than `max_age_s` that were not handed out yet; returns how many. Cheap when
        none is: only the oldest waiting row is read (ids follow the clock, so the expired rows are the oldest ids)."""
        cutoff = self.clock() - self.max_age_s
        first = self._db.execute(
            "SELECT created FROM outbox WHERE id > ? ORDER BY id LIMIT 1", (self._cursor,)).fetchone()
        if first is None or first[0] >= cutoff:
            return 0
        oldest = self._db.execute(
            "SELECT count(*), min(created) FROM outbox WHERE id > ? AND created < ?", (self._cursor, cutoff)
        ).fetchone()
        if oldest[0]:
            self._drop_oldest(oldest[0], "age", oldest[1])
        return oldest[0]

    def take_drop_report(self) -> DropReport | None:
        """The drops since the last report (None when there were none)."""
        if not self._unreported:
            return None
        report = DropReport(dict(self._unreported), self._unreported_oldest)
        self._unreported.clear()
        return report

    def close(self) -> None:
        """Commit what is buffered and close the file."""
        try:
            if self.uncommitted:
                self.commit()
        finally:
            self._db.close()

    # --- internals ----------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _drop_oldest(self, count: int, reason: str, oldest_created: float | None = None) -> None:
        """Delete the `count` oldest stored messages not handed out yet."""
        rows = self._db.execute(
            "SELECT id, created FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (self._cursor, count)
        ).fetchall()
        if not rows:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(row[0],) for row in rows])
        dropped = {row[0] for row in rows}
        while self._ready and self._ready[0].id in dropped:
            self._ready.popleft()
        self.depth -= len(rows)
        self._count_drop(reason, len(rows), oldest_created if oldest_created is not None else rows[0][1])

    def _count_drop(self, reason: str, count: int, oldest_created: float) -> None:
        self.dropped[reason] += count
        if not self._unreported:
            self._unreported_oldest = oldest_created
        self._unreported[reason] += count

