"""`flash.sh` / `dos-edge flash`: a working, registered node in one command, or one line saying what is wrong and what
to do (and a non-zero exit code naming the failure, FAILURES).

    ./flash.sh --port PORT --kind KIND --asset ASSET --registry REG [--board NAME] [--micropython FW.bin] [--abp]
               [--replace] [--record FILE] [--out DIR]

Before anything is written: the port exists and nobody else holds it, the registry opens for writing, the asset is
known (its kind, calibration and settings come from the registry: on a bench without the gateway's registry, use a
copy and `--record`). Then, with progress per step:
1. with `--micropython`: detect the chip with esptool, erase the flash, write MicroPython at the chip's offset;
2. check MicroPython answers (and is the board named), install the firmware with mpremote (dos_agent.firmware_install);
3. DevEUI from the board's machine.unique_id() (or generated), AppKey from `secrets` unless given, config.json with
   the keys and the asset's calibration and settings written to the board (staged 0600 on the host);
4. the on-device self-test (firmware/selftest.py): the radio answers, and each I2C sensor of the kind answers;
5. registration: into the registry (`--replace`: swapping out the asset's device), or, with `--record FILE`, into a
   0600 provisioning record for `dos-edge devices import FILE` on the gateway;
6. the label: asset, kind, DevEUI, TR005 QR code on the terminal and as PNG in `--out`.
The board is reset at the end and boots the app.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dos_agent import firmware_install
from dos_agent.label import DEFAULT_PROFILE_ID, render_label, tr005_payload
from dos_agent.provisioning import (
    DEFAULT_JOIN_EUI,
    DeviceIdentity,
    dev_eui_from_unique_id,
    device_config,
    generated_dev_eui,
    new_identity,
    registry_entry,
    write_record,
)
from dos_agent.registry import ProvisioningError, Registry, RegistryError

#: Exit code per failure (0 is success, 1 any other failure, 2 a usage error).
FAILURES = {
    "no_such_port": 3,
    "port_busy": 4,
    "no_micropython": 5,
    "wrong_board": 6,
    "radio_missing": 7,
    "sensor_missing": 8,
    "unknown_asset": 9,
    "dev_eui_bound": 10,
    "registry_not_writable": 11,
    "no_bootloader": 12,
    "install_failed": 13,
}
#: `sys.platform` of the MicroPython each board file is for.
BOARD_PLATFORMS = {"emu": "linux", "emu_rak3172": "linux", "heltec_v2": "esp32", "ttgo_lora32": "esp32",
                   "rak3172_uart": "esp32", "pico_rfm95": "rp2"}
#: The board assumed without --board, for platforms where one is the usual (several ESP32 boards: --board needed).
DEFAULT_BOARDS = {"linux": "emu", "rp2": "pico_rfm95"}
#: The I2C sensors each node kind needs (address: part), as its drivers expect them.
KIND_I2C_SENSORS = {
    "streetlight": {0x23: "BH1750", 0x40: "INA219"},
    "waste": {0x70: "MB7040", 0x48: "TMP102", 0x53: "ADXL345"},
    "bridge": {0x48: "TMP102", 0x53: "ADXL345"},
    "environment": {0x62: "SCD41"},
}
#: Where MicroPython's image starts in flash, by chip family (esptool's chip names).
FLASH_OFFSETS = {"ESP32": 0x1000, "ESP32-S2": 0x1000, "ESP32-S3": 0x0, "ESP32-C3": 0x0, "ESP32-C6": 0x0}
STEPS = 6
PROBE_TIMEOUT_S = 20.0
SELFTEST_TIMEOUT_S = 30.0
ESPTOOL_TIMEOUT_S = 300.0
_PROBE = "import sys, machine; print('probe', sys.platform, machine.unique_id().hex())"
_CHIP = re.compile(r"Detecting chip type\.\.\.\s*(ESP32(?:-[A-Z0-9]+)?)\s")


class FlashFailure(Exception):
    """A failure with its name (a FAILURES key) and one line saying what is wrong and what to do."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name

    @property
    def exit_code(self) -> int:
        return FAILURES.get(self.name, 1)


