"""MAC command codec: bytes where the specification puts them, build/parse identity for every command in both
directions, typed rejects (unknown CID, truncated payload, fields out of range), random bytes raising only CodecError,
and the CFList."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.errors import CodecError, FrameError
from dos_codecs.mac_commands import (
    DOWNLINK_COMMANDS,
    UPLINK_COMMANDS,
    DevStatusAns,
    DevStatusReq,
    DeviceTimeAns,
    DeviceTimeReq,
    DlChannelAns,
    DlChannelReq,
    DutyCycleAns,
    DutyCycleReq,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    LinkCheckReq,
    MacCommand,
    NewChannelAns,
    NewChannelReq,
    RXParamSetupAns,
    RXParamSetupReq,
    RXTimingSetupAns,
    RXTimingSetupReq,
    build_cf_list,
    build_mac_command,
    build_mac_commands,
    commands_size,
    parse_cf_list,
    parse_mac_commands,
    parse_mac_commands_prefix,
)

frequencies = st.integers(0, 0xFFFFFF).map(lambda steps: steps * 100)
nibble = st.integers(0, 15)

#: One strategy per command, with the field ranges of the LoRaWAN 1.0.4 specification.
COMMAND_STRATEGIES: dict[type[MacCommand], st.SearchStrategy[MacCommand]] = {
    LinkCheckReq: st.just(LinkCheckReq()),
    LinkCheckAns: st.builds(LinkCheckAns, margin=st.integers(0, 254), gw_count=st.integers(0, 255)),
    LinkADRReq: st.builds(
        LinkADRReq, data_rate=nibble, tx_power=nibble, ch_mask=st.integers(0, 0xFFFF),
        ch_mask_cntl=st.integers(0, 7), nb_trans=nibble,
    ),
    LinkADRAns: st.builds(LinkADRAns, st.booleans(), st.booleans(), st.booleans()),
    DutyCycleReq: st.builds(DutyCycleReq, max_duty_cycle=nibble),
    DutyCycleAns: st.just(DutyCycleAns()),
    RXParamSetupReq: st.builds(
        RXParamSetupReq, rx1_dr_offset=st.integers(0, 7), rx2_data_rate=nibble, frequency_hz=frequencies
    ),
    RXParamSetupAns: st.builds(RXParamSetupAns, st.booleans(), st.booleans(), st.booleans()),
    DevStatusReq: st.just(DevStatusReq()),
    DevStatusAns: st.builds(DevStatusAns, battery=st.integers(0, 255), margin=st.integers(-32, 31)),
    NewChannelReq: st.builds(
        NewChannelReq, ch_index=st.integers(0, 255), frequency_hz=frequencies, min_dr=nibble, max_dr=nibble
    ),
    NewChannelAns: st.builds(NewChannelAns, st.booleans(), st.booleans()),
    RXTimingSetupReq: st.builds(RXTimingSetupReq, delay=nibble),
    RXTimingSetupAns: st.just(RXTimingSetupAns()),
    DlChannelReq: st.builds(DlChannelReq, ch_index=st.integers(0, 255), frequency_hz=frequencies),
    DlChannelAns: st.builds(DlChannelAns, st.booleans(), st.booleans()),
    DeviceTimeReq: st.just(DeviceTimeReq()),
    DeviceTimeAns: st.builds(DeviceTimeAns, gps_seconds=st.integers(0, 0xFFFFFFFF), fraction=st.integers(0, 255)),
}


def test_every_command_has_a_strategy_and_a_unique_cid_per_direction() -> None:
    assert set(COMMAND_STRATEGIES) == set(UPLINK_COMMANDS) | set(DOWNLINK_COMMANDS)
    for commands, uplink in ((UPLINK_COMMANDS, True), (DOWNLINK_COMMANDS, False)):
        cids = [cls.CID for cls in commands]
        assert len(cids) == len(set(cids))
        assert all(cls.UPLINK is uplink for cls in commands)


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (LinkCheckReq(), "02"),
        (LinkCheckAns(margin=20, gw_count=3), "021403"),
        # DR5 | TXPower 2, ChMask 0x0007 (LE), ChMaskCntl 0 | NbTrans 1
        (LinkADRReq(data_rate=5, tx_power=2, ch_mask=0x0007, ch_mask_cntl=0, nb_trans=1), "0352070001"),
        (LinkADRReq(data_rate=0, tx_power=7, ch_mask=0xFF00, ch_mask_cntl=6, nb_trans=3), "030700ff63"),
        (LinkADRAns(power_ack=True, data_rate_ack=False, channel_mask_ack=True), "0305"),
        (DutyCycleReq(max_duty_cycle=7), "0407"),
        (DutyCycleAns(), "04"),
        # RX1DRoffset 1, RX2 DR3 -> 0x13; 869.525 MHz = 8695250 x 100 Hz = 0x84add2 (LE)
        (RXParamSetupReq(rx1_dr_offset=1, rx2_data_rate=3, frequency_hz=869_525_000), "0513d2ad84"),
        (RXParamSetupAns(rx1_dr_offset_ack=True, rx2_data_rate_ack=True, channel_ack=False), "0506"),
        (DevStatusReq(), "06"),
        (DevStatusAns(battery=254, margin=-5), "06fe3b"),
        (DevStatusAns(battery=0, margin=31), "06001f"),
        (DevStatusAns(battery=255, margin=-32), "06ff20"),
        # channel 3 at 867.1 MHz = 0x844f18 x 100 Hz, DR range 0..5 -> MaxDR 5 | MinDR 0
        (NewChannelReq(ch_index=3, frequency_hz=867_100_000, min_dr=0, max_dr=5), "0703184f8450"),
        (NewChannelAns(data_rate_range_ok=True, channel_frequency_ok=False), "0702"),
        (RXTimingSetupReq(delay=5), "0805"),
        (RXTimingSetupAns(), "08"),
        # channel 3's RX1 on 868.5 MHz = 8685000 x 100 Hz = 0x8485c8 (LE)
        (DlChannelReq(ch_index=3, frequency_hz=868_500_000), "0a03c88584"),
        (DlChannelAns(uplink_frequency_exists=False, channel_frequency_ok=True), "0a01"),
        (DeviceTimeReq(), "0d"),
        (DeviceTimeAns(gps_seconds=0x12345678, fraction=0x80), "0d7856341280"),
    ],
)
def test_bytes_where_the_specification_puts_them(command: MacCommand, wire: str) -> None:
    assert build_mac_command(command).hex() == wire
    assert command.size == len(bytes.fromhex(wire))
    assert parse_mac_commands(bytes.fromhex(wire), uplink=command.UPLINK) == [command]


def test_direction_decides_the_meaning_of_a_cid() -> None:
    assert parse_mac_commands(bytes.fromhex("02"), uplink=True) == [LinkCheckReq()]
    assert parse_mac_commands(bytes.fromhex("021403"), uplink=False) == [LinkCheckAns(20, 3)]
    # 0x06 with two payload bytes is a DevStatusAns uplink; downlink DevStatusReq has none, so 0xfe is a bad CID.
    assert parse_mac_commands(bytes.fromhex("06fe3b"), uplink=True) == [DevStatusAns(254, -5)]
    with pytest.raises(FrameError) as caught:
        parse_mac_commands(bytes.fromhex("06fe3b"), uplink=False)
    assert caught.value.reason == "unknown_mac_command"


def test_rfu_bits_are_ignored_on_parse() -> None:
    # LinkADRAns with RFU bits 7-3 set; Redundancy RFU bit 7 set; DevStatusAns margin RFU bits 7-6 set.
    assert parse_mac_commands(bytes.fromhex("03ff"), uplink=True) == [LinkADRAns(True, True, True)]
    assert parse_mac_commands(bytes.fromhex("035207008f"), uplink=False) == [LinkADRReq(5, 2, 7, 0, 15)]
    assert parse_mac_commands(bytes.fromhex("0601c0"), uplink=True) == [DevStatusAns(1, 0)]


def test_a_sequence_parses_in_order_and_sizes_add_up() -> None:
    commands = [LinkADRAns(True, True, True), DevStatusAns(100, 7), DeviceTimeReq(), LinkCheckReq(), DutyCycleAns()]
    wire = build_mac_commands(commands)
    assert wire.hex() == "03070664070d0204"
    assert len(wire) == commands_size(commands)
    assert parse_mac_commands(wire, uplink=True) == commands
    assert parse_mac_commands(b"", uplink=True) == []


@pytest.mark.parametrize(
    ("wire", "uplink", "reason"),
    [
        ("01", True, "unknown_mac_command"),  # ResetInd is LoRaWAN 1.1
        ("0b00", True, "unknown_mac_command"),  # RekeyInd is LoRaWAN 1.1
        ("80", False, "unknown_mac_command"),  # proprietary CID range
        ("0203", False, "truncated_mac_command"),  # LinkCheckAns needs 2 bytes
        ("03520700", False, "truncated_mac_command"),  # LinkADRReq one byte short
        ("0d01020304", False, "truncated_mac_command"),
        ("030606fe", True, "truncated_mac_command"),  # LinkADRAns fine, then DevStatusAns without its 2 bytes
        ("06", True, "truncated_mac_command"),
    ],
)
def test_rejects_carry_their_reason(wire: str, uplink: bool, reason: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_mac_commands(bytes.fromhex(wire), uplink=uplink)
    assert caught.value.reason == reason


def test_prefix_parse_keeps_the_commands_before_a_bad_one() -> None:
    commands, error = parse_mac_commands_prefix(bytes.fromhex("0307" + "06fe3b" + "01" + "02"), uplink=True)
    assert commands == [LinkADRAns(True, True, True), DevStatusAns(254, -5)]
    assert error is not None and error.reason == "unknown_mac_command"
    commands, error = parse_mac_commands_prefix(bytes.fromhex("02" + "0d" + "06fe"), uplink=True)
    assert commands == [LinkCheckReq(), DeviceTimeReq()]
    assert error is not None and error.reason == "truncated_mac_command"
    assert parse_mac_commands_prefix(bytes.fromhex("0202"), uplink=True) == ([LinkCheckReq(), LinkCheckReq()], None)


@pytest.mark.parametrize(
    "command",
    [
        LinkCheckAns(margin=255, gw_count=1),
        LinkCheckAns(margin=-1, gw_count=1),
        LinkADRReq(data_rate=16, tx_power=0, ch_mask=1),
        LinkADRReq(data_rate=5, tx_power=0, ch_mask=0x10000),
        LinkADRReq(data_rate=5, tx_power=0, ch_mask=1, ch_mask_cntl=8),
        LinkADRReq(data_rate=True, tx_power=0, ch_mask=1),
        LinkADRAns(power_ack=1, data_rate_ack=True, channel_mask_ack=True),  # type: ignore[arg-type]
        RXParamSetupReq(rx1_dr_offset=0, rx2_data_rate=0, frequency_hz=869_525_050),  # not a multiple of 100 Hz
        RXParamSetupReq(rx1_dr_offset=8, rx2_data_rate=0, frequency_hz=869_525_000),
        DevStatusAns(battery=1, margin=32),
        DevStatusAns(battery=1, margin=-33),
        NewChannelReq(ch_index=3, frequency_hz=0x1000000 * 100, min_dr=0, max_dr=5),
        RXTimingSetupReq(delay=16),
        DeviceTimeAns(gps_seconds=1 << 32, fraction=0),
        DeviceTimeAns(gps_seconds=0, fraction=256),
    ],
)
def test_build_rejects_fields_out_of_range(command: MacCommand) -> None:
    with pytest.raises(FrameError) as caught:
        build_mac_command(command)
    assert caught.value.reason == "bad_field"


def test_to_dict_names_the_command_and_its_fields() -> None:
    assert LinkADRReq(5, 2, 7).to_dict() == {
        "command": "LinkADRReq", "data_rate": 5, "tx_power": 2, "ch_mask": 7, "ch_mask_cntl": 0, "nb_trans": 1,
    }
    assert DevStatusReq().to_dict() == {"command": "DevStatusReq"}


def _commands(uplink: bool) -> st.SearchStrategy[list[MacCommand]]:
    classes = UPLINK_COMMANDS if uplink else DOWNLINK_COMMANDS
    return st.lists(st.one_of(*(COMMAND_STRATEGIES[cls] for cls in classes)), max_size=12)


@settings(max_examples=200)
@given(st.booleans().flatmap(lambda uplink: st.tuples(st.just(uplink), _commands(uplink))))
def test_build_parse_identity(case: tuple[bool, list[MacCommand]]) -> None:
    uplink, commands = case
    wire = build_mac_commands(commands)
    assert len(wire) == commands_size(commands)
    assert parse_mac_commands(wire, uplink) == commands


@settings(max_examples=200)
@given(st.one_of(*COMMAND_STRATEGIES.values()))
def test_every_single_command_round_trips(command: MacCommand) -> None:
    assert parse_mac_commands(build_mac_command(command), command.UPLINK) == [command]


@settings(max_examples=200)
@given(st.binary(max_size=40), st.booleans())
def test_random_bytes_raise_only_codec_errors(data: bytes, uplink: bool) -> None:
    try:
        commands = parse_mac_commands(data, uplink)
    except CodecError as exc:
        assert exc.reason in ("unknown_mac_command", "truncated_mac_command")
        return
    # Whatever parsed rebuilds to the same bytes except for RFU bits, which are built as 0.
    rebuilt = build_mac_commands(commands)
    assert len(rebuilt) == len(data)
    assert parse_mac_commands(rebuilt, uplink) == commands


def test_cf_list_layout() -> None:
    # 867.1 MHz = 0x844f18 x 100 Hz, little-endian; CFListType 0 last.
    cf_list = build_cf_list([867_100_000, 867_300_000])
    assert cf_list.hex() == "184f84" + "e85684" + "000000" * 3 + "00"
    assert parse_cf_list(cf_list) == [867_100_000, 867_300_000, 0, 0, 0]


@pytest.mark.parametrize("cf_list", ["00" * 15, "00" * 17, "00" * 15 + "01"])
def test_cf_list_rejects(cf_list: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_cf_list(bytes.fromhex(cf_list))
    assert caught.value.reason == "bad_cf_list"


@pytest.mark.parametrize("frequencies", [[1] * 6, [867_100_050], [-100], [0x1000000 * 100]])
def test_cf_list_build_rejects(frequencies: list[int]) -> None:
    with pytest.raises(FrameError) as caught:
        build_cf_list(frequencies)
    assert caught.value.reason == "bad_field"


@settings(max_examples=200)
@given(st.lists(frequencies, max_size=5))
def test_cf_list_identity(frequencies_hz: list[int]) -> None:
    assert parse_cf_list(build_cf_list(frequencies_hz)) == frequencies_hz + [0] * (5 - len(frequencies_hz))
