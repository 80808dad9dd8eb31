"""The outputs beside our asset JSON: the ChirpStack v4 compatible uplink (field names from the anchors, `object` the
same as our exported codec's `data`) and Home Assistant discovery built from every schema; then the real Agent with
both on, over real UDP and a real Mosquitto: the ChirpStack uplink arrives, discovery configs are retained."""

from __future__ import annotations

import base64
import json
import queue
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.app import AgentConfig
from dos_agent.events import SchemaBook, uplink_event
from dos_agent.outputs import (
    DEVICE_CLASS_BY_UNIT,
    chirpstack_up_topic,
    chirpstack_uplink,
    discovery_messages,
    node_id,
    reading_fields,
)
from dos_agent.registry import DeviceRecord, Registry
from dos_agent.session import Reception, UplinkAccepted
from dos_codecs.export import decode_result
from dos_codecs.schema import available_kinds, load_schema
from test_agent_gwmp import AgentThread
from test_agent_network import LAMP, READING, Forwarder
from test_agent_session import LoRaNode

WAIT_S = 10.0
DEVICE = DeviceRecord(dev_eui="70b3d57ed0000a01", asset_id="lamp-do-0100", kind="streetlight", activation="abp",
                      dev_addr="26011a01", session_id="s1")
#: The uplink field names of ChirpStack v4 (../shared/reference/anchors.md).
CHIRPSTACK_KEYS = {"deduplicationId", "time", "deviceInfo", "devAddr", "adr", "dr", "fCnt", "fPort", "confirmed",
                   "data", "object", "rxInfo", "txInfo"}
DEVICE_INFO_KEYS = {"applicationId", "applicationName", "deviceProfileId", "deviceProfileName", "deviceName",
                    "devEui", "tags"}


def document(payload: bytes, fport: int = 1) -> dict:
    receptions = (Reception("aa555a0000000001", tmst=123_456_789, freq=868_300_000, sf=9, bw=125_000, rssi=-97.0,
                            snr=4.5, time="2026-11-22T08:30:00.000000Z"),
                  Reception("aa555a0000000002", tmst=7, freq=868_300_000, sf=9, bw=125_000, rssi=-110.0, snr=-3.0))
    accepted = UplinkAccepted(DEVICE, fcnt=70_000, fport=fport, payload=payload, confirmed=False,
                              reception=receptions[0], received_at=1_795_000_000.25, receptions=receptions, adr=True)
    return uplink_event(accepted, SchemaBook())


def test_the_chirpstack_uplink_has_chirpstacks_field_names_and_our_codec_object() -> None:
    event = document(READING)
    uplink = chirpstack_uplink(event, "dortmund-lights", DEVICE.dev_addr, SchemaBook())
    assert set(uplink) == CHIRPSTACK_KEYS
    assert set(uplink["deviceInfo"]) == DEVICE_INFO_KEYS
    assert uplink["deviceInfo"]["devEui"] == DEVICE.dev_eui and uplink["deviceInfo"]["deviceName"] == DEVICE.asset_id
    assert uplink["deviceInfo"]["applicationId"] == "dortmund-lights"
    assert (uplink["deduplicationId"], uplink["time"]) == (event["event_id"], event["received_at"])
    assert (uplink["devAddr"], uplink["fCnt"], uplink["fPort"], uplink["dr"], uplink["adr"]) == (
        "26011a01", 70_000, 1, 3, True)
    assert base64.b64decode(uplink["data"]) == READING
    # exactly what the ChirpStack codec we export gives as `data` for these bytes
    assert uplink["object"] == decode_result(load_schema("streetlight"), 1, READING)["data"]
    assert [rx["gatewayId"] for rx in uplink["rxInfo"]] == ["aa555a0000000001", "aa555a0000000002"]
    assert uplink["rxInfo"][0]["rssi"] == -97 and uplink["rxInfo"][0]["snr"] == 4.5
    assert base64.b64decode(uplink["rxInfo"][0]["context"]) == (123_456_789).to_bytes(4, "big")
    assert len({rx["uplinkId"] for rx in uplink["rxInfo"]}) == 2
    assert uplink["txInfo"] == {"frequency": 868_300_000, "modulation": {"lora": {
        "bandwidth": 125_000, "spreadingFactor": 9, "codeRate": "CR_4_5"}}}
    json.dumps(uplink)  # plain JSON


def test_a_payload_that_does_not_decode_has_no_object_like_a_chirpstack_codec_error() -> None:
    uplink = chirpstack_uplink(document(b"\xff\x00"), "app", None, SchemaBook())
    assert "object" not in uplink and base64.b64decode(uplink["data"]) == b"\xff\x00"