@dataclass
class Flasher:
    """One flashing run. `say` prints progress."""

    args: argparse.Namespace
    say: Callable[[str], None] = print

    def step(self, number: int, text: str) -> None:
        self.say(f"[{number}/{STEPS}] {text}")

    def run(self) -> None:
        args = self.args
        port = str(args.port)
        if not os.path.exists(port):
            raise FlashFailure("no_such_port", f"no such port {port}: plug the board in and check the name "
                                               "(ls /dev/ttyUSB* /dev/ttyACM*)")
        with _open_registry(args.registry, writing=args.record is None) as registry:
            asset = registry.asset(args.asset)
            if asset is None:
                raise FlashFailure("unknown_asset", f"unknown asset {args.asset}: add it on the gateway with "
                                                    f"`dos-edge assets add {args.asset} --kind {args.kind}`")
            if asset.state != "active":
                raise FlashFailure("unknown_asset", f"asset {args.asset} is retired: flash for an active asset")
            if asset.kind != args.kind:
                raise FlashFailure("unknown_asset", f"asset {args.asset} is a {asset.kind}, not a {args.kind}: "
                                                    f"check --kind and --asset")
            _check_port_free(port)
            if args.micropython:
                self.step(1, f"MicroPython: {self.write_micropython(port, args.micropython)}")
            else:
                self.step(1, "MicroPython: already on the board (no --micropython)")
            platform, unique_id = _probe(port)
            fitting = ", ".join(b for b, p in BOARD_PLATFORMS.items() if p == platform) or "none known"
            board = args.board or DEFAULT_BOARDS.get(platform)
            if board is None:
                raise FlashFailure("wrong_board", f"the board on {port} runs MicroPython for {platform}: say which "
                                                  f"board it is with --board ({fitting})")
            if BOARD_PLATFORMS.get(board) != platform:
                raise FlashFailure("wrong_board", f"wrong board: the board on {port} runs MicroPython for {platform}, "
                                                  f"not for board {board}; pick --board from {fitting}")
            uid_eui = _uid_eui(unique_id) if unique_id else None
            identity = self.identity(registry, uid_eui)
            config = device_config(board, asset, identity)
            try:
                files = firmware_install.install_firmware(port, board, args.kind, config, reset=False,
                                                          log=lambda _line: None)
            except firmware_install.InstallError as exc:
                raise FlashFailure("install_failed", f"installing the firmware failed: {exc}") from None
            self.step(2, f"firmware: {len(files)} files for board {board}, kind {args.kind} installed with mpremote")
            origin = "from the board's unique id" if uid_eui else "generated"
            self.step(3, f"config: DevEUI {identity.dev_eui.upper()} ({origin}), {identity.activation.upper()} keys "
                         f"generated, calibration {len(asset.calibration)} and settings {len(asset.settings)} value(s) "
                         f"of asset {asset.asset_id} written to config.json")
            self.step(4, f"self-test: {_selftest(port, args.kind)}")
            entry = registry_entry(asset, identity, replace=args.replace)
            if args.record:
                write_record(args.record, [entry])
                self.step(5, f"registration: provisioning record {args.record} (0600): on the gateway run "
                             f"`dos-edge devices import {args.record} --registry REG`")
            else:
                try:
                    registry.import_devices([entry], source="flash")
                except ProvisioningError as exc:
                    raise FlashFailure("dev_eui_bound", "; ".join(exc.problems)) from None
                except (RegistryError, OSError) as exc:
                    raise FlashFailure("registry_not_writable", f"registry not writable: {exc}") from None
                what = "swapped in for the asset's device" if args.replace else "bound to the asset"
                self.step(5, f"registration: {identity.dev_eui} {what} in {args.registry}")
        _reset(port)
        join_eui = identity.join_eui or DEFAULT_JOIN_EUI
        payload = tr005_payload(join_eui, identity.dev_eui, args.profile_id)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        png = out / f"{asset.asset_id}-{identity.dev_eui.upper()}.png"
        label = render_label(asset.asset_id, asset.kind, identity.dev_eui, payload, png)
        self.step(6, f"label: {png}\n{label}")
        self.say(f"done: {asset.asset_id} ({asset.kind}) has device {identity.dev_eui.upper()}; the board is booting")

    def identity(self, registry: Registry, uid_eui: str | None) -> DeviceIdentity:
        """The board's DevEUI (else a generated one) and fresh keys; refused when that DevEUI serves another asset,
        or when the asset has another device and this is not a --replace."""
        args = self.args
        dev_eui = uid_eui or generated_dev_eui()
        known = registry.get(dev_eui)
        if known is not None and known.state == "active" and known.asset_id != args.asset:
            raise FlashFailure("dev_eui_bound", f"DevEUI {dev_eui.upper()} already bound to asset {known.asset_id}: "
                                                f"retire it there first (`dos-edge devices retire {dev_eui}`) or "
                                                f"flash another board")
        if known is not None and known.state == "retired":
            raise FlashFailure("dev_eui_bound", f"DevEUI {dev_eui.upper()} is retired (last on asset "
                                                f"{known.asset_id}): flash another board")
        current = registry.device_for_asset(args.asset)
        if current is not None and current.dev_eui != dev_eui and not args.replace:
            raise FlashFailure("dev_eui_bound", f"asset {args.asset} already has device {current.dev_eui.upper()}: "
                                                "pass --replace to swap it for this board")
        return new_identity(dev_eui, abp=args.abp, app_key=args.app_key, join_eui=args.join_eui,
                            dev_addrs_in_use=registry.dev_addrs_in_use())

    def write_micropython(self, port: str, firmware: Path) -> str:
        if not firmware.is_file():
            raise FlashFailure("no_bootloader", f"no such MicroPython image {firmware}: download the .bin for "
                                                "your board from micropython.org")
        detected = detected_chip(_esptool(port, ["chip-id"]))
        if detected is None:
            raise FlashFailure("no_bootloader", f"esptool found no chip it knows on {port}; flash it by hand")
        chip, offset = detected
        _esptool(port, ["--chip", chip.lower().replace("-", ""), "erase-flash"])
        _esptool(port, ["--chip", chip.lower().replace("-", ""), "write-flash", f"0x{offset:x}", str(firmware)])
        time.sleep(2.0)  # the chip boots MicroPython after esptool's hard reset
        return f"{chip} detected, flash erased, {firmware.name} written at 0x{offset:x}"


