"""The `dos-edge` command line: usage errors exit 2, device import and listing (never a key), the firmware table check,
pass-through commands when the rig is missing, and `agent run` as a real process stopped by SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dos_agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, build_parser, default_firmware_table_path, main
from dos_codecs.firmware_table import render_firmware_table
from dos_codecs.gwmp import Datagram, GwmpKind, build_datagram, parse_datagram

NWK = "2b7e151628aed2a6abf7158809cf4f3c"
APP = "000102030405060708090a0b0c0d0e0f"
DEVICES_TOML = f"""
[[device]]
dev_eui = "70b3d57ed0000001"
asset_id = "lamp-0001"
kind = "streetlight"
activation = "abp"
dev_addr = "26011f01"
nwk_s_key = "{NWK}"
app_s_key = "{APP}"
"""


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["agent"],
        ["agent", "run"],  # --registry is required
        ["agent", "run", "--registry", "r.sqlite", "--udp", "no-port"],
        ["agent", "run", "--registry", "r.sqlite", "--mqtt-port", "99999"],
        ["agent", "run", "--registry", "r.sqlite", "--log-level", "loud"],
        ["agent", "run", "--registry", "r.sqlite", "--dedup-ms", "-5"],
        ["agent", "run", "--registry", "r.sqlite", "--dedup-ms", "fast"],
        ["agent", "run", "--registry", "r.sqlite", "--net-id", "1234567"],
        ["agent", "run", "--registry", "r.sqlite", "--net-id", "xyz"],
        ["agent", "run", "--registry", "r.sqlite", "--adr-margin-db", "99"],
        ["agent", "run", "--registry", "r.sqlite", "--adr-margin-db", "nan"],
        ["lorawan"],
        ["devices", "import"],
        ["devices", "list"],
        ["schema", "firmware-table", "--bogus"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert "usage: dos-edge" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert all(command in out for command in ("agent", "devices", "schema", "lorawan", "demo", "rig"))


def test_agent_run_options_have_their_defaults_and_parse() -> None:
    parser = build_parser()
    defaults = parser.parse_args(["agent", "run", "--registry", "r.sqlite"])
    assert (defaults.dedup_ms, defaults.net_id, defaults.adr_margin_db) == (200, 0, 10.0)
    given = parser.parse_args(["agent", "run", "--registry", "r.sqlite", "--dedup-ms", "0", "--net-id", "0x00001A",
                               "--adr-margin-db", "6.5"])
    assert (given.dedup_ms, given.net_id, given.adr_margin_db) == (0, 0x1A, 6.5)


def test_devices_import_and_list_without_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "reg.sqlite"
    provisioning = tmp_path / "devices.toml"
    provisioning.write_text(DEVICES_TOML)
    assert main(["devices", "import", str(provisioning), "--registry", str(registry)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "1 added, 0 updated, 0 unchanged"
    assert main(["devices", "list", "--registry", str(registry)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "70b3d57ed0000001" in out and "lamp-0001" in out and "26011f01" in out
    assert NWK not in out and APP not in out


def test_a_bad_provisioning_file_names_device_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    provisioning = tmp_path / "devices.toml"
    provisioning.write_text(DEVICES_TOML.replace('dev_addr = "26011f01"', 'dev_addr = "nope"'))
    registry = tmp_path / "reg.sqlite"
    assert main(["devices", "import", str(provisioning), "--registry", str(registry)]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "nothing imported" in err
    assert "device #1 (dev_eui 70b3d57ed0000001): dev_addr: expected 8 hex digits" in err
    assert NWK not in err
    assert main(["devices", "import", str(tmp_path / "missing.toml"), "--registry", str(registry)]) == EXIT_FAILURE


def test_listing_a_missing_registry_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "list", "--registry", str(tmp_path / "none.sqlite")]) == EXIT_FAILURE
    assert "no such registry" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_assets_devices_and_swap_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = ("--registry", str(tmp_path / "reg.sqlite"))
    code, out, _ = run_cli(capsys, "assets", "add", "lamp-0001", "--kind", "streetlight", "--lat", "51.5136",
                           "--lon", "7.4653", "--address", "Hansaplatz 1", "--calibration", "ina219_shunt_ohm=0.1",
                           "--settings", "dim_level=80", "--settings", "confirmed=false", *reg)
    assert (code, out.strip()) == (EXIT_OK, "asset lamp-0001 (streetlight) added")
    provisioning = tmp_path / "devices.toml"
    provisioning.write_text(DEVICES_TOML)
    assert run_cli(capsys, "devices", "import", str(provisioning), *reg)[0] == EXIT_OK
    provisioning.write_text(DEVICES_TOML.replace("0000001", "0000002").replace("26011f01", "26011f02"))
    assert run_cli(capsys, "devices", "import", str(provisioning), *reg)[0] == EXIT_FAILURE  # the asset is bound
    provisioning.write_text(DEVICES_TOML.replace("0000001", "0000002").replace("26011f01", "26011f02")
                            + "replace = false\n")
    code, _, err = run_cli(capsys, "devices", "import", str(provisioning), *reg)
    assert code == EXIT_FAILURE and "asset lamp-0001 is bound to device 70b3d57ed0000001" in err

    code, out, _ = run_cli(capsys, "assets", "set", "lamp-0001", "--settings", "dim_level=90", "--lat", "51.52", *reg)
    assert code == EXIT_OK and "changed" in out
    assert run_cli(capsys, "assets", "set", "lamp-0001", "--lat", "91", *reg)[0] == EXIT_FAILURE
    code, out, _ = run_cli(capsys, "assets", "show", "lamp-0001", *reg)
    assert code == EXIT_OK and "settings: {\"confirmed\": false, \"dim_level\": 90}" in out
    assert "location: 51.52, 7.4653 Hansaplatz 1" in out
    assert "calibration: {\"ina219_shunt_ohm\": 0.1}" in out and "device: 70b3d57ed0000001" in out
    assert "Hansaplatz 1" in out

    provisioning.write_text(DEVICES_TOML.replace("0000001", "0000002").replace("26011f01", "26011f02")
                            .replace('asset_id = "lamp-0001"', 'asset_id = "spare-1"'))
    assert run_cli(capsys, "devices", "import", str(provisioning), *reg)[0] == EXIT_OK
    code, _, err = run_cli(capsys, "swap", "--asset", "lamp-0001", "--new-device", "70B3D57ED0000002", *reg)
    assert code == EXIT_FAILURE and err.count("\n") == 1 and "pass --move" in err
    code, out, _ = run_cli(capsys, "swap", "--asset", "lamp-0001", "--new-device", "70B3D57ED0000002", "--move", *reg)
    assert (code, out.strip()) == (EXIT_OK, "asset lamp-0001: device 70b3d57ed0000001 -> 70b3d57ed0000002 "
                                            "(70b3d57ed0000001 retired)")
    code, out, _ = run_cli(capsys, "assets", "history", "lamp-0001", *reg)
    lines = out.splitlines()
    assert code == EXIT_OK and lines[0].split() == ["dev_eui", "from", "to"]
    assert lines[1].startswith("70b3d57ed0000001") and lines[2].startswith("70b3d57ed0000002")
    assert lines[2].split()[-1] == "now" and "swap: old 70b3d57ed0000001 new 70b3d57ed0000002" in out

    code, out, _ = run_cli(capsys, "swap", "--asset", "lamp-0001", "--undo", *reg)
    assert code == EXIT_OK and "device 70b3d57ed0000001 is back" in out
    code, out, _ = run_cli(capsys, "devices", "show", "70b3d57ed0000002", *reg)
    assert code == EXIT_OK and "state: provisioned" in out and NWK not in out and "nwk_s_key: True" in out
    code, out, _ = run_cli(capsys, "devices", "retire", "70b3d57ed0000002", *reg)
    assert code == EXIT_OK and "retired" in out
    code, _, err = run_cli(capsys, "devices", "retire", "70b3d57ed0000002", *reg)
    assert code == EXIT_FAILURE and err.strip() == "dos-edge: device 70b3d57ed0000002 is retired already"
    code, out, _ = run_cli(capsys, "assets", "retire", "lamp-0001", *reg)
    assert (code, out.strip()) == (EXIT_OK, "asset lamp-0001 retired with device 70b3d57ed0000001")
    code, out, _ = run_cli(capsys, "assets", "list", *reg)
    assert code == EXIT_OK and out.splitlines()[1].split()[:4] == ["lamp-0001", "streetlight", "retired", "-"]


@pytest.mark.parametrize(("argv", "message"), [
    (["assets", "show", "nope"], "dos-edge: unknown asset nope; see `dos-edge assets list`"),
    (["assets", "history", "nope"], "dos-edge: unknown asset nope; see `dos-edge assets list`"),
    (["devices", "show", "70b3d57ed00000ff"], "dos-edge: unknown device 70b3d57ed00000ff; see `dos-edge devices list`"),
    (["swap", "--asset", "nope", "--new-device", "70b3d57ed0000001"],
     "dos-edge: unknown asset nope; add it with `dos-edge assets add`"),
    (["swap", "--asset", "lamp-0001", "--undo"],
     "dos-edge: the last change of asset lamp-0001 is not a swap (none); nothing to undo"),
    (["assets", "add", "lamp-0001", "--kind", "streetlight"],
     "dos-edge: asset lamp-0001 exists already; see `dos-edge assets show lamp-0001`"),
    (["assets", "add", "x/y", "--kind", "streetlight"], "dos-edge: asset id 'x/y': expected 1-64 characters"),
])
def test_registry_commands_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                             message: str) -> None:
    reg = ("--registry", str(tmp_path / "reg.sqlite"))
    assert main(["assets", "add", "lamp-0001", "--kind", "streetlight", *reg]) == EXIT_OK
    capsys.readouterr()
    code, _, err = run_cli(capsys, *argv, *reg)
    assert code == EXIT_FAILURE and err.startswith(message) and err.count("\n") == 1
    assert main(["assets", "list", "--registry", str(tmp_path / "missing.sqlite")]) == EXIT_FAILURE
    assert main(["swap", "--asset", "a", *reg]) == EXIT_USAGE  # --new-device or --undo


def test_firmware_table_write_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schema_v1.py"
    assert main(["schema", "firmware-table", "--check", "--out", str(out)]) == EXIT_FAILURE
    assert main(["schema", "firmware-table", "--out", str(out)]) == EXIT_OK
    assert out.read_text() == render_firmware_table()
    assert main(["schema", "firmware-table", "--check", "--out", str(out)]) == EXIT_OK
    out.write_text(out.read_text().replace("VERSION = 1", "VERSION = 2"))
    capsys.readouterr()
    assert main(["schema", "firmware-table", "--check", "--out", str(out)]) == EXIT_FAILURE
    assert "differs from the payload schema" in capsys.readouterr().err


def test_the_default_firmware_table_is_the_repos() -> None:
    assert default_firmware_table_path() == Path(__file__).resolve().parent.parent / "firmware" / "schema_v1.py"
    assert main(["schema", "firmware-table", "--check"]) == EXIT_OK


@pytest.mark.parametrize("command", ["demo", "rig"])
def test_pass_through_without_the_rig_says_so_in_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "dos_rig", None)  # as on a gateway installed without the rig extra
    assert main([command, "--anything"]) == EXIT_FAILURE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not installed" in err[0] and f"`{command}`" in err[0]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_agent_run_answers_gateways_and_stops_cleanly_on_sigterm(tmp_path: Path, mosquitto) -> None:
    registry = tmp_path / "reg.sqlite"
    provisioning = tmp_path / "devices.toml"
    provisioning.write_text(DEVICES_TOML)
    assert main(["devices", "import", str(provisioning), "--registry", str(registry)]) == EXIT_OK
    port = _free_udp_port()
    dos_edge = Path(sys.executable).parent / "dos-edge"
    proc = subprocess.Popen(
        [str(dos_edge), "agent", "run", "--registry", str(registry), "--udp", f"127.0.0.1:{port}",
         "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--prefix", "cli-test"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gateway:
            gateway.settimeout(0.2)
            pull = build_datagram(Datagram(2, b"\x51\x52", GwmpKind.PULL_DATA, bytes.fromhex("aa555a0000000101")))
            deadline = time.monotonic() + 10
            ack = None
            while ack is None and time.monotonic() < deadline and proc.poll() is None:
                gateway.sendto(pull, ("127.0.0.1", port))
                try:
                    ack = parse_datagram(gateway.recv(64))
                except TimeoutError:
                    continue
            assert ack is not None and (ack.kind, ack.token) == (GwmpKind.PULL_ACK, b"\x51\x52")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, err
    assert "agent: stopped" in err
    assert NWK not in err and APP not in err


def test_agent_run_fails_cleanly_when_the_udp_port_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        code = main(["agent", "run", "--registry", str(tmp_path / "reg.sqlite"), "--udp", f"127.0.0.1:{port}",
                     "--mqtt-port", str(_free_udp_port()), "--log-level", "error"])
    assert code == EXIT_FAILURE
    assert "agent stopped" in capsys.readouterr().err


def test_flash_identity_config_record_and_label_helpers(tmp_path: Path) -> None:
    """The pure parts of flash.sh: DevEUI from a unique id, generated EUIs, the board config from the asset, the 0600
    record, the TR005 payload, and a board table that covers every board of the firmware manifest."""
    import stat
    import tomllib

    from dos_agent.firmware_install import FIRMWARE_DIR
    from dos_agent.flash import BOARD_PLATFORMS, DEFAULT_BOARDS, detected_chip
    from dos_agent.label import tr005_payload
    from dos_agent.provisioning import (
        dev_eui_from_unique_id,
        device_config,
        generated_dev_eui,
        new_identity,
        registry_entry,
        write_record,
    )
    from dos_agent.registry import Asset, validate_devices

    assert dev_eui_from_unique_id(bytes.fromhex("240ac4123456")) == "240ac4fffe123456"
    assert dev_eui_from_unique_id(bytes.fromhex("0102030405060708")) == "0102030405060708"
    for bad in (b"", bytes(6), b"\x01\x02\x03"):
        with pytest.raises(ValueError):
            dev_eui_from_unique_id(bad)
    euis = {generated_dev_eui() for _ in range(50)}
    assert len(euis) == 50 and all(int(e[:2], 16) & 0x03 == 0x02 for e in euis)  # unicast, locally administered

    asset = Asset("SL-1", "streetlight", calibration={"ina219_shunt_ohm": 0.1},
                  settings={"interval_s": 120, "adr": False, "dim_level": 70})
    otaa = new_identity("240ac4fffe123456")
    config = device_config("emu", asset, otaa)
    assert config == {"board": "emu", "kind": "streetlight", "asset_id": "SL-1", "dev_eui": "240ac4fffe123456",
                      "activation": "otaa", "interval_s": 120, "adr": False, "join_eui": "0000000000000000",
                      "app_key": otaa.app_key, "settings": {"dim_level": 70}, "calibration": {"ina219_shunt_ohm": 0.1}}
    abp = new_identity("240ac4fffe123457", abp=True, dev_addrs_in_use={0})
    entries = [registry_entry(asset, otaa), registry_entry(asset, abp, replace=True)]
    records, problems = validate_devices(entries)
    assert problems == [] and int(records[1].dev_addr, 16) < 1 << 25 and otaa.app_key not in repr(otaa)
    record = tmp_path / "node.json"
    write_record(record, entries)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600 and json.loads(record.read_text())["device"] == entries

    assert tr005_payload("70b3d57ed0000000", "240ac4fffe123456") == "LW:D0:70B3D57ED0000000:240AC4FFFE123456:00000000"
    with pytest.raises(ValueError, match="ProfileID"):
        tr005_payload("70b3d57ed0000000", "240ac4fffe123456", "123")
    manifest = tomllib.loads((FIRMWARE_DIR / "manifest.toml").read_text())
    assert set(BOARD_PLATFORMS) == set(manifest["board"]), "a board of the manifest is unknown to flash.sh"
    assert all(BOARD_PLATFORMS[board] == platform for platform, board in DEFAULT_BOARDS.items())
    esp32 = "Connecting....\nDetecting chip type... ESP32\nChip type:          ESP32-D0WD-V3 (revision v3.1)\n"
    assert detected_chip(esp32) == ("ESP32", 0x1000)
    assert detected_chip("Detecting chip type... ESP32-S3\nChip type:          ESP32-S3 (QFN56)\n") == ("ESP32-S3", 0)
    assert detected_chip("Detecting chip type... ESP32-C3\n") == ("ESP32-C3", 0)
    assert detected_chip("Detecting chip type... ESP8266\n") is None
    assert detected_chip("A fatal error occurred: Failed to connect to Espressif device") is None
