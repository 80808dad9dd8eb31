"""Multi-gateway deduplication, sans-IO: copies of one PHYPayload within the window are one frame whose receptions
list every gateway (best SNR first), the downlink goes through the best gateway that can send, a copy after the window
from another gateway is a late duplicate, and the same gateway sending the frame again later is new traffic."""

from __future__ import annotations

from pathlib import Path

import pytest

from dos_agent.dedup import Admitted, Deduplicator
from dos_agent.registry import Registry
from dos_agent.session import CollectAt, SessionLayer, Transmit, UplinkAccepted, UplinkRejected
from test_agent_session import LoRaNode, reception

LAMP = {
    "dev_eui": "70b3d57ed0000d01", "asset_id": "lamp-0d01", "kind": "streetlight", "activation": "abp",
    "dev_addr": "26011d01", "nwk_s_key": "6b" * 16, "app_s_key": "b6" * 16,
}
GW_A, GW_B, GW_C = "aa555a000000000a", "aa555a000000000b", "aa555a000000000c"
T0 = 1_795_000_000.0


def test_the_deduplicator_gathers_one_reception_per_gateway_within_the_window() -> None:
    dedup = Deduplicator(window_s=0.2, late_s=1.0)
    phy, other = b"\x40frame-one", b"\x40frame-two"
    assert dedup.add(phy, reception(GW_A, snr=2.0), T0) is Admitted.OPENED
    assert dedup.add(phy, reception(GW_B, snr=9.0), T0 + 0.05) is Admitted.JOINED
    assert dedup.add(phy, reception(GW_A, snr=5.0), T0 + 0.06) is Admitted.JOINED  # A's better copy replaces its first
    assert dedup.add(other, reception(GW_A), T0 + 0.1) is Admitted.OPENED
    assert dedup.next_deadline() == pytest.approx(T0 + 0.2)
    assert dedup.due(T0 + 0.19) == []
    (collected,) = dedup.due(T0 + 0.2)
    assert collected.phy == phy and collected.extra_copies == 1
    assert [(r.gateway_eui, r.snr) for r in collected.ordered()] == [(GW_B, 9.0), (GW_A, 5.0)]
    assert dedup.next_deadline() == pytest.approx(T0 + 0.3)
    assert dedup.add(phy, reception(GW_C), T0 + 0.5) is Admitted.LATE  # another gateway's slow backhaul
    assert dedup.add(phy, reception(GW_C), T0 + 0.6) is Admitted.OPENED  # C again: new traffic
    assert dedup.add(phy, reception(GW_A), T0 + 0.7) is Admitted.JOINED
    assert [c.phy for c in dedup.due(T0 + 1.0)] == [other, phy]
    assert dedup.add(other, reception(GW_B), T0 + 2.5) is Admitted.OPENED  # the late period is over


@pytest.fixture
def session(tmp_path: Path):
    with Registry(tmp_path / "reg.sqlite") as registry:
        registry.import_devices([LAMP])
        yield SessionLayer(registry, dedup_window_s=0.2)


def test_two_gateways_give_one_uplink_with_two_receptions_and_the_ack_goes_via_the_best(session: SessionLayer) -> None:
    node = LoRaNode.from_entry(LAMP)
    phy = node.uplink(confirmed=True)
    weak, strong = reception(GW_A, tmst=111_000, snr=-3.5, rssi=-118), reception(GW_B, tmst=222_000, snr=8.25)
    assert session.receive(phy, weak, T0) == [CollectAt(T0 + 0.2)]
    assert session.receive(phy, strong, T0 + 0.03) == []
    assert session.collect(T0 + 0.1) == []
    outputs = session.collect(T0 + 0.2)
    accepted = outputs[0]
    assert isinstance(accepted, UplinkAccepted) and sum(isinstance(o, UplinkAccepted) for o in outputs) == 1
    assert accepted.receptions == (strong, weak) and accepted.reception == strong and accepted.duplicates == 1
    transmit = outputs[-1]
    assert isinstance(transmit, Transmit)
    assert (transmit.gateway_eui, transmit.txpk.tmst) == (GW_B, 222_000 + 1_000_000)
    frame, _ = node.open_downlink(transmit.txpk.data, 0)
    assert frame.ack


def test_the_downlink_skips_a_better_gateway_that_cannot_send(session: SessionLayer) -> None:
    node = LoRaNode.from_entry(LAMP)
    phy = node.uplink(confirmed=True)
    session.receive(phy, reception(GW_A, tmst=5, snr=12.0, can_transmit=False), T0)
    session.receive(phy, reception(GW_B, tmst=7, snr=1.0), T0 + 0.01)
    outputs = session.collect(T0 + 0.2)
    assert outputs[0].reception.gateway_eui == GW_A  # the event names the best reception
    assert (outputs[-1].gateway_eui, outputs[-1].txpk.tmst) == (GW_B, 1_000_007)


def test_a_late_copy_is_dropped_and_a_later_copy_from_the_same_gateway_is_a_replay(session: SessionLayer) -> None:
    node = LoRaNode.from_entry(LAMP)
    phy = node.uplink()
    session.receive(phy, reception(GW_A), T0)
    assert isinstance(session.collect(T0 + 0.2)[0], UplinkAccepted)
    late = session.receive(phy, reception(GW_B), T0 + 0.6)
    assert len(late) == 1 and isinstance(late[0], UplinkRejected) and late[0].reason == "late_duplicate"
    assert session.receive(phy, reception(GW_A), T0 + 5) == [CollectAt(T0 + 5.2)]
    replay = session.collect(T0 + 5.2)
    assert len(replay) == 1 and replay[0].reason == "fcnt_replay"


def test_a_zero_window_handles_each_frame_at_once(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg.sqlite") as registry:
        registry.import_devices([LAMP])
        session = SessionLayer(registry, dedup_window_s=0)
        outputs = session.receive(LoRaNode.from_entry(LAMP).uplink(), reception(GW_A), T0)
    assert isinstance(outputs[0], UplinkAccepted) and outputs[0].receptions == (reception(GW_A),)