def detected_chip(esptool_output: str) -> tuple[str, int] | None:
    """The chip esptool detected and where MicroPython goes in its flash; None for none, or one we do not know."""
    match = _CHIP.search(esptool_output)
    if match is None or match.group(1) not in FLASH_OFFSETS:
        return None
    return match.group(1), FLASH_OFFSETS[match.group(1)]


def _uid_eui(unique_id: bytes) -> str | None:
    try:
        return dev_eui_from_unique_id(unique_id)
    except ValueError:
        return None


def _open_registry(path: Path, writing: bool) -> Registry:
    """The registry, checked writable (when `writing`) before anything is flashed."""
    try:
        registry = Registry(path)
        if writing:
            registry.check_writable()
    except (RegistryError, OSError, sqlite3.Error) as exc:
        raise FlashFailure("registry_not_writable", f"registry not writable: {exc}: give a --registry this user "
                                                    "can write (the agent's), or --record FILE.json") from None
    return registry


def _check_port_free(port: str) -> None:
    """Refuse a port another program holds (mpremote, a serial console): they take an exclusive lock, as we do."""
    import serial

    try:
        serial.Serial(port, exclusive=True).close()
    except serial.SerialException as exc:
        if "lock" in str(exc).lower():
            raise FlashFailure("port_busy", f"port {port} is busy: close the program using it (serial console, "
                                            "mpremote, another flash.sh) and run again") from None
        raise FlashFailure("no_such_port", f"cannot open port {port}: {exc}") from None


