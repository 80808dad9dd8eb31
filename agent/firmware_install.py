"""Install the firmware on a board over its serial port with mpremote, exactly as a technician does.

Which files a board gets is written in `firmware/manifest.toml`: the core, the board's files, the node kind's files. The device
config (`config.json`, which holds the keys) is staged in a private 0600 file and copied with the rest; then the board is reset
and boots `main.py`. Works the same against a real board (/dev/ttyUSB0) and an emulated one (the rig's link).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Callable

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"


class InstallError(RuntimeError):
    """The board could not be installed; the message says what to do."""


def firmware_files(board: str, kind: str, firmware_dir: Path = FIRMWARE_DIR) -> list[str]:
    """Paths (relative to firmware/) that a `board` running the `kind` app needs, from firmware/manifest.toml."""
    manifest = tomllib.loads((firmware_dir / "manifest.toml").read_text())
    if board not in manifest.get("board", {}):
        raise InstallError(f"unknown board {board!r}; known: {', '.join(sorted(manifest['board']))}")
    if kind not in manifest.get("kind", {}):
        raise InstallError(f"unknown node kind {kind!r}; known: {', '.join(sorted(manifest['kind']))}")
    patterns = manifest["core"]["files"] + manifest["board"][board]["files"] + manifest["kind"][kind]["files"]
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, root_dir=firmware_dir))
        if not matches:
            raise InstallError(f"firmware/manifest.toml names {pattern!r}, which matches no file in {firmware_dir}")
        files += [m for m in matches if m not in files]
    return files


def mpremote_command() -> list[str]:
    """The mpremote next to this interpreter (the project's virtualenv), else the one on PATH."""
    beside = Path(sys.executable).with_name("mpremote")
    found = str(beside) if beside.exists() else shutil.which("mpremote")
    if not found:
        raise InstallError("mpremote is not installed: run ./dev.sh once (it installs the project's tools)")
    return [found]


def install_firmware(port: str, board: str, kind: str, config: dict, *, reset: bool = True,
                     log: Callable[[str], None] = print, timeout_s: float = 60.0) -> list[str]:
    """Copy the firmware and `config` (as config.json) to the board at `port`, then reset it. Returns the files copied."""
    files = firmware_files(board, kind)
    with tempfile.TemporaryDirectory(prefix="dos-install-") as stage_dir:
        stage = Path(stage_dir)
        for rel in files:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(FIRMWARE_DIR / rel, stage / rel)
        config_path = stage / "config.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, separators=(",", ":"))
        tops = sorted({rel.split("/", 1)[0] for rel in files} | {"config.json"})
        log(f"installing {len(files)} firmware files + config.json on {port}")
        _mpremote(["connect", port, "resume", "fs", "cp", "-r", *tops, ":."], cwd=stage, timeout_s=timeout_s)
    if reset:
        log(f"resetting the board on {port}")
        _mpremote(["connect", port, "resume", "reset"], cwd=None, timeout_s=timeout_s)
    return files


def _mpremote(args: list[str], cwd: Path | None, timeout_s: float) -> None:
    try:
        done = subprocess.run(mpremote_command() + args, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise InstallError(f"mpremote {' '.join(args[3:5])} timed out after {timeout_s:.0f} s: is the board answering?") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise InstallError(f"mpremote {' '.join(args[3:5])} failed on {args[1]}: {last}")
