"""A new device's identity and paperwork: its DevEUI (from the board's unique id, or generated), its keys (from the
`secrets` CSPRNG), the config.json written to the board (keys, kind, the asset's calibration and settings), and the
provisioning record (`dos-edge devices import FILE`) for a gateway the flashing host cannot write to.

Files holding keys are created 0600 and never printed; the record travels by hand (USB stick, scp), never over MQTT.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dos_agent.registry import Asset

#: JoinEUI written to OTAA devices unless given (all zeros: the network's own join server, as LoRaWAN 1.0.4 allows).
DEFAULT_JOIN_EUI = "0000000000000000"
#: Reporting interval when the asset's settings name none.
DEFAULT_INTERVAL_S = 600
#: The ABP DevAddr block of NetID 000000 (NwkID 0: the top 7 bits are zero).
_ABP_BLOCK = 1 << 25


@dataclass(frozen=True)
class DeviceIdentity:
    """A device's DevEUI and keys (hex, lowercase). OTAA: `join_eui`, `app_key`; ABP: `dev_addr` and session keys."""

    dev_eui: str
    activation: str
    join_eui: str | None = None
    app_key: str | None = field(default=None, repr=False)
    dev_addr: str | None = None
    nwk_s_key: str | None = field(default=None, repr=False)
    app_s_key: str | None = field(default=None, repr=False)

    def keys(self) -> dict[str, str]:
        """The activation fields (with keys) shared by the board's config and the registry entry."""
        names = ("join_eui", "app_key") if self.activation == "otaa" else ("dev_addr", "nwk_s_key", "app_s_key")
        return {name: getattr(self, name) for name in names}


def dev_eui_from_unique_id(unique_id: bytes) -> str:
    """The DevEUI of a board from its unique id: an 8-byte id as is, a 6-byte MAC (ESP32) as its EUI-64 (FFFE in the
    middle). Anything else (or an all-zero id) raises ValueError: generate one instead."""
    if not any(unique_id):
        raise ValueError("an all-zero unique id gives no DevEUI")
    if len(unique_id) == 6:
        unique_id = unique_id[:3] + b"\xff\xfe" + unique_id[3:]
    if len(unique_id) != 8:
        raise ValueError(f"a unique id of {len(unique_id)} bytes gives no DevEUI")
    return unique_id.hex()


def generated_dev_eui() -> str:
    """A random DevEUI, unicast and locally administered (so it can never clash with a vendor's EUI-64)."""
    eui = bytearray(secrets.token_bytes(8))
    eui[0] = (eui[0] | 0x02) & 0xFE
    return eui.hex()


def new_identity(dev_eui: str, abp: bool = False, app_key: str | None = None, join_eui: str = DEFAULT_JOIN_EUI,
                 dev_addrs_in_use: set[int] = frozenset()) -> DeviceIdentity:
    """Fresh keys for a device: OTAA (AppKey given or generated) or ABP (a free DevAddr of NetID 0's block and
    session keys)."""
    if not abp:
        return DeviceIdentity(dev_eui, "otaa", join_eui=join_eui.lower(),
                              app_key=(app_key or secrets.token_hex(16)).lower())
    while True:
        dev_addr = secrets.randbelow(_ABP_BLOCK)
        if dev_addr not in dev_addrs_in_use:
            break
    return DeviceIdentity(dev_eui, "abp", dev_addr=f"{dev_addr:08x}", nwk_s_key=secrets.token_hex(16),
                          app_s_key=secrets.token_hex(16))


def device_config(board: str, asset: Asset, identity: DeviceIdentity) -> dict[str, Any]:
    """The board's config.json (docs/architecture.md): the asset's `interval_s`, `data_rate` and `adr` settings are
    top-level keys there, its other settings go under `settings`, its calibration under `calibration`."""
    settings = dict(asset.settings)
    config: dict[str, Any] = {
        "board": board, "kind": asset.kind, "asset_id": asset.asset_id, "dev_eui": identity.dev_eui,
        "activation": identity.activation, "interval_s": settings.pop("interval_s", DEFAULT_INTERVAL_S),
    }
    for name in ("data_rate", "adr"):
        if name in settings:
            config[name] = settings.pop(name)
    config.update(identity.keys(), settings=settings, calibration=dict(asset.calibration))
    return config


def registry_entry(asset: Asset, identity: DeviceIdentity, replace: bool = False) -> dict[str, Any]:
    """The device as `dos-edge devices import` reads it (`replace = true`: swap it in for the asset's device)."""
    entry = {"dev_eui": identity.dev_eui, "asset_id": asset.asset_id, "kind": asset.kind,
             "activation": identity.activation, **identity.keys()}
    if replace:
        entry["replace"] = True
    return entry


def write_private(path: Path, text: str) -> None:
    """Write a file that holds keys: created (or truncated) with mode 0600 before any byte is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_record(path: Path, entries: list[dict[str, Any]]) -> None:
    """A provisioning record (JSON `{"device": [...]}`, 0600) for `dos-edge devices import FILE` on the gateway."""
    write_private(path, json.dumps({"device": entries}, indent=1) + "\n")
