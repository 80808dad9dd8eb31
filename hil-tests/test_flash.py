"""flash.sh against emulated boards, exactly as a technician runs it: a fresh flash of each node kind (its sensor kit
on the board), the label and registration (registry or 0600 record), and every listed failure provoked once with its
one-line message and exit code."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import serial

from dos_agent.flash import FAILURES
from dos_agent.registry import Registry
from dos_rig.fleet import dos_edge
from dos_rig.rig import Rig
from dos_rig.sensors import KITS

pytestmark = pytest.mark.hil

REPO = Path(__file__).resolve().parents[1]
FLASH_SH = REPO / "flash.sh"
KINDS = [kind for kind in ("streetlight", "waste", "bridge", "environment") if kind in KITS]
FLASH_TIMEOUT_S = 180


def flash(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLASH_SH), *map(str, args)], capture_output=True, text=True, timeout=FLASH_TIMEOUT_S,
                          cwd=cwd)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(dos_edge(*map(str, args)), capture_output=True, text=True, timeout=60)


def one_line_failure(done: subprocess.CompletedProcess[str], name: str, *fragments: str) -> None:
    """The run failed with `name`'s exit code and exactly one line on stderr holding every fragment."""
    assert done.returncode == FAILURES[name], (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flash.sh: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """Boards with each kind's sensor kit (no gateway: flashing needs none), a spare streetlight board, and one whose
    radio is unplugged."""
    workdir = tmp_path_factory.mktemp("flash")
    with Rig(workdir / "rig") as rig:
        rig.start()
        for kind in KINDS:
            rig.add_board(kind, workdir / "boards" / kind, scenario={"kit": kind})
        rig.add_board("noradio", workdir / "boards" / "noradio")
        rig.add_board("spare", workdir / "boards" / "spare")  # a streetlight kit, never registered
        no_radio = rig.boards["noradio"].hardware
        # the LoRa module is not fitted: nothing answers on its SPI bus (MISO floats high)
        rig.call(setattr, no_radio, "spi_transfer", lambda sck, mosi, miso, data: (b"\xff" * len(data), False))
        rig.workdir_root = workdir
        yield rig


@pytest.fixture(scope="module")
def registry(rig):
    path = rig.workdir_root / "registry.sqlite"
    for kind in KINDS:
        settings = ["--settings", "interval_s=120"] + (["--settings", "dim_level=70"] if kind == "streetlight" else [])
        assert cli("assets", "add", f"{kind}-1", "--kind", kind, "--calibration", "battery_divider=2", *settings,
                   "--registry", path).returncode == 0
        assert cli("assets", "add", f"{kind}-2", "--kind", kind, "--registry", path).returncode == 0
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_a_fresh_flash_gives_a_registered_labelled_node(rig, registry, kind, tmp_path):
    board = rig.boards[kind]
    restarts = board.restarts
    done = flash("--port", board.link, "--kind", kind, "--asset", f"{kind}-1", "--registry", registry,
                 "--out", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert [s[:5] for s in steps] == [f"[{n}/6]" for n in range(1, 7)], done.stdout
    config = json.loads((board.folder / "config.json").read_text())
    with Registry(registry) as reg:
        device = reg.device_for_asset(f"{kind}-1")
        assert device is not None and device.kind == kind and device.activation == "otaa"
        assert device.app_key == config["app_key"] and len(config["app_key"]) == 32
        assert reg.bindings(f"{kind}-1")[-1].to_at is None
    assert config["dev_eui"] == device.dev_eui and config["asset_id"] == f"{kind}-1" and config["kind"] == kind
    assert config["calibration"] == {"battery_divider": 2} and config["interval_s"] == 120
    assert config["settings"] == ({"dim_level": 70} if kind == "streetlight" else {})
    uid = bytes.fromhex(device.dev_eui)
    assert uid[3:5] == b"\xff\xfe", "DevEUI is the EUI-64 of the board's 6-byte unique id"
    assert "[4/6] self-test: selftest ok" in done.stdout
    assert f"LW:D0:0000000000000000:{device.dev_eui.upper()}:00000000" in done.stdout
    png = tmp_path / f"{kind}-1-{device.dev_eui.upper()}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert config["app_key"] not in done.stdout + done.stderr and config["app_key"] not in png.read_bytes().hex()
    deadline = time.monotonic() + 30  # the board was reset and boots the app with its new config
    while time.monotonic() < deadline and board.restarts == restarts:
        time.sleep(0.1)
    time.sleep(2)
    assert board.restarts > restarts and "[boot] main.py raised" not in board.console, board.console[-3000:]


def test_a_record_instead_of_the_registry_is_private_and_imports_on_the_gateway(rig, registry, tmp_path):
    board = rig.boards["spare"]
    record = tmp_path / "node.json"
    copy = tmp_path / "bench-copy.sqlite"
    copy.write_bytes(registry.read_bytes())  # a bench laptop's copy of the registry (asset data)
    done = flash("--port", board.link, "--kind", KINDS[0], "--asset", f"{KINDS[0]}-2", "--registry", copy,
                 "--record", record, "--abp", "--replace", "--out", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    entry = json.loads(record.read_text())["device"][0]
    assert entry["activation"] == "abp" and entry["asset_id"] == f"{KINDS[0]}-2" and entry["replace"] is True
    with Registry(copy) as reg:
        assert reg.device_for_asset(f"{KINDS[0]}-2") is None, "a record run registers nothing itself"
    gateway = tmp_path / "gateway.sqlite"  # the gateway's registry, which the bench never touched
    gateway.write_bytes(registry.read_bytes())
    imported = cli("devices", "import", record, "--registry", gateway)
    assert imported.returncode == 0, imported.stderr
    with Registry(gateway) as reg:
        assert reg.device_for_asset(f"{KINDS[0]}-2").dev_eui == entry["dev_eui"]


def test_no_such_port(registry, tmp_path):
    done = flash("--port", tmp_path / "ttyUSB9", "--kind", "streetlight", "--asset", "streetlight-1",
                 "--registry", registry)
    one_line_failure(done, "no_such_port", f"no such port {tmp_path / 'ttyUSB9'}", "plug the board in")


def test_port_busy(rig, registry):
    board = rig.boards["noradio"]
    holder = serial.Serial(str(board.link), exclusive=True)  # a serial console left open
    try:
        done = flash("--port", board.link, "--kind", "streetlight", "--asset", "streetlight-1", "--registry", registry)
    finally:
        holder.close()
    one_line_failure(done, "port_busy", f"port {board.link} is busy", "close the program using it")


def test_no_micropython_answering(registry, tmp_path):
    master, slave = os.openpty()  # a serial port with nothing behind it that speaks MicroPython
    link = tmp_path / "ttyDEAD"
    link.symlink_to(os.ttyname(slave))
    try:
        done = flash("--port", link, "--kind", "streetlight", "--asset", "streetlight-1", "--registry", registry)
    finally:
        os.close(master)
        os.close(slave)
    one_line_failure(done, "no_micropython", f"no MicroPython answering on {link}", "--micropython FW.bin")


def test_wrong_board(rig, registry):
    board = rig.boards["noradio"]
    done = flash("--port", board.link, "--kind", "streetlight", "--asset", "streetlight-2", "--registry", registry,
                 "--board", "heltec_v2")
    one_line_failure(done, "wrong_board", "runs MicroPython for linux, not for board heltec_v2", "--board from emu")


def test_radio_missing(rig, registry):
    board = rig.boards["noradio"]
    done = flash("--port", board.link, "--kind", "streetlight", "--asset", "streetlight-2", "--registry", registry)
    one_line_failure(done, "radio_missing", "radio missing", "RegVersion", "check the LoRa module is fitted")
    with Registry(registry) as reg:
        assert reg.device_for_asset("streetlight-2") is None, "a node that fails its self-test is not registered"


def test_sensor_missing(rig, registry):
    board = rig.boards["spare"]  # a streetlight kit has no ultrasonic sensor, TMP102 or ADXL345
    done = flash("--port", board.link, "--kind", "waste", "--asset", "waste-2", "--registry", registry)
    one_line_failure(done, "sensor_missing", "sensor missing: TMP102 (0x48), ADXL345 (0x53), MB7040 (0x70)",
                     "check the waste sensor kit")


def test_unknown_asset(rig, registry):
    done = flash("--port", rig.boards["noradio"].link, "--kind", "streetlight", "--asset", "SL-DO-9999",
                 "--registry", registry)
    one_line_failure(done, "unknown_asset", "unknown asset SL-DO-9999",
                     "dos-edge assets add SL-DO-9999 --kind streetlight")


def test_dev_eui_already_bound_to_another_asset(rig, registry, tmp_path):
    kind = KINDS[0]
    board = rig.boards[kind]
    with Registry(registry) as reg:
        first = reg.device_for_asset(f"{kind}-1")
    if first is None:  # this test alone: flash the board for the first asset
        assert flash("--port", board.link, "--kind", kind, "--asset", f"{kind}-1", "--registry", registry,
                     "--out", tmp_path).returncode == 0
    with Registry(registry) as reg:
        dev_eui = reg.device_for_asset(f"{kind}-1").dev_eui
    done = flash("--port", board.link, "--kind", kind, "--asset", f"{kind}-2", "--registry", registry,
                 "--out", tmp_path)
    one_line_failure(done, "dev_eui_bound", f"DevEUI {dev_eui.upper()} already bound to asset {kind}-1",
                     f"dos-edge devices retire {dev_eui}")


def test_registry_not_writable(rig, tmp_path):
    missing = tmp_path / "no-such-dir" / "registry.sqlite"
    done = flash("--port", rig.boards["noradio"].link, "--kind", "streetlight", "--asset", "streetlight-1",
                 "--registry", missing)
    one_line_failure(done, "registry_not_writable", "registry not writable", str(missing))


def test_no_esp_bootloader_answering(rig, registry, tmp_path):
    image = tmp_path / "ESP32_GENERIC-v1.24.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    board = rig.boards["noradio"]
    done = flash("--port", board.link, "--kind", "streetlight", "--asset", "streetlight-2", "--registry", registry,
                 "--micropython", image)
    one_line_failure(done, "no_bootloader", f"no ESP bootloader answered on {board.link}", "hold BOOT")


def test_flash_sh_reaches_a_board_started_with_the_rig_command(registry, tmp_path):
    """The technician's path against `dos-edge rig board` itself (no test harness in between)."""
    link = tmp_path / "ttyEMU0"
    proc = subprocess.Popen(dos_edge("rig", "board", "--dir", str(tmp_path / "board"), "--tty", str(link),
                                     "--agent", "127.0.0.1:9", "--board-id", "cli-board",
                                     "--workdir", str(tmp_path / "work")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not link.is_symlink() and time.monotonic() < deadline:
            time.sleep(0.05)
        done = flash("--port", link, "--kind", "streetlight", "--asset", "streetlight-2", "--registry", registry,
                     "--replace", "--out", tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "[5/6] registration:" in done.stdout and "swapped in" in done.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    with Registry(registry) as reg:
        assert reg.device_for_asset("streetlight-2").dev_eui == json.loads(
            (tmp_path / "board" / "config.json").read_text())["dev_eui"]
    assert not link.exists()
