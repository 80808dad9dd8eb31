"""What the status page and /metrics show: an in-memory model fed by the agent's published documents, and the one
snapshot both are rendered from.

`StatusModel` keeps, per asset, what its last uplink said (time, FCnt, best gateway, RSSI/SNR, battery, the latest
readings), its last alarm (an uplink on FPort 2, the alarm port of every node kind) and its last downlink status and
join; per gateway, how many uplinks it heard and their last RSSI/SNR. It is fed only the documents the agent
publishes on MQTT anyway (events carry no key), and `snapshot()` adds the registry's assets (their state) and devices
(through a whitelist of public columns), so no key can reach the page. Pure: documents and times in, a JSON-ready dict
out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dos_agent.events import iso_utc

if TYPE_CHECKING:
    from dos_agent.app import Agent
    from dos_agent.outputs import Outputs

#: The FPort of alarm messages for every node kind (docs/architecture.md, payload schema).
ALARM_FPORT = 2
#: The reading shown as an asset's battery.
BATTERY_READING = "battery"
#: Registry columns the status page may show (never a key column).
DEVICE_COLUMNS = ("dev_eui", "asset_id", "kind", "activation", "state", "fcnt_up")
#: Alarms kept for the page, newest first.
RECENT_ALARMS = 20


@dataclass
class AssetStatus:
    """What the agent last heard from one asset."""

    asset_id: str
    dev_eui: str | None = None
    kind: str | None = None
    last_seen: float | None = None
    uplinks: int = 0
    fcnt: int | None = None
    gateway_id: str | None = None
    rssi: float | None = None
    snr: float | None = None
    gateways: int = 0
    battery: dict[str, Any] | None = None
    readings: dict[str, Any] = field(default_factory=dict)
    decode_error: str | None = None
    alarms: int = 0
    last_alarm: dict[str, Any] | None = None
    joined_at: str | None = None
    downlink: dict[str, Any] | None = None


@dataclass
class GatewayStatus:
    """Uplinks one gateway heard, and the signal of the last one."""

    gateway_id: str
    uplinks: int = 0
    rssi: float | None = None
    snr: float | None = None


class ShownOutputs:
    """The outputs as an input other than our own session layer (the ChirpStack input) sees them: every uplink event it
    publishes is also shown on the status page, as received now."""

    def __init__(self, outputs: Outputs, status: StatusModel) -> None:
        self.outputs = outputs
        self.status = status

    def publish_uplink(self, document: dict[str, Any], dev_addr: str | None = None) -> None:
        """Show the event, then publish it (`Outputs.publish_uplink`)."""
        self.status.uplink(document, self.status.clock())
        self.outputs.publish_uplink(document, dev_addr)


class StatusModel:
    """Assets, gateways and recent alarms, from the agent's uplink events and asset events."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self.started_at = clock()
        self.assets: dict[str, AssetStatus] = {}
        self.gateways: dict[str, GatewayStatus] = {}
        self.recent_alarms: list[dict[str, Any]] = []

    def _asset(self, asset_id: str) -> AssetStatus:
        asset = self.assets.get(asset_id)
        if asset is None:
            asset = self.assets[asset_id] = AssetStatus(asset_id)
        return asset

    def uplink(self, document: dict[str, Any], at: float) -> None:
        """An uplink event (`dos_agent.events.uplink_event`) received at `at` (Unix seconds)."""
        asset = self._asset(document["asset_id"])
        asset.dev_eui, asset.kind = document["dev_eui"], document["kind"]
        asset.last_seen = at
        asset.uplinks += 1
        asset.fcnt = document["fcnt"]
        asset.gateway_id, asset.rssi, asset.snr = document["gateway_id"], document["rssi"], document["snr"]
        asset.gateways = len(document["receptions"])
        asset.decode_error = document["decode_error"]
        readings = document["readings"]
        if BATTERY_READING in readings:
            asset.battery = readings[BATTERY_READING]
        for reception in document["receptions"]:
            gateway = self.gateways.get(reception["gateway_id"])
            if gateway is None:
                gateway = self.gateways[reception["gateway_id"]] = GatewayStatus(reception["gateway_id"])
            gateway.uplinks += 1
            gateway.rssi, gateway.snr = reception["rssi"], reception["snr"]
        if document["fport"] == ALARM_FPORT:
            asset.alarms += 1
            asset.last_alarm = {"time": document["received_at"], "fcnt": document["fcnt"], "readings": readings}
            self.recent_alarms.insert(0, {"asset_id": asset.asset_id, **asset.last_alarm})
            del self.recent_alarms[RECENT_ALARMS:]
        else:
            asset.readings = readings

    def asset_event(self, document: dict[str, Any]) -> None:
        """An asset event (`dos_agent.events.asset_event`): joins and downlink steps are kept."""
        if document["type"] == "join":
            asset = self._asset(document["asset_id"])
            asset.joined_at = document["time"]
            asset.dev_eui = document["dev_eui"]
        elif document["type"] == "downlink":
            self._asset(document["asset_id"]).downlink = {
                key: document.get(key) for key in ("id", "status", "reason", "fport", "time")
            }

    def snapshot(self, agent: Agent) -> dict[str, Any]:
        """Everything the page and /metrics show: this model plus the agent's counters, gateways, sink and devices."""
        now = self.clock()
        devices = [{column: getattr(device, column, None) for column in DEVICE_COLUMNS}
                   for device in agent.registry.devices()]
        gateways = []
        for eui in sorted(set(agent.server.gateways) | set(self.gateways)):
            state = agent.server.gateways.get(eui)
            heard = self.gateways.get(eui, GatewayStatus(eui))
            gateways.append({
                "gateway_id": eui, "last_seen": iso_utc(state.last_seen) if state else None,
                "last_seen_ts": state.last_seen if state else None, "uplinks": heard.uplinks,
                "rssi": heard.rssi, "snr": heard.snr,
            })
        registered = {asset.asset_id: asset for asset in agent.registry.assets()}
        serving = {d["asset_id"]: d["dev_eui"] for d in devices if d["state"] == "active"}
        assets = []
        for asset_id in sorted(self.assets.keys() | registered.keys()):
            asset = self.assets.get(asset_id) or AssetStatus(asset_id, serving.get(asset_id), registered[asset_id].kind)
            view = {name: getattr(asset, name) for name in AssetStatus.__dataclass_fields__}
            view["state"] = registered[asset_id].state if asset_id in registered else None
            view["last_seen_ts"] = asset.last_seen
            view["last_seen"] = iso_utc(asset.last_seen) if asset.last_seen is not None else None
            assets.append(view)
        return {
            "generated_at": iso_utc(now),
            "agent": {
                "started_at": iso_utc(self.started_at), "started_at_ts": self.started_at,
                "uptime_s": round(now - self.started_at, 1),
                "mqtt_connected": agent.sink.connected, "queue_depth": agent.sink.pending,
                "prefix": agent.config.prefix,
            },
            "gateways": gateways,
            "assets": assets,
            "alarms": list(self.recent_alarms),
            "devices": sorted(devices, key=lambda d: (d["asset_id"], d["dev_eui"])),
            "counters": agent.counters.snapshot(),
            "chirpstack_input": None if agent.chirpstack_input is None else {
                "accepted": agent.chirpstack_input.accepted, "rejected": dict(agent.chirpstack_input.rejected)},
        }
