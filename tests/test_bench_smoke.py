"""The benchmarks run end to end with tiny counts and print their figures (never their speed: no test asserts on it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
RATE = r"[\d,]+(\.\d+)?"


def run_bench(script: str, *args: str, timeout_s: float = 240) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=BENCH.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_agent_throughput_prints_every_figure_and_ratio() -> None:
    out = run_bench("agent_throughput.py", "--frames", "300", "--events", "300", "--rounds", "1")
    assert re.search(rf"decode-only .*: {RATE} frames/s", out)
    assert "downlinks planned: 0 for 300 uplinks" in out  # settled devices need none
    for name in ("mosquitto_pub -q 1", "bare paho QoS 1", "agent, PUSH_DATA -> mosquitto_sub"):
        assert re.search(rf"{re.escape(name)}.*: +{RATE} events/s", out), name
    assert re.search(r"ratio agent / bare paho: +\d+\.\d\d +\(goal >= 0\.80: (met|MISSED)\)", out)


def test_latency_prints_percentiles_for_the_agent_and_the_baseline() -> None:
    out = run_bench("latency.py", "--rate", "200", "--seconds", "1")
    for name in ("bare paho publish -> mosquitto_sub", "agent, dedup 0 ms", "agent, dedup 200 ms"):
        match = re.search(rf"{re.escape(name)}.*? p50 +([\d.]+) ms +p99 +([\d.]+) ms .*\((\d+) frames\)", out)
        assert match, name
        assert 0 < float(match[1]) <= float(match[2])
        assert 0 < int(match[3]) <= 200  # the frames after the warm-up whose event came (a loss is reported)
    dedup = re.search(r"agent, dedup 200 ms.*p50 +([\d.]+) ms", out)
    assert float(dedup[1]) >= 200  # every frame waits out the dedup window
    assert re.search(r"goal agent p99 <= 20 ms \(dedup 0\): (met|MISSED)", out)


def test_payload_size_compares_cbor_with_lpp_and_a_packed_struct() -> None:
    out = run_bench("payload_size.py")
    rows = re.findall(r"^(streetlight|waste|bridge) +(typical|worst) +(\d+) +(\d+) +(\d+) .* ([\d.]+)(  MISSED)?$",
                      out, re.MULTILINE)
    assert len(rows) == 6
    for _kind, _case, cbor, lpp, packed, ratio, missed in rows:
        assert int(packed) < int(cbor)  # a fixed struct carries no keys
        assert int(packed) < int(lpp)  # LPP adds channel and type to every field
        assert (float(ratio) > 1.25) == bool(missed)
    assert "equal to the codecs' canonical CBOR, decoded back: yes" in out


def test_rig_speed_measures_one_board() -> None:
    out = run_bench("rig_speed.py", "--nodes", "1", "--window", "3", timeout_s=280)
    match = re.search(r"1 boards: +([\d.]+) virtual s / wall s", out)
    assert match and float(match[1]) > 1  # the free-running clock runs ahead of the wall clock


def test_firmware_memory_prints_each_app_against_the_heap_goal() -> None:
    out = run_bench("firmware_memory.py", "--n", "20")
    needs = re.findall(r"^   (streetlight|waste|bridge|environment) +(\d+) KiB(  MISSED)?; in use ([\d.]+) KiB once up",
                       out, re.MULTILINE)
    assert sorted(kind for kind, *_ in needs) == ["bridge", "environment", "streetlight", "waste"]
    for _kind, kib, missed, in_use in needs:
        assert float(in_use) < int(kib)  # what is live once up fits in the smallest heap that completes the run
        assert (int(kib) > 64) == bool(missed)
    assert re.search(r"\(interned names\) +[\d.]+ KiB for \d+ names", out)
    assert re.search(r"while loaded for a job: .*lorawan\.join [\d.]+ KiB", out)
    encodes = re.findall(r"^   \w+/\w+ +(\d+) B for a (\d+)-byte payload", out, re.MULTILINE)
    assert len(encodes) == 12 and all(int(used) > 0 for used, _size in encodes)
    assert re.search(r"data-frame MIC \(AES-CMAC\) +[\d.]+ us = +[\d.]+ x baseline", out)
