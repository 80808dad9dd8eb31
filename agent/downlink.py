"""Downlink requests from the city platform, pure: the JSON of `<prefix>/assets/<asset_id>/down` becomes a
`QueuedDownlink`, or a `DownlinkRequestError` whose reason goes into the `failed` downlink event.

A request is {"fport": 1..223, "confirmed": bool (default false), "data": hex} or {"fport": .., "object": {...}}
(encoded with the device kind's schema message for that FPort, direction down), with an optional "id" (a string;
the agent assigns one otherwise).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from dos_codecs.errors import CodecError
from dos_codecs.schema import Schema

from dos_agent.registry import QueuedDownlink

#: Application FPorts a request may use (0 is the MAC's, 224 the test port, 225.. are reserved).
FPORT_RANGE = range(1, 224)
#: The largest FRMPayload any EU868 data rate carries (DR4..DR7, no FOpts).
MAX_PAYLOAD = 222
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_FIELDS = frozenset({"fport", "confirmed", "data", "object", "id"})
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class DownlinkRequestError(ValueError):
    """A downlink request that cannot be queued. `reason` is a short label; `downlink_id` and `fport` are the
    request's own when it gave valid ones (so the failed event can name them)."""

    def __init__(self, reason: str, detail: str, downlink_id: str | None = None, fport: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.downlink_id = downlink_id
        self.fport = fport


def parse_downlink_request(
    raw: bytes, dev_eui: str, schema: Callable[[], Schema], new_id: Callable[[], str]
) -> QueuedDownlink:
    """The queue entry a request asks for. `schema()` gives the device kind's schema (only called for "object");
    `new_id()` gives an id when the request has none. Raises DownlinkRequestError."""
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DownlinkRequestError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise DownlinkRequestError("bad_request", f"expected a JSON object, got {type(request).__name__}")
    downlink_id = request.get("id")
    if downlink_id is None:
        downlink_id = new_id()
    elif not isinstance(downlink_id, str) or not _ID.fullmatch(downlink_id):
        raise DownlinkRequestError("bad_id", "id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    fport = request.get("fport")
    valid_fport = fport if isinstance(fport, int) and not isinstance(fport, bool) and fport in FPORT_RANGE else None

    def fail(reason: str, detail: str) -> DownlinkRequestError:
        return DownlinkRequestError(reason, detail, downlink_id, valid_fport)

    unknown = sorted(set(request) - _FIELDS)
    if unknown:
        raise fail("unknown_field", f"unknown field(s) {', '.join(unknown)}")
    if valid_fport is None:
        raise fail("bad_fport", f"fport must be an integer 1..223, got {json.dumps(fport)}")
    confirmed = request.get("confirmed", False)
    if not isinstance(confirmed, bool):
        raise fail("bad_confirmed", f"confirmed must be true or false, got {json.dumps(confirmed)}")
    has_data, has_object = "data" in request, "object" in request
    if has_data == has_object:
        raise fail("bad_payload", 'give exactly one of "data" (hex) and "object"')
    if has_data:
        data = request["data"]
        if not isinstance(data, str) or not _HEX.fullmatch(data):
            raise fail("bad_data", "data must be a string of hex digit pairs")
        payload = bytes.fromhex(data)
    else:
        values = request["object"]
        if not isinstance(values, dict):
            raise fail("bad_object", "object must be a JSON object of field values")
        try:
            kind_schema = schema()
            message = kind_schema.message_for_fport(valid_fport, "down")
            payload = kind_schema.encode(message.name, values)
        except CodecError as exc:
            raise fail(exc.reason, exc.detail) from None
    if len(payload) > MAX_PAYLOAD:
        raise fail("too_long", f"{len(payload)} bytes of payload, at most {MAX_PAYLOAD}")
    return QueuedDownlink(downlink_id, dev_eui, valid_fport, confirmed, payload)
