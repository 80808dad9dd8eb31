"""The frame counter policy of the sans-IO session layer: a confirmed retransmission is ACKed again but accepted
once, a replay is rejected, and a counter that restarted low gives an explicit `FcntReset` under both policies
(reject: the frame is refused; accept: it is accepted and the counter goes on from there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dos_agent.registry import Registry
from dos_agent.session import (
    REPLAY_WINDOW,
    FcntReset,
    SessionLayer,
    Transmit,
    UplinkAccepted,
    UplinkRejected,
    UplinkRepeated,
)
from test_agent_session import LoRaNode, reception

LAMP = {
    "dev_eui": "70b3d57ed0000c01", "asset_id": "lamp-0c01", "kind": "streetlight", "activation": "abp",
    "dev_addr": "26011c01", "nwk_s_key": "5a" * 16, "app_s_key": "a5" * 16,
}
T0 = 1_795_000_000.0


def session_with(tmp_path: Path, **changes: object) -> tuple[SessionLayer, Registry]:
    registry = Registry(tmp_path / "reg.sqlite")
    registry.import_devices([dict(LAMP, **changes)])
    return SessionLayer(registry), registry


def kinds(outputs: list) -> list[type]:
    return [type(o) for o in outputs]


def test_a_confirmed_retransmission_is_acked_each_time_but_accepted_once(tmp_path: Path) -> None:
    session, registry = session_with(tmp_path)
    node = LoRaNode.from_entry(LAMP)
    node.fcnt = 40
    frame = node.uplink(confirmed=True)
    first = session.handle_uplink(frame, reception(), T0)
    assert kinds(first)[:1] == [UplinkAccepted] and isinstance(first[-1], Transmit)
    for attempt in (1, 2):  # the node missed the ACK and sends the same FCnt again
        again = session.handle_uplink(frame, reception(), T0 + 3 * attempt)
        assert kinds(again)[0] is UplinkRepeated and again[0].fcnt == 40
        assert UplinkAccepted not in kinds(again)
        frame_down, _ = node.open_downlink(again[-1].txpk.data, attempt)  # FCntDown 0 answered the first copy
        assert frame_down.ack
    assert registry.get(LAMP["dev_eui"]).fcnt_up == 40
    registry.close()


def test_an_unconfirmed_repeat_and_older_frames_are_replays(tmp_path: Path) -> None:
    session, registry = session_with(tmp_path)
    node = LoRaNode.from_entry(LAMP)
    node.fcnt = 100
    frames = [node.uplink() for _ in range(3)]
    for frame in frames:
        assert isinstance(session.handle_uplink(frame, reception(), T0)[0], UplinkAccepted)
    for frame in (frames[2], frames[0], node.uplink(fcnt=102 - REPLAY_WINDOW)):
        outputs = session.handle_uplink(frame, reception(), T0 + 10)
        assert kinds(outputs) == [UplinkRejected] and outputs[0].reason == "fcnt_replay"
    registry.close()


def test_a_counter_reset_is_rejected_with_an_event_by_default(tmp_path: Path) -> None:
    session, registry = session_with(tmp_path)
    node = LoRaNode.from_entry(LAMP)
    node.fcnt = 5000
    assert isinstance(session.handle_uplink(node.uplink(), reception(), T0)[0], UplinkAccepted)
    node.fcnt = 0  # the node lost its state
    for expected_fcnt16 in (0, 1):
        outputs = session.handle_uplink(node.uplink(), reception(), T0 + 60)
        assert kinds(outputs) == [FcntReset, UplinkRejected]
        reset, rejected = outputs
        assert (reset.last_fcnt, reset.fcnt16, reset.accepted, reset.policy) == (5000, expected_fcnt16, False, "reject")
        assert rejected.reason == "fcnt_reset" and rejected.dev_eui == LAMP["dev_eui"]
    assert registry.get(LAMP["dev_eui"]).fcnt_up == 5000
    registry.close()


def test_a_counter_reset_is_accepted_where_the_policy_says_so(tmp_path: Path) -> None:
    session, registry = session_with(tmp_path, fcnt_reset_policy="accept")
    node = LoRaNode.from_entry(LAMP)
    for fcnt in (65530, 70000):  # past the 16-bit wrap
        node.fcnt = fcnt
        assert isinstance(session.handle_uplink(node.uplink(), reception(), T0)[0], UplinkAccepted)
    node.fcnt = 2
    outputs = session.handle_uplink(node.uplink(b"\xa1\x02\x18\x32"), reception(), T0 + 60)
    assert kinds(outputs)[:2] == [FcntReset, UplinkAccepted]
    reset, accepted = outputs[:2]
    assert (reset.last_fcnt, reset.fcnt16, reset.accepted, reset.policy) == (70000, 2, True, "accept")
    assert (accepted.fcnt, accepted.payload) == (2, b"\xa1\x02\x18\x32")
    follow_up = session.handle_uplink(node.uplink(), reception(), T0 + 120)[0]
    assert isinstance(follow_up, UplinkAccepted) and follow_up.fcnt == 3
    assert registry.get(LAMP["dev_eui"]).fcnt_up == 3
    registry.close()


@pytest.mark.parametrize("policy", ["reject", "accept"])
def test_within_the_replay_window_a_low_counter_is_a_replay_whatever_the_policy(tmp_path: Path, policy: str) -> None:
    session, registry = session_with(tmp_path, fcnt_reset_policy=policy)
    node = LoRaNode.from_entry(LAMP)
    node.fcnt = REPLAY_WINDOW
    assert isinstance(session.handle_uplink(node.uplink(), reception(), T0)[0], UplinkAccepted)
    outputs = session.handle_uplink(node.uplink(fcnt=0), reception(), T0 + 60)
    assert kinds(outputs) == [UplinkRejected] and outputs[0].reason == "fcnt_replay"
    registry.close()
