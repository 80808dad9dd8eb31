"""LoRaWAN 1.0.x PHYPayload layouts (construct) and typed frames: data frames, JoinRequest, JoinAccept.

Parsing runs cheap structural checks on the raw bytes first (each failure is a `FrameError` with its reason), then one
compiled construct parse. Bit fields (MHDR, FCtrl, DLSettings) are a whole byte plus `Computed` views of its bits, which
compile to plain shifts and masks (construct's `BitStruct` is several times slower on this hot path).

Data frames, the agent's hot path, take a fast path that is still defined by the construct layout: the `struct` format
of the fixed head (MHDR, DevAddr, FCtrl, FCnt) is derived from `DataFrameLayout`'s fields, and the FCtrl bits come from
a table filled at import by parsing every FCtrl byte of both directions with the layout's own `Computed` fields.
`parse_data_frame_construct` is the plain construct parse; tests check the two agree on any frame.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, fields, replace

from construct import (
    Bytes,
    Computed,
    FormatField,
    If,
    Int8ul,
    Int16ul,
    Int24ul,
    Int32ul,
    Rebuild,
    Renamed,
    Struct,
    Terminated,
    this,
)

from dos_codecs.errors import FrameError

MAX_PHY_LEN = 255
MIC_LEN = 4
#: MHDR(1) + DevAddr(4) + FCtrl(1) + FCnt(2) + MIC(4): a data frame with no FOpts, no FPort and no FRMPayload.
MIN_DATA_FRAME_LEN = 12
JOIN_REQUEST_LEN = 23
#: MHDR + JoinNonce(3) + NetID(3) + DevAddr(4) + DLSettings(1) + RxDelay(1) + MIC(4), without and with a 16-byte CFList.
JOIN_ACCEPT_LEN = 17
JOIN_ACCEPT_CFLIST_LEN = 33
CFLIST_LEN = 16
MAX_FOPTS_LEN = 15


class MType(enum.IntEnum):
    """Message type, MHDR bits 7-5."""

    JOIN_REQUEST = 0
    JOIN_ACCEPT = 1
    UNCONFIRMED_UP = 2
    UNCONFIRMED_DOWN = 3
    CONFIRMED_UP = 4
    CONFIRMED_DOWN = 5
    RFU = 6
    PROPRIETARY = 7


DATA_MTYPES = frozenset({MType.UNCONFIRMED_UP, MType.UNCONFIRMED_DOWN, MType.CONFIRMED_UP, MType.CONFIRMED_DOWN})
UPLINK_DATA_MTYPES = frozenset({MType.UNCONFIRMED_UP, MType.CONFIRMED_UP})
_MTYPE_BY_VALUE = tuple(MType)

# --- construct layouts ------------------------------------------------------------------------------------------------

#: MHDR: MType (bits 7-5), RFU (bits 4-2), Major (bits 1-0).
Mhdr = Struct(
    "byte" / Rebuild(Int8ul, (this.mtype << 5) | (this.rfu << 2) | this.major),
    "mtype" / Computed(this.byte >> 5),
    "rfu" / Computed((this.byte >> 2) & 0x07),
    "major" / Computed(this.byte & 0x03),
)

_UPLINK = this.mhdr.mtype % 2 == 0
_DOWNLINK = this.mhdr.mtype % 2 == 1

#: FCtrl, whose bits 6 and 4 depend on the direction (MHDR):
#:   uplink:   ADR(7) ADRACKReq(6) ACK(5) ClassB(4)   FOptsLen(3-0)
#:   downlink: ADR(7) RFU(6)       ACK(5) FPending(4) FOptsLen(3-0)
#: The bits of the other direction read as False and must be False to build.
FCTRL_FIELDS = (
    "fctrl"
    / Rebuild(
        Int8ul,
        (this.adr << 7)
        | ((this.adr_ack_req | this.fctrl_rfu) << 6)
        | (this.ack << 5)
        | ((this.class_b | this.f_pending) << 4)
        | this.fopts_len,
    ),
    "adr" / Computed(this.fctrl & 0x80 != 0),
    "adr_ack_req" / Computed(_UPLINK & (this.fctrl & 0x40 != 0)),
    "fctrl_rfu" / Computed(_DOWNLINK & (this.fctrl & 0x40 != 0)),
    "ack" / Computed(this.fctrl & 0x20 != 0),
    "class_b" / Computed(_UPLINK & (this.fctrl & 0x10 != 0)),
    "f_pending" / Computed(_DOWNLINK & (this.fctrl & 0x10 != 0)),
    "fopts_len" / Computed(this.fctrl & 0x0F),
)

#: FHDR: DevAddr (LE) | FCtrl | FCnt (low 16 bits, LE) | FOpts. Its fields are spliced flat into the data frame layout:
#: every nested Struct costs two context objects per parse, and this layout is on the agent's hot path.
FHDR_FIELDS = (
    "dev_addr" / Int32ul,
    *FCTRL_FIELDS,
    "fcnt16" / Int16ul,
    "fopts" / Bytes(this.fopts_len),
)

#: A data frame PHYPayload: MHDR | FHDR | [FPort | FRMPayload] | MIC. The FPort is present when bytes remain between the
#: FHDR and the MIC; the total length is passed as the parameter `phy_len` (parse and build).
DataFrameLayout = Struct(
    "mhdr" / Mhdr,
    *FHDR_FIELDS,
    "fport" / If(this._params.phy_len > MIN_DATA_FRAME_LEN + this.fopts_len, Int8ul),
    # `this.fport != None` is a construct expression (1 when the FPort is present), so `is not` cannot stand in.
    "frm_payload"
    / Bytes(this._params.phy_len - MIN_DATA_FRAME_LEN - this.fopts_len - (this.fport != None)),  # noqa: E711
    "mic" / Bytes(MIC_LEN),
)

#: JoinRequest PHYPayload (23 B). EUIs travel little-endian; here they are kept as the 8 bytes on air.
JoinRequestLayout = Struct(
    "mhdr" / Mhdr,
    "join_eui_le" / Bytes(8),
    "dev_eui_le" / Bytes(8),
    "dev_nonce" / Int16ul,
    "mic" / Bytes(MIC_LEN),
    Terminated,
)

#: DLSettings: RFU(7) RX1DRoffset(6-4) RX2DataRate(3-0).
DLSettings = Struct(
    "byte" / Rebuild(Int8ul, (this.rx1_dr_offset << 4) | this.rx2_data_rate),
    "rfu" / Computed(this.byte >> 7),
    "rx1_dr_offset" / Computed((this.byte >> 4) & 0x07),
    "rx2_data_rate" / Computed(this.byte & 0x0F),
)

#: A JoinAccept PHYPayload in plaintext (after decryption): MHDR | JoinNonce | NetID | DevAddr | DLSettings | RxDelay |
#: [CFList(16)] | MIC. `has_cf_list` is a parameter (the length tells).
JoinAcceptLayout = Struct(
    "mhdr" / Mhdr,
    "join_nonce" / Int24ul,
    "net_id" / Int24ul,
    "dev_addr" / Int32ul,
    "dl_settings" / DLSettings,
    "rx_delay" / Int8ul,
    "cf_list" / If(this._params.has_cf_list, Bytes(CFLIST_LEN)),
    "mic" / Bytes(MIC_LEN),
    Terminated,
)

_DATA_FRAME = DataFrameLayout.compile()
_JOIN_REQUEST = JoinRequestLayout.compile()
_JOIN_ACCEPT = JoinAcceptLayout.compile()


def _fixed_head_format(layout: Struct) -> tuple[str, tuple[str, ...]]:
    """The `struct` format (little-endian) and names of a layout's leading fixed-size integer fields, up to its first
    field of another kind; `Computed` views take no bytes and a nested Struct (the MHDR) counts as its own head."""
    codes, names = "", []
    for sub in layout.subcons:
        inner = sub.subcon if isinstance(sub, Renamed) else sub
        if isinstance(inner, Rebuild):
            inner = inner.subcon
        if isinstance(inner, Computed):
            continue
        if isinstance(inner, Struct):
            nested, _ = _fixed_head_format(inner)
            codes += nested
        elif isinstance(inner, FormatField) and inner.fmtstr[0] == "<":
            codes += inner.fmtstr[1:]
        else:
            break
        names.append(sub.name)
    return codes, tuple(names)


def _data_head() -> struct.Struct:
    codes, names = _fixed_head_format(DataFrameLayout)
    if names != ("mhdr", "dev_addr", "fctrl", "fcnt16"):
        raise ImportError(f"DataFrameLayout's fixed head changed ({names}): update the data frame fast path")
    return struct.Struct("<" + codes)


#: MHDR | DevAddr | FCtrl | FCnt16, unpacked at once (format derived from DataFrameLayout).
_DATA_HEAD = _data_head()
#: The FCtrl fields of a data frame, in DataFrame's terms.
_FCTRL_NAMES = ("adr", "adr_ack_req", "ack", "f_pending", "class_b", "fopts_len")


def _fctrl_table() -> tuple[tuple[tuple, ...], tuple[tuple, ...]]:
    """[direction (0 uplink, 1 downlink)][FCtrl byte] -> the FCtrl fields, each parsed by the layout's FCtrl."""
    layout = Struct("mhdr" / Mhdr, *FCTRL_FIELDS).compile()
    tables = []
    for mtype in (MType.UNCONFIRMED_UP, MType.UNCONFIRMED_DOWN):
        rows = []
        for fctrl in range(256):
            parsed = layout.parse(bytes((mtype << 5, fctrl)))
            rows.append(tuple(parsed[name] for name in _FCTRL_NAMES))
        tables.append(tuple(rows))
    return tables[0], tables[1]


