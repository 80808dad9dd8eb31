"""LoRaWAN 1.0.4 MAC commands (EU868 set), both directions: one construct layout per wire format and a frozen dataclass
per command.

MAC commands travel in FOpts (at most 15 bytes) or as the FRMPayload of an FPort 0 frame: a sequence of
CID | payload, where the CID's meaning depends on the direction (0x03 is LinkADRReq downlink, LinkADRAns uplink). Bit
fields are a whole byte plus `Computed` views of its bits, as in `dos_codecs.lorawan`. RFU bits are ignored on parse
and built as 0. Frequencies travel as 24-bit little-endian multiples of 100 Hz and are `frequency_hz` here.

`parse_mac_commands(data, uplink)` raises only `FrameError` (`unknown_mac_command`, `truncated_mac_command`) on any
bytes; `build_mac_commands(commands)` raises `FrameError('bad_field')` for a field out of range.

The EU868 CFList of a JoinAccept (five channel frequencies in the same 100 Hz unit, then CFListType 0) is here too:
`build_cf_list` / `parse_cf_list`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from construct import (
    Array,
    Computed,
    Const,
    Construct,
    ConstructError,
    ExprAdapter,
    Int8ul,
    Int16ul,
    Int24ul,
    Int32ul,
    Rebuild,
    Struct,
    Terminated,
    this,
)

from dos_codecs.errors import FrameError
from dos_codecs.lorawan import CFLIST_LEN

#: Frequencies in MAC commands and the CFList are counted in steps of this many Hz.
FREQUENCY_STEP_HZ = 100
MAX_FREQUENCY_HZ = 0xFFFFFF * FREQUENCY_STEP_HZ
#: Channels a CFList of type 0 defines (channels 3..7).
CFLIST_CHANNELS = 5

# --- construct layouts (payload after the CID) ------------------------------------------------------------------------

#: Frequency(3): 24-bit little-endian, in units of 100 Hz; `frequency_hz` in Hz.
Frequency = ExprAdapter(
    Int24ul,
    lambda raw, _ctx: raw * FREQUENCY_STEP_HZ,
    lambda hz, _ctx: hz // FREQUENCY_STEP_HZ,
)

Empty = Struct()

#: LinkCheckAns: Margin (dB above the demodulation floor, 0..254) | GwCnt.
LinkCheckAnsLayout = Struct("margin" / Int8ul, "gw_count" / Int8ul)

#: LinkADRReq: DataRate(7-4) TXPower(3-0) | ChMask(2, LE) | Redundancy: RFU(7) ChMaskCntl(6-4) NbTrans(3-0).
LinkADRReqLayout = Struct(
    "dr_tx_power" / Rebuild(Int8ul, (this.data_rate << 4) | this.tx_power),
    "data_rate" / Computed(this.dr_tx_power >> 4),
    "tx_power" / Computed(this.dr_tx_power & 0x0F),
    "ch_mask" / Int16ul,
    "redundancy" / Rebuild(Int8ul, (this.ch_mask_cntl << 4) | this.nb_trans),
    "ch_mask_cntl" / Computed((this.redundancy >> 4) & 0x07),
    "nb_trans" / Computed(this.redundancy & 0x0F),
)

#: LinkADRAns status: RFU(7-3) PowerACK(2) DataRateACK(1) ChannelMaskACK(0).
LinkADRAnsLayout = Struct(
    "status" / Rebuild(Int8ul, (this.power_ack << 2) | (this.data_rate_ack << 1) | this.channel_mask_ack),
    "power_ack" / Computed(this.status & 0x04 != 0),
    "data_rate_ack" / Computed(this.status & 0x02 != 0),
    "channel_mask_ack" / Computed(this.status & 0x01 != 0),
)

#: DutyCycleReq: RFU(7-4) MaxDCycle(3-0); the aggregated duty cycle becomes 1 / 2^MaxDCycle.
DutyCycleReqLayout = Struct(
    "duty_cycle_pl" / Rebuild(Int8ul, this.max_duty_cycle),
    "max_duty_cycle" / Computed(this.duty_cycle_pl & 0x0F),
)

#: RXParamSetupReq: DLSettings: RFU(7) RX1DRoffset(6-4) RX2DataRate(3-0) | Frequency(3).
RXParamSetupReqLayout = Struct(
    "dl_settings" / Rebuild(Int8ul, (this.rx1_dr_offset << 4) | this.rx2_data_rate),
    "rx1_dr_offset" / Computed((this.dl_settings >> 4) & 0x07),
    "rx2_data_rate" / Computed(this.dl_settings & 0x0F),
    "frequency_hz" / Frequency,
)

#: RXParamSetupAns status: RFU(7-3) RX1DRoffsetACK(2) RX2DataRateACK(1) ChannelACK(0).
RXParamSetupAnsLayout = Struct(
    "status" / Rebuild(Int8ul, (this.rx1_dr_offset_ack << 2) | (this.rx2_data_rate_ack << 1) | this.channel_ack),
    "rx1_dr_offset_ack" / Computed(this.status & 0x04 != 0),
    "rx2_data_rate_ack" / Computed(this.status & 0x02 != 0),
    "channel_ack" / Computed(this.status & 0x01 != 0),
)

#: DevStatusAns: Battery (0 external power, 1..254 level, 255 unknown) | Margin: RFU(7-6) SNR margin (5-0, signed).
DevStatusAnsLayout = Struct(
    "battery" / Int8ul,
    "margin_byte" / Rebuild(Int8ul, this.margin & 0x3F),
    "margin" / Computed(((this.margin_byte & 0x3F) ^ 0x20) - 0x20),
)

#: NewChannelReq: ChIndex | Freq(3) | DrRange: MaxDR(7-4) MinDR(3-0). Frequency 0 disables the channel.
NewChannelReqLayout = Struct(
    "ch_index" / Int8ul,
    "frequency_hz" / Frequency,
    "dr_range" / Rebuild(Int8ul, (this.max_dr << 4) | this.min_dr),
    "max_dr" / Computed(this.dr_range >> 4),
    "min_dr" / Computed(this.dr_range & 0x0F),
)

#: NewChannelAns status: RFU(7-2) DataRateRangeOK(1) ChannelFrequencyOK(0).
NewChannelAnsLayout = Struct(
    "status" / Rebuild(Int8ul, (this.data_rate_range_ok << 1) | this.channel_frequency_ok),
    "data_rate_range_ok" / Computed(this.status & 0x02 != 0),
    "channel_frequency_ok" / Computed(this.status & 0x01 != 0),
)

#: DlChannelReq: ChIndex | Freq(3): the RX1 downlink frequency of an existing uplink channel.
DlChannelReqLayout = Struct("ch_index" / Int8ul, "frequency_hz" / Frequency)

#: DlChannelAns status: RFU(7-2) UplinkFrequencyExists(1) ChannelFrequencyOK(0).
DlChannelAnsLayout = Struct(
    "status" / Rebuild(Int8ul, (this.uplink_frequency_exists << 1) | this.channel_frequency_ok),
    "uplink_frequency_exists" / Computed(this.status & 0x02 != 0),
    "channel_frequency_ok" / Computed(this.status & 0x01 != 0),
)

#: RXTimingSetupReq: RFU(7-4) Del(3-0): RX1 delay in seconds (0 means 1 s).
RXTimingSetupReqLayout = Struct(
    "settings" / Rebuild(Int8ul, this.delay),
    "delay" / Computed(this.settings & 0x0F),
)

#: DeviceTimeAns: seconds since the GPS epoch (4, LE) | fractional second in 1/256 s.
DeviceTimeAnsLayout = Struct("gps_seconds" / Int32ul, "fraction" / Int8ul)

#: CFList of type 0 (EU868): Freq(3) x 5 for channels 3..7 (0 = no channel) | CFListType 0.
CFListLayout = Struct(
    "frequencies_hz" / Array(CFLIST_CHANNELS, Frequency),
    "cf_list_type" / Const(0, Int8ul),
    Terminated,
)

# --- typed commands ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MacCommand:
    """Base of every MAC command: `CID`, `UPLINK` (the direction it travels in), its `LAYOUT` and field limits."""

    CID: ClassVar[int]
    UPLINK: ClassVar[bool]
    LAYOUT: ClassVar[Construct]
    #: (field name, min, max) of every integer field; bool fields must be bools.
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = ()

    @property
    def name(self) -> str:
        """The command's name in the specification, e.g. 'LinkADRReq'."""
        return type(self).__name__

    @property
    def size(self) -> int:
        """Bytes on the wire, CID included."""
        return 1 + self.LAYOUT.sizeof()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view: {"command": name, field: value, ...}."""
        return {"command": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


@dataclass(frozen=True, slots=True)
class LinkCheckReq(MacCommand):
    """The node asks for its link margin and how many gateways heard it."""

    CID: ClassVar[int] = 0x02
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = Empty


@dataclass(frozen=True, slots=True)
class LinkCheckAns(MacCommand):
    """Answer to LinkCheckReq: `margin` dB above the demodulation floor of the request, `gw_count` gateways."""

    CID: ClassVar[int] = 0x02
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = LinkCheckAnsLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (("margin", 0, 254), ("gw_count", 0, 255))

    margin: int
    gw_count: int


@dataclass(frozen=True, slots=True)
class LinkADRReq(MacCommand):
    """Set data rate, TX power index, channel mask (ChMaskCntl selects the block) and NbTrans. 15 = keep current for
    `data_rate` and `tx_power` (1.0.4)."""

    CID: ClassVar[int] = 0x03
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = LinkADRReqLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (
        ("data_rate", 0, 15), ("tx_power", 0, 15), ("ch_mask", 0, 0xFFFF), ("ch_mask_cntl", 0, 7), ("nb_trans", 0, 15),
    )

    data_rate: int
    tx_power: int
    ch_mask: int
    ch_mask_cntl: int = 0
    nb_trans: int = 1


@dataclass(frozen=True, slots=True)
class LinkADRAns(MacCommand):
    """Answer to LinkADRReq; the request takes effect only if all three bits are set."""

    CID: ClassVar[int] = 0x03
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = LinkADRAnsLayout

    power_ack: bool
    data_rate_ack: bool
    channel_mask_ack: bool

    @property
    def accepted(self) -> bool:
        """True when the node applied the request."""
        return self.power_ack and self.data_rate_ack and self.channel_mask_ack


@dataclass(frozen=True, slots=True)
class DutyCycleReq(MacCommand):
    """Limit the node's aggregated duty cycle to 1 / 2^max_duty_cycle (0: no limit beyond the regional one)."""

    CID: ClassVar[int] = 0x04
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = DutyCycleReqLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (("max_duty_cycle", 0, 15),)

    max_duty_cycle: int


