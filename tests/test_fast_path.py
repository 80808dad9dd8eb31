"""The agent's decode fast path keeps the meaning of the slow one: the struct-based data frame parse and the GWMP
datagram parse and acknowledgement build agree with their construct layouts on any bytes, the table-driven payload
decode agrees with the schema's field definitions on any map, the MAC state's `evolve` and the ADR loss ratio agree
with their plain definitions, and the session layer's deferred MAC state writes lose nothing it must keep."""

from __future__ import annotations

import dataclasses
import json

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codecs_lorawan import data_frames

from dos_agent.adr import LOSS_MAX_GAP, LOSS_MIN_UPLINKS, UplinkRecord, packet_loss_ratio
from dos_agent.mac import DevStatus, MacState, evolve
from dos_agent.registry import Registry
from dos_agent.session import MAC_STATE_WRITE_EVERY, Reception, SessionLayer, Transmit, UplinkAccepted
from dos_codecs.crypto import SessionKeys
from dos_codecs.errors import DatagramError, FrameError, PayloadError
from dos_codecs.gwmp import Datagram, DatagramLayout, GwmpKind, build_datagram, parse_datagram
from dos_codecs.mac_commands import DevStatusAns, build_mac_commands
from dos_codecs.lorawan import DataFrame, MType, build_data_frame, parse_data_frame_construct, parse_phy
from dos_codecs.schema import available_kinds, load_schema

NWK, APP = bytes(range(16)), bytes(range(16, 32))
RECEPTION = Reception(gateway_eui="aa555a0000000101", tmst=1, freq=868_100_000, sf=7, bw=125_000, rssi=-70, snr=8.5)


def outcome(parse, phy: bytes) -> object:
    try:
        frame = parse(phy)
    except FrameError as exc:
        return exc.reason
    return frame, frame.mic_input()


@settings(max_examples=200)
@given(data_frames())
def test_fast_parse_equals_the_construct_parse_of_any_frame(frame: DataFrame) -> None:
    phy = build_data_frame(frame)
    fast, reference = outcome(parse_phy, phy), outcome(parse_data_frame_construct, phy)
    assert fast == reference
    assert fast[0] == frame


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=40), st.sampled_from([0x40, 0x60, 0x80, 0xA0]))
def test_fast_parse_equals_the_construct_parse_of_any_bytes(body: bytes, mhdr: int) -> None:
    phy = bytes((mhdr,)) + body
    assert outcome(parse_phy, phy) == outcome(parse_data_frame_construct, phy)


@settings(max_examples=200)
@given(st.sampled_from([1, 2, 3]), st.binary(min_size=2, max_size=2), st.sampled_from(list(range(7))),
       st.binary(max_size=8) | st.just(bytes(8)), st.sampled_from([b"", b"{}", b'{"rxpk":[]}', b"[1]", b"{"]))
def test_datagram_parse_agrees_with_the_layout_on_any_bytes(version, token, identifier, eui, tail) -> None:
    data = bytes((version,)) + token + bytes((identifier,)) + eui + tail
    try:
        datagram = parse_datagram(data)
    except DatagramError:
        return
    reference = DatagramLayout.parse(data)
    assert (datagram.version, datagram.token, int(datagram.kind), datagram.gateway_eui) == (
        reference.version, reference.token, reference.identifier, reference.gateway_eui)
    assert (datagram.payload is not None) == bool(reference.json)
    if datagram.payload is not None:
        assert datagram.payload == json.loads(reference.json)


@settings(max_examples=50)
@given(st.sampled_from([1, 2]), st.binary(min_size=2, max_size=2),
       st.sampled_from([GwmpKind.PUSH_ACK, GwmpKind.PULL_ACK]))
def test_acknowledgement_build_agrees_with_the_layout(version, token, kind) -> None:
    built = build_datagram(Datagram(version, token, kind))
    assert built == DatagramLayout.build({"version": version, "token": token, "identifier": int(kind),
                                          "gateway_eui": None, "json": b""})
    assert parse_datagram(built) == Datagram(version, token, kind)


@settings(max_examples=200)
@given(st.fixed_dictionaries({}, optional={
    "dr": st.integers(0, 7), "tx_power_index": st.integers(0, 7), "nb_trans": st.integers(1, 15),
    "adr": st.booleans(), "uplink_count": st.integers(0, 2**32), "last_fcnt": st.none() | st.integers(0, 2**32),
    "history": st.lists(st.builds(UplinkRecord, st.integers(0, 99), st.floats(-20, 20), st.integers(1, 3)),
                        max_size=3).map(tuple),
    "dev_status": st.none() | st.builds(DevStatus, st.integers(0, 255), st.integers(-32, 31), st.floats(0, 1e9)),
}))
def test_evolve_equals_dataclasses_replace(changes: dict) -> None:
    state = MacState(dr=3, uplink_count=7, last_fcnt=6)
    assert evolve(state, **changes) == dataclasses.replace(state, **changes)


def reference_loss_ratio(history: list[UplinkRecord], nb_trans: int) -> float | None:
    """The loss ratio as `dos_agent.adr` defines it, written plainly."""
    tail = []
    for record in reversed(history):
        if record.nb_trans != nb_trans:
            break
        tail.append(record.fcnt)
    fcnts = sorted(set(tail))
    if len(fcnts) < LOSS_MIN_UPLINKS:
        return None
    lost = sum(gap for gap in (b - a - 1 for a, b in zip(fcnts, fcnts[1:])) if gap <= LOSS_MAX_GAP)
    return lost / (lost + len(fcnts))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 1, 1, 1, 2, 5, 12]), st.integers(1, 2)), max_size=25),
       st.integers(1, 2), st.integers(0, 1000))
