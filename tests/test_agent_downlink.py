"""Downlinks through the sans-IO session layer on a real registry: request validation with a reason for every refusal,
RX1/RX2 scheduling by tmst, frames that open with the node's keys (codecs), TX_ACK handling (NONE, TOO_LATE -> RX2 ->
still queued, other errors, none at all), confirmed downlinks acked or failed, FPending, MAC commands in FOpts or on
FPort 0, payload limits per data rate, and a queue that survives a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dos_agent.downlink import DownlinkRequestError, parse_downlink_request
from dos_agent.registry import Registry
from dos_agent.session import (
    CONFIRMED_DOWNLINK_TRIES,
    MAX_QUEUE,
    CollectAt,
    DownlinkDropped,
    DownlinkStatus,
    MacEvent,
    SessionLayer,
    Transmit,
    UplinkAccepted,
)
from dos_codecs.lorawan import MType
from dos_codecs.mac_commands import DevStatusAns, LinkCheckAns, LinkCheckReq, build_mac_commands, parse_mac_commands
from dos_codecs.schema import load_schema
from test_agent_session import LoRaNode, reception

LAMP = {
    "dev_eui": "70b3d57ed0000b01", "asset_id": "lamp-schwerte-0001", "kind": "streetlight", "activation": "abp",
    "dev_addr": "26011b01", "nwk_s_key": "3f" * 16, "app_s_key": "4e" * 16,
}
T0 = 1_795_000_000.0
CONFIG = load_schema("streetlight").encode("config", {"interval_s": 300, "dim_level": 60})


def request(**fields: object) -> bytes:
    return json.dumps(fields).encode()


# --- request validation -----------------------------------------------------------------------------------------------


def parse(raw: bytes):  # noqa: ANN201
    return parse_downlink_request(raw, LAMP["dev_eui"], lambda: load_schema("streetlight"), lambda: "assigned-1")


def test_a_request_with_an_object_is_encoded_with_the_kinds_downlink_message() -> None:
    item = parse(request(fport=3, confirmed=True, object={"interval_s": 300, "dim_level": 60}))
    assert (item.id, item.dev_eui, item.fport, item.confirmed, item.payload) == (
        "assigned-1", LAMP["dev_eui"], 3, True, CONFIG)
    item = parse(request(id="cfg-7", fport=42, data="00FF10"))
    assert (item.id, item.fport, item.confirmed, item.payload, item.state) == ("cfg-7", 42, False, b"\x00\xff\x10",
                                                                                "queued")


@pytest.mark.parametrize(
    ("raw", "reason", "fport"),
    [
        (b"{not json", "bad_json", None),
        (b"\xff\xfe", "bad_json", None),
        (b"[3]", "bad_request", None),
        (request(fport=0, data="00"), "bad_fport", None),
        (request(fport=224, data="00"), "bad_fport", None),
        (request(fport=True, data="00"), "bad_fport", None),
        (request(data="00"), "bad_fport", None),
        (request(fport=3, data="0"), "bad_data", 3),
        (request(fport=3, data="zz"), "bad_data", 3),
        (request(fport=3, data=7), "bad_data", 3),
        (request(fport=3), "bad_payload", 3),
        (request(fport=3, data="00", object={}), "bad_payload", 3),
        (request(fport=3, object=[1]), "bad_object", 3),
        (request(fport=3, object={"interval_s": 5}), "out_of_range", 3),
        (request(fport=3, object={"colour": 1}), "unknown_field", 3),
        (request(fport=3, object={"dim_level": "high"}), "bad_value_type", 3),
        (request(fport=1, object={"lamp_on": True}), "unknown_fport", 1),  # FPort 1 carries readings up only
        (request(fport=3, confirmed="yes", data="00"), "bad_confirmed", 3),
        (request(fport=3, data="00", priority=1), "unknown_field", 3),
        (request(fport=3, data="00" * 223), "too_long", 3),
    ],
)
def test_a_bad_request_is_refused_with_its_reason(raw: bytes, reason: str, fport: int | None) -> None:
    with pytest.raises(DownlinkRequestError) as caught:
        parse(raw)
    assert (caught.value.reason, caught.value.fport) == (reason, fport)


def test_a_refused_request_keeps_its_own_id_and_a_bad_id_is_refused() -> None:
    with pytest.raises(DownlinkRequestError) as caught:
        parse(request(id="cfg-9", fport=3, data="zz"))
    assert (caught.value.reason, caught.value.downlink_id) == ("bad_data", "cfg-9")
    with pytest.raises(DownlinkRequestError) as caught:
        parse(request(id="a b/c", fport=3, data="00"))
    assert (caught.value.reason, caught.value.downlink_id) == ("bad_id", None)


# --- scheduling -------------------------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path):
    with Registry(tmp_path / "reg.sqlite") as reg:
        reg.import_devices([LAMP])
        yield reg


class Exchange:
    """A node and the session layer: uplinks in, the outputs of each kept for the test."""

    def __init__(self, session: SessionLayer, node: LoRaNode) -> None:
        self.session, self.node = session, node
        self.now = T0

    def uplink(self, at: float | None = None, heard=None, **frame: object) -> list:  # noqa: ANN001
        self.now = self.now + 60 if at is None else at
        return self.session.handle_uplink(self.node.uplink(**frame), heard or reception(), self.now)

    def settle_mac(self) -> None:
        """The session's first uplink brings a DevStatusReq (FPort 0); answering it leaves the MAC quiet."""
        transmit = only(self.uplink(), Transmit)
        frame, commands = self.node.open_downlink(transmit.txpk.data, 0)
        assert frame.fport == 0 and frame.frm_payload != commands == b"\x06"  # encrypted with NwkSKey
        assert self.session.tx_ack(transmit.ref, "NONE", self.now + 0.3) == []
        outputs = self.uplink(fopts=build_mac_commands([DevStatusAns(254, 9)]))
        assert [type(o) for o in outputs] == [UplinkAccepted, MacEvent]
        assert (outputs[1].kind, outputs[1].fields["battery_level_pct"]) == ("dev_status", 100.0)