@dataclass(frozen=True, slots=True)
class DutyCycleAns(MacCommand):
    """Acknowledges DutyCycleReq."""

    CID: ClassVar[int] = 0x04
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = Empty


@dataclass(frozen=True, slots=True)
class RXParamSetupReq(MacCommand):
    """Set the RX1 DR offset, the RX2 data rate and the RX2 frequency (Hz, a multiple of 100)."""

    CID: ClassVar[int] = 0x05
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = RXParamSetupReqLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (
        ("rx1_dr_offset", 0, 7), ("rx2_data_rate", 0, 15), ("frequency_hz", 0, MAX_FREQUENCY_HZ),
    )

    rx1_dr_offset: int
    rx2_data_rate: int
    frequency_hz: int


@dataclass(frozen=True, slots=True)
class RXParamSetupAns(MacCommand):
    """Answer to RXParamSetupReq; applied only if all three bits are set. Repeated in every uplink until a downlink."""

    CID: ClassVar[int] = 0x05
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = RXParamSetupAnsLayout

    rx1_dr_offset_ack: bool
    rx2_data_rate_ack: bool
    channel_ack: bool

    @property
    def accepted(self) -> bool:
        """True when the node applied the request."""
        return self.rx1_dr_offset_ack and self.rx2_data_rate_ack and self.channel_ack