_FCTRL_BY_DIRECTION = _fctrl_table()

# --- typed frames -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFrame:
    """A LoRaWAN data frame as on air (FRMPayload still encrypted once it has been sealed).

    Uplinks use `adr_ack_req` and `class_b`; downlinks use `f_pending`. `fport` is None when the frame has no FPort
    (then `frm_payload` is empty).
    """

    mtype: MType
    dev_addr: int
    fcnt16: int
    major: int = 0
    adr: bool = False
    adr_ack_req: bool = False
    ack: bool = False
    f_pending: bool = False
    class_b: bool = False
    fopts: bytes = b""
    fport: int | None = None
    frm_payload: bytes = b""
    mic: bytes = b"\x00" * MIC_LEN
    # The exact bytes this frame was parsed from; set by parse_data_frame only (not an init field, so
    # dataclasses.replace() drops it and mic_input() rebuilds from the fields).
    _phy: bytes = field(default=b"", init=False, repr=False, compare=False)

    @property
    def uplink(self) -> bool:
        """True for (un)confirmed uplinks."""
        return self.mtype in UPLINK_DATA_MTYPES

    @property
    def confirmed(self) -> bool:
        """True for confirmed up- and downlinks."""
        return self.mtype in (MType.CONFIRMED_UP, MType.CONFIRMED_DOWN)

    def mic_input(self) -> bytes:
        """The bytes the MIC covers: MHDR | FHDR | FPort | FRMPayload."""
        if self._phy:
            return self._phy[:-MIC_LEN]
        return build_data_frame(replace(self, mic=b"\x00" * MIC_LEN))[:-MIC_LEN]