def only(outputs: list, kind: type):  # noqa: ANN201
    found = [o for o in outputs if isinstance(o, kind)]
    assert len(found) == 1, outputs
    return found[0]


@pytest.fixture
def exchange(registry: Registry) -> Exchange:
    ex = Exchange(SessionLayer(registry), LoRaNode.from_entry(LAMP))
    ex.settle_mac()
    return ex


def queue(ex: Exchange, raw: bytes) -> str:
    status = only(ex.session.request_downlink(LAMP["asset_id"], raw, ex.now + 1), DownlinkStatus)
    assert (status.status, status.reason, status.dev_eui) == ("queued", None, LAMP["dev_eui"])
    return status.downlink_id


def test_a_queued_downlink_goes_in_rx1_of_the_next_uplink_and_is_sent(exchange: Exchange, registry: Registry) -> None:
    downlink_id = queue(exchange, request(fport=3, object={"interval_s": 300, "dim_level": 60}))
    outputs = exchange.uplink(heard=reception(tmst=0xFFFF_FFFF - 200_000, sf=9, freq=868_500_000))
    assert isinstance(outputs[0], UplinkAccepted)
    transmit = only(outputs, Transmit)
    txpk = transmit.txpk
    assert txpk.tmst == (0xFFFF_FFFF - 200_000 + 1_000_000) & 0xFFFF_FFFF
    assert (txpk.freq, txpk.sf, txpk.bw_khz, txpk.ipol) == (868.5, 9, 125, True)
    frame, payload = exchange.node.open_downlink(txpk.data, 1)  # FCntDown 0 went to the DevStatusReq
    assert (frame.mtype, frame.fport, payload, frame.ack, frame.f_pending, frame.fopts) == (
        MType.UNCONFIRMED_DOWN, 3, CONFIG, False, False, b"")
    assert registry.get(LAMP["dev_eui"]).fcnt_down == 2  # committed before the frame left

    sent = only(exchange.session.tx_ack(transmit.ref, "NONE", exchange.now + 0.3), DownlinkStatus)
    assert (sent.downlink_id, sent.status, sent.reason, sent.fcnt_down, sent.fport) == (downlink_id, "sent", None, 1, 3)
    assert exchange.session.queued(LAMP["dev_eui"]) == []
    assert [type(o) for o in exchange.uplink()] == [UplinkAccepted]  # nothing left to send