@dataclass(frozen=True, slots=True)
class DevStatusReq(MacCommand):
    """Ask for the node's battery level and the SNR margin of this downlink."""

    CID: ClassVar[int] = 0x06
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = Empty


@dataclass(frozen=True, slots=True)
class DevStatusAns(MacCommand):
    """`battery`: 0 external power, 1..254 level (1 minimum, 254 full), 255 cannot measure. `margin`: SNR in dB of
    the DevStatusReq downlink, rounded, -32..31."""

    CID: ClassVar[int] = 0x06
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = DevStatusAnsLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (("battery", 0, 255), ("margin", -32, 31))

    battery: int
    margin: int


@dataclass(frozen=True, slots=True)
class NewChannelReq(MacCommand):
    """Create or change channel `ch_index` (frequency 0 disables it), usable for data rates min_dr..max_dr."""

    CID: ClassVar[int] = 0x07
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = NewChannelReqLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (
        ("ch_index", 0, 255), ("frequency_hz", 0, MAX_FREQUENCY_HZ), ("min_dr", 0, 15), ("max_dr", 0, 15),
    )

    ch_index: int
    frequency_hz: int
    min_dr: int
    max_dr: int


@dataclass(frozen=True, slots=True)
class NewChannelAns(MacCommand):
    """Answer to NewChannelReq; applied only if both bits are set."""

    CID: ClassVar[int] = 0x07
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = NewChannelAnsLayout

    data_rate_range_ok: bool
    channel_frequency_ok: bool

    @property
    def accepted(self) -> bool:
        """True when the node applied the request."""
        return self.data_rate_range_ok and self.channel_frequency_ok


