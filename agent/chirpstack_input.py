"""The ChirpStack MQTT integration as an input: a city that keeps its ChirpStack network server still gets DOS Edge's
codecs, registry (DevEUI -> asset) and events.

Subscribes to the ChirpStack broker's `application/+/device/+/event/up`, checks each message, decodes our CBOR payload
from its `data` (base64) under the device's kind from the registry, and publishes it as our uplink event (through the
outputs and so the outbox), with the same keys as an uplink the agent received itself. The event id is taken from
(DevEUI, "chirpstack-<devAddr>", FCnt), so a message ChirpStack's broker delivers twice gives the same `event_id`.
A message that cannot be used is counted by reason in `rejected` and logged (never its payload); a payload that does
not decode is still published, with its `decode_error`, like our own uplinks. Messages of the application our own
ChirpStack-compatible output publishes under (`ignore_application`) are skipped, counted as `own_output`, so the two
on one broker never feed each other.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any

from dos_agent.events import SchemaBook, uplink_event
from dos_agent.mqtt_sink import BrokerSettings, MqttClient
from dos_agent.outputs import Outputs
from dos_agent.registry import Registry
from dos_agent.session import Reception, UplinkAccepted

log = logging.getLogger("dos_agent.chirpstack")

#: ChirpStack v4's uplink events of every application and device.
UPLINK_FILTER = "application/+/device/+/event/up"
#: Application FPorts (224 is the LoRaWAN test port, 225..255 are reserved).
FPORT_MAX = 223


class ChirpStackInputError(ValueError):
    """A ChirpStack message that cannot be used; `reason` is its counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _hex_id(value: object, digits: int, name: str) -> str:
    if not isinstance(value, str) or len(value) != digits or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ChirpStackInputError(f"bad_{name}", f"{name} is not {digits} hex digits")
    return value.lower()


def _number(value: object, name: str) -> float | None:
    """A finite JSON number, or None when left out."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ChirpStackInputError("bad_field", f"{name} is not a finite number")
    return value


def _object(value: object, name: str) -> dict[str, Any]:
    """A JSON object that may be left out ({} then)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ChirpStackInputError("bad_field", f"{name} is not an object")
    return value


def _reception(rx: object) -> Reception:
    if not isinstance(rx, dict):
        raise ChirpStackInputError("bad_field", "an rxInfo entry is not an object")
    gateway = rx.get("gatewayId")
    if not isinstance(gateway, str) or not gateway:
        raise ChirpStackInputError("bad_field", "rxInfo gatewayId is missing")
    tmst = None
    context = rx.get("context")
    if isinstance(context, str):
        try:
            raw = base64.b64decode(context, validate=True)
        except ValueError:  # binascii.Error, or text that is not even ASCII
            raw = b""
        tmst = int.from_bytes(raw, "big") if len(raw) == 4 else None
    gw_time = rx.get("gwTime")
    return Reception(gateway_eui=gateway.lower(), tmst=tmst, rssi=_number(rx.get("rssi"), "rssi"),
                     snr=_number(rx.get("snr"), "snr"), time=gw_time if isinstance(gw_time, str) else None,
                     can_transmit=False)


def _received_at(value: object, default: float) -> float:
    if not isinstance(value, str):
        return default
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise ChirpStackInputError("bad_field", "time is not ISO 8601") from exc