def test_loss_ratio_equals_its_plain_definition(steps: list, nb_trans: int, first: int) -> None:
    history, fcnt = [], first
    for step, record_nb_trans in steps:  # FCnts mostly rising, with repeats (step 0) and gaps
        fcnt += step
        history.append(UplinkRecord(fcnt, 0.0, 1, record_nb_trans))
    assert packet_loss_ratio(history, nb_trans) == reference_loss_ratio(history, nb_trans)
    assert packet_loss_ratio(tuple(history), nb_trans) == reference_loss_ratio(history, nb_trans)


def reference_decode(kind: str, raw_map: dict) -> object:
    """What each field's own definition (`Field.raw_type_ok`, `value_of`, `in_range`) makes of a map's values, in key
    order: (readings, warnings), or the reason of the first value of the wrong type."""
    message = load_schema(kind).message_for_fport(1)
    readings, warnings = {}, []
    for key in sorted(raw_map):
        spec = message.by_key.get(key)
        if spec is None:
            warnings.append(f"unknown key {key} ignored")
            continue
        if not spec.raw_type_ok(raw_map[key]):
            return "bad_value_type"
        value = spec.value_of(raw_map[key])
        if spec.type != "bool" and not spec.in_range(value):
            warnings.append(f"{spec.name} = {value}{spec.unit_suffix} is out of range [{spec.min}, {spec.max}]")
        readings[spec.name] = {"value": value, "unit": spec.unit}
    return readings, warnings


@settings(max_examples=200)
@given(st.sampled_from(available_kinds()),
       st.dictionaries(st.integers(0, 24), st.booleans() | st.integers(-2**40, 2**40), max_size=12))
def test_table_decode_equals_the_field_definitions_on_any_map(kind: str, raw_map: dict) -> None:
    try:
        decoded = load_schema(kind).decode(1, cbor2.dumps(raw_map, canonical=True))
    except PayloadError as exc:
        fast = exc.reason
    else:
        fast = decoded.readings, decoded.warnings
    assert fast == reference_decode(kind, raw_map)


def uplink_outputs(session: SessionLayer, fcnt: int, fopts: bytes = b"") -> list:
    frame = DataFrame(mtype=MType.UNCONFIRMED_UP, dev_addr=0x26011234, fcnt16=fcnt, adr=True, fopts=fopts, fport=1,
                      frm_payload=b"\xa0")
    return session.handle_uplink(SessionKeys(NWK, APP).seal(frame, fcnt), RECEPTION, 1000.0 + fcnt)


def uplink(session: SessionLayer, fcnt: int, fopts: bytes = b"") -> UplinkAccepted:
    return next(o for o in uplink_outputs(session, fcnt, fopts) if isinstance(o, UplinkAccepted))


def registry_with_device(path) -> Registry:
    registry = Registry(path)
    registry.import_devices([{"dev_eui": "70b3d57ed0001234", "asset_id": "a-1", "kind": "streetlight",
                              "activation": "abp", "dev_addr": "26011234", "nwk_s_key": NWK.hex(),
                              "app_s_key": APP.hex()}])
    return registry


def stored_state(path) -> MacState:
    with Registry(path) as registry:
        return MacState.from_dict(json.loads(registry.get("70b3d57ed0001234").mac_state))


def test_mac_state_is_written_at_once_when_settings_change_and_in_groups_otherwise(tmp_path) -> None:
    path = tmp_path / "registry.sqlite"
    with registry_with_device(path) as registry:
        session = SessionLayer(registry)
        uplink(session, 1)  # first uplink of the session: its state is written
        registry.flush()
        first = stored_state(path)
        assert first.uplink_count == 1
        for fcnt in range(2, MAC_STATE_WRITE_EVERY):
            accepted = uplink(session, fcnt)
        registry.flush()
        # only ADR history and counts changed since: the file still holds the first state, the layer the newest
        assert accepted.device.fcnt_up == MAC_STATE_WRITE_EVERY - 1
        assert stored_state(path).uplink_count == 1
        assert session._mac_state(accepted.device).uplink_count == MAC_STATE_WRITE_EVERY - 1
        uplink(session, MAC_STATE_WRITE_EVERY)  # the group is due
        registry.flush()
        assert stored_state(path).uplink_count == MAC_STATE_WRITE_EVERY
        assert len(stored_state(path).history) > len(first.history)


def test_an_answer_that_changes_the_mac_state_is_written_with_its_uplink(tmp_path) -> None:
    path = tmp_path / "registry.sqlite"
    with registry_with_device(path) as registry:
        session = SessionLayer(registry)
        transmit = next(o for o in uplink_outputs(session, 1) if isinstance(o, Transmit))  # DevStatusReq first
        session.tx_ack(transmit.ref, "NONE", 1001.5)
        uplink(session, 2, build_mac_commands([DevStatusAns(200, 12)]))
        registry.flush()
        state = stored_state(path)
        assert state.uplink_count == 2
        assert [p.command.name for p in state.pending] == ["LinkADRReq"]  # the DevStatusReq is answered
        assert state.dev_status is not None and state.dev_status.battery == 200