@dataclass(frozen=True, slots=True)
class RXTimingSetupReq(MacCommand):
    """Set the RX1 delay in seconds (0 means 1 s); RX2 follows one second later."""

    CID: ClassVar[int] = 0x08
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = RXTimingSetupReqLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (("delay", 0, 15),)

    delay: int


@dataclass(frozen=True, slots=True)
class RXTimingSetupAns(MacCommand):
    """Acknowledges RXTimingSetupReq. Repeated in every uplink until a downlink."""

    CID: ClassVar[int] = 0x08
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = Empty


@dataclass(frozen=True, slots=True)
class DlChannelReq(MacCommand):
    """Move the RX1 downlink of uplink channel `ch_index` to `frequency_hz`."""

    CID: ClassVar[int] = 0x0A
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = DlChannelReqLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (("ch_index", 0, 255), ("frequency_hz", 0, MAX_FREQUENCY_HZ))

    ch_index: int
    frequency_hz: int


@dataclass(frozen=True, slots=True)
class DlChannelAns(MacCommand):
    """Answer to DlChannelReq; applied only if both bits are set. Repeated in every uplink until a downlink."""

    CID: ClassVar[int] = 0x0A
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = DlChannelAnsLayout

    uplink_frequency_exists: bool
    channel_frequency_ok: bool

    @property
    def accepted(self) -> bool:
        """True when the node applied the request."""
        return self.uplink_frequency_exists and self.channel_frequency_ok


@dataclass(frozen=True, slots=True)
class DeviceTimeReq(MacCommand):
    """The node asks for the network time."""

    CID: ClassVar[int] = 0x0D
    UPLINK: ClassVar[bool] = True
    LAYOUT: ClassVar[Construct] = Empty


@dataclass(frozen=True, slots=True)
class DeviceTimeAns(MacCommand):
    """GPS time at the end of the uplink that carried DeviceTimeReq: whole seconds since 1980-01-06 00:00:00 UTC
    (GPS epoch, no leap seconds) and a fraction in 1/256 s."""

    CID: ClassVar[int] = 0x0D
    UPLINK: ClassVar[bool] = False
    LAYOUT: ClassVar[Construct] = DeviceTimeAnsLayout
    LIMITS: ClassVar[tuple[tuple[str, int, int], ...]] = (("gps_seconds", 0, 0xFFFFFFFF), ("fraction", 0, 255))

    gps_seconds: int
    fraction: int


UPLINK_COMMANDS: tuple[type[MacCommand], ...] = (
    LinkCheckReq, LinkADRAns, DutyCycleAns, RXParamSetupAns, DevStatusAns, NewChannelAns, RXTimingSetupAns,
    DlChannelAns, DeviceTimeReq,
)
DOWNLINK_COMMANDS: tuple[type[MacCommand], ...] = (
    LinkCheckAns, LinkADRReq, DutyCycleReq, RXParamSetupReq, DevStatusReq, NewChannelReq, RXTimingSetupReq,
    DlChannelReq, DeviceTimeAns,
)

#: (CID -> command class, its payload size, its compiled layout) per direction.
_BY_CID: dict[bool, dict[int, tuple[type[MacCommand], int, Any]]] = {
    uplink: {cls.CID: (cls, cls.LAYOUT.sizeof(), cls.LAYOUT.compile()) for cls in classes}
    for uplink, classes in ((True, UPLINK_COMMANDS), (False, DOWNLINK_COMMANDS))
}


# --- parse and build --------------------------------------------------------------------------------------------------


def parse_mac_commands(data: bytes, uplink: bool) -> list[MacCommand]:
    """The MAC commands in `data` (FOpts, or the plaintext FRMPayload of an FPort 0 frame) sent in the direction
    `uplink` says. FrameError 'unknown_mac_command' for a CID without a meaning in that direction,
    'truncated_mac_command' when a command's payload runs past the end."""
    commands, error = parse_mac_commands_prefix(data, uplink)
    if error is not None:
        raise error
    return commands


