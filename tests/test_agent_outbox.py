"""The outbox on real SQLite files: order, commit before hand-out, delete only on acknowledgement, what a crash leaves
(a second connection opened while the first was never closed), the size and age limits with their drop reports, the
spill from memory to disk, file modes, and a model-based property test over random operation sequences."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_agent.outbox import Outbox, OutboxError


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def payloads(messages) -> list[bytes]:  # noqa: ANN001
    return [m.payload for m in messages]


def test_messages_are_handed_out_in_order_only_after_commit(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    ids = [outbox.add("t/a", b"%d" % n) for n in range(5)]
    assert ids == sorted(ids) and outbox.backlog == 5
    assert outbox.take(10) == []  # not committed yet: never handed to MQTT
    outbox.commit()
    first = outbox.take(2)
    assert payloads(first) == [b"0", b"1"] and [m.id for m in first] == ids[:2]
    assert payloads(outbox.take(10)) == [b"2", b"3", b"4"]
    assert outbox.take(10) == []
    outbox.close()


def test_rows_go_only_when_acknowledged_and_a_crash_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path)
    for n in range(6):
        outbox.add("t", b"%d" % n, retain=n == 5)
    outbox.commit()
    taken = outbox.take(6)
    for message in taken[:2]:
        outbox.ack(message.id)
    assert outbox.depth == 6  # acknowledgements are written by the next commit
    outbox.commit()
    assert outbox.depth == 4 and outbox.delivered == 2
    # the process dies here (no close): a new process opens the same file
    after_crash = Outbox(path)
    assert after_crash.depth == 4
    resent = after_crash.take(10)
    assert payloads(resent) == [b"2", b"3", b"4", b"5"]  # taken before but never acknowledged: sent again
    assert [m.retain for m in resent] == [False, False, False, True]
    assert after_crash.add("t", b"6") > resent[-1].id  # ids keep growing after the rows still there
    after_crash.close()
    outbox.close()


def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path)
    outbox.add("t", b"x")
    outbox.commit()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("o.sqlite")]
    assert {p.name for p in files} >= {"o.sqlite", "o.sqlite-wal"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    outbox.close()


def test_size_limit_drops_the_oldest_not_handed_out_and_reports_it(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "o.sqlite", max_rows=5, clock=clock)
    for n in range(3):
        outbox.add("t", b"%d" % n)
    outbox.commit()
    in_flight = outbox.take(2)  # with MQTT: never dropped
    clock.now += 10
    for n in range(3, 9):
        outbox.add("t", b"%d" % n)
    outbox.commit()
    assert outbox.depth == 5 and outbox.dropped == {"size": 4}
    assert payloads(outbox.take(10)) == [b"6", b"7", b"8"]
    report = outbox.take_drop_report()
    assert report is not None and report.count == {"size": 4} and report.oldest_created == clock.now - 10
    assert outbox.take_drop_report() is None  # reported once
    for message in in_flight:
        outbox.ack(message.id)
    outbox.commit()
    assert outbox.depth == 3
    outbox.close()


def test_age_limit_drops_old_messages_and_counts_them(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "o.sqlite", max_age_s=60, clock=clock)
    outbox.add("t", b"old-1")
    outbox.add("t", b"old-2")
    clock.now += 50
    outbox.add("t", b"young")
    outbox.commit()
    assert outbox.expire() == 0
    clock.now += 20  # the first two are 70 s old now, the last one 20 s
    assert outbox.expire() == 2
    assert outbox.dropped == {"age": 2} and outbox.depth == 1
    assert payloads(outbox.take(10)) == [b"young"]
    report = outbox.take_drop_report()
    assert report.count == {"age": 2} and report.oldest_created == clock.now - 70
    outbox.close()


def test_a_backlog_beyond_memory_is_read_back_from_disk_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", memory_rows=4)
    for n in range(10):
        outbox.add("t", b"%d" % n)
    outbox.commit()
    got = payloads(outbox.take(3))
    outbox.add("t", b"10")  # committed while the backlog is still on disk
    outbox.commit()
    while batch := outbox.take(3):
        got += payloads(batch)
    outbox.add("t", b"11")  # caught up: kept in memory again
    outbox.commit()
    got += payloads(outbox.take(3))
    assert got == [b"%d" % n for n in range(12)]
    outbox.close()


@pytest.mark.parametrize("limits", [{"max_rows": 0}, {"max_age_s": 0}, {"max_age_s": -1.0}])
def test_limits_must_make_sense(tmp_path: Path, limits: dict) -> None:
    with pytest.raises(ValueError, match="outbox"):
        Outbox(tmp_path / "o.sqlite", **limits)


def test_a_file_that_is_not_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        Outbox(path)
    with sqlite3.connect(tmp_path / "other.sqlite") as db:
        db.execute("CREATE TABLE outbox (x)")
    with pytest.raises(OutboxError):
        Outbox(tmp_path / "other.sqlite")


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 5)),
        st.tuples(st.just("commit"), st.just(0)),
        st.tuples(st.just("take"), st.integers(1, 6)),
        st.tuples(st.just("ack"), st.integers(1, 6)),
        st.tuples(st.just("crash"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(operations=OPERATIONS)
def test_nothing_committed_is_lost_and_first_deliveries_keep_the_order(tmp_path_factory, operations) -> None:
    """Model: every committed message is acknowledged eventually, exactly the uncommitted ones die with a crash,
    and the first delivery of each message happens in the order they were added."""
    path = tmp_path_factory.mktemp("prop") / "o.sqlite"
    outbox = Outbox(path, memory_rows=3)
    counter = 0
    committed: list[bytes] = []
    buffered: list[bytes] = []
    in_flight: list = []
    first_delivery: list[bytes] = []
    acked: set[bytes] = set()
    for op, n in operations:
        if op == "add":
            for _ in range(n):
                payload = b"%d" % counter
                counter += 1
                outbox.add("t", payload)
                buffered.append(payload)
        elif op == "commit":
            outbox.commit()
            committed += buffered
            buffered = []
        elif op == "take":
            for message in outbox.take(n):
                if message.payload not in first_delivery:
                    first_delivery.append(message.payload)
                in_flight.append(message)
        elif op == "ack":
            for message in in_flight[:n]:
                outbox.ack(message.id)
                acked.add(message.payload)
            in_flight = in_flight[n:]
        else:  # the process dies: buffered messages and unwritten acknowledgements are gone
            outbox = Outbox(path, memory_rows=3)
            buffered, in_flight = [], []
    outbox.commit()
    committed += buffered
    while batch := outbox.take(7):
        for message in batch:
            if message.payload not in first_delivery:
                first_delivery.append(message.payload)
            outbox.ack(message.id)
            acked.add(message.payload)
    for message in in_flight:
        outbox.ack(message.id)
        acked.add(message.payload)
    outbox.commit()
    assert outbox.depth == 0
    assert set(committed) <= acked  # every committed message was delivered
    assert first_delivery == sorted(first_delivery, key=int)
    outbox.close()
