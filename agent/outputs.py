"""What the agent publishes for an uplink event, beside (never instead of) its asset-keyed JSON: a ChirpStack v4
compatible uplink on `application/<app>/device/<devEui>/event/up`, and Home Assistant MQTT discovery for the asset's
readings. Both are built from the event document and the payload schema, so a new node kind needs nothing here.

ChirpStack mode: the field names of ChirpStack's `event/up` JSON; `object` is what our exported ChirpStack codec's
`decodeUplink` gives as `data` ({kind, schema_version, message, readings: {name: {value, unit}}, warnings}), left out
when the payload did not decode (as ChirpStack does on a codec error). Fields ChirpStack leaves out at their zero
value (channel, rfChain) and those we do not know (tenant) are left out.

Home Assistant: one retained config per reading field of the kind's uplink messages, on
`<discovery prefix>/<sensor|binary_sensor>/<asset>/<field>/config`, reading `value_json.readings.<field>.value` from
the asset's `up` topic (keeping the last state when an event does not carry the field), the agent's status topic as
availability, and one device block per asset (a node swapped under an asset stays the same Home Assistant device).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Protocol

from dos_codecs.errors import CodecError
from dos_codecs.schema import Field, Schema

from dos_agent.events import SchemaBook, encode_event
from dos_agent.mqtt_sink import event_topic, status_topic

#: Home Assistant device classes by the unit of a schema field (a field whose unit is not here gets none).
DEVICE_CLASS_BY_UNIT = {
    "°C": "temperature", "V": "voltage", "A": "current", "W": "power", "Wh": "energy", "kWh": "energy",
    "lx": "illuminance", "Hz": "frequency", "m": "distance", "mm": "distance", "cm": "distance", "s": "duration",
    "dBm": "signal_strength",
}
#: Device classes whose values only grow (Home Assistant state_class `total_increasing`).
TOTAL_INCREASING = {"energy"}
_NODE_ID = re.compile(r"[^a-zA-Z0-9_-]")
#: ChirpStack's code rate of our LoRa frames (LoRaWAN EU868 uses 4/5).
CODE_RATE = "CR_4_5"


class EventPublisher(Protocol):
    """The part of the MQTT sink the outputs use."""

    prefix: str

    def publish(self, topic: str, payload: bytes) -> bool: ...

    def publish_event(self, asset_id: str, payload: bytes) -> bool: ...

    def publish_retained(self, topic: str, payload: bytes) -> bool: ...


def chirpstack_up_topic(application: str, dev_eui: str) -> str:
    """ChirpStack's uplink topic of a device."""
    return f"application/{application}/device/{dev_eui}/event/up"


def chirpstack_uplink(document: dict[str, Any], application: str, dev_addr: str | None,
                      schemas: SchemaBook) -> dict[str, Any]:
    """The ChirpStack v4 `event/up` JSON of one of our uplink event documents."""
    uplink: dict[str, Any] = {
        "deduplicationId": document["event_id"],
        "time": document["received_at"],
        "deviceInfo": {
            "applicationId": application,
            "applicationName": application,
            "deviceProfileId": document["kind"],
            "deviceProfileName": document["kind"],
            "deviceName": document["asset_id"],
            "devEui": document["dev_eui"],
            "tags": {"asset_id": document["asset_id"], "kind": document["kind"]},
        },
        "devAddr": dev_addr,
        "adr": document["adr"],
        "dr": document["dr"],
        "fCnt": document["fcnt"],
        "fPort": document["fport"],
        "confirmed": document["confirmed"],
        "data": base64.b64encode(bytes.fromhex(document["payload_hex"])).decode(),
    }
    if document["decode_error"] is None:
        uplink["object"] = {
            "kind": document["kind"], "schema_version": document["schema_version"],
            "message": schemas.get(document["kind"]).message_for_fport(document["fport"]).name,
            "readings": document["readings"], "warnings": document["warnings"],
        }
    first_id = int(hashlib.sha1(document["event_id"].encode()).hexdigest()[:8], 16)
    uplink["rxInfo"] = [
        {
            "gatewayId": reception["gateway_id"],
            "uplinkId": (first_id + index) % 2**32,
            "rssi": None if reception["rssi"] is None else round(reception["rssi"]),
            "snr": reception["snr"],
            "context": None if reception["tmst"] is None else base64.b64encode(
                (reception["tmst"] % 2**32).to_bytes(4, "big")).decode(),
            "crcStatus": "CRC_OK",
            **({"gwTime": reception["time"]} if reception["time"] else {}),
        }
        for index, reception in enumerate(document["receptions"])
    ]
    uplink["txInfo"] = {
        "frequency": document["frequency"],
        "modulation": {"lora": {"bandwidth": document["bw"], "spreadingFactor": document["sf"],
                                "codeRate": CODE_RATE}},
    }
    return uplink