def test_too_late_in_rx1_goes_to_rx2_then_waits_for_the_next_uplink(exchange: Exchange) -> None:
    downlink_id = queue(exchange, request(fport=3, data="a10118"))
    rx1 = only(exchange.uplink(heard=reception(tmst=5_000_000)), Transmit)
    rx2 = only(exchange.session.tx_ack(rx1.ref, "TOO_LATE", exchange.now + 0.3), Transmit)
    assert rx2.txpk.data == rx1.txpk.data and rx2.gateway_eui == rx1.gateway_eui
    assert (rx2.txpk.tmst, rx2.txpk.freq, rx2.txpk.sf, rx2.txpk.bw_khz) == (7_000_000, 869.525, 12, 125)
    waiting = only(exchange.session.tx_ack(rx2.ref, "TOO_LATE", exchange.now + 0.4), DownlinkStatus)
    assert (waiting.downlink_id, waiting.status, waiting.reason) == (downlink_id, "queued", "too_late")
    assert [item.id for item in exchange.session.queued(LAMP["dev_eui"])] == [downlink_id]

    again = only(exchange.uplink(), Transmit)
    frame, payload = exchange.node.open_downlink(again.txpk.data, 2)  # a new FCntDown, never the used one
    assert (frame.fport, payload) == (3, b"\xa1\x01\x18")
    assert only(exchange.session.tx_ack(again.ref, "NONE", exchange.now + 0.3), DownlinkStatus).status == "sent"


def test_rx1_out_of_reach_goes_straight_to_rx2_and_past_both_waits(exchange: Exchange) -> None:
    downlink_id = queue(exchange, request(fport=3, data="a10118"))
    session, node = exchange.session, exchange.node
    t = exchange.now + 60
    assert session.receive(node.uplink(), reception(tmst=9_000_000), t) == [CollectAt(t + 0.2)]
    assert session.collect(t + 0.1) == []  # still gathering copies
    transmit = only(session.collect(t + 0.95), Transmit)  # RX1 (t + 1 s) can no longer be reached in time
    assert (transmit.txpk.tmst, transmit.txpk.freq, transmit.txpk.sf) == (11_000_000, 869.525, 12)
    waiting = only(session.tx_ack(transmit.ref, "TOO_LATE", t + 1.0), DownlinkStatus)  # RX2 was the last chance
    assert (waiting.downlink_id, waiting.status, waiting.reason) == (downlink_id, "queued", "too_late")

    t += 60
    session.receive(node.uplink(), reception(tmst=20_000_000), t)
    outputs = session.collect(t + 2.0)
    assert isinstance(outputs[0], UplinkAccepted)
    assert only(outputs, DownlinkDropped).reason == "no_downlink_window"
    assert only(outputs, DownlinkStatus).reason == "too_late"
    assert not any(isinstance(o, Transmit) for o in outputs)
    assert [item.id for item in session.queued(LAMP["dev_eui"])] == [downlink_id]


def test_a_confirmed_downlink_is_acked_by_the_next_uplinks_ack_bit(exchange: Exchange) -> None:
    downlink_id = queue(exchange, request(fport=3, confirmed=True, data="a10118"))
    transmit = only(exchange.uplink(), Transmit)
    frame, _ = exchange.node.open_downlink(transmit.txpk.data, 1)
    assert frame.mtype == MType.CONFIRMED_DOWN
    assert only(exchange.session.tx_ack(transmit.ref, "NONE", exchange.now + 0.3), DownlinkStatus).status == "sent"
    assert exchange.session.queued(LAMP["dev_eui"])[0].state == "awaiting_ack"
    outputs = exchange.uplink(ack=True)
    acked = only(outputs, DownlinkStatus)
    assert (acked.downlink_id, acked.status, acked.fcnt_down) == (downlink_id, "acked", 1)
    assert exchange.session.queued(LAMP["dev_eui"]) == [] and not any(isinstance(o, Transmit) for o in outputs)