class ChirpStackInput:
    """Turns ChirpStack `event/up` messages into our uplink events. `handle(topic, payload)` is the message handler;
    `start()`/`stop()` run its own MQTT client on the ChirpStack broker."""

    def __init__(self, broker: BrokerSettings, registry: Registry, schemas: SchemaBook, outputs: Outputs,
                 clock: Any = time.time, topic_filter: str = UPLINK_FILTER,
                 ignore_application: str | None = None) -> None:
        self.ignore_application = ignore_application
        self.registry = registry
        self.schemas = schemas
        self.outputs = outputs
        self.clock = clock
        self.topic_filter = topic_filter
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.client = MqttClient(broker, client_id=None)

    async def start(self) -> None:
        """Subscribe (again on every reconnect) and connect, in the background while the broker is away."""
        self.client.subscribe(self.topic_filter, self.handle)
        await self.client.start()

    async def stop(self) -> None:
        """Disconnect."""
        await self.client.stop()

    def handle(self, topic: str, payload: bytes) -> bool:
        """One ChirpStack message: published as our event (True), or counted by reason and logged (False)."""
        levels = topic.split("/")
        if len(levels) > 1 and levels[1] == self.ignore_application:
            self.rejected["own_output"] += 1
            return False
        try:
            document, dev_addr = self.translate(payload)
        except ChirpStackInputError as exc:
            self.rejected[exc.reason] += 1
            log.info("chirpstack=rejected reason=%s topic=%s detail=%r", exc.reason, topic, exc.detail)
            return False
        self.accepted += 1
        if document["decode_error"] is not None:
            self.rejected["decode_error"] += 1
        self.outputs.publish_uplink(document, dev_addr)
        log.info("chirpstack=accepted dev_eui=%s asset=%s fcnt=%d fport=%d decode_error=%s", document["dev_eui"],
                 document["asset_id"], document["fcnt"], document["fport"], document["decode_error"])
        return True

    def translate(self, payload: bytes) -> tuple[dict[str, Any], str | None]:
        """(our uplink event document, devAddr) of a ChirpStack `event/up` JSON; ChirpStackInputError when unusable."""
        try:
            message = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ChirpStackInputError("bad_json", str(exc)) from exc
        if not isinstance(message, dict):
            raise ChirpStackInputError("bad_json", "not a JSON object")
        info = message.get("deviceInfo")
        if not isinstance(info, dict) or "devEui" not in info:
            raise ChirpStackInputError("missing_field", "deviceInfo.devEui is missing")
        dev_eui = _hex_id(info["devEui"], 16, "dev_eui")
        device = self.registry.get(dev_eui)
        if device is None:
            raise ChirpStackInputError("unknown_device", f"DevEUI {dev_eui} is not in the registry")
        if device.state == "retired":  # replaced by another node: its frames are no longer the asset's data
            raise ChirpStackInputError("retired_device", f"DevEUI {dev_eui} is retired")
        fcnt = message.get("fCnt", 0)
        if isinstance(fcnt, bool) or not isinstance(fcnt, int) or not 0 <= fcnt < 2**32:
            raise ChirpStackInputError("bad_field", "fCnt is not a 32-bit counter")
        fport = message.get("fPort")
        if fport is None:
            raise ChirpStackInputError("no_application_data", "no fPort (a MAC-only frame)")
        if isinstance(fport, bool) or not isinstance(fport, int) or not 1 <= fport <= FPORT_MAX:
            raise ChirpStackInputError("bad_field", f"fPort is not 1..{FPORT_MAX}")
        data = message.get("data", "")
        try:
            frm_payload = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except ValueError:  # binascii.Error, or text that is not even ASCII
            frm_payload = None
        if frm_payload is None:
            raise ChirpStackInputError("bad_base64", "data is not base64")
        dev_addr = message.get("devAddr")
        dev_addr = None if dev_addr is None else _hex_id(dev_addr, 8, "dev_addr")
        rx_info = message.get("rxInfo") or []
        if not isinstance(rx_info, list):
            raise ChirpStackInputError("bad_field", "rxInfo is not a list")
        receptions = sorted((_reception(rx) for rx in rx_info),
                            key=lambda r: -math.inf if r.snr is None else r.snr, reverse=True)
        tx_info = _object(message.get("txInfo"), "txInfo")
        lora = _object(_object(tx_info.get("modulation"), "txInfo.modulation").get("lora"), "modulation.lora")
        radio = {name: None if value is None else int(_number(value, key)) for name, key, value in (
            ("freq", "frequency", tx_info.get("frequency")), ("sf", "spreadingFactor", lora.get("spreadingFactor")),
            ("bw", "bandwidth", lora.get("bandwidth")))}
        receptions = [replace(r, **radio) for r in receptions] or [Reception(gateway_eui="chirpstack", **radio,
                                                                             can_transmit=False)]
        accepted = UplinkAccepted(
            device=replace(device, session_id=f"chirpstack-{dev_addr}"),
            fcnt=fcnt, fport=fport, payload=frm_payload, confirmed=message.get("confirmed") is True,
            reception=receptions[0], received_at=_received_at(message.get("time"), self.clock()),
            receptions=tuple(receptions), adr=message.get("adr") is True,
        )
        return uplink_event(accepted, self.schemas), dev_addr
