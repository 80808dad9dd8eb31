"""The event documents: every key of an uplink event always (receptions, confirmed, adr, dr included), stable ids,
decode failures and warnings kept, units as characters; asset events with type, asset, device and time."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from dos_agent.events import (
    EVENT_KEYS,
    EVENT_NAMESPACE,
    SchemaBook,
    asset_event,
    encode_event,
    event_id,
    iso_utc,
    uplink_event,
)
from dos_agent.registry import DeviceRecord
from dos_agent.session import Reception, UplinkAccepted
from dos_codecs.schema import load_schema

BRIDGE = DeviceRecord(
    dev_eui="70b3d57ed0000003", asset_id="bridge-schwerte-ruhr-2", kind="bridge", activation="abp",
    dev_addr="26011f03", nwk_s_key="11" * 16, app_s_key="22" * 16, fcnt_up=41, session_id="0123456789abcdef",
)
RECEPTION = Reception(gateway_eui="aa555a0000000101")


def accepted(payload: bytes, device: DeviceRecord = BRIDGE, fport: int = 1, fcnt: int = 41) -> UplinkAccepted:
    return UplinkAccepted(device, fcnt, fport, payload, False, RECEPTION, 1_795_000_000.25)


@pytest.fixture(scope="module")
def schemas() -> SchemaBook:
    return SchemaBook()


def test_a_good_payload_gives_readings_with_units(schemas: SchemaBook) -> None:
    payload = load_schema("bridge").encode("reading", {"strain_1": -120, "tilt": -0.25, "temperature": 21.5})
    event = uplink_event(accepted(payload), schemas)
    assert tuple(event) == EVENT_KEYS
    assert event["readings"] == {
        "strain_1": {"value": -120, "unit": "µε"},
        "tilt": {"value": -0.25, "unit": "°"},
        "temperature": {"value": 21.5, "unit": "°C"},
    }
    assert (event["schema_version"], event["decode_error"], event["warnings"]) == (1, None, [])
    assert event["received_at"] == "2026-11-18T11:06:40.250Z"
    assert (event["rssi"], event["frequency"], event["gateway_time"]) == (None, None, None)  # unknown stays null
    text = encode_event(event).decode("utf-8")
    assert "µε" in text and json.loads(text) == event


def test_a_payload_that_does_not_decode_still_gives_an_event(schemas: SchemaBook) -> None:
    event = uplink_event(accepted(b"\xa1\x01"), schemas)  # a map cut short
    assert tuple(event) == EVENT_KEYS
    assert event["readings"] == {} and event["payload_hex"] == "a101"
    assert event["decode_error"].startswith("bad_cbor: ")
    assert event["schema_version"] == 1


def test_warnings_are_never_dropped(schemas: SchemaBook) -> None:
    payload = bytes.fromhex("a20a1901f41863182a")  # battery 5.00 V (in range), unknown key 99 = 42
    event = uplink_event(accepted(payload), schemas)
    assert event["readings"] == {"battery": {"value": 5, "unit": "V"}}
    assert event["warnings"] == ["unknown key 99 ignored"]
    out_of_range = load_schema("bridge").encode("reading", {"battery": 5.0})[:-2] + b"\x02\x58"  # 600 -> 6.0 V
    event = uplink_event(accepted(out_of_range), schemas)
    assert event["readings"]["battery"]["value"] == 6.0
    assert event["warnings"] == ["battery = 6.0 V is out of range [0, 5]"]


def test_an_unknown_kind_or_port_is_a_decode_error(schemas: SchemaBook) -> None:
    odd = DeviceRecord(**{**{name: getattr(BRIDGE, name) for name in BRIDGE.__slots__}, "kind": "parking"})
    event = uplink_event(accepted(b"\xa0", device=odd), schemas)
    assert event["decode_error"].startswith("unknown_kind: ") and event["schema_version"] is None
    event = uplink_event(accepted(b"\xa0", fport=9), schemas)
    assert event["decode_error"].startswith("unknown_fport: ") and event["fport"] == 9


def test_event_ids_are_stable_per_device_session_and_counter() -> None:
    first = event_id("70b3d57ed0000003", "0123456789abcdef", 41)
    assert first == str(uuid.uuid5(EVENT_NAMESPACE, "70b3d57ed0000003/0123456789abcdef/41"))
    assert first == event_id("70b3d57ed0000003", "0123456789abcdef", 41)
    assert len({first, event_id("70b3d57ed0000003", "0123456789abcdef", 42),
                event_id("70b3d57ed0000003", "fedcba9876543210", 41),
                event_id("70b3d57ed0000004", "0123456789abcdef", 41)}) == 4


@pytest.mark.parametrize("timestamp", [0.0, 1_795_000_000.25, 1_795_000_000.9994, 1_700_000_059.0005, 4_102_444_800.5])
def test_received_at_is_iso_8601_utc_with_milliseconds(timestamp: float) -> None:
    expected = datetime.fromtimestamp(int(timestamp * 1000) / 1000, timezone.utc).isoformat(timespec="milliseconds")
    assert iso_utc(timestamp) == expected.replace("+00:00", "Z")


def test_receptions_confirmed_adr_and_dr_are_always_in_the_event(schemas: SchemaBook) -> None:
    best = Reception(gateway_eui="aa555a0000000102", tmst=42, freq=867_300_000, sf=9, bw=125_000, rssi=-90, snr=6.5,
                     time="2026-11-22T08:30:00.100000Z")
    other = Reception(gateway_eui="aa555a0000000101", tmst=77, freq=867_300_000, sf=9, bw=125_000, rssi=-110, snr=-2.0)
    payload = load_schema("bridge").encode("reading", {"tilt": 0.5})
    event = uplink_event(UplinkAccepted(BRIDGE, 41, 1, payload, True, best, 1_795_000_000.0, (best, other), True, 1),
                         schemas)
    assert tuple(event) == EVENT_KEYS
    assert (event["confirmed"], event["adr"], event["dr"], event["gateway_id"], event["snr"]) == (
        True, True, 3, "aa555a0000000102", 6.5)
    assert event["receptions"] == [
        {"gateway_id": "aa555a0000000102", "rssi": -90, "snr": 6.5, "tmst": 42, "time": "2026-11-22T08:30:00.100000Z",
         "frequency": 867_300_000, "sf": 9, "bw": 125_000},
        {"gateway_id": "aa555a0000000101", "rssi": -110, "snr": -2.0, "tmst": 77, "time": None,
         "frequency": 867_300_000, "sf": 9, "bw": 125_000},
    ]
    alone = uplink_event(accepted(payload), schemas)  # one reception, modulation unknown
    assert (alone["confirmed"], alone["adr"], alone["dr"]) == (False, False, None)
    assert [r["gateway_id"] for r in alone["receptions"]] == [RECEPTION.gateway_eui]


def test_asset_events_carry_type_asset_device_and_time() -> None:
    document = asset_event("downlink", "lamp-1", "70b3d57ed0000001", 1_795_000_000.5, id="cfg-1", status="sent")
    event_id = document.pop("event_id")
    assert document == {"type": "downlink", "asset_id": "lamp-1", "dev_eui": "70b3d57ed0000001",
                        "time": "2026-11-18T11:06:40.500Z", "id": "cfg-1", "status": "sent"}
    again = asset_event("downlink", "lamp-1", "70b3d57ed0000001", 1_795_000_000.5, id="cfg-1", status="sent")
    assert again["event_id"] == event_id  # the same event made again keeps its id
    other = asset_event("downlink", "lamp-1", "70b3d57ed0000001", 1_795_000_000.5, id="cfg-1", status="acked")
    assert other["event_id"] != event_id
    assert json.loads(encode_event(again)) == again
