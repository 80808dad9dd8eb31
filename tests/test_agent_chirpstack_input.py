"""The ChirpStack MQTT integration input: ChirpStack `event/up` JSON decoded by the registry's kind into our uplink
event (same keys, stable event id), every kind of bad message counted by its reason and never published, and the real
Agent subscribed to a real Mosquitto playing the ChirpStack broker, republishing under our asset topic."""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from dos_agent.app import AgentConfig
from dos_agent.chirpstack_input import ChirpStackInput
from dos_agent.events import EVENT_KEYS, SchemaBook
from dos_agent.mqtt_sink import BrokerSettings, MqttSink
from dos_agent.outputs import Outputs
from dos_agent.registry import Registry
from dos_codecs.schema import load_schema
from test_agent_gwmp import AgentThread
from test_agent_network import LAMP

WAIT_S = 10.0
FILL = load_schema("waste").encode("reading", {"fill_level": 42})
BIN = {"dev_eui": "70b3d57ed0000c01", "asset_id": "bin-cs-0001", "kind": "waste", "activation": "otaa",
       "app_key": "11" * 16, "join_eui": "70b3d57ed0000000"}


def chirpstack_up(**changes) -> dict:  # noqa: ANN003
    message = {
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "time": "2026-11-22T08:30:00.123456+00:00",
        "deviceInfo": {"tenantId": "t", "tenantName": "Dortmund", "applicationId": "a1", "applicationName": "bins",
                       "deviceProfileId": "p", "deviceProfileName": "waste", "deviceName": "bin 1",
                       "devEui": BIN["dev_eui"].upper(), "tags": {}},
        "devAddr": "01a2b3c4", "adr": True, "dr": 5, "fCnt": 77, "fPort": 1, "confirmed": False,
        "data": base64.b64encode(FILL).decode(),
        "rxInfo": [{"gatewayId": "0016c001ff10a235", "uplinkId": 1, "rssi": -101, "snr": -2.5,
                    "context": base64.b64encode((4_000_000).to_bytes(4, "big")).decode(), "crcStatus": "CRC_OK"},
                   {"gatewayId": "0016c001ff10a236", "uplinkId": 2, "rssi": -90, "snr": 7.0}],
        "txInfo": {"frequency": 868_500_000, "modulation": {"lora": {"bandwidth": 125_000, "spreadingFactor": 7,
                                                                     "codeRate": "CR_4_5"}}},
    }
    message.update(changes)
    return message


@pytest.fixture
def chirpstack(tmp_path: Path):
    """(input, sink): the input over a real registry, publishing into a sink whose outbox we can read."""
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.import_devices([BIN])
        schemas = SchemaBook()
        sink = MqttSink(BrokerSettings(), prefix="dos")  # not started: events stay in its outbox
        cs_input = ChirpStackInput(BrokerSettings(), registry, schemas, Outputs(sink, schemas), clock=lambda: 1e9,
                                   ignore_application="ours")
        yield cs_input, sink


def published(sink: MqttSink) -> list[tuple[str, dict]]:
    sink.outbox.commit()
    return [(m.topic, json.loads(m.payload)) for m in sink.outbox.take(100)]


def test_a_chirpstack_uplink_becomes_our_event(chirpstack) -> None:
    cs_input, sink = chirpstack
    topic = f"application/a1/device/{BIN['dev_eui']}/event/up"
    assert cs_input.handle(topic, json.dumps(chirpstack_up()).encode())
    [(event_topic, event)] = published(sink)
    assert event_topic == f"dos/assets/{BIN['asset_id']}/up"
    assert tuple(event) == EVENT_KEYS
    assert (event["dev_eui"], event["kind"], event["fcnt"], event["fport"]) == (BIN["dev_eui"], "waste", 77, 1)
    assert event["readings"]["fill_level"]["value"] == 42 and event["decode_error"] is None
    assert event["received_at"] == "2026-11-22T08:30:00.123Z"
    assert event["gateway_id"] == "0016c001ff10a236"  # the best SNR first, as our own receptions
    assert [r["gateway_id"] for r in event["receptions"]] == ["0016c001ff10a236", "0016c001ff10a235"]
    assert event["receptions"][1]["tmst"] == 4_000_000
    assert (event["frequency"], event["sf"], event["bw"], event["dr"]) == (868_500_000, 7, 125_000, 5)
    # the broker delivering the same message again gives the same id; another session gives another
    assert cs_input.handle(topic, json.dumps(chirpstack_up()).encode())
    assert cs_input.handle(topic, json.dumps(chirpstack_up(devAddr="01a2b3c5")).encode())
    again, other = (e for _, e in published(sink))
    assert again["event_id"] == event["event_id"] != other["event_id"]
    assert cs_input.accepted == 3 and not cs_input.rejected