@pytest.mark.parametrize("kind", available_kinds())
def test_discovery_covers_every_reading_field_of_every_kind(kind: str) -> None:
    schema = load_schema(kind)
    messages = discovery_messages("dos", "homeassistant", "Asset 7/ä", schema, "70b3d57ed0000a01")
    fields = reading_fields(schema)
    assert len(messages) == len(fields) > 0
    node = node_id("Asset 7/ä")
    assert node == "Asset_7__"
    for (topic, config), spec in zip(messages, fields, strict=True):
        component = "binary_sensor" if spec.type == "bool" else "sensor"
        assert topic == f"homeassistant/{component}/{node}/{spec.name}/config"
        assert config["state_topic"] == "dos/assets/Asset 7/ä/up"
        assert f"value_json.readings['{spec.name}']" in config["value_template"]
        assert config["availability_topic"] == "dos/agent/status"
        assert config["unique_id"] == f"dos_edge_{node}_{spec.name}"
        assert config["device"]["identifiers"] == [f"dos_edge_{node}"]
        assert config["device"]["model"] == schema.title and config["device"]["serial_number"] == "70b3d57ed0000a01"
        if component == "sensor":
            assert config.get("unit_of_measurement", "") == spec.unit
            assert config.get("device_class") == DEVICE_CLASS_BY_UNIT.get(spec.unit, config.get("device_class"))
            expected_state = "total_increasing" if config.get("device_class") == "energy" else "measurement"
            assert config["state_class"] == expected_state


def test_the_streetlight_gets_power_energy_and_lamp_entities() -> None:
    configs = {topic.split("/")[-2]: config for topic, config in
               discovery_messages("dos", "homeassistant", "lamp-1", load_schema("streetlight"))}
    assert configs["power"]["device_class"] == "power" and configs["power"]["unit_of_measurement"] == "W"
    assert configs["energy"]["device_class"] == "energy" and configs["energy"]["state_class"] == "total_increasing"
    assert "unit_of_measurement" not in configs["lamp_on"] and "ON" in configs["lamp_on"]["value_template"]


class Subscriber:
    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"out-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(WAIT_S)

    def until(self, predicate, what: str) -> tuple[str, bytes, bool]:  # noqa: ANN001
        while True:
            try:
                message = self.messages.get(timeout=WAIT_S)
            except queue.Empty:
                raise AssertionError(f"no {what}") from None
            if predicate(message):
                return message

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_agent_publishes_chirpstack_uplinks_and_retained_discovery(mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.import_devices([LAMP])
    prefix = f"o{uuid.uuid4().hex[:8]}"
    discovery = f"ha{uuid.uuid4().hex[:6]}"
    application = f"app-{uuid.uuid4().hex[:6]}"
    config = AgentConfig(registry=path, udp_host="127.0.0.1", udp_port=0, mqtt_host=mosquitto.host,
                         mqtt_port=mosquitto.port, prefix=prefix, dedup_ms=0,
                         outputs_chirpstack_application=application, homeassistant_discovery_prefix=discovery)
    uplinks = Subscriber(mosquitto.port, [chirpstack_up_topic(application, "+"), f"{prefix}/assets/+/up"])
    try:
        with AgentThread(config) as agent_thread:
            gateway = Forwarder("aa555a0000000a01", agent_thread.agent.udp_address)
            try:
                gateway.push(LoRaNode.from_entry(LAMP).uplink(READING), tmst=5_000_000, sf=7)
                _, ours, _ = uplinks.until(lambda m: m[0].endswith("/up") and m[0].startswith(prefix), "event")
                topic, payload, _ = uplinks.until(lambda m: m[0].startswith("application/"), "ChirpStack uplink")
            finally:
                gateway.close()
        assert topic == chirpstack_up_topic(application, LAMP["dev_eui"])
        uplink, event = json.loads(payload), json.loads(ours)
        assert uplink["deduplicationId"] == event["event_id"] and uplink["fCnt"] == event["fcnt"] == 0
        assert uplink["devAddr"] == LAMP["dev_addr"]
        assert uplink["object"]["readings"] == event["readings"]
        assert base64.b64decode(uplink["data"]) == READING
        # a Home Assistant that connects later finds the asset's entities (retained, announced at start)
        late = Subscriber(mosquitto.port, [f"{discovery}/#"])
        try:
            configs = {}
            expected = len(reading_fields(load_schema(LAMP["kind"])))
            while len(configs) < expected:
                topic, payload, retain = late.until(lambda m: True, "discovery config")
                assert retain
                configs[topic] = json.loads(payload)
        finally:
            late.close()
        power = configs[f"{discovery}/sensor/{LAMP['asset_id']}/power/config"]
        assert power["state_topic"] == f"{prefix}/assets/{LAMP['asset_id']}/up"
        assert power["device"]["serial_number"] == LAMP["dev_eui"]
    finally:
        uplinks.close()
