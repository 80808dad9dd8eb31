"""Semtech UDP packet forwarder protocol (GWMP v2, v1 accepted): datagrams, and the rxpk / txpk / txpk_ack JSON objects.

The protocol has no authentication: every datagram and every JSON field is validated, and the byte count in `size` is
checked against the data rather than trusted. Every failure is a `DatagramError` with its reason.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import struct
from dataclasses import dataclass

from construct import Bytes, GreedyBytes, If, Int8ul, Struct, this

from dos_codecs.errors import DatagramError

PROTOCOL_VERSIONS = (1, 2)
HEADER_LEN = 4
EUI_LEN = 8
TOKEN_LEN = 2


class GwmpKind(enum.IntEnum):
    """The datagram identifier (byte 3)."""

    PUSH_DATA = 0x00
    PUSH_ACK = 0x01
    PULL_DATA = 0x02
    PULL_RESP = 0x03
    PULL_ACK = 0x04
    TX_ACK = 0x05


_WITH_EUI = frozenset({GwmpKind.PUSH_DATA, GwmpKind.PULL_DATA, GwmpKind.TX_ACK})
_WITH_JSON = frozenset({GwmpKind.PUSH_DATA, GwmpKind.PULL_RESP})
_OPTIONAL_JSON = frozenset({GwmpKind.TX_ACK})

_HAS_EUI = (
    (this.identifier == int(GwmpKind.PUSH_DATA))
    | (this.identifier == int(GwmpKind.PULL_DATA))
    | (this.identifier == int(GwmpKind.TX_ACK))
)
_HAS_JSON = (
    (this.identifier == int(GwmpKind.PUSH_DATA))
    | (this.identifier == int(GwmpKind.PULL_RESP))
    | (this.identifier == int(GwmpKind.TX_ACK))
)

#: One datagram: version | token (2 raw bytes) | identifier | then by identifier:
#:   PUSH_DATA EUI[8] JSON | PUSH_ACK - | PULL_DATA EUI[8] | PULL_RESP JSON | PULL_ACK - | TX_ACK EUI[8] [JSON]
#: (flat with conditions rather than a Switch of Structs: each nested Struct costs two context objects per parse).
DatagramLayout = Struct(
    "version" / Int8ul,
    "token" / Bytes(TOKEN_LEN),
    "identifier" / Int8ul,
    "gateway_eui" / If(_HAS_EUI, Bytes(EUI_LEN)),
    "json" / If(_HAS_JSON, GreedyBytes),
)
_DATAGRAM = DatagramLayout.compile()
#: The layout's fixed header (version, token, identifier) as a struct: the parse and the acknowledgements (header only)
#: take it and slices in place of the layout (a tenth of the cost; tests check both agree on any bytes).
_HEADER = struct.Struct("<B2sB")
_WITH_JSON_OR_OPTIONAL = _WITH_JSON | _OPTIONAL_JSON


@dataclass(frozen=True, slots=True)
class Datagram:
    """A GWMP datagram. `token` is the two bytes as they came (echo them unchanged). `gateway_eui` is present for
    PUSH_DATA, PULL_DATA and TX_ACK; `payload` (a JSON object) for PUSH_DATA, PULL_RESP and optionally TX_ACK."""

    version: int
    token: bytes
    kind: GwmpKind
    gateway_eui: bytes | None = None
    payload: dict | None = None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} overflows a float")
    return value


#: One decoder for every datagram (`json.loads` with hooks would build a new one per call).
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _parse_json_object(raw: bytes) -> dict:
    try:
        obj = _JSON_DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DatagramError("bad_json", f"JSON does not parse: {exc}") from None
    except RecursionError:
        raise DatagramError("bad_json", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise DatagramError("json_not_object", f"JSON is a {type(obj).__name__}, not an object")
    return obj


def parse_datagram(data: bytes) -> Datagram:
    """Parse one UDP datagram; raises DatagramError (with its reason) on anything malformed."""
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise DatagramError("too_short", f"datagram of {len(data)} bytes, a header is {HEADER_LEN}")
    if data[0] not in PROTOCOL_VERSIONS:
        raise DatagramError("bad_version", f"protocol version {data[0]} (1 or 2 expected)")
    try:
        kind = GwmpKind(data[3])
    except ValueError:
        raise DatagramError("unknown_identifier", f"identifier 0x{data[3]:02x}") from None
    if kind in _WITH_EUI and len(data) < HEADER_LEN + EUI_LEN:
        raise DatagramError("too_short", f"{kind.name} of {len(data)} bytes has no room for the gateway EUI")
    if kind in (GwmpKind.PUSH_ACK, GwmpKind.PULL_ACK) and len(data) > HEADER_LEN:
        raise DatagramError("trailing_bytes", f"{kind.name} with {len(data) - HEADER_LEN} bytes after the header")
    if kind == GwmpKind.PULL_DATA and len(data) > HEADER_LEN + EUI_LEN:
        raise DatagramError("trailing_bytes", f"PULL_DATA with {len(data) - HEADER_LEN - EUI_LEN} bytes after the EUI")
    version, token, _ = _HEADER.unpack_from(data)
    body = HEADER_LEN
    gateway_eui = None
    if kind in _WITH_EUI:
        body += EUI_LEN
        gateway_eui = data[HEADER_LEN:body]
    payload = None
    if kind in _WITH_JSON or (kind in _OPTIONAL_JSON and len(data) > body):
        payload = _parse_json_object(data[body:])
    return Datagram(version, token, kind, gateway_eui, payload)


def build_datagram(datagram: Datagram) -> bytes:
    """The bytes of a datagram; raises DatagramError 'bad_field' when its fields do not fit its kind."""
    try:
        kind = GwmpKind(datagram.kind)
    except ValueError:
        raise DatagramError("bad_field", f"identifier {datagram.kind!r}") from None
    if datagram.version not in PROTOCOL_VERSIONS:
        raise DatagramError("bad_field", f"protocol version {datagram.version!r} (1 or 2)")
    if not isinstance(datagram.token, (bytes, bytearray)) or len(datagram.token) != TOKEN_LEN:
        raise DatagramError("bad_field", "the token is 2 bytes")
    if kind in _WITH_EUI:
        if not isinstance(datagram.gateway_eui, (bytes, bytearray)) or len(datagram.gateway_eui) != EUI_LEN:
            raise DatagramError("bad_field", f"{kind.name} needs an 8-byte gateway EUI")
    elif datagram.gateway_eui is not None:
        raise DatagramError("bad_field", f"{kind.name} carries no gateway EUI")
    if kind in _WITH_JSON and not isinstance(datagram.payload, dict):
        raise DatagramError("bad_field", f"{kind.name} needs a JSON object payload")
    if kind not in _WITH_JSON_OR_OPTIONAL and datagram.payload is not None:
        raise DatagramError("bad_field", f"{kind.name} carries no payload")
    if datagram.payload is not None and not isinstance(datagram.payload, dict):
        raise DatagramError("bad_field", "a payload is a JSON object")
    if kind not in _WITH_EUI and kind not in _WITH_JSON_OR_OPTIONAL:  # an acknowledgement: the header alone
        return _HEADER.pack(datagram.version, bytes(datagram.token), kind)
    return _DATAGRAM.build(
        {
            "version": datagram.version,
            "token": bytes(datagram.token),
            "identifier": int(kind),
            "gateway_eui": None if datagram.gateway_eui is None else bytes(datagram.gateway_eui),
            "json": b"" if datagram.payload is None else _dump_json(datagram.payload),
        }
    )


def _dump_json(payload: dict) -> bytes:
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DatagramError("bad_field", f"payload is not serialisable as JSON: {exc}") from None


# --- rxpk / txpk ------------------------------------------------------------------------------------------------------

_DATR = re.compile(r"SF([5-9]|1[0-2])BW(125|250|500)")
CODING_RATES = ("4/5", "4/6", "4/7", "4/8")
RX_STATUSES = (1, 0, -1)


def _short(value: object) -> str:
    """A repr of untrusted input, cut to a length fit for a log line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field(obj: dict, name: str, prefix: str, kinds: tuple[type, ...], required: bool = True) -> object:
    """A JSON field checked for type; bools are never accepted as numbers."""
    if name not in obj:
        if required:
            raise DatagramError(f"{prefix}_{name}", f"{prefix.removeprefix('bad_')}.{name} is missing")
        return None
    value = obj[name]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise DatagramError(f"{prefix}_{name}", f"{prefix.removeprefix('bad_')}.{name} is {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DatagramError(f"{prefix}_{name}", f"{prefix.removeprefix('bad_')}.{name} is not finite")
    return value


def _uint32(obj: dict, name: str, prefix: str, required: bool = True) -> int | None:
    value = _field(obj, name, prefix, (int,), required)
    if value is not None and not 0 <= value <= 0xFFFFFFFF:
        raise DatagramError(f"{prefix}_{name}", f"{prefix.removeprefix('bad_')}.{name} {value} is not a 32-bit uint")
    return value


def _small_uint(obj: dict, name: str, prefix: str) -> int:
    value = _field(obj, name, prefix, (int,))
    if not 0 <= value <= 0xFF:
        raise DatagramError(f"{prefix}_{name}", f"{prefix.removeprefix('bad_')}.{name} {value} is out of range")
    return value


def _freq(obj: dict, prefix: str) -> float:
    value = _field(obj, "freq", prefix, (int, float))
    if not 0 < value < 10_000:
        raise DatagramError(f"{prefix}_freq", f"{prefix.removeprefix('bad_')}.freq {value} is not a frequency in MHz")
    return float(value)


def _lora(obj: dict, prefix: str) -> tuple[int, int, str]:
    """(spreading factor, bandwidth kHz, coding rate) of a LoRa packet."""
    if _field(obj, "modu", prefix, (str,)) != "LORA":
        raise DatagramError(f"{prefix}_modu", f"modulation {_short(obj['modu'])} (only LORA)")
    datr = _field(obj, "datr", prefix, (str,))
    match = _DATR.fullmatch(datr)
    if not match:
        raise DatagramError(f"{prefix}_datr", f"data rate {_short(datr)} is not SF5..12 at 125/250/500 kHz")
    codr = _field(obj, "codr", prefix, (str,))
    if codr not in CODING_RATES:
        raise DatagramError(f"{prefix}_codr", f"coding rate {_short(codr)}")
    return int(match[1]), int(match[2]), codr


def _data(obj: dict, prefix: str) -> bytes:
    """The base64 `data`, checked against `size`."""
    text = _field(obj, "data", prefix, (str,))
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DatagramError(f"{prefix}_data", "data is not base64") from None
    size = _field(obj, "size", prefix, (int,))
    if size != len(data):
        raise DatagramError(f"{prefix}_size", f"size {size} but {len(data)} bytes of data")
    return data


def _datr(sf: int, bw_khz: int) -> str:
    return f"SF{sf}BW{bw_khz}"


class _RadioPacket:
    """What rxpk and txpk share: the PHYPayload's size and the data rate string, derived from the fields."""
    __slots__ = ()

    @property
    def size(self) -> int:
        """Length of the PHYPayload in bytes."""
        return len(self.data)

    @property
    def datr(self) -> str:
        """The data rate as GWMP writes it, e.g. SF7BW125."""
        return _datr(self.sf, self.bw_khz)


@dataclass(frozen=True, slots=True)
class Rxpk(_RadioPacket):
    """One received LoRa packet from PUSH_DATA. `tmst` is the concentrator's µs counter; `data` the PHYPayload."""

    tmst: int
    freq: float
    chan: int
    rfch: int
    stat: int
    sf: int
    bw_khz: int
    codr: str
    rssi: int
    lsnr: float
    data: bytes
    time: str | None = None
    tmms: int | None = None
    modu: str = "LORA"


def parse_rxpk(obj: object) -> Rxpk:
    """Validate one element of PUSH_DATA's "rxpk" array; DatagramError 'bad_rxpk_<field>' names the field at fault."""
    prefix = "bad_rxpk"
    if not isinstance(obj, dict):
        raise DatagramError(prefix, f"an rxpk is a JSON object, not {type(obj).__name__}")
    stat = _field(obj, "stat", prefix, (int,))
    if stat not in RX_STATUSES:
        raise DatagramError("bad_rxpk_stat", f"CRC status {stat} (1, 0 or -1)")
    sf, bw_khz, codr = _lora(obj, prefix)
    return Rxpk(
        tmst=_uint32(obj, "tmst", prefix),
        time=_field(obj, "time", prefix, (str,), required=False),
        tmms=_field(obj, "tmms", prefix, (int,), required=False),
        freq=_freq(obj, prefix),
        chan=_small_uint(obj, "chan", prefix),
        rfch=_small_uint(obj, "rfch", prefix),
        stat=stat,
        sf=sf,
        bw_khz=bw_khz,
        codr=codr,
        rssi=_field(obj, "rssi", prefix, (int,)),
        lsnr=float(_field(obj, "lsnr", prefix, (int, float))),
        data=_data(obj, prefix),
    )


def rxpk_to_json(rxpk: Rxpk) -> dict:
    """One rxpk JSON object, as a packet forwarder writes it."""
    obj: dict = {"tmst": rxpk.tmst}
    if rxpk.time is not None:
        obj["time"] = rxpk.time
    if rxpk.tmms is not None:
        obj["tmms"] = rxpk.tmms
    obj.update(
        freq=rxpk.freq,
        chan=rxpk.chan,
        rfch=rxpk.rfch,
        stat=rxpk.stat,
        modu=rxpk.modu,
        datr=rxpk.datr,
        codr=rxpk.codr,
        rssi=rxpk.rssi,
        lsnr=rxpk.lsnr,
        size=rxpk.size,
        data=base64.b64encode(rxpk.data).decode("ascii"),
    )
    return obj


@dataclass(frozen=True, slots=True)
class Txpk(_RadioPacket):
    """One packet to send (PULL_RESP). Either `imme` (now) or `tmst` (at that concentrator µs counter value)."""

    freq: float
    rfch: int
    powe: int
    sf: int
    bw_khz: int
    codr: str
    ipol: bool
    data: bytes
    tmst: int | None = None
    imme: bool = False
    ncrc: bool = False
    modu: str = "LORA"


def txpk_to_json(txpk: Txpk) -> dict:
    """The PULL_RESP payload object {"txpk": {...}} for one packet."""
    obj: dict = {"imme": True} if txpk.imme else {"tmst": txpk.tmst}
    obj.update(
        freq=txpk.freq,
        rfch=txpk.rfch,
        powe=txpk.powe,
        modu=txpk.modu,
        datr=txpk.datr,
        codr=txpk.codr,
        ipol=txpk.ipol,
        size=txpk.size,
        data=base64.b64encode(txpk.data).decode("ascii"),
    )
    if txpk.ncrc:
        obj["ncrc"] = True
    return {"txpk": obj}


def parse_txpk(payload: object) -> Txpk:
    """Validate a PULL_RESP payload {"txpk": {...}}; DatagramError 'bad_txpk_<field>' names the field at fault."""
    prefix = "bad_txpk"
    obj = payload.get("txpk") if isinstance(payload, dict) else None
    if not isinstance(obj, dict):
        raise DatagramError(prefix, 'a PULL_RESP payload is {"txpk": {...}}')
    imme = _field(obj, "imme", prefix, (bool,), required=False) or False
    tmst = _uint32(obj, "tmst", prefix, required=not imme)
    if imme and tmst is not None:
        raise DatagramError("bad_txpk_tmst", "txpk has both imme and tmst")
    sf, bw_khz, codr = _lora(obj, prefix)
    powe = _field(obj, "powe", prefix, (int,))
    if not -10 <= powe <= 40:
        raise DatagramError("bad_txpk_powe", f"TX power {powe} dBm")
    return Txpk(
        freq=_freq(obj, prefix),
        rfch=_small_uint(obj, "rfch", prefix),
        powe=powe,
        sf=sf,
        bw_khz=bw_khz,
        codr=codr,
        ipol=_field(obj, "ipol", prefix, (bool,), required=False) or False,
        data=_data(obj, prefix),
        tmst=tmst,
        imme=imme,
        ncrc=_field(obj, "ncrc", prefix, (bool,), required=False) or False,
    )


def parse_tx_ack_error(payload: dict | None) -> str:
    """The error of a TX_ACK ("NONE" when the payload or the field is absent, as older forwarders send)."""
    if payload is None:
        return "NONE"
    ack = payload.get("txpk_ack")
    if ack is None:
        return "NONE"
    if not isinstance(ack, dict):
        raise DatagramError("bad_tx_ack", "txpk_ack is not an object")
    error = ack.get("error", "NONE")
    if not isinstance(error, str) or not error:
        raise DatagramError("bad_tx_ack", f"txpk_ack.error is {_short(error)}")
    return error
