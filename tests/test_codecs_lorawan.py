"""LoRaWAN frame codec: published frames, build/parse identity, structural rejects with their reasons, fuzzing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.errors import CodecError, FrameError
from dos_codecs.lorawan import (
    DATA_MTYPES,
    UPLINK_DATA_MTYPES,
    DataFrame,
    JoinAccept,
    JoinAcceptFrame,
    JoinRequest,
    MType,
    build_data_frame,
    build_join_accept,
    build_join_request,
    parse_data_frame,
    parse_join_accept,
    parse_join_request,
    parse_phy,
)

# Published vectors (reference/lorawan.md, lora-packet issue 10).
DATA_UPLINK = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
JOIN_REQUEST = bytes.fromhex("00DC0000D07ED5B3701E6FEDF57CEEAF0085CC587FE913")

uint32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def data_frames(draw: st.DrawFn) -> DataFrame:
    mtype = draw(st.sampled_from(sorted(DATA_MTYPES)))
    uplink = mtype in UPLINK_DATA_MTYPES
    fport = draw(st.none() | st.integers(0, 255))
    fopts = b"" if fport == 0 else draw(st.binary(max_size=15))
    room = 255 - 13 - len(fopts)
    return DataFrame(
        mtype=mtype,
        dev_addr=draw(uint32),
        fcnt16=draw(st.integers(0, 0xFFFF)),
        adr=draw(st.booleans()),
        adr_ack_req=draw(st.booleans()) if uplink else False,
        ack=draw(st.booleans()),
        f_pending=False if uplink else draw(st.booleans()),
        class_b=draw(st.booleans()) if uplink else False,
        fopts=fopts,
        fport=fport,
        frm_payload=b"" if fport is None else draw(st.binary(max_size=room)),
        mic=draw(st.binary(min_size=4, max_size=4)),
    )


join_requests = st.builds(
    JoinRequest,
    join_eui=st.binary(min_size=8, max_size=8),
    dev_eui=st.binary(min_size=8, max_size=8),
    dev_nonce=st.integers(0, 0xFFFF),
    mic=st.binary(min_size=4, max_size=4),
)

join_accepts = st.builds(
    JoinAccept,
    join_nonce=st.integers(0, 0xFFFFFF),
    net_id=st.integers(0, 0xFFFFFF),
    dev_addr=uint32,
    rx1_dr_offset=st.integers(0, 7),
    rx2_data_rate=st.integers(0, 15),
    rx_delay=st.integers(0, 255),
    cf_list=st.none() | st.binary(min_size=16, max_size=16),
    mic=st.binary(min_size=4, max_size=4),
)


def test_published_data_uplink_fields() -> None:
    frame = parse_data_frame(DATA_UPLINK)
    assert frame.mtype is MType.UNCONFIRMED_UP and frame.uplink and not frame.confirmed
    assert frame.dev_addr == 0x49BE7DF1
    assert frame.fcnt16 == 2
    assert frame.fport == 1
    assert frame.frm_payload == bytes.fromhex("95437876")
    assert frame.mic == bytes.fromhex("2b11ff0d")
    assert (frame.adr, frame.adr_ack_req, frame.ack, frame.class_b, frame.fopts) == (False, False, False, False, b"")
    assert frame.mic_input() == DATA_UPLINK[:-4]
    assert build_data_frame(frame) == DATA_UPLINK


def test_published_join_request_fields() -> None:
    request = parse_join_request(JOIN_REQUEST)
    assert request.join_eui == bytes.fromhex("70B3D57ED00000DC")
    assert request.dev_eui == bytes.fromhex("00AFEE7CF5ED6F1E")
    assert request.dev_nonce == 0xCC85
    assert request.mic == bytes.fromhex("587FE913")
    assert build_join_request(request) == JOIN_REQUEST
    assert parse_phy(JOIN_REQUEST) == request


def test_fctrl_bits_land_where_the_specification_puts_them() -> None:
    up = DataFrame(MType.CONFIRMED_UP, dev_addr=0x01020304, fcnt16=0x0506, adr=True, ack=True, fopts=b"\x02")
    phy = build_data_frame(up)
    assert phy[0] == 0x80  # MType 100, Major 0
    assert phy[1:5] == bytes.fromhex("04030201")  # DevAddr little-endian
    assert phy[5] == 0xA1  # ADR | ACK | FOptsLen 1
    assert phy[6:8] == bytes.fromhex("0605")  # FCnt little-endian
    up = replace(up, adr=False, ack=False, adr_ack_req=True, class_b=True)
    assert build_data_frame(up)[5] == 0x51
    down = DataFrame(MType.UNCONFIRMED_DOWN, dev_addr=1, fcnt16=1, f_pending=True, fport=5, frm_payload=b"x")
    phy = build_data_frame(down)
    assert phy[0] == 0x60 and phy[5] == 0x10 and phy[8] == 5
    assert parse_data_frame(phy).f_pending is True


@settings(max_examples=200)
@given(data_frames())
def test_data_frame_build_parse_identity(frame: DataFrame) -> None:
    phy = build_data_frame(frame)
    parsed = parse_data_frame(phy)
    assert parsed == frame
    assert parse_phy(phy) == frame
    assert build_data_frame(parsed) == phy
    # The MIC input from the parsed bytes and the one rebuilt from the fields agree.
    assert parsed.mic_input() == phy[:-4] == replace(parsed, mic=b"\xff" * 4).mic_input()


@settings(max_examples=200)
@given(join_requests)
def test_join_request_build_parse_identity(request: JoinRequest) -> None:
    phy = build_join_request(request)
    assert len(phy) == 23
    assert parse_join_request(phy) == request
    assert parse_phy(phy) == request
    assert request.mic_input() == phy[:19]


@settings(max_examples=200)
@given(join_accepts)
def test_join_accept_build_parse_identity(accept: JoinAccept) -> None:
    phy = build_join_accept(accept)
    assert len(phy) == (33 if accept.cf_list else 17)
    assert parse_join_accept(phy) == accept
    assert parse_phy(phy) == JoinAcceptFrame(phy)


def _frame_with(fctrl: int, tail: bytes, mhdr: int = 0x40) -> bytes:
    return bytes([mhdr]) + bytes.fromhex("01020304") + bytes([fctrl]) + b"\x00\x00" + tail


@pytest.mark.parametrize(
    ("phy", "reason"),
    [
        (b"", "too_short"),
        (DATA_UPLINK[:11], "too_short"),
        (b"\x40" + bytes(255), "too_long"),
        (b"\x41" + DATA_UPLINK[1:], "bad_major"),
        (b"\xc0" + DATA_UPLINK[1:], "unknown_mtype"),
        (b"\xe0" + DATA_UPLINK[1:], "proprietary"),
        (b"\x44" + DATA_UPLINK[1:], "rfu_set"),
        (_frame_with(0x0F, bytes(4 + 3)), "fopts_past_end"),
        (_frame_with(0x01, b"\x02" + b"\x00" + b"\x01" + bytes(4)), "fport0_with_fopts"),
        (_frame_with(0x40, bytes(4), mhdr=0x60), "rfu_set"),
        (JOIN_REQUEST, "not_data_frame"),
    ],
)
def test_data_frame_structural_rejects(phy: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_data_frame(phy)
    assert info.value.reason == reason
    assert reason in str(info.value)


def test_fopts_that_exactly_fill_the_frame_are_accepted() -> None:
    frame = parse_data_frame(_frame_with(0x03, b"\x02\x06\x07" + bytes(4)))
    assert frame.fopts == b"\x02\x06\x07" and frame.fport is None and frame.frm_payload == b""


@pytest.mark.parametrize(
    ("phy", "reason"),
    [
        (JOIN_REQUEST[:22], "too_short"),
        (JOIN_REQUEST + b"\x00", "too_long"),
        (b"\x20" + bytes(15), "too_short"),
        (b"\x20" + bytes(20), "bad_length"),
        (b"\x20" + bytes(33), "bad_length"),
        (b"\xe0" + bytes(30), "proprietary"),
    ],
)
def test_join_structural_rejects(phy: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_phy(phy)
    assert info.value.reason == reason


def test_join_accept_with_rfu_dlsettings_is_rejected() -> None:
    phy = bytearray(build_join_accept(JoinAccept(join_nonce=1, net_id=2, dev_addr=3)))
    phy[11] |= 0x80
    with pytest.raises(FrameError) as info:
        parse_join_accept(bytes(phy))
    assert info.value.reason == "rfu_set"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1, fcnt16=1, fport=0, frm_payload=b"\x02", fopts=b"\x02"),
         "fport0_with_fopts"),
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1, fcnt16=1, fport=1, frm_payload=bytes(243)), "too_long"),
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1 << 32, fcnt16=1), "bad_field"),
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1, fcnt16=1 << 16), "bad_field"),
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1, fcnt16=1, frm_payload=b"x"), "bad_field"),
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1, fcnt16=1, f_pending=True), "bad_field"),
        (DataFrame(MType.UNCONFIRMED_DOWN, dev_addr=1, fcnt16=1, class_b=True), "bad_field"),
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1, fcnt16=1, fopts=bytes(16)), "bad_field"),
        (DataFrame(MType.UNCONFIRMED_UP, dev_addr=1, fcnt16=1, major=1), "bad_major"),
        (DataFrame(MType.JOIN_REQUEST, dev_addr=1, fcnt16=1), "not_data_frame"),
    ],
)
def test_build_rejects_fields_that_do_not_fit(frame: DataFrame, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        build_data_frame(frame)
    assert info.value.reason == reason


def test_largest_frame_is_255_bytes() -> None:
    frame = DataFrame(MType.CONFIRMED_UP, dev_addr=7, fcnt16=9, fport=1, frm_payload=bytes(242))
    phy = build_data_frame(frame)
    assert len(phy) == 255
    assert parse_data_frame(phy) == frame


def _parses_or_rejects(phy: bytes) -> None:
    try:
        parsed = parse_phy(phy)
    except CodecError as exc:
        assert isinstance(exc, FrameError) and exc.reason
        return
    if isinstance(parsed, DataFrame):
        assert build_data_frame(parsed) == phy
    elif isinstance(parsed, JoinRequest):
        assert build_join_request(parsed) == phy
    else:
        assert parsed.phy == phy


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_give_a_frame_or_a_frame_error(phy: bytes) -> None:
    _parses_or_rejects(phy)
    try:
        parse_data_frame(phy)
    except FrameError:
        pass


@settings(max_examples=300)
@given(st.sampled_from([0x00, 0x20, 0x40, 0x60, 0x80, 0xA0]), st.binary(max_size=260))
def test_valid_mhdr_with_garbage_gives_a_frame_or_a_frame_error(mhdr: int, rest: bytes) -> None:
    _parses_or_rejects(bytes([mhdr]) + rest)


@settings(max_examples=200)
@given(data_frames(), st.integers(0, 254), st.integers(0, 255))
def test_corrupted_valid_frames_give_a_frame_or_a_frame_error(frame: DataFrame, index: int, value: int) -> None:
    phy = bytearray(build_data_frame(frame))
    phy[index % len(phy)] = value
    _parses_or_rejects(bytes(phy))
