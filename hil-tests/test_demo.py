"""README command one: `dos-edge demo` brings up Mosquitto, the agent and an emulated fleet, streams decoded readings, and
stops every process it started."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hil


def test_demo_streams_decoded_readings_and_cleans_up(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from dos_agent.cli import main; sys.exit(main())",
         "demo", "--nodes", "2", "--duration", "12", "--speed", "120", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if re.match(r"SL-DO-\d{4}  streetlight  fcnt \d+  ", line)]
    assert {line.split()[0] for line in lines} == {"SL-DO-0001", "SL-DO-0002"}, done.stdout
    assert all(re.search(r"power=\d+\.\d W .*ambient_light=\d+ lx", line) for line in lines)
    assert processes_using(tmp_path) == [], "the demo left processes running"


def processes_using(folder):
    """PIDs whose command line or working directory is inside folder (boards run with cwd in it, agent and broker name it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(int(proc.name))
    return found
