"""Every board file in firmware/manifest.toml imports in the real micropython, exposes the board interface (NAME,
BATTERY_DIVIDER, i2c(), lamp(), battery_volts(), radio() or lorawan_modem(); the kits' strain_adcs() and
crack_gauge_volts() where present) and wires only pins its MCU allows: a `machine` put first on the path checks each
Pin/SPI/I2C/ADC/PWM/UART against the ESP32's or the RP2040's datasheet rules (flash and input-only pins, ADC-capable
pins, the RP2040's fixed SPI/I2C/UART pin functions and bus ids). The manifest and the boards/ folder agree."""
from __future__ import annotations

import json
import tempfile
import tomllib
from pathlib import Path

import pytest

from firmware_support import FIRMWARE_DIR, run_micropython

# board file -> its MCU; a board added to the manifest must be added here
BOARD_MCUS = {"emu": "esp32", "heltec_v2": "esp32", "ttgo_lora32": "esp32", "rak3172_uart": "esp32",
              "emu_rak3172": "esp32", "pico_rfm95": "rp2"}

CHECKING_MACHINE = '''"""machine for the board test: records what a board file builds, refuses pins its MCU does not allow."""
MCU = "<MCU>"
BUILT = []

ESP32_GPIOS = set(range(0, 40)) - {20, 24, 28, 29, 30, 31} - set(range(6, 12))  # 6-11: the SPI flash
ESP32_INPUT_ONLY = set(range(34, 40))
ESP32_ADC1 = set(range(32, 40))  # ADC2 is unusable while WiFi runs
RP2_SPI = {0: ({2, 6, 18, 22}, {3, 7, 19}, {0, 4, 16, 20}), 1: ({10, 14}, {11, 15}, {8, 12, 28})}  # sck, mosi, miso
RP2_I2C = {0: ({1, 5, 9, 13, 17, 21}, {0, 4, 8, 12, 16, 20}), 1: ({3, 7, 11, 15, 19, 27}, {2, 6, 10, 14, 18, 26})}
RP2_UART = {0: ({0, 12, 16, 28}, {1, 13, 17, 29}), 1: ({4, 8}, {5, 9})}  # tx, rx


def _check(ok, what):
    if not ok:
        raise ValueError("%s not allowed on %s" % (what, MCU))


def _id(pin):
    return pin.id if isinstance(pin, Pin) else pin


def _output(pin, what):
    if MCU == "esp32":
        _check(_id(pin) not in ESP32_INPUT_ONLY, "%s on input-only GPIO%d" % (what, _id(pin)))


class Pin:
    IN, OUT, OPEN_DRAIN, PULL_UP, PULL_DOWN, IRQ_FALLING, IRQ_RISING = 0, 1, 2, 1, 2, 1, 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        valid = ESP32_GPIOS if MCU == "esp32" else set(range(30))
        _check(id in valid, "GPIO%s" % id)
        self.id, self.level = id, value or 0
        if mode == Pin.OUT:
            _output(self, "output")
        BUILT.append(("Pin", id, mode))

    def value(self, x=None):
        if x is None:
            return self.level
        self.level = 1 if x else 0

    def __call__(self, x=None):
        return self.value(x)


class SPI:
    def __init__(self, id, baudrate=1000000, sck=None, mosi=None, miso=None, **kwargs):
        if MCU == "rp2":
            _check(id in RP2_SPI, "SPI(%s)" % id)
            for pin, allowed, name in zip((sck, mosi, miso), RP2_SPI[id], ("SCK", "MOSI", "MISO")):
                _check(_id(pin) in allowed, "SPI%d %s on GP%d" % (id, name, _id(pin)))
        else:
            _check(id in (1, 2), "SPI(%s)" % id)
            _output(sck, "SCK")
            _output(mosi, "MOSI")
        BUILT.append(("SPI", id, _id(sck), _id(mosi), _id(miso)))

    def write_readinto(self, out, into):
        for i in range(len(into)):
            into[i] = 0  # no chip answers here


class I2C:
    def __init__(self, id, scl=None, sda=None, freq=400000):
        if MCU == "rp2":
            _check(id in RP2_I2C and _id(scl) in RP2_I2C[id][0] and _id(sda) in RP2_I2C[id][1],
                   "I2C%s SCL GP%d SDA GP%d" % (id, _id(scl), _id(sda)))
        _output(scl, "SCL")
        _output(sda, "SDA")
        BUILT.append(("I2C", id, _id(scl), _id(sda)))


class ADC:
    ATTN_0DB, ATTN_11DB = 0, 3

    def __init__(self, pin, atten=None):
        allowed = ESP32_ADC1 if MCU == "esp32" else {26, 27, 28, 29}
        _check(_id(pin) in allowed, "ADC on pin %d" % _id(pin))
        BUILT.append(("ADC", _id(pin)))

    def read_u16(self):
        return 32768

    if MCU == "esp32":  # the rp2 port's ADC has read_u16 only
        def read_uv(self):
            return 1650000


class PWM:
    def __init__(self, dest, freq=None, duty_u16=None):
        _output(dest, "PWM")
        self._duty = duty_u16 or 0
        BUILT.append(("PWM", _id(dest)))

    def duty_u16(self, value=None):
        if value is None:
            return self._duty
        self._duty = value


class UART:
    def __init__(self, id, baudrate=115200, tx=None, rx=None, **kwargs):
        if MCU == "rp2":
            _check(id in RP2_UART and _id(tx) in RP2_UART[id][0] and _id(rx) in RP2_UART[id][1], "UART%s pins" % id)
        else:
            _check(id in (1, 2), "UART(%s) (UART0 is the REPL)" % id)
        _output(tx, "UART TX")
        self.id, self.baudrate, self.tx, self.rx = id, baudrate, _id(tx), _id(rx)
        BUILT.append(("UART", id, _id(tx), _id(rx), baudrate))
'''

