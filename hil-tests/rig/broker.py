"""A private Mosquitto broker on a free loopback port, started as a child process and stopped by its PID.

Used by the demo and by the test fixtures: no mock broker anywhere, and no broker is ever left running.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """Mosquitto could not be found or did not come up."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError("mosquitto is not installed: run `sudo apt-get install -y mosquitto` (./dev.sh does it for you)")
    return found


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel just handed out on host (free at the time of asking)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """End a child process by its PID: SIGTERM, then SIGKILL if it is still there after grace_s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class Mosquitto:
    """One mosquitto process listening on 127.0.0.1:<port> with anonymous access and a generated config."""

    def __init__(self, workdir: str | os.PathLike | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port: int | None = None
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dos-mosquitto-"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> "Mosquitto":
        binary = find_mosquitto()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port(self.host)
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\n"
                "allow_anonymous true\n"
                "persistence false\n"
                f"log_dest file {self.workdir / 'mosquitto.log'}\n"
                "log_type error\nlog_type warning\nlog_type notice\n"
            )
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_listening(timeout_s):
                return self
            self.stop()
        raise BrokerError(f"mosquitto did not start listening; see {self.workdir / 'mosquitto.log'}")

    def _wait_listening(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Terminate the broker by PID (SIGTERM, then SIGKILL after 5 s)."""
        proc, self.proc = self.proc, None
        stop_process(proc)

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
