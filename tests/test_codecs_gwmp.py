"""Semtech GWMP codec: all six datagram kinds round trip, rejects with their reasons, rxpk/txpk validation, fuzzing."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.errors import CodecError, DatagramError
from dos_codecs.gwmp import (
    Datagram,
    GwmpKind,
    Rxpk,
    Txpk,
    build_datagram,
    parse_datagram,
    parse_rxpk,
    parse_tx_ack_error,
    parse_txpk,
    rxpk_to_json,
    txpk_to_json,
)

EUI = bytes.fromhex("AA555A0000000101")
WITH_EUI = {GwmpKind.PUSH_DATA, GwmpKind.PULL_DATA, GwmpKind.TX_ACK}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=16,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@st.composite
def datagrams(draw: st.DrawFn) -> Datagram:
    kind = draw(st.sampled_from(list(GwmpKind)))
    if kind in (GwmpKind.PUSH_DATA, GwmpKind.PULL_RESP):
        payload = draw(json_objects)
    elif kind == GwmpKind.TX_ACK:
        payload = draw(st.none() | json_objects)
    else:
        payload = None
    return Datagram(
        version=draw(st.sampled_from([1, 2])),
        token=draw(st.binary(min_size=2, max_size=2)),
        kind=kind,
        gateway_eui=draw(st.binary(min_size=8, max_size=8)) if kind in WITH_EUI else None,
        payload=payload,
    )


def sample_rxpk(**changes: object) -> dict:
    data = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
    obj = {
        "time": "2026-11-22T08:00:00.000000Z",
        "tmst": 3512348611,
        "chan": 2,
        "rfch": 0,
        "freq": 868.5,
        "stat": 1,
        "modu": "LORA",
        "datr": "SF7BW125",
        "codr": "4/5",
        "rssi": -35,
        "lsnr": 5.1,
        "size": len(data),
        "data": base64.b64encode(data).decode(),
    }
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not None}


@settings(max_examples=200)
@given(datagrams())
def test_all_six_kinds_build_parse_identity(datagram: Datagram) -> None:
    raw = build_datagram(datagram)
    assert raw[0] == datagram.version and raw[1:3] == datagram.token and raw[3] == datagram.kind
    assert parse_datagram(raw) == datagram


@pytest.mark.parametrize(
    ("raw", "kind", "eui", "payload"),
    [
        (b"\x02\xab\xcd\x00" + EUI + b'{"rxpk":[]}', GwmpKind.PUSH_DATA, EUI, {"rxpk": []}),
        (b"\x02\xab\xcd\x01", GwmpKind.PUSH_ACK, None, None),
        (b"\x01\xab\xcd\x02" + EUI, GwmpKind.PULL_DATA, EUI, None),
        (b"\x02\xab\xcd\x03" + b'{"txpk":{}}', GwmpKind.PULL_RESP, None, {"txpk": {}}),
        (b"\x02\xab\xcd\x04", GwmpKind.PULL_ACK, None, None),
        (b"\x02\xab\xcd\x05" + EUI, GwmpKind.TX_ACK, EUI, None),
        (
            b"\x02\xab\xcd\x05" + EUI + b'{"txpk_ack":{"error":"NONE"}}',
            GwmpKind.TX_ACK,
            EUI,
            {"txpk_ack": {"error": "NONE"}},
        ),
    ],
)
def test_known_datagrams(raw: bytes, kind: GwmpKind, eui: bytes | None, payload: dict | None) -> None:
    datagram = parse_datagram(raw)
    assert datagram.kind is kind
    assert datagram.token == b"\xab\xcd"  # the two raw bytes, as they came
    assert datagram.gateway_eui == eui
    assert datagram.payload == payload


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "too_short"),
        (b"\x02\x00\x00", "too_short"),
        (b"\x03\x00\x00\x00" + EUI + b"{}", "bad_version"),
        (b"\x00\x00\x00\x02" + EUI, "bad_version"),
        (b"\x02\x00\x00\x06", "unknown_identifier"),
        (b"\x02\x00\x00\xff" + EUI, "unknown_identifier"),
        (b"\x02\x00\x00\x00" + EUI[:7], "too_short"),
        (b"\x02\x00\x00\x02" + EUI[:5], "too_short"),
        (b"\x02\x00\x00\x05", "too_short"),
        (b"\x02\x00\x00\x01\x00", "trailing_bytes"),
        (b"\x02\x00\x00\x04" + b"{}", "trailing_bytes"),
        (b"\x02\x00\x00\x02" + EUI + b"\x00", "trailing_bytes"),
        (b"\x02\x00\x00\x00" + EUI, "bad_json"),
        (b"\x02\x00\x00\x00" + EUI + b'{"rxpk":', "bad_json"),
        (b"\x02\x00\x00\x00" + EUI + b'{"a":"\xff"}', "bad_json"),
        (b"\x02\x00\x00\x00" + EUI + b'{"a":NaN}', "bad_json"),
        (b"\x02\x00\x00\x00" + EUI + b'{"a":1e999}', "bad_json"),
        (b"\x02\x00\x00\x00" + EUI + b'{"a":' + b"1" * 5000 + b"}", "bad_json"),
        (b"\x02\x00\x00\x03" + b"[" * 60000, "bad_json"),
        (b"\x02\x00\x00\x03" + b"[]", "json_not_object"),
        (b"\x02\x00\x00\x05" + EUI + b'"NONE"', "json_not_object"),
    ],
)
def test_datagram_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(DatagramError) as info:
        parse_datagram(raw)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "datagram",
    [
        Datagram(3, b"\x00\x00", GwmpKind.PUSH_ACK),
        Datagram(2, b"\x00", GwmpKind.PUSH_ACK),
        Datagram(2, b"\x00\x00", GwmpKind.PULL_DATA),
        Datagram(2, b"\x00\x00", GwmpKind.PUSH_ACK, gateway_eui=EUI),
        Datagram(2, b"\x00\x00", GwmpKind.PULL_RESP),
        Datagram(2, b"\x00\x00", GwmpKind.PULL_ACK, payload={}),
        Datagram(2, b"\x00\x00", GwmpKind.PULL_RESP, payload={"x": float("nan")}),
        Datagram(2, b"\x00\x00", 9),
    ],
)
def test_build_rejects_fields_that_do_not_fit(datagram: Datagram) -> None:
    with pytest.raises(DatagramError) as info:
        build_datagram(datagram)
    assert info.value.reason == "bad_field"


def _parses_or_rejects(raw: bytes) -> None:
    try:
        datagram = parse_datagram(raw)
    except CodecError as exc:
        assert isinstance(exc, DatagramError) and exc.reason
        return
    assert parse_datagram(build_datagram(datagram)) == datagram


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_give_a_datagram_or_a_datagram_error(raw: bytes) -> None:
    _parses_or_rejects(raw)


@settings(max_examples=300)
@given(
    st.sampled_from([1, 2]),
    st.binary(min_size=2, max_size=2),
    st.sampled_from(list(GwmpKind)),
    st.binary(max_size=80),
)
def test_valid_header_with_garbage_gives_a_datagram_or_a_datagram_error(version, token, kind, rest) -> None:
    _parses_or_rejects(bytes([version]) + token + bytes([kind]) + rest)


@settings(max_examples=200)
@given(st.sampled_from([GwmpKind.PUSH_DATA, GwmpKind.TX_ACK]), st.text(max_size=60))
def test_valid_header_with_garbage_text_gives_a_datagram_or_a_datagram_error(kind: GwmpKind, text: str) -> None:
    _parses_or_rejects(bytes([2, 1, 2, kind]) + EUI + text.encode("utf-8", "surrogatepass"))


# --- rxpk -------------------------------------------------------------------------------------------------------------

rxpks = st.builds(
    Rxpk,
    tmst=st.integers(0, 0xFFFFFFFF),
    freq=st.floats(400, 1000),
    chan=st.integers(0, 255),
    rfch=st.integers(0, 255),
    stat=st.sampled_from([1, 0, -1]),
    sf=st.integers(5, 12),
    bw_khz=st.sampled_from([125, 250, 500]),
    codr=st.sampled_from(["4/5", "4/6", "4/7", "4/8"]),
    rssi=st.integers(-200, 0),
    lsnr=st.floats(-30, 30),
    data=st.binary(max_size=255),
    time=st.none() | st.text(max_size=30),
    tmms=st.none() | st.integers(0, 2**53),
)


def test_sample_rxpk() -> None:
    rxpk = parse_rxpk(sample_rxpk())
    assert (rxpk.tmst, rxpk.chan, rxpk.rfch, rxpk.stat) == (3512348611, 2, 0, 1)
    assert (rxpk.freq, rxpk.sf, rxpk.bw_khz, rxpk.codr, rxpk.datr) == (868.5, 7, 125, "4/5", "SF7BW125")
    assert (rxpk.rssi, rxpk.lsnr, rxpk.size) == (-35, 5.1, 17)
    assert rxpk.data == bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
    assert rxpk.time == "2026-11-22T08:00:00.000000Z" and rxpk.tmms is None


def test_unpadded_base64_is_accepted() -> None:
    assert parse_rxpk(sample_rxpk(data="AQI", size=2)).data == b"\x01\x02"


@settings(max_examples=200)
@given(rxpks)
def test_rxpk_round_trip_through_a_push_data_datagram(rxpk: Rxpk) -> None:
    raw = build_datagram(Datagram(2, b"\x01\x02", GwmpKind.PUSH_DATA, EUI, {"rxpk": [rxpk_to_json(rxpk)]}))
    assert parse_rxpk(parse_datagram(raw).payload["rxpk"][0]) == rxpk


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (sample_rxpk(size=16), "bad_rxpk_size"),
        (sample_rxpk(size=None), "bad_rxpk_size"),
        (sample_rxpk(size="17"), "bad_rxpk_size"),
        (sample_rxpk(data="not base64!"), "bad_rxpk_data"),
        (sample_rxpk(data=17), "bad_rxpk_data"),
        (sample_rxpk(tmst=None), "bad_rxpk_tmst"),
        (sample_rxpk(tmst=True), "bad_rxpk_tmst"),
        (sample_rxpk(tmst=-1), "bad_rxpk_tmst"),
        (sample_rxpk(tmst=2**32), "bad_rxpk_tmst"),
        (sample_rxpk(tmst=1.5), "bad_rxpk_tmst"),
        (sample_rxpk(freq="868.1"), "bad_rxpk_freq"),
        (sample_rxpk(freq=float("nan")), "bad_rxpk_freq"),
        (sample_rxpk(freq=-868.1), "bad_rxpk_freq"),
        (sample_rxpk(chan=256), "bad_rxpk_chan"),
        (sample_rxpk(rfch=None), "bad_rxpk_rfch"),
        (sample_rxpk(stat=2), "bad_rxpk_stat"),
        (sample_rxpk(modu="FSK"), "bad_rxpk_modu"),
        (sample_rxpk(datr="SF13BW125"), "bad_rxpk_datr"),
        (sample_rxpk(datr="SF7BW126"), "bad_rxpk_datr"),
        (sample_rxpk(datr="SF07BW125"), "bad_rxpk_datr"),
        (sample_rxpk(datr=50000), "bad_rxpk_datr"),
        (sample_rxpk(codr="4/9"), "bad_rxpk_codr"),
        (sample_rxpk(rssi=-35.5), "bad_rxpk_rssi"),
        (sample_rxpk(lsnr=None), "bad_rxpk_lsnr"),
        (sample_rxpk(time=5), "bad_rxpk_time"),
        (["not", "an", "object"], "bad_rxpk"),
    ],
)
def test_rxpk_rejects(obj: object, reason: str) -> None:
    with pytest.raises(DatagramError) as info:
        parse_rxpk(obj)
    assert info.value.reason == reason


@settings(max_examples=300)
@given(st.sampled_from(sorted(sample_rxpk())), json_values)
def test_rxpk_with_any_field_replaced_gives_an_rxpk_or_a_datagram_error(name: str, value: object) -> None:
    obj = sample_rxpk()
    obj[name] = value
    try:
        parse_rxpk(json.loads(json.dumps(obj)))
    except DatagramError as exc:
        assert exc.reason.startswith("bad_rxpk")


# --- txpk / tx_ack ----------------------------------------------------------------------------------------------------

txpks = st.builds(
    Txpk,
    freq=st.floats(400, 1000),
    rfch=st.integers(0, 255),
    powe=st.integers(-10, 40),
    sf=st.integers(5, 12),
    bw_khz=st.sampled_from([125, 250, 500]),
    codr=st.sampled_from(["4/5", "4/6", "4/7", "4/8"]),
    ipol=st.booleans(),
    data=st.binary(max_size=255),
    ncrc=st.booleans(),
).flatmap(
    lambda txpk: st.one_of(
        st.builds(lambda tmst: _with(txpk, tmst=tmst), st.integers(0, 0xFFFFFFFF)),
        st.just(_with(txpk, imme=True)),
    )
)


def _with(txpk: Txpk, **changes: object) -> Txpk:
    fields = {name: getattr(txpk, name) for name in Txpk.__dataclass_fields__}
    fields.update(changes)
    return Txpk(**fields)


@settings(max_examples=200)
@given(txpks)
def test_txpk_round_trip_through_a_pull_resp_datagram(txpk: Txpk) -> None:
    raw = build_datagram(Datagram(2, b"\x00\x07", GwmpKind.PULL_RESP, None, txpk_to_json(txpk)))
    assert parse_txpk(parse_datagram(raw).payload) == txpk


def test_txpk_json_shape() -> None:
    txpk = Txpk(freq=869.525, rfch=0, powe=14, sf=9, bw_khz=125, codr="4/5", ipol=True, data=b"\x60", tmst=1000)
    assert txpk_to_json(txpk) == {
        "txpk": {
            "tmst": 1000,
            "freq": 869.525,
            "rfch": 0,
            "powe": 14,
            "modu": "LORA",
            "datr": "SF9BW125",
            "codr": "4/5",
            "ipol": True,
            "size": 1,
            "data": "YA==",
        }
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"rxpk": []}, "bad_txpk"),
        ({"txpk": []}, "bad_txpk"),
        ({"txpk": {"freq": 869.525, "rfch": 0, "powe": 14, "modu": "LORA", "datr": "SF9BW125", "codr": "4/5",
                   "size": 1, "data": "YA=="}}, "bad_txpk_tmst"),
        ({"txpk": {"imme": True, "tmst": 5, "freq": 869.525, "rfch": 0, "powe": 14, "modu": "LORA",
                   "datr": "SF9BW125", "codr": "4/5", "size": 1, "data": "YA=="}}, "bad_txpk_tmst"),
        ({"txpk": {"imme": True, "freq": 869.525, "rfch": 0, "powe": True, "modu": "LORA", "datr": "SF9BW125",
                   "codr": "4/5", "size": 1, "data": "YA=="}}, "bad_txpk_powe"),
        ({"txpk": {"imme": True, "freq": 869.525, "rfch": 0, "powe": 14, "modu": "LORA", "datr": "SF9BW125",
                   "codr": "4/5", "size": 2, "data": "YA=="}}, "bad_txpk_size"),
        ({"txpk": {"imme": True, "freq": 869.525, "rfch": 0, "powe": 14, "modu": "LORA", "datr": "SF9BW125",
                   "codr": "4/5", "size": 1, "data": "YA==", "ipol": 1}}, "bad_txpk_ipol"),
    ],
)
def test_txpk_rejects(payload: dict, reason: str) -> None:
    with pytest.raises(DatagramError) as info:
        parse_txpk(payload)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\x02\x00\x01\x05" + EUI, "NONE"),
        (b"\x02\x00\x01\x05" + EUI + b'{"txpk_ack":{"error":"NONE"}}', "NONE"),
        (b"\x02\x00\x01\x05" + EUI + b'{"txpk_ack":{"error":"TOO_LATE"}}', "TOO_LATE"),
        (b"\x02\x00\x01\x05" + EUI + b'{"txpk_ack":{"warn":"TX_POWER","value":14}}', "NONE"),
        (b"\x02\x00\x01\x05" + EUI + b"{}", "NONE"),
    ],
)
def test_tx_ack_error(raw: bytes, error: str) -> None:
    assert parse_tx_ack_error(parse_datagram(raw).payload) == error


@pytest.mark.parametrize("payload", [{"txpk_ack": 5}, {"txpk_ack": {"error": 5}}, {"txpk_ack": {"error": ""}}])
def test_tx_ack_error_rejects(payload: dict) -> None:
    with pytest.raises(DatagramError) as info:
        parse_tx_ack_error(payload)
    assert info.value.reason == "bad_tx_ack"
