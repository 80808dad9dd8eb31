"""No key leaks, over a whole HIL session: an OTAA node joins, OTAA and ABP nodes send readings, a downlink goes out;
the agent runs from a config file with debug logging and its HTTP port on. Then no key (AppKey, the ABP node's NwkSKey
and AppSKey, the session keys the join derived; hex in lower and upper case, and base64) appears in the agent's log,
in any MQTT message (subscribed to '#'), on the status page, /status.json or /metrics; and every file of the session
that holds a key, and the registry and outbox files in any case, is 0600 (the emulated boards' flash folders too)."""
from __future__ import annotations

import base64
import os
import stat
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from dos_agent.registry import Registry
from dos_rig.broker import free_port
from dos_rig.fleet import Fleet, make_node

pytestmark = pytest.mark.hil

TIMEOUT_S = 150


class RawTap:
    """Every message on the broker ('#'), kept as raw bytes."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="secrets-tap")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "could not subscribe to #"

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def text(self) -> str:
        with self._lock:
            return "\n".join(f"{topic} {payload.decode('utf-8', 'replace')} {payload.hex()}"
                             for topic, payload in self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def key_forms(keys: dict[str, str]) -> dict[str, str]:
    """Every way a key might be written: hex lower, hex upper, base64 (standard and URL-safe)."""
    forms = {}
    for name, hex_key in keys.items():
        raw = bytes.fromhex(hex_key)
        forms[f"{name} hex"] = raw.hex()
        forms[f"{name} HEX"] = raw.hex().upper()
        forms[f"{name} base64"] = base64.b64encode(raw).decode().rstrip("=")
        forms[f"{name} base64url"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return forms


def leaks(text: str, forms: dict[str, str]) -> list[str]:
    return [name for name, form in forms.items() if form in text]


def wait(fleet: Fleet, condition, what: str) -> None:  # noqa: ANN001
    assert fleet.tap.wait_for(lambda _m: condition(), timeout_s=TIMEOUT_S), (
        f"timed out waiting for {what}; agent log:\n{fleet.agent.log_text()[-3000:]}")


def test_no_key_in_logs_mqtt_or_status_and_key_files_are_private(tmp_path_factory) -> None:
    workdir = tmp_path_factory.mktemp("secrets")
    http_port = free_port()
    config = workdir / "agent.toml"
    config.write_text(f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n[log]\nlevel = "debug"\n')
    otaa = make_node(1, activation="otaa", interval_s=40)
    abp = make_node(2, activation="abp", interval_s=40)
    fleet = Fleet(workdir, [otaa, abp], agent_args=("--config", str(config)))
    raw_tap = None
    try:
        fleet.start()
        raw_tap = RawTap(fleet.broker.port)
        wait(fleet, lambda: fleet.events(otaa.asset_id, "join") and fleet.uplinks(otaa.asset_id)
             and fleet.uplinks(abp.asset_id), "a join and uplinks from both nodes")
        fleet.downlink(otaa.asset_id, {"fport": 3, "object": {"interval_s": 30}, "id": "secrets-1"})
        wait(fleet, lambda: any(e["id"] == "secrets-1" and e["status"] == "sent"
                                for e in fleet.events(otaa.asset_id, "downlink")), "the downlink to be sent")
        sent_at = len(fleet.uplinks(otaa.asset_id))
        wait(fleet, lambda: len(fleet.uplinks(otaa.asset_id)) > sent_at, "an uplink after the downlink")

        registry_path = workdir / "registry.sqlite"
        with Registry(registry_path) as registry:
            joined = next(d for d in registry.devices() if d.dev_eui == otaa.dev_eui.lower())
            keys = {"AppKey": otaa.app_key, "NwkSKey": abp.nwk_s_key, "AppSKey": abp.app_s_key,
                    "joined NwkSKey": joined.nwk_s_key, "joined AppSKey": joined.app_s_key}
        assert all(keys.values()), "the OTAA node's session keys are in the registry after its join"
        forms = key_forms(keys)

        pages = {path: urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=10).read().decode()
                 for path in ("/", "/status.json", "/metrics")}
        assert otaa.asset_id in pages["/"] and otaa.asset_id in pages["/metrics"]
        for path, body in pages.items():
            assert leaks(body, forms) == [], f"key in {path}"
        time.sleep(1.5)  # the retained counters and last events reach the tap
        mqtt_text = raw_tap.text()
        assert f"dos/assets/{otaa.asset_id}/event/downlink" in mqtt_text and "secrets-1" in mqtt_text
        assert leaks(mqtt_text, forms) == [], "key on MQTT"
    finally:
        if raw_tap is not None:
            raw_tap.close()
        fleet.stop()

    log = fleet.agent.log_path.read_text(errors="replace")
    assert "DEBUG" in log and "frame=accepted" in log and "joined" in log  # a full, debug-level log was written
    assert leaks(log, forms) == [], "key in the agent's log"

    private = [registry_path, registry_path.with_name("registry.sqlite.outbox")]
    assert all(p.exists() for p in private)
    private += [p for p in workdir.glob("registry.sqlite*-*")]  # SQLite's -wal and -shm files, when left
    holding_keys = []
    # boards/<id>/ is each emulated device's own flash: its config.json holds its keys, so it is private on the host too
    for folder, _dirs, files in os.walk(workdir):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            content = path.read_bytes()
            if any(form.encode() in content for form in forms.values()):
                holding_keys.append(path)
    assert registry_path in holding_keys and workdir / "provisioning.json" in holding_keys
    assert any(path.name == "config.json" for path in holding_keys)  # a board's
    for path in set(holding_keys) | set(private):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} holds keys (or is the registry/outbox) but has mode {mode:o}"