def test_a_confirmed_downlink_without_ack_is_sent_again_then_fails(exchange: Exchange) -> None:
    downlink_id = queue(exchange, request(fport=3, confirmed=True, data="a10118"))
    fcnt_downs = []
    transmit = only(exchange.uplink(), Transmit)
    for attempt in range(CONFIRMED_DOWNLINK_TRIES):
        fcnt_downs.append(only(exchange.session.tx_ack(transmit.ref, "NONE", exchange.now + 0.3),
                               DownlinkStatus).fcnt_down)
        outputs = exchange.uplink(ack=False)
        if attempt < CONFIRMED_DOWNLINK_TRIES - 1:
            transmit = only(outputs, Transmit)
            frame, payload = exchange.node.open_downlink(transmit.txpk.data, fcnt_downs[-1] + 1)
            assert (frame.mtype, payload) == (MType.CONFIRMED_DOWN, b"\xa1\x01\x18")
    failed = only(outputs, DownlinkStatus)
    assert (failed.downlink_id, failed.status, failed.reason) == (downlink_id, "failed", "no_ack")
    assert fcnt_downs == [1, 2, 3]
    assert exchange.session.queued(LAMP["dev_eui"]) == []


def test_fpending_tells_the_node_more_is_queued(exchange: Exchange) -> None:
    queue(exchange, request(fport=3, data="01"))
    queue(exchange, request(fport=3, data="02"))
    pendings = []
    for _ in range(2):
        transmit = only(exchange.uplink(), Transmit)
        frame, payload = exchange.node.open_downlink(transmit.txpk.data, transmit_fcnt(exchange))
        pendings.append((payload, frame.f_pending))
        exchange.session.tx_ack(transmit.ref, "NONE", exchange.now + 0.3)
    assert pendings == [(b"\x01", True), (b"\x02", False)]


def transmit_fcnt(ex: Exchange) -> int:
    """The FCntDown of the downlink just built (the registry holds the next one)."""
    return ex.session.registry.get(LAMP["dev_eui"]).fcnt_down - 1


@pytest.mark.parametrize(("error", "reason"), [("COLLISION_PACKET", "tx_collision_packet"), ("TX_FREQ", "tx_tx_freq")])
def test_other_gateway_errors_fail_the_downlink_with_the_reason(exchange: Exchange, error: str, reason: str) -> None:
    downlink_id = queue(exchange, request(fport=3, data="01"))
    transmit = only(exchange.uplink(), Transmit)
    failed = only(exchange.session.tx_ack(transmit.ref, error, exchange.now + 0.3), DownlinkStatus)
    assert (failed.downlink_id, failed.status, failed.reason, failed.fcnt_down) == (downlink_id, "failed", reason, 1)
    assert exchange.session.queued(LAMP["dev_eui"]) == []


def test_a_missing_tx_ack_counts_as_sent_after_the_timeout(exchange: Exchange) -> None:
    downlink_id = queue(exchange, request(fport=3, data="01"))
    transmit = only(exchange.uplink(), Transmit)
    assert exchange.session.expire(exchange.now + 0.5) == []
    sent = only(exchange.session.expire(exchange.now + 1.5), DownlinkStatus)
    assert (sent.downlink_id, sent.status, sent.reason) == (downlink_id, "sent", "no_tx_ack")
    assert exchange.session.tx_ack(transmit.ref, "NONE", exchange.now + 2) == []  # too late to matter


def test_a_confirmed_uplink_is_acked_with_an_empty_downlink(exchange: Exchange) -> None:
    transmit = only(exchange.uplink(confirmed=True), Transmit)
    frame, payload = exchange.node.open_downlink(transmit.txpk.data, 1)
    assert (frame.mtype, frame.ack, frame.fport, frame.fopts, payload) == (MType.UNCONFIRMED_DOWN, True, None, b"", b"")
    queue(exchange, request(fport=3, data="07"))
    transmit = only(exchange.uplink(confirmed=True), Transmit)
    frame, payload = exchange.node.open_downlink(transmit.txpk.data, 2)
    assert (frame.ack, frame.fport, payload) == (True, 3, b"\x07")  # the ACK rides on the queued downlink