PROBE = '''
import json
import sys

import machine

board = __import__("boards." + BOARD, None, None, ("NAME",))
out = {"name": board.NAME, "divider": board.BATTERY_DIVIDER}
out["battery_v"] = board.battery_volts()
out["i2c"] = type(board.i2c()).__name__
out["same_i2c"] = board.i2c() is board.i2c()
lamp = board.lamp()
lamp.set(True, 50)
out["lamp"] = [lamp.on, lamp.level_pct]
if hasattr(board, "strain_adcs"):
    out["strain_adcs"] = len(board.strain_adcs()._data)
    out["crack_v"] = board.crack_gauge_volts()
if hasattr(board, "lorawan_modem"):
    uart = board.lorawan_modem({})
    other = board.lorawan_modem({"baudrate": 9600})
    out["modem"] = [uart.id, uart.tx, uart.rx, uart.baudrate, other.baudrate]
else:
    try:
        board.radio()
        out["radio"] = "answered"
    except OSError as exc:  # RadioError: no SX1276 behind this machine
        out["radio"] = str(exc)
    out["radio_setup_loaded"] = "drivers.sx1276_setup" in sys.modules
out["built"] = machine.BUILT
print(json.dumps(out))
'''


def manifest_boards() -> dict[str, list[str]]:
    manifest = tomllib.loads((FIRMWARE_DIR / "manifest.toml").read_text())
    return {name: entry["files"] for name, entry in manifest["board"].items()}


def test_manifest_and_board_files_agree():
    boards = manifest_boards()
    on_disk = {p.stem for p in (FIRMWARE_DIR / "boards").glob("*.py")}
    assert set(boards) == on_disk, "every board file has a manifest entry and every entry a file"
    for name, files in boards.items():
        assert f"boards/{name}.py" in files
        assert all((FIRMWARE_DIR / f).is_file() for f in files), files
        source = (FIRMWARE_DIR / "boards" / f"{name}.py").read_text()
        if "lorawan_modem" in source:
            assert "drivers/rak3172.py" in files, f"{name} drives a RAK3172 and must ship its driver"
    assert set(BOARD_MCUS) == set(boards), "a new board needs its MCU in BOARD_MCUS"


@pytest.mark.parametrize("board", sorted(BOARD_MCUS))
def test_board_file_imports_and_wires_allowed_pins(board):
    with tempfile.TemporaryDirectory(prefix="board-machine-") as lib:
        (Path(lib) / "machine.py").write_text(CHECKING_MACHINE.replace("<MCU>", BOARD_MCUS[board]))
        out = json.loads(run_micropython(f"BOARD = {board!r}\n" + PROBE, path=[lib, FIRMWARE_DIR]))
    assert out["name"] == board
    assert 1 <= out["divider"] <= 10
    assert 1.0 < out["battery_v"] < 10.0
    assert out["i2c"] == "I2C" and out["same_i2c"]
    assert out["lamp"] == [True, 50]
    built = [tuple(b) for b in out["built"]]
    kinds = {b[0] for b in built}
    assert {"I2C", "PWM", "ADC"} <= kinds
    if "modem" in out:
        uart_id, tx, rx, baudrate, other_baudrate = out["modem"]
        assert baudrate == 115200 and other_baudrate == 9600, "config 'modem' options override the defaults"
        assert tx != rx
    else:
        assert "SX1276 not found" in out["radio"], "radio() builds the SX1276 driver on its SPI"
        assert out["radio_setup_loaded"] is False, "the driver's set-up module is unloaded even when its check fails"
        assert "SPI" in kinds
    if "strain_adcs" in out:
        assert out["strain_adcs"] == 3 and 0 < out["crack_v"] < 3.4
    output_pins = {b[1] for b in built if b[0] == "Pin" and b[2] == 1}
    adc_pins = {b[1] for b in built if b[0] == "ADC"}
    assert not output_pins & adc_pins, "no pin is both an output and an ADC input"
