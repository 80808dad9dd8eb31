"""The agent's local HTTP port (stdlib asyncio, no framework): `/metrics` in the Prometheus text format (0.0.4), `/` a
small status page that reloads itself every few seconds, and `/status.json` the snapshot both are rendered from
(`dos_agent.status`).

Only GET and HEAD; one request per connection (`Connection: close`). A request that is malformed, too large or too slow
gets its 4xx answer (or the connection closed) and is counted by status code in `requests`; nothing a client sends can
stop the server. The page escapes every value it shows. Bind it to loopback (the default): it has no authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dos_agent.http")

DEFAULT_PORT = 9108
#: The status page reloads itself this often.
REFRESH_S = 5
#: A request head larger than this, or slower than the timeout, is refused.
MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 5.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class StatusServer:
    """Serves `snapshot()` (a dict, see `StatusModel.snapshot`) as /status.json, / and /metrics."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, head_timeout_s: float = HEAD_TIMEOUT_S) -> None:
        self.snapshot = snapshot
        self.host = host
        self.port = port
        self.head_timeout_s = head_timeout_s
        self.requests: Counter[int] = Counter()
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port) (port 0 asks for a free one)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD_BYTES)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self.host, self.port

    async def stop(self) -> None:
        """Stop listening (a request being answered finishes on its own, within the head timeout)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body, head_only = await self._answer(reader)
            self.requests[status] += 1
            head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
            writer.write(head.encode("ascii") + (b"" if head_only else body))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.requests[0] += 1  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        """(status, content type, body, HEAD?) for one request."""
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout_s)
        except TimeoutError:
            return _text(408, "request head too slow")
        except asyncio.LimitOverrunError:
            return _text(431, "request head too large")
        except asyncio.IncompleteReadError:
            return _text(400, "incomplete request")
        request_line = raw.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _text(400, "malformed request line")
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _text(405, "only GET and HEAD")
        head_only = method == "HEAD"
        routes = {"/": self._page, "/status.json": self._json, "/metrics": self._metrics}
        route = routes.get(target)
        if route is None:
            return (*_text(404, "not found")[:3], head_only)
        try:
            content_type, body = route()
        except Exception:  # a bug in rendering must not stop the server
            log.exception("http: rendering %s failed", target)
            return (*_text(500, "internal error")[:3], head_only)
        return 200, content_type, body, head_only

    def _json(self) -> tuple[str, bytes]:
        return "application/json", json.dumps(self.snapshot(), ensure_ascii=False).encode("utf-8")

    def _metrics(self) -> tuple[str, bytes]:
        return PROMETHEUS_CONTENT_TYPE, render_metrics(self.snapshot(), self.requests).encode("utf-8")

    def _page(self) -> tuple[str, bytes]:
        return "text/html; charset=utf-8", render_page(self.snapshot()).encode("utf-8")


def _text(status: int, message: str) -> tuple[int, str, bytes, bool]:
    return status, "text/plain; charset=utf-8", f"{message}\n".encode(), False


# --- Prometheus text format -------------------------------------------------------------------------------------------

def _label_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return repr(value) if isinstance(value, float) else str(value)


class _Exposition:
    """Collects metric families and writes them with one HELP and TYPE line each."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, object], float | int | bool | None]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            if value is None:
                continue
            label_text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_metrics(snapshot: dict[str, Any], requests: Counter[int] | None = None) -> str:
    """The snapshot as Prometheus text: counters by result, queue depth, gateways' and devices' last seen, signal,
    battery, sink state."""
    out = _Exposition()
    counters = snapshot["counters"]
    for name, key, label, help_text in [
        ("dos_edge_frames_total", "frames", "result", "Received frames by result: accepted, duplicate or a reason"),
        ("dos_edge_datagrams_total", "datagrams", "kind", "Received GWMP datagrams by kind or rejection reason"),
        ("dos_edge_downlinks_total", "downlinks", "outcome", "Downlink steps and gateway TX_ACK answers"),
        ("dos_edge_sink_total", "sink", "outcome", "Events the MQTT sink could not take"),
    ]:
        out.family(name, "counter", help_text, [({label: k}, v) for k, v in counters[key].items()])
    agent = snapshot["agent"]
    out.family("dos_edge_mqtt_connected", "gauge", "1 while the MQTT session is up", [({}, agent["mqtt_connected"])])
    out.family("dos_edge_queue_depth", "gauge", "Events waiting for the broker's acknowledgement",
               [({}, agent["queue_depth"])])
    out.family("dos_edge_start_time_seconds", "gauge", "When the agent started (Unix time)",
               [({}, agent["started_at_ts"])])
    gateways = snapshot["gateways"]
    out.family("dos_edge_gateway_last_seen_timestamp_seconds", "gauge", "Last datagram from a gateway (Unix time)",
               [({"gateway_id": g["gateway_id"]}, g["last_seen_ts"]) for g in gateways])
    out.family("dos_edge_gateway_uplinks_total", "counter", "Accepted uplinks a gateway heard",
               [({"gateway_id": g["gateway_id"]}, g["uplinks"]) for g in gateways])
    assets = snapshot["assets"]

    def per_asset(value: Callable[[dict[str, Any]], Any]) -> list[tuple[dict[str, object], Any]]:
        return [({"asset_id": a["asset_id"], "dev_eui": a["dev_eui"]}, value(a)) for a in assets]

    out.family("dos_edge_device_last_seen_timestamp_seconds", "gauge", "Last accepted uplink of a device (Unix time)",
               per_asset(lambda a: a["last_seen_ts"]))
    out.family("dos_edge_device_uplinks_total", "counter", "Accepted uplinks of a device since the agent started",
               per_asset(lambda a: a["uplinks"]))
    out.family("dos_edge_device_fcnt_up", "gauge", "Frame counter of a device's last uplink",
               per_asset(lambda a: a["fcnt"]))
    out.family("dos_edge_device_rssi_dbm", "gauge", "RSSI of a device's last uplink at its best gateway",
               per_asset(lambda a: a["rssi"]))
    out.family("dos_edge_device_snr_db", "gauge", "SNR of a device's last uplink at its best gateway",
               per_asset(lambda a: a["snr"]))
    out.family("dos_edge_device_battery_volts", "gauge", "Battery voltage a device last reported",
               per_asset(lambda a: a["battery"]["value"] if a["battery"] and a["battery"]["unit"] == "V" else None))
    out.family("dos_edge_device_alarms_total", "counter", "Alarm uplinks of a device since the agent started",
               per_asset(lambda a: a["alarms"]))
    chirpstack = snapshot["chirpstack_input"]
    if chirpstack is not None:
        out.family("dos_edge_chirpstack_messages_total", "counter", "ChirpStack input messages: accepted or a reason",
                   [({"result": "accepted"}, chirpstack["accepted"])]
                   + [({"result": r}, n) for r, n in sorted(chirpstack["rejected"].items())])
    states = Counter(d["state"] for d in snapshot["devices"])
    out.family("dos_edge_devices", "gauge", "Devices in the registry by state", [({"state": s}, n) for s, n in
                                                                                 sorted(states.items())])
    if requests is not None:
        out.family("dos_edge_http_requests_total", "counter", "Requests to this port by status code (0: client left)",
                   [({"code": code}, n) for code, n in sorted(requests.items())])
    return out.text()


