"""The agent's JSON documents: the uplink event published for every accepted application uplink (one per frame,
however many gateways heard it), and the asset events (join, join_rejected, downlink, fcnt_reset, ...).

Every key is always present (null when unknown). A payload that does not decode still gives an event, with `readings`
{} and the reason in `decode_error`, so no data is lost; decoder warnings are always carried in `warnings`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from dos_codecs.errors import CodecError
from dos_codecs.schema import Schema, load_schema

from dos_agent.eu868 import data_rate

if TYPE_CHECKING:
    from dos_agent.session import Reception, UplinkAccepted

#: The keys of an uplink event, in the order they are written.
EVENT_KEYS = (
    "event_id",
    "asset_id",
    "dev_eui",
    "kind",
    "schema_version",
    "fcnt",
    "fport",
    "confirmed",
    "adr",
    "dr",
    "received_at",
    "gateway_id",
    "rssi",
    "snr",
    "frequency",
    "sf",
    "bw",
    "gateway_time",
    "receptions",
    "readings",
    "warnings",
    "payload_hex",
    "decode_error",
)

#: Namespace of event ids: uuid5(EVENT_NAMESPACE, "<dev_eui>/<session_id>/<fcnt>").
EVENT_NAMESPACE = uuid.UUID("6f1c2a52-9d7e-5b8a-a3c4-0d05e2030000")


_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def event_id(dev_eui: str, session_id: str | None, fcnt: int) -> str:
    """A stable id of one uplink: the same frame received twice (or replayed after a crash) gets the same id.

    It is uuid5(EVENT_NAMESPACE, "<dev_eui>/<session_id>/<fcnt>"), computed without the uuid module's overhead."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{dev_eui}/{session_id}/{fcnt}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_second_cache: dict[int, str] = {}


def iso_utc(timestamp: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds (truncated), e.g. 2026-11-22T08:30:00.123Z."""
    millis = int(timestamp * 1000)
    second = millis // 1000
    text = _second_cache.get(second)
    if text is None:  # one formatting per second of events; the cache holds only the latest second
        _second_cache.clear()
        text = _second_cache[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{text}.{millis % 1000:03d}Z"


class SchemaBook:
    """The payload schemas by node kind, loaded on first use; a kind without a schema is remembered as missing."""

    def __init__(self) -> None:
        self._schemas: dict[str, Schema | CodecError] = {}

    def get(self, kind: str) -> Schema:
        """The kind's schema; raises the codecs' SchemaError ('unknown_kind') when there is none."""
        found = self._schemas.get(kind)
        if found is None:
            try:
                found = load_schema(kind)
            except CodecError as exc:
                found = exc
            self._schemas[kind] = found
        if isinstance(found, CodecError):
            raise found
        return found


def reception_view(reception: Reception) -> dict[str, Any]:
    """One gateway's reception as listed in an event's `receptions`."""
    return {
        "gateway_id": reception.gateway_eui,
        "rssi": reception.rssi,
        "snr": reception.snr,
        "tmst": reception.tmst,
        "time": reception.time,
        "frequency": reception.freq,
        "sf": reception.sf,
        "bw": reception.bw,
    }


def uplink_event(accepted: UplinkAccepted, schemas: SchemaBook) -> dict[str, Any]:
    """The event of an accepted uplink, with its payload decoded under the device kind's schema. The top-level
    gateway fields are those of the best reception (highest SNR); `receptions` lists every gateway's."""
    device = accepted.device
    reception = accepted.reception
    readings: dict[str, Any] = {}
    warnings: list[str] = []
    schema_version = None
    decode_error = None
    try:
        schema = schemas.get(device.kind)
        schema_version = schema.version
        decoded = schema.decode(accepted.fport, accepted.payload)
    except CodecError as exc:
        decode_error = f"{exc.reason}: {exc.detail}"
    else:
        readings = decoded.readings
        warnings = decoded.warnings
    return {
        "event_id": event_id(device.dev_eui, device.session_id, accepted.fcnt),
        "asset_id": device.asset_id,
        "dev_eui": device.dev_eui,
        "kind": device.kind,
        "schema_version": schema_version,
        "fcnt": accepted.fcnt,
        "fport": accepted.fport,
        "confirmed": accepted.confirmed,
        "adr": accepted.adr,
        "dr": data_rate(reception.sf, reception.bw),
        "received_at": iso_utc(accepted.received_at),
        "gateway_id": reception.gateway_eui,
        "rssi": reception.rssi,
        "snr": reception.snr,
        "frequency": reception.freq,
        "sf": reception.sf,
        "bw": reception.bw,
        "gateway_time": reception.time,
        "receptions": [reception_view(r) for r in accepted.receptions or (reception,)],
        "readings": readings,
        "warnings": warnings,
        "payload_hex": accepted.payload.hex(),
        "decode_error": decode_error,
    }


def asset_event(event_type: str, asset_id: str, dev_eui: str | None, at: float, **fields: Any) -> dict[str, Any]:
    """An asset event for `<prefix>/assets/<asset_id>/event/<type>`: {type, asset_id, dev_eui, time, ...fields,
    event_id}. The id is uuid5(EVENT_NAMESPACE, the rest as canonical JSON): a redelivered or re-made event (a swap
    published again after a crash) keeps it, so consumers drop the at-least-once duplicates as for uplinks."""
    document = {"type": event_type, "asset_id": asset_id, "dev_eui": dev_eui, "time": iso_utc(at), **fields}
    identity = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    document["event_id"] = str(uuid.uuid5(EVENT_NAMESPACE, identity))
    return document


def encode_event(event: dict[str, Any]) -> bytes:
    """The event as compact UTF-8 JSON (units such as µε and °C kept as characters)."""
    return _JSON.encode(event).encode("utf-8")