def node_id(asset_id: str) -> str:
    """The asset id as a Home Assistant discovery node id (letters, digits, '_' and '-')."""
    return _NODE_ID.sub("_", asset_id)


def reading_fields(schema: Schema) -> list[Field]:
    """The distinct reading fields of a kind's uplink messages, in schema order."""
    fields: dict[str, Field] = {}
    for message in schema.messages:
        if message.direction == "up":
            for spec in message.fields:
                fields.setdefault(spec.name, spec)
    return list(fields.values())


def device_class(spec: Field) -> str | None:
    """The Home Assistant device class of a numeric field, from its unit (a `%` named battery is `battery`)."""
    if spec.unit == "%" and "battery" in spec.name:
        return "battery"
    return DEVICE_CLASS_BY_UNIT.get(spec.unit)


def discovery_messages(prefix: str, discovery_prefix: str, asset_id: str, schema: Schema,
                       dev_eui: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) of every Home Assistant entity of one asset: a sensor per numeric reading field, a binary
    sensor per bool field."""
    node = node_id(asset_id)
    device: dict[str, Any] = {"identifiers": [f"dos_edge_{node}"], "name": asset_id, "model": schema.title,
                              "manufacturer": "DOS Edge"}
    if dev_eui:
        device["serial_number"] = dev_eui
    messages = []
    for spec in reading_fields(schema):
        reading = f"value_json.readings['{spec.name}']"
        has_reading = f"'{spec.name}' in value_json.readings"
        config: dict[str, Any] = {
            "name": spec.name.replace("_", " "),
            "unique_id": f"dos_edge_{node}_{spec.name}",
            "state_topic": event_topic(prefix, asset_id),
            "availability_topic": status_topic(prefix),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        if spec.type == "bool":
            component = "binary_sensor"
            config["value_template"] = (
                f"{{{{ ('ON' if {reading}.value else 'OFF') if {has_reading} else this.state | upper }}}}")
        else:
            component = "sensor"
            config["value_template"] = f"{{{{ {reading}.value if {has_reading} else this.state }}}}"
            if spec.unit:
                config["unit_of_measurement"] = spec.unit
            cls = device_class(spec)
            if cls is not None:
                config["device_class"] = cls
            config["state_class"] = "total_increasing" if cls in TOTAL_INCREASING else "measurement"
        messages.append((f"{discovery_prefix}/{component}/{node}/{spec.name}/config", config))
    return messages


class Outputs:
    """Publishes an uplink event in every configured form: ours always, ChirpStack's when `chirpstack_application`
    is set, and the Home Assistant discovery of its asset (once per asset and kind) when `homeassistant_prefix` is."""

    def __init__(self, sink: EventPublisher, schemas: SchemaBook, chirpstack_application: str | None = None,
                 homeassistant_prefix: str | None = None) -> None:
        self.sink = sink
        self.schemas = schemas
        self.chirpstack_application = chirpstack_application
        self.homeassistant_prefix = homeassistant_prefix
        self._announced: set[tuple[str, str]] = set()

    def publish_uplink(self, document: dict[str, Any], dev_addr: str | None = None) -> None:
        """Publish one uplink event document (ours, and the ChirpStack-compatible one when that output is on)."""
        self.sink.publish_event(document["asset_id"], encode_event(document))
        if self.chirpstack_application is not None:
            uplink = chirpstack_uplink(document, self.chirpstack_application, dev_addr, self.schemas)
            self.sink.publish(chirpstack_up_topic(self.chirpstack_application, document["dev_eui"]),
                              encode_event(uplink))
        self.announce(document["asset_id"], document["kind"], document["dev_eui"])

    def announce(self, asset_id: str, kind: str, dev_eui: str | None = None) -> int:
        """Publish the asset's Home Assistant discovery (retained, again on every reconnect) unless done already;
        returns how many entities were announced (0 when off, known already, or the kind has no schema)."""
        if self.homeassistant_prefix is None or (asset_id, kind) in self._announced:
            return 0
        try:
            schema = self.schemas.get(kind)
        except CodecError:
            return 0
        self._announced.add((asset_id, kind))
        messages = discovery_messages(self.sink.prefix, self.homeassistant_prefix, asset_id, schema, dev_eui)
        for topic, config in messages:
            self.sink.publish_retained(topic, json.dumps(config, ensure_ascii=False).encode())
        return len(messages)
