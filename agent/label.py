"""The device label flash.sh prints: asset, kind, DevEUI and a LoRa Alliance TR005 onboarding QR code
(`LW:D0:<JoinEUI>:<DevEUI>:<ProfileID>`), on the terminal and as a PNG to stick on the housing. No key is on it."""

from __future__ import annotations

import io
import re
from pathlib import Path

_HEX = re.compile(r"[0-9A-F]+")
#: Default TR005 ProfileID: VendorID 0000 and VendorProfileID 0000 (no vendor device profile).
DEFAULT_PROFILE_ID = "00000000"


def tr005_payload(join_eui: str, dev_eui: str, profile_id: str = DEFAULT_PROFILE_ID) -> str:
    """The TR005 QR payload, uppercase hex: `LW:D0:<JoinEUI 16>:<DevEUI 16>:<ProfileID 8>`."""
    parts = [(join_eui.upper(), 16, "JoinEUI"), (dev_eui.upper(), 16, "DevEUI"), (profile_id.upper(), 8, "ProfileID")]
    for value, digits, name in parts:
        if len(value) != digits or not _HEX.fullmatch(value):
            raise ValueError(f"{name} {value!r}: expected {digits} hex digits")
    return "LW:D0:" + ":".join(value for value, _digits, _name in parts)


def label_text(asset_id: str, kind: str, dev_eui: str) -> str:
    """The label's printed lines."""
    return f"asset  {asset_id}\nkind   {kind}\nDevEUI {dev_eui.upper()}"


def render_label(asset_id: str, kind: str, dev_eui: str, payload: str, png_path: Path) -> str:
    """Write the QR code as PNG to `png_path` and return the label for the terminal (text + QR in block characters)."""
    import segno

    qr = segno.make_qr(payload, error="m")
    qr.save(str(png_path), kind="png", scale=8, border=4)
    terminal = io.StringIO()
    qr.terminal(out=terminal, compact=True, border=2)
    return f"{label_text(asset_id, kind, dev_eui)}\n{payload}\n{terminal.getvalue()}"