def test_a_payload_that_does_not_decode_is_still_published_with_its_reason(chirpstack) -> None:
    cs_input, sink = chirpstack
    bad_cbor = base64.b64encode(b"\xa1\x01").decode()  # a map whose value is missing
    assert cs_input.handle("application/a1/device/x/event/up", json.dumps(chirpstack_up(data=bad_cbor)).encode())
    [(_, event)] = published(sink)
    assert event["readings"] == {} and event["decode_error"].startswith("bad_cbor")
    assert cs_input.rejected == {"decode_error": 1}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (json.dumps(chirpstack_up(deviceInfo={})).encode(), "missing_field"),
        (json.dumps(chirpstack_up(deviceInfo={"devEui": "xyz"})).encode(), "bad_dev_eui"),
        (json.dumps(chirpstack_up(deviceInfo={"devEui": "70b3d57ed0000fff"})).encode(), "unknown_device"),
        (json.dumps(chirpstack_up(fCnt=-1)).encode(), "bad_field"),
        (json.dumps(chirpstack_up(fCnt=2**32)).encode(), "bad_field"),
        (json.dumps(chirpstack_up(fCnt="7")).encode(), "bad_field"),
        (json.dumps(chirpstack_up(fPort=None)).encode(), "no_application_data"),
        (json.dumps(chirpstack_up(fPort=0)).encode(), "bad_field"),
        (json.dumps(chirpstack_up(fPort=224)).encode(), "bad_field"),
        (json.dumps(chirpstack_up(fPort=True)).encode(), "bad_field"),
        (json.dumps(chirpstack_up(data="not base64!")).encode(), "bad_base64"),
        (json.dumps(chirpstack_up(data=17)).encode(), "bad_base64"),
        (json.dumps(chirpstack_up(data="\u0080")).encode(), "bad_base64"),  # not even ASCII (found by fuzzing)
        (json.dumps(chirpstack_up(devAddr="123")).encode(), "bad_dev_addr"),
        (json.dumps(chirpstack_up(rxInfo={"gatewayId": "x"})).encode(), "bad_field"),
        (json.dumps(chirpstack_up(rxInfo=[{"rssi": -1}])).encode(), "bad_field"),
        (json.dumps(chirpstack_up(rxInfo=[{"gatewayId": "g", "snr": "high"}])).encode(), "bad_field"),
        (json.dumps(chirpstack_up(txInfo=[])).encode(), "bad_field"),
        (json.dumps(chirpstack_up(txInfo={"modulation": {"lora": {"spreadingFactor": "7"}}})).encode(), "bad_field"),
        (json.dumps(chirpstack_up(time="yesterday")).encode(), "bad_field"),
        (json.dumps(chirpstack_up(txInfo={"frequency": float("nan")})).encode(), "bad_field"),
        (json.dumps(chirpstack_up(rxInfo=[{"gatewayId": "g", "rssi": float("inf")}])).encode(), "bad_field"),
    ],
)
def test_bad_messages_are_counted_by_reason_and_never_published(chirpstack, payload: bytes, reason: str) -> None:
    cs_input, sink = chirpstack
    assert not cs_input.handle("application/a1/device/x/event/up", payload)
    assert cs_input.rejected == {reason: 1} and cs_input.accepted == 0
    assert published(sink) == []


def test_a_retired_devices_uplink_is_not_the_assets_data(chirpstack) -> None:
    cs_input, sink = chirpstack
    cs_input.registry.retire_device(BIN["dev_eui"], 1e9)
    assert not cs_input.handle("application/a1/device/x/event/up", json.dumps(chirpstack_up()).encode())
    assert cs_input.rejected == {"retired_device": 1} and published(sink) == []


def test_our_own_chirpstack_output_is_not_taken_back_in(chirpstack) -> None:
    cs_input, sink = chirpstack
    assert not cs_input.handle(f"application/ours/device/{BIN['dev_eui']}/event/up",
                               json.dumps(chirpstack_up()).encode())
    assert cs_input.rejected == {"own_output": 1} and published(sink) == []


def test_the_agent_republishes_a_chirpstack_brokers_uplinks_as_ours(mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.import_devices([BIN, LAMP])
    prefix = f"cs{uuid.uuid4().hex[:8]}"
    application = uuid.uuid4().hex
    config = AgentConfig(registry=path, udp_host="127.0.0.1", udp_port=0, mqtt_host=mosquitto.host,
                         mqtt_port=mosquitto.port, prefix=prefix, chirpstack_host=mosquitto.host,
                         chirpstack_port=mosquitto.port)
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cs-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/assets/+/up", qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, m: received.put((m.topic, m.payload))
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        assert ready.wait(WAIT_S)
        with AgentThread(config) as agent_thread:
            cs_input = agent_thread.agent.chirpstack_input
            assert cs_input is not None
            topic = f"application/{application}/device/{BIN['dev_eui']}/event/up"
            deadline = time.monotonic() + WAIT_S
            got = None
            while got is None and time.monotonic() < deadline:  # until the input's subscription is in place
                client.publish(topic, json.dumps(chirpstack_up(fCnt=9)).encode(), qos=1).wait_for_publish(WAIT_S)
                with contextlib.suppress(queue.Empty):
                    got = received.get(timeout=0.5)
            assert got is not None, "the ChirpStack uplink never came out as ours"
            assert got[0] == f"{prefix}/assets/{BIN['asset_id']}/up"
            event = json.loads(got[1])
            assert (event["fcnt"], event["readings"]["fill_level"]["value"]) == (9, 42)
            client.publish(topic, b"{broken", qos=1).wait_for_publish(WAIT_S)
            deadline = time.monotonic() + WAIT_S
            while not agent_thread.call(lambda: dict(cs_input.rejected)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert agent_thread.call(lambda: dict(cs_input.rejected)) == {"bad_json": 1}
    finally:
        client.disconnect()
        client.loop_stop()