# --- status page ------------------------------------------------------------------------------------------------------

def _cell(value: object) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"<td>{html.escape(str(value))}</td>"


def _table(table_id: str, columns: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td colspan="{len(columns)}">none yet</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _reading(reading: dict[str, Any] | None) -> str | None:
    if not reading:
        return None
    value = reading["value"]
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {reading['unit']}".strip()


def _readings(readings: dict[str, Any]) -> str:
    return ", ".join(f"{name} {_reading(r)}" for name, r in readings.items())


def render_page(snapshot: dict[str, Any]) -> str:
    """The status page (HTML5, no scripts; reloads itself every REFRESH_S seconds)."""
    agent = snapshot["agent"]
    frames = snapshot["counters"]["frames"]
    rejected = sum(n for result, n in frames.items() if result not in ("accepted", "duplicate", "joined",
                                                                          "retransmission"))
    summary = [
        ["started", agent["started_at"]], ["uptime (s)", agent["uptime_s"]],
        ["MQTT", "connected" if agent["mqtt_connected"] else "disconnected"], ["queue depth", agent["queue_depth"]],
        ["frames accepted", frames.get("accepted", 0)], ["frames rejected", rejected],
    ]
    gateways = [[g["gateway_id"], g["last_seen"], g["uplinks"], g["rssi"], g["snr"]] for g in snapshot["gateways"]]
    assets = [
        [a["asset_id"], a["kind"], a["dev_eui"], a["last_seen"], a["fcnt"], a["gateway_id"], a["rssi"], a["snr"],
         _reading(a["battery"]), f"{a['alarms']} (last {a['last_alarm']['time']})" if a["last_alarm"] else None,
         a["downlink"]["status"] if a["downlink"] else None, a["decode_error"] or _readings(a["readings"]), a["state"]]
        for a in snapshot["assets"]
    ]
    alarms = [[a["time"], a["asset_id"], a["fcnt"], _readings(a["readings"])] for a in snapshot["alarms"]]
    devices = [[d["dev_eui"], d["asset_id"], d["kind"], d["activation"], d["state"], d["fcnt_up"]]
               for d in snapshot["devices"]]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_S}">
<title>DOS Edge agent</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #bbb;padding:2px 8px;text-align:left}}th{{background:#eee}}</style></head>
<body><h1>DOS Edge agent</h1><p>as of <span id="generated">{html.escape(snapshot["generated_at"])}</span>,
updates every {REFRESH_S} s; <a href="/metrics">metrics</a>, <a href="/status.json">JSON</a></p>
<h2>Agent</h2>{_table("agent", ["what", "value"], summary)}
<h2>Gateways</h2>{_table("gateways", ["gateway", "last seen", "uplinks", "RSSI (dBm)", "SNR (dB)"], gateways)}
<h2>Assets</h2>{_table("assets", ["asset", "kind", "DevEUI", "last seen", "FCnt", "gateway", "RSSI (dBm)",
                                   "SNR (dB)", "battery", "alarms", "downlink", "readings", "state"], assets)}
<h2>Alarms</h2>{_table("alarms", ["time", "asset", "FCnt", "alarm"], alarms)}
<h2>Devices</h2>{_table("devices", ["DevEUI", "asset", "kind", "activation", "state", "FCnt up"], devices)}
</body></html>
"""