def parse_mac_commands_prefix(data: bytes, uplink: bool) -> tuple[list[MacCommand], FrameError | None]:
    """The commands before the first one that does not parse, and the FrameError that stopped the parse (None when
    all of `data` parsed). LoRaWAN 1.0.4: a receiver stops at an unknown CID and acts on the commands before it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"MAC commands are bytes, not {type(data).__name__}")
    data = bytes(data)
    table = _BY_CID[bool(uplink)]
    direction = "uplink" if uplink else "downlink"
    commands: list[MacCommand] = []
    pos = 0
    while pos < len(data):
        cid = data[pos]
        entry = table.get(cid)
        if entry is None:
            detail = f"CID 0x{cid:02x} at byte {pos} is not a known {direction} command"
            return commands, FrameError("unknown_mac_command", detail)
        cls, size, layout = entry
        end = pos + 1 + size
        if end > len(data):
            detail = f"{cls.__name__} at byte {pos} needs {size} payload bytes, {len(data) - pos - 1} remain"
            return commands, FrameError("truncated_mac_command", detail)
        parsed = layout.parse(data[pos + 1:end])
        commands.append(cls(**{f.name: parsed[f.name] for f in dataclasses.fields(cls)}))
        pos = end
    return commands, None


def _check_fields(command: MacCommand) -> None:
    for f in dataclasses.fields(command):
        value = getattr(command, f.name)
        if f.type in ("bool", bool):
            if not isinstance(value, bool):
                raise FrameError("bad_field", f"{command.name}.{f.name} {value!r} is not a bool")
    for name, low, high in command.LIMITS:
        value = getattr(command, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise FrameError("bad_field", f"{command.name}.{name} {value!r} is not in {low}..{high}")
        if name == "frequency_hz" and value % FREQUENCY_STEP_HZ:
            raise FrameError("bad_field", f"{command.name}.frequency_hz {value} is not a multiple of 100 Hz")


def build_mac_command(command: MacCommand) -> bytes:
    """CID | payload of one command; FrameError 'bad_field' for a field out of range."""
    if not isinstance(command, MacCommand):
        raise TypeError(f"{type(command).__name__} is not a MAC command")
    _check_fields(command)
    _cls, _size, layout = _BY_CID[command.UPLINK][command.CID]
    fields = {f.name: getattr(command, f.name) for f in dataclasses.fields(command)}
    return bytes((command.CID,)) + layout.build(fields)


def build_mac_commands(commands: Iterable[MacCommand]) -> bytes:
    """The wire form of a sequence of commands (all of one direction, which the caller keeps consistent)."""
    return b"".join(build_mac_command(command) for command in commands)


def commands_size(commands: Iterable[MacCommand]) -> int:
    """Bytes the commands take on the wire."""
    return sum(command.size for command in commands)


# --- CFList -----------------------------------------------------------------------------------------------------------


def build_cf_list(frequencies_hz: Iterable[int]) -> bytes:
    """A type 0 CFList of up to five frequencies (Hz, multiples of 100; missing ones are 0 = no channel)."""
    frequencies = list(frequencies_hz)
    if len(frequencies) > CFLIST_CHANNELS:
        raise FrameError("bad_field", f"a CFList holds at most {CFLIST_CHANNELS} frequencies, not {len(frequencies)}")
    for hz in frequencies:
        if not isinstance(hz, int) or isinstance(hz, bool) or not 0 <= hz <= MAX_FREQUENCY_HZ or hz % FREQUENCY_STEP_HZ:
            raise FrameError("bad_field", f"CFList frequency {hz!r} is not a multiple of 100 Hz in range")
    frequencies += [0] * (CFLIST_CHANNELS - len(frequencies))
    return CFListLayout.build({"frequencies_hz": frequencies})


def parse_cf_list(cf_list: bytes) -> list[int]:
    """The five frequencies (Hz; 0 = no channel) of a type 0 CFList; FrameError 'bad_cf_list' otherwise."""
    if len(cf_list) != CFLIST_LEN:
        raise FrameError("bad_cf_list", f"a CFList is {CFLIST_LEN} bytes, not {len(cf_list)}")
    try:
        return list(CFListLayout.parse(bytes(cf_list)).frequencies_hz)
    except ConstructError:
        raise FrameError("bad_cf_list", f"CFListType {cf_list[-1]} is not 0 (EU868 channel frequencies)") from None