#: The slot setters of DataFrame in field order (mtype .. mic, _phy): the parse fast path fills a frame through them.
_DATA_FRAME_SLOT_SETTERS = tuple(getattr(DataFrame, f.name).__set__ for f in fields(DataFrame))
if tuple(f.name for f in fields(DataFrame)) != (
    "mtype", "dev_addr", "fcnt16", "major", "adr", "adr_ack_req", "ack", "f_pending", "class_b", "fopts", "fport",
    "frm_payload", "mic", "_phy",
):
    raise ImportError("DataFrame's fields changed: update _data_frame_fast")


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A JoinRequest. EUIs are 8 bytes in display order (most significant byte first); on air they are reversed."""

    join_eui: bytes
    dev_eui: bytes
    dev_nonce: int
    mic: bytes = b"\x00" * MIC_LEN

    def mic_input(self) -> bytes:
        """The bytes the MIC covers: MHDR | JoinEUI | DevEUI | DevNonce."""
        return build_join_request(self)[:-MIC_LEN]


@dataclass(frozen=True, slots=True)
class JoinAccept:
    """A JoinAccept in plaintext. `cf_list` is the raw 16-byte CFList or None. `rx_delay` 0 means 1 s."""

    join_nonce: int
    net_id: int
    dev_addr: int
    rx1_dr_offset: int = 0
    rx2_data_rate: int = 0
    rx_delay: int = 1
    cf_list: bytes | None = None
    mic: bytes = b"\x00" * MIC_LEN

    def mic_input(self) -> bytes:
        """The bytes the MIC covers: MHDR | JoinNonce | NetID | DevAddr | DLSettings | RxDelay | CFList."""
        return build_join_accept(self)[:-MIC_LEN]


@dataclass(frozen=True, slots=True)
class JoinAcceptFrame:
    """A JoinAccept as on air: the MHDR and the still-encrypted rest (decrypt with `crypto.decrypt_join_accept`)."""

    phy: bytes


# --- structural checks ------------------------------------------------------------------------------------------------


def _as_bytes(phy: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(phy, (bytes, bytearray, memoryview)):
        raise TypeError(f"a PHYPayload is bytes, not {type(phy).__name__}")
    return bytes(phy)


def _check_mhdr(phy: bytes) -> MType:
    """Length bounds and MHDR checks common to every frame; returns the MType."""
    if not phy:
        raise FrameError("too_short", "empty PHYPayload")
    if len(phy) > MAX_PHY_LEN:
        raise FrameError("too_long", f"PHYPayload of {len(phy)} bytes exceeds {MAX_PHY_LEN}")
    mhdr = phy[0]
    mtype = mhdr >> 5
    if mtype == MType.PROPRIETARY:
        raise FrameError("proprietary", "proprietary frame (MType 111)")
    if mtype == MType.RFU:
        raise FrameError("unknown_mtype", "MType 110 is reserved")
    if mhdr & 0x03:
        raise FrameError("bad_major", f"Major {mhdr & 0x03} is not LoRaWAN R1 (0)")
    if mhdr & 0x1C:
        raise FrameError("rfu_set", f"MHDR RFU bits set (MHDR 0x{mhdr:02x})")
    return _MTYPE_BY_VALUE[mtype]


def _check_data_frame(phy: bytes, mtype: MType) -> None:
    if len(phy) < MIN_DATA_FRAME_LEN:
        raise FrameError("too_short", f"data frame of {len(phy)} bytes, at least {MIN_DATA_FRAME_LEN} needed")
    fctrl = phy[5]
    fopts_len = fctrl & 0x0F
    if MIN_DATA_FRAME_LEN + fopts_len > len(phy):
        raise FrameError("fopts_past_end", f"FOptsLen {fopts_len} runs past the end of a {len(phy)}-byte frame")
    if mtype not in UPLINK_DATA_MTYPES and fctrl & 0x40:
        raise FrameError("rfu_set", "downlink FCtrl RFU bit set")
    if fopts_len and len(phy) > MIN_DATA_FRAME_LEN + fopts_len and phy[8 + fopts_len] == 0:
        raise FrameError("fport0_with_fopts", "FPort 0 (MAC commands) with FOpts present")


# --- data frames ------------------------------------------------------------------------------------------------------


def parse_data_frame(phy: bytes) -> DataFrame:
    """Parse a data frame PHYPayload; raises FrameError (with its reason) on anything malformed."""
    phy = _as_bytes(phy)
    mtype = _check_mhdr(phy)
    if mtype not in DATA_MTYPES:
        raise FrameError("not_data_frame", f"{mtype.name} is not a data frame")
    _check_data_frame(phy, mtype)
    return _data_frame_fast(phy, mtype)


def _data_frame_fast(phy: bytes, mtype: MType) -> DataFrame:
    """The data frame of checked bytes (see _check_data_frame): the fixed head in one unpack, FCtrl by table."""
    _mhdr, dev_addr, fctrl, fcnt16 = _DATA_HEAD.unpack_from(phy)
    adr, adr_ack_req, ack, f_pending, class_b, fopts_len = _FCTRL_BY_DIRECTION[mtype & 1][fctrl]
    fopts_end = _DATA_HEAD.size + fopts_len
    has_fport = len(phy) > MIN_DATA_FRAME_LEN + fopts_len
    frame = object.__new__(DataFrame)  # a frozen dataclass's __init__ costs more than the whole parse
    for set_slot, value in zip(_DATA_FRAME_SLOT_SETTERS, (
        mtype, dev_addr, fcnt16, 0, adr, adr_ack_req, ack, f_pending, class_b, phy[_DATA_HEAD.size:fopts_end],
        phy[fopts_end] if has_fport else None, phy[fopts_end + 1:-MIC_LEN] if has_fport else b"", phy[-MIC_LEN:], phy,
    )):
        set_slot(frame, value)
    return frame


def parse_data_frame_construct(phy: bytes) -> DataFrame:
    """`parse_data_frame` through the compiled construct layout alone: the reference the fast path must agree with."""
    phy = _as_bytes(phy)
    mtype = _check_mhdr(phy)
    if mtype not in DATA_MTYPES:
        raise FrameError("not_data_frame", f"{mtype.name} is not a data frame")
    _check_data_frame(phy, mtype)
    # Item access: construct Containers answer attribute access through a slow fallback path.
    parsed = _DATA_FRAME.parse(phy, phy_len=len(phy))
    frame = DataFrame(
        mtype=mtype,
        major=0,
        dev_addr=parsed["dev_addr"],
        adr=parsed["adr"],
        adr_ack_req=parsed["adr_ack_req"],
        ack=parsed["ack"],
        f_pending=parsed["f_pending"],
        class_b=parsed["class_b"],
        fopts=parsed["fopts"],
        fcnt16=parsed["fcnt16"],
        fport=parsed["fport"],
        frm_payload=parsed["frm_payload"],
        mic=parsed["mic"],
    )
    object.__setattr__(frame, "_phy", phy)
    return frame


def _bad(condition: bool, what: str) -> None:
    if condition:
        raise FrameError("bad_field", what)


def _is_uint(value: object, bits: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < (1 << bits)


def build_data_frame(frame: DataFrame) -> bytes:
    """Build a data frame PHYPayload from its fields (MIC as given); raises FrameError on fields that do not fit."""
    try:
        mtype = MType(frame.mtype)
    except ValueError:
        raise FrameError("bad_field", f"MType {frame.mtype!r} is not a data frame") from None
    if mtype not in DATA_MTYPES:
        raise FrameError("not_data_frame", f"{mtype.name} is not a data frame")
    if frame.major != 0:
        raise FrameError("bad_major", f"Major {frame.major} is not LoRaWAN R1 (0)")
    _bad(not _is_uint(frame.dev_addr, 32), f"DevAddr {frame.dev_addr!r} is not a 32-bit unsigned int")
    _bad(not _is_uint(frame.fcnt16, 16), f"FCnt {frame.fcnt16!r} is not a 16-bit unsigned int")
    _bad(len(frame.fopts) > MAX_FOPTS_LEN, f"{len(frame.fopts)} bytes of FOpts (at most {MAX_FOPTS_LEN})")
    _bad(len(frame.mic) != MIC_LEN, f"MIC of {len(frame.mic)} bytes (4 needed)")
    if frame.fport is None:
        _bad(bool(frame.frm_payload), "FRMPayload without an FPort")
    else:
        _bad(not _is_uint(frame.fport, 8), f"FPort {frame.fport!r} is not 0..255")
        if frame.fport == 0 and frame.fopts:
            raise FrameError("fport0_with_fopts", "FPort 0 (MAC commands) with FOpts present")
    uplink = mtype in UPLINK_DATA_MTYPES
    _bad(uplink and frame.f_pending, "FPending is a downlink flag")
    _bad(not uplink and (frame.class_b or frame.adr_ack_req), "ClassB and ADRACKReq are uplink flags")
    phy_len = MIN_DATA_FRAME_LEN + len(frame.fopts) + (0 if frame.fport is None else 1 + len(frame.frm_payload))
    if phy_len > MAX_PHY_LEN:
        raise FrameError("too_long", f"PHYPayload of {phy_len} bytes exceeds {MAX_PHY_LEN}")
    return _DATA_FRAME.build(
        {
            "mhdr": {"mtype": int(mtype), "rfu": 0, "major": 0},
            "dev_addr": frame.dev_addr,
            "adr": frame.adr,
            "adr_ack_req": frame.adr_ack_req,
            "fctrl_rfu": False,
            "ack": frame.ack,
            "class_b": frame.class_b,
            "f_pending": frame.f_pending,
            "fopts_len": len(frame.fopts),
            "fcnt16": frame.fcnt16,
            "fopts": bytes(frame.fopts),
            "fport": frame.fport,
            "frm_payload": bytes(frame.frm_payload),
            "mic": bytes(frame.mic),
        },
        phy_len=phy_len,
    )


# --- join frames ------------------------------------------------------------------------------------------------------


def parse_join_request(phy: bytes) -> JoinRequest:
    """Parse a JoinRequest PHYPayload (exactly 23 bytes); raises FrameError."""
    phy = _as_bytes(phy)
    mtype = _check_mhdr(phy)
    if mtype != MType.JOIN_REQUEST:
        raise FrameError("not_join_request", f"{mtype.name} is not a JoinRequest")
    return _join_request_from_layout(phy)


def _join_request_from_layout(phy: bytes) -> JoinRequest:
    if len(phy) < JOIN_REQUEST_LEN:
        raise FrameError("too_short", f"JoinRequest of {len(phy)} bytes ({JOIN_REQUEST_LEN} needed)")
    if len(phy) > JOIN_REQUEST_LEN:
        raise FrameError("too_long", f"JoinRequest of {len(phy)} bytes ({JOIN_REQUEST_LEN} needed)")
    parsed = _JOIN_REQUEST.parse(phy)
    return JoinRequest(
        join_eui=parsed.join_eui_le[::-1],
        dev_eui=parsed.dev_eui_le[::-1],
        dev_nonce=parsed.dev_nonce,
        mic=parsed.mic,
    )


def build_join_request(request: JoinRequest) -> bytes:
    """Build a JoinRequest PHYPayload (MIC as given); raises FrameError on fields that do not fit."""
    _bad(len(request.join_eui) != 8 or len(request.dev_eui) != 8, "EUIs are 8 bytes")
    _bad(not _is_uint(request.dev_nonce, 16), f"DevNonce {request.dev_nonce!r} is not a 16-bit unsigned int")
    _bad(len(request.mic) != MIC_LEN, f"MIC of {len(request.mic)} bytes (4 needed)")
    return _JOIN_REQUEST.build(
        {
            "mhdr": {"mtype": int(MType.JOIN_REQUEST), "rfu": 0, "major": 0},
            "join_eui_le": bytes(request.join_eui)[::-1],
            "dev_eui_le": bytes(request.dev_eui)[::-1],
            "dev_nonce": request.dev_nonce,
            "mic": bytes(request.mic),
        }
    )


def parse_join_accept(plaintext_phy: bytes) -> JoinAccept:
    """Parse a JoinAccept PHYPayload that has been decrypted (17 or 33 bytes); raises FrameError."""
    phy = _as_bytes(plaintext_phy)
    mtype = _check_mhdr(phy)
    if mtype != MType.JOIN_ACCEPT:
        raise FrameError("not_join_accept", f"{mtype.name} is not a JoinAccept")
    _check_join_accept_length(phy)
    parsed = _JOIN_ACCEPT.parse(phy, has_cf_list=len(phy) == JOIN_ACCEPT_CFLIST_LEN)
    if parsed.dl_settings.rfu:
        raise FrameError("rfu_set", "DLSettings RFU bit set")
    return JoinAccept(
        join_nonce=parsed.join_nonce,
        net_id=parsed.net_id,
        dev_addr=parsed.dev_addr,
        rx1_dr_offset=parsed.dl_settings.rx1_dr_offset,
        rx2_data_rate=parsed.dl_settings.rx2_data_rate,
        rx_delay=parsed.rx_delay,
        cf_list=parsed.cf_list,
        mic=parsed.mic,
    )


def _check_join_accept_length(phy: bytes) -> None:
    if len(phy) < JOIN_ACCEPT_LEN:
        raise FrameError("too_short", f"JoinAccept of {len(phy)} bytes (17 or 33 needed)")
    if len(phy) not in (JOIN_ACCEPT_LEN, JOIN_ACCEPT_CFLIST_LEN):
        raise FrameError("bad_length", f"JoinAccept of {len(phy)} bytes (17 or 33 needed)")


def build_join_accept(accept: JoinAccept) -> bytes:
    """Build a plaintext JoinAccept PHYPayload (MIC as given; encrypt it with `crypto.encrypt_join_accept`)."""
    _bad(not _is_uint(accept.join_nonce, 24), f"JoinNonce {accept.join_nonce!r} is not a 24-bit unsigned int")
    _bad(not _is_uint(accept.net_id, 24), f"NetID {accept.net_id!r} is not a 24-bit unsigned int")
    _bad(not _is_uint(accept.dev_addr, 32), f"DevAddr {accept.dev_addr!r} is not a 32-bit unsigned int")
    _bad(not _is_uint(accept.rx1_dr_offset, 3), f"RX1DRoffset {accept.rx1_dr_offset!r} is not 0..7")
    _bad(not _is_uint(accept.rx2_data_rate, 4), f"RX2DataRate {accept.rx2_data_rate!r} is not 0..15")
    _bad(not _is_uint(accept.rx_delay, 8), f"RxDelay {accept.rx_delay!r} is not 0..255")
    _bad(accept.cf_list is not None and len(accept.cf_list) != CFLIST_LEN, "a CFList is 16 bytes")
    _bad(len(accept.mic) != MIC_LEN, f"MIC of {len(accept.mic)} bytes (4 needed)")
    return _JOIN_ACCEPT.build(
        {
            "mhdr": {"mtype": int(MType.JOIN_ACCEPT), "rfu": 0, "major": 0},
            "join_nonce": accept.join_nonce,
            "net_id": accept.net_id,
            "dev_addr": accept.dev_addr,
            "dl_settings": {"rx1_dr_offset": accept.rx1_dr_offset, "rx2_data_rate": accept.rx2_data_rate},
            "rx_delay": accept.rx_delay,
            "cf_list": None if accept.cf_list is None else bytes(accept.cf_list),
            "mic": bytes(accept.mic),
        },
        has_cf_list=accept.cf_list is not None,
    )


# --- any frame --------------------------------------------------------------------------------------------------------


def parse_phy(phy: bytes) -> DataFrame | JoinRequest | JoinAcceptFrame:
    """Parse any LoRaWAN 1.0.x PHYPayload by its MType. A JoinAccept comes back still encrypted."""
    phy = _as_bytes(phy)
    mtype = _check_mhdr(phy)
    if mtype in DATA_MTYPES:
        _check_data_frame(phy, mtype)
        return _data_frame_fast(phy, mtype)
    if mtype == MType.JOIN_REQUEST:
        return _join_request_from_layout(phy)
    _check_join_accept_length(phy)
    return JoinAcceptFrame(phy=phy)

