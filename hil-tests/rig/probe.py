"""A minimal MicroPython radio probe for checking the rig alone (no firmware needed): raw SX1276 register access over the
emulated board's SPI, one-line results on the console.

`install_probe(folder, main_code)` writes `radio_probe.py` and a `main.py` running main_code into a board folder; main_code
uses the probe's functions (setup, transmit, receive, read, write) and prints lines the test looks for.
"""
from __future__ import annotations

from pathlib import Path

PROBE_SOURCE = r'''
import machine, time

spi = machine.SPI(1, baudrate=8000000, sck=machine.Pin(5), mosi=machine.Pin(27), miso=machine.Pin(19))
nss = machine.Pin(18, machine.Pin.OUT, value=1)
nreset = machine.Pin(14, machine.Pin.OUT, value=1)
dio0 = machine.Pin(26, machine.Pin.IN)
dio1 = machine.Pin(35, machine.Pin.IN)
_buf = bytearray(2)


def read(address):
    _buf[0], _buf[1] = address & 0x7F, 0
    nss(0)
    spi.write_readinto(_buf, _buf)
    nss(1)
    return _buf[1]


def write(address, value):
    nss(0)
    spi.write(bytes((address | 0x80, value)))
    nss(1)


def setup(freq_hz=868100000, sf=7, bw_code=7, cr=1, sync=0x34, iq_rx=False, iq_tx=False, power=14, ldro=None):
    nreset(0)
    time.sleep_ms(1)
    nreset(1)
    time.sleep_ms(6)
    write(0x01, 0x00)
    write(0x01, 0x80)
    write(0x01, 0x81)
    frf = freq_hz * 524288 // 32000000
    write(0x06, frf >> 16)
    write(0x07, (frf >> 8) & 0xFF)
    write(0x08, frf & 0xFF)
    write(0x09, 0x80 | 0x70 | (power - 2))
    write(0x1D, (bw_code << 4) | (cr << 1))
    write(0x1E, (sf << 4) | 0x04)
    if ldro is None:
        ldro = sf >= 11 and bw_code == 7
    write(0x26, 0x04 | (0x08 if ldro else 0))
    write(0x39, sync)
    write(0x33, 0x26 | (0x40 if iq_rx else 0) | (0 if iq_tx else 1))
    write(0x3B, 0x19 if iq_rx else 0x1D)
    write(0x0E, 0)
    write(0x0F, 0)


def transmit(payload):
    """Send payload; returns the virtual µs from OpMode=TX until DIO0 (TxDone) went high."""
    write(0x01, 0x81)
    write(0x0D, 0)
    nss(0)
    spi.write(bytes((0x80,)) + bytes(payload))
    nss(1)
    write(0x22, len(payload))
    write(0x40, 0x40)
    write(0x12, 0xFF)
    write(0x01, 0x83)
    started = time.ticks_us()
    while not dio0():
        time.sleep_us(200)
    elapsed = time.ticks_diff(time.ticks_us(), started)
    write(0x12, 0xFF)
    return elapsed


def receive(timeout_ms, single=False, symbols=None):
    """Listen (RXCONTINUOUS, or RXSINGLE with a symbol timeout); returns (bytes, rssi, snr, crc_error) or 'timeout'/None."""
    write(0x01, 0x81)
    write(0x40, 0x00)
    write(0x12, 0xFF)
    if single:
        write(0x1E, (read(0x1E) & 0xFC) | ((symbols >> 8) & 3))
        write(0x1F, symbols & 0xFF)
    write(0x01, 0x86 if single else 0x85)
    started = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), started) < timeout_ms:
        flags = read(0x12)
        if flags & 0x40:
            length = read(0x13)
            write(0x0D, read(0x10))
            data = bytes(read(0x00) for _ in range(length))
            snr = ((read(0x19) + 128) & 0xFF) - 128
            rssi = -157 + read(0x1A) + (snr / 4 if snr < 0 else 0)
            write(0x12, 0xFF)
            write(0x01, 0x81)
            return data, rssi, snr / 4, bool(flags & 0x20)
        if flags & 0x80:
            write(0x12, 0xFF)
            return "timeout"
        time.sleep_ms(2)
    write(0x01, 0x81)
    return None
'''


def install_probe(folder: str | Path, main_code: str) -> Path:
    """Write the probe and a main.py running main_code (after `from radio_probe import *`) into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "radio_probe.py").write_text(PROBE_SOURCE)
    (folder / "main.py").write_text("from radio_probe import *\n" + main_code)
    return folder