def test_mac_answers_ride_in_fopts_with_a_queued_downlink(exchange: Exchange) -> None:
    queue(exchange, request(fport=3, data="07"))
    heard = reception(snr=4.0, sf=7)
    transmit = only(exchange.uplink(heard=heard, fopts=build_mac_commands([LinkCheckReq()])), Transmit)
    frame, payload = exchange.node.open_downlink(transmit.txpk.data, 1)
    assert (frame.fport, payload) == (3, b"\x07")
    assert parse_mac_commands(frame.fopts, uplink=False) == [LinkCheckAns(margin=11, gw_count=1)]  # 4 - (-7.5)
    transmit = only(exchange.uplink(fopts=build_mac_commands([LinkCheckReq()])), Transmit)
    frame, payload = exchange.node.open_downlink(transmit.txpk.data, 2)  # nothing queued: alone on FPort 0
    assert frame.fport == 0 and frame.fopts == b"" and parse_mac_commands(payload, uplink=False)[0].gw_count == 1


def test_a_payload_too_long_for_the_data_rate_fails_and_the_next_goes(exchange: Exchange) -> None:
    too_long = queue(exchange, request(fport=3, data="00" * 60))  # DR0 carries 51 bytes
    short = queue(exchange, request(fport=3, data="01"))
    outputs = exchange.uplink(heard=reception(sf=12))
    failed = only(outputs, DownlinkStatus)
    assert (failed.downlink_id, failed.status, failed.reason) == (too_long, "failed", "too_long_for_dr0")
    transmit = only(outputs, Transmit)
    assert exchange.node.open_downlink(transmit.txpk.data, 1)[1] == b"\x01"
    assert [item.id for item in exchange.session.queued(LAMP["dev_eui"])] == [short]


def test_requests_for_unknown_assets_full_queues_and_repeated_ids_fail(exchange: Exchange) -> None:
    failed = only(exchange.session.request_downlink("no-such-lamp", request(id="x1", fport=3, data="00"), T0),
                  DownlinkStatus)
    assert (failed.asset_id, failed.dev_eui, failed.downlink_id, failed.status, failed.reason) == (
        "no-such-lamp", None, "x1", "failed", "unknown_asset")
    queue(exchange, request(id="same", fport=3, data="00"))
    repeated = only(exchange.session.request_downlink(LAMP["asset_id"], request(id="same", fport=3, data="01"), T0),
                    DownlinkStatus)
    assert (repeated.status, repeated.reason) == ("failed", "duplicate_id")
    for n in range(MAX_QUEUE - 1):
        queue(exchange, request(fport=3, data=f"{n:02x}"))
    full = only(exchange.session.request_downlink(LAMP["asset_id"], request(fport=3, data="ff"), T0), DownlinkStatus)
    assert (full.status, full.reason) == ("failed", "queue_full")


def test_the_queue_and_fcnt_down_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "reg.sqlite"
    with Registry(path) as registry:
        registry.import_devices([LAMP])
        ex = Exchange(SessionLayer(registry), LoRaNode.from_entry(LAMP))
        ex.settle_mac()
        confirmed = queue(ex, request(fport=3, confirmed=True, data="01"))
        later = queue(ex, request(fport=3, data="02"))
        transmit = only(ex.uplink(), Transmit)
        ex.session.tx_ack(transmit.ref, "NONE", ex.now + 0.3)
    with Registry(path) as registry:
        session = SessionLayer(registry)
        assert [(i.id, i.state, i.fcnt_down) for i in session.queued(LAMP["dev_eui"])] == [
            (confirmed, "awaiting_ack", 1), (later, "queued", None)]
        ex.session = session
        outputs = ex.uplink(ack=True)
        assert only(outputs, DownlinkStatus).status == "acked"
        frame, payload = ex.node.open_downlink(only(outputs, Transmit).txpk.data, 2)
        assert payload == b"\x02"


def test_no_gateway_with_a_downlink_path_keeps_the_downlink_queued(exchange: Exchange) -> None:
    downlink_id = queue(exchange, request(fport=3, data="01"))
    outputs = exchange.uplink(heard=reception(can_transmit=False))
    assert only(outputs, DownlinkDropped).reason == "no_downlink_window"
    waiting = only(outputs, DownlinkStatus)
    assert (waiting.downlink_id, waiting.status, waiting.reason) == (downlink_id, "queued", "too_late")
    assert not any(isinstance(o, Transmit) for o in outputs)
