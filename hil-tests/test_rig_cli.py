"""`dos-edge rig board`: one emulated board with a gateway from the command line, reachable with mpremote, stopped by
SIGTERM with nothing left behind."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dos_codecs.gwmp import GwmpKind, parse_datagram

pytestmark = pytest.mark.hil

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


def test_rig_board_command_serves_mpremote_and_stops_cleanly_on_sigterm(tmp_path):

    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(10)
    link = tmp_path / "ttyEMU0"
    folder = tmp_path / "board"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dos_rig.cli import main; sys.exit(main(sys.argv[1:]))", "board",
         "--dir", str(folder), "--tty", str(link), "--agent", "%s:%d" % agent.getsockname(),
         "--workdir", str(tmp_path / "work"), "--scenario", "school_day"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        data, _ = agent.recvfrom(1024)
        assert parse_datagram(data).kind == GwmpKind.PULL_DATA
        deadline = time.monotonic() + 10
        while not link.is_symlink() and time.monotonic() < deadline:
            time.sleep(0.05)
        run = subprocess.run([MPREMOTE, "connect", str(link), "resume", "exec",
                              "import os, machine; open('x.txt', 'w').write('hi'); print(len(machine.unique_id())); "
                              "print(machine.I2C(0, scl=machine.Pin(15), sda=machine.Pin(4)).scan())"],
                             capture_output=True, text=True, timeout=20)
        assert run.stdout.split() == ["6", "[35,", "64,", "98]"], run.stderr  # BH1750, INA219, the scenario's SCD41
        assert (folder / "x.txt").read_text() == "hi"
        console = (tmp_path / "work" / "board1.console.log").read_text(errors="replace")
        children = [int(p) for p in os.listdir("/proc") if p.isdigit()
                    and Path(f"/proc/{p}/cmdline").exists() and "micropython" in Path(f"/proc/{p}/cmdline").read_text()
                    and str(folder) in os.path.realpath(f"/proc/{p}/cwd")]
        assert len(children) == 1 and "MicroPython" in console
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "stopped" in out and "serial link" in out
        assert not link.exists() and not link.is_symlink()
        assert not Path(f"/proc/{children[0]}").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        agent.close()


def test_rig_board_command_refuses_an_unknown_scenario(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from dos_rig.cli import main; sys.exit(main(sys.argv[1:]))", "board",
         "--dir", str(tmp_path / "board"), "--tty", str(tmp_path / "tty"), "--scenario", "no_such_scenario"],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "dos-edge rig board: no scenario 'no_such_scenario'" in done.stderr
    assert not (tmp_path / "tty").exists()