def _mpremote(port: str, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str] | None:
    """Run mpremote on the port (resume: no soft reset); None when it did not finish in time."""
    try:
        return subprocess.run(firmware_install.mpremote_command() + ["connect", port, "resume", *args],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    except firmware_install.InstallError as exc:
        raise FlashFailure("install_failed", str(exc)) from None


def _probe(port: str) -> tuple[str, bytes | None]:
    """(sys.platform, machine.unique_id()) of the MicroPython on the port."""
    done = _mpremote(port, "exec", _PROBE, timeout_s=PROBE_TIMEOUT_S)
    line = next((ln for ln in (done.stdout if done else "").splitlines() if ln.startswith("probe ")), None)
    if done is None or done.returncode != 0 or line is None:
        raise FlashFailure("no_micropython", f"no MicroPython answering on {port}: flash it with --micropython FW.bin, "
                                             "or check the cable and that no program runs on the port")
    fields = line.split()
    try:
        unique_id = bytes.fromhex(fields[2]) if len(fields) > 2 else None
    except ValueError:
        unique_id = None
    return fields[1], unique_id


def _selftest(port: str, kind: str) -> str:
    """Run firmware/selftest.py on the board; its report, or FlashFailure for a missing radio or sensor."""
    done = _mpremote(port, "exec", "import selftest", timeout_s=SELFTEST_TIMEOUT_S)
    output = "" if done is None else done.stdout + done.stderr
    report = next((ln.strip() for ln in output.splitlines() if ln.startswith("selftest ")), None)
    if report is None:
        raise FlashFailure("no_micropython", f"the self-test did not answer on {port}: reset the board and run again")
    if not report.startswith("selftest ok"):
        raise FlashFailure("radio_missing", f"radio missing or not answering ({report.split(':', 1)[-1].strip()}): "
                                            "check the LoRa module is fitted and --board matches the board")
    found = {int(word, 16) for word in re.findall(r"0x[0-9a-fA-F]{2}", report)}
    missing = [f"{part} (0x{address:02x})" for address, part in sorted(KIND_I2C_SENSORS.get(kind, {}).items())
               if address not in found]
    if missing:
        raise FlashFailure("sensor_missing", f"sensor missing: {', '.join(missing)} did not answer on I2C: check the "
                                             f"{kind} sensor kit's wiring and connectors")
    return report


def _reset(port: str) -> None:
    done = _mpremote(port, "reset", timeout_s=PROBE_TIMEOUT_S)
    if done is None or done.returncode != 0:
        raise FlashFailure("install_failed", f"the board on {port} did not reset: press its RESET button")


def _esptool(port: str, command: list[str]) -> str:
    """Run esptool (the one beside this interpreter) and return its output; FlashFailure when no bootloader answers."""
    beside = Path(sys.executable).with_name("esptool")
    tool = [str(beside)] if beside.exists() else [sys.executable, "-m", "esptool"]
    try:
        done = subprocess.run(tool + ["--port", port, "--connect-attempts", "2", *command], capture_output=True,
                              text=True, timeout=ESPTOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        done = None
    if done is None or done.returncode != 0:
        raise FlashFailure("no_bootloader", f"no ESP bootloader answered on {port}: hold BOOT, tap RESET, release "
                                            "BOOT and run again (leave out --micropython if MicroPython is on it)")
    return done.stdout + done.stderr


def _hex(digits: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) != digits or not re.fullmatch(r"[0-9a-fA-F]+", text):
            raise argparse.ArgumentTypeError(f"expected {digits} hex digits")
        return text.lower()

    return parse


def build_parser() -> argparse.ArgumentParser:
    codes = ", ".join(f"{code} {name.replace('_', ' ')}" for name, code in FAILURES.items())
    parser = argparse.ArgumentParser(prog="flash.sh", description="flash, configure, test, register and label a node",
                                     epilog=f"exit codes: 0 done, {codes}, 2 usage, 1 other. Guide: docs/field.md")
    parser.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    parser.add_argument("--kind", required=True, choices=_manifest_kinds(), help="node kind")
    parser.add_argument("--asset", required=True, help="the asset the node is for (in the registry)")
    parser.add_argument("--registry", required=True, type=Path,
                        help="the gateway's registry (or a copy, with --record)")
    parser.add_argument("--board", choices=sorted(BOARD_PLATFORMS), help="board file (default: from the MicroPython)")
    parser.add_argument("--micropython", type=Path, metavar="FW.bin", help="write this MicroPython image first")
    parser.add_argument("--abp", action="store_true", help="ABP instead of OTAA")
    parser.add_argument("--app-key", type=_hex(32), help="OTAA AppKey (default: generated)")
    parser.add_argument("--join-eui", type=_hex(16), default=DEFAULT_JOIN_EUI, help="OTAA JoinEUI")
    parser.add_argument("--profile-id", type=_hex(8), default=DEFAULT_PROFILE_ID,
                        help="TR005 ProfileID on the label (VendorID + VendorProfileID)")
    parser.add_argument("--replace", action="store_true", help="this board replaces the asset's device (swap)")
    parser.add_argument("--record", type=Path, metavar="FILE.json",
                        help="write a provisioning record instead of registering into --registry")
    parser.add_argument("--out", type=Path, default=Path("."), help="where the label PNG goes (default: here)")
    return parser


def _manifest_kinds() -> list[str]:
    import tomllib

    manifest = tomllib.loads((firmware_install.FIRMWARE_DIR / "manifest.toml").read_text())
    return list(manifest.get("kind", {}))


def main(argv: list[str] | None = None) -> int:
    """Run flash.sh; returns the exit code (0 ok, FAILURES, 1 other, 2 usage)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.record is not None and args.record.suffix != ".json":
        print("flash.sh: --record: the file name ends in .json (dos-edge devices import reads it by that)",
              file=sys.stderr)
        return 2
    try:
        Flasher(args, say=lambda text: print(text, flush=True)).run()
    except FlashFailure as exc:
        print(f"flash.sh: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
