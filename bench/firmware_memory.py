"""Firmware memory and speed in the real micropython, measured in one run (never asserts; see bench/README.md).

1. heap high-water of each app with the LoRaWAN stack: the smallest `-X heapsize` (1 KiB steps, by bisection) in which
   the app, installed as the installer stages it (precompiled .mpy), completes an OTAA join, a config downlink with MAC
   commands and several readings (tests/test_firmware_memory.py's run: main.py boots on a board whose sensors answer and
   whose radio plays the exchange; main.py sets gc.threshold itself). Goal: 64 KiB (issue 4). Also printed: the heap
   in use (gc.mem_alloc after a collect) when main.py brings the radio up and at the end, and where the run runs out
   of memory in a heap 1 KiB smaller (the moment of the high-water).
   Then where the heap goes: what importing each module adds to the heap in use (after a collect), in the order the
   streetlight node loads them, and what the modules loaded only now and then add while they are loaded (the join,
   MAC commands, the downlink decoder: unloaded after use).
2. bytes allocated by one cbor.encode_reading of each kind's worst-case routine reading (gc disabled around it). Goal:
   <= 512 B.
3. time per encode and per data-frame MIC (AES-CMAC of a 37-byte frame) relative to a baseline measured in the same
   micropython process: concatenating the same 37 bytes of frame from a header and a payload, the least a node does
   per frame. Best of ROUNDS rounds of N calls each, the rounds interleaving all the steps.

Usage: python bench/firmware_memory.py [--n N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dos_agent.firmware_install import FIRMWARE_DIR, compile_module, node_kinds, stage_firmware  # noqa: E402
from firmware_support import MicroPythonError, run_micropython  # noqa: E402
from test_firmware_memory import ENCODE_RUN, install, memory_run, worst_case  # noqa: E402

HEAP_GOAL_KIB = 64
ENCODE_GOAL_BYTES = 512
HEAP_RANGE_KIB = (16, 1024)
ROUNDS = 5

# the streetlight node's modules, each after the ones it imports
LOAD_ORDER = ("drivers.lora_airtime", "lorawan.events", "lorawan.crypto", "lorawan.region", "modules", "lorawan.mac",
              "config", "store", "lorawan.node", "schema_v1", "cbor", "settings", "apps.runtime", "drivers.bh1750",
              "drivers.ina219", "drivers.lamp", "apps.streetlight")
NOW_AND_THEN = ("lorawan.join", "lorawan.commands", "cbor_decode")  # loaded for a job, unloaded after
IMPORT_RUN = """
import gc
gc.collect()
before = gc.mem_alloc()
for name in %(names)r:
    __import__(name)
    gc.collect()
    print(name, gc.mem_alloc() - before)
    before = gc.mem_alloc()
"""

TIMING_RUN = """
import gc, time
from cbor import encode_reading
from lorawan.crypto import Cmac, data_mic

N, ROUNDS = %(n)d, %(rounds)d
cases = %(cases)r
header, body = bytes(13), bytes(24)
cmac = Cmac(bytes(range(16)))
frame = header + body
dev_addr = bytes(4)


def baseline():
    for _ in range(N):
        header + body


def mic():
    for i in range(N):
        data_mic(cmac, 0, dev_addr, i, frame)


def encoder(kind, values):
    def encode():
        for _ in range(N):
            encode_reading(kind, 'reading', values)
    return encode


steps = [('baseline', baseline), ('mic', mic)] + [('encode ' + kind, encoder(kind, values)) for kind, values in cases]
best = {}
for _ in range(ROUNDS):  # rounds interleave the steps, so a busy moment of the machine hits all of them alike
    for name, step in steps:
        gc.collect()
        start = time.ticks_us()
        step()
        took = time.ticks_diff(time.ticks_us(), start)
        best[name] = min(best.get(name, took), took)
for name, _step in steps:
    print(name, best[name] / N)
"""


def smallest_heap_kib(kind: str, firmware: Path) -> int | None:
    """The smallest heap (KiB) in which the `kind` app's memory run completes; None if not even in the largest."""
    def completes(kib: int) -> bool:
        try:
            return memory_run(kind, firmware, f"{kib}K")[-1].startswith("finished ")
        except MicroPythonError:
            return False

    low, high = HEAP_RANGE_KIB
    if not completes(high):
        return None
    while high - low > 1:  # completes(high), and low is below what is needed (or the range's floor)
        middle = (low + high) // 2
        low, high = (low, middle) if completes(middle) else (middle, high)
    return high


def first_shortage(kind: str, firmware: Path, kib: int) -> str:
    """Where the `kind` app's memory run first runs out of memory in a heap of `kib` KiB: the log line before its first
    MemoryError and that error (e.g. the first reading, which joins), or how it ended."""
    try:
        lines = memory_run(kind, firmware, f"{kib}K")
    except MicroPythonError as exc:
        lines = str(exc).splitlines()
    lines = [line for line in lines if not line.startswith("{")]  # the scripted radio's transmissions
    for index, line in enumerate(lines):
        if "MemoryError" in line:
            before = lines[index - 1] if index else "(start)"
            return f"after {before[:60]!r}: {line.strip()[:100]}"
    return f"no MemoryError; last line {lines[-1][:100]!r}" if lines else "no output"


def verdict(ok: bool) -> str:
    return "" if ok else "  MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per timing round (default 2000)")
    args = parser.parse_args()
    kinds = node_kinds()
    with tempfile.TemporaryDirectory(prefix="bench-fw-") as scratch:
        root = Path(scratch)
        installed = {kind: install(root / kind, kind) for kind in kinds}
        print(f"1. heap high-water per app (smallest -X heapsize that completes the run; goal {HEAP_GOAL_KIB} KiB)")
        for kind in kinds:
            firmware = installed[kind]
            needed = smallest_heap_kib(kind, firmware)
            if needed is None:
                print(f"   {kind:12} does not complete even in {HEAP_RANGE_KIB[1]} KiB  MISSED")
                continue
            lines = memory_run(kind, firmware, "2M")
            started = next(line for line in lines if line.startswith("started ")).split()[1]
            finished = lines[-1].split()[1]
            print(f"   {kind:12} {needed:4d} KiB{verdict(needed <= HEAP_GOAL_KIB)}; "
                  f"in use {int(started) / 1024:.1f} KiB once up, {int(finished) / 1024:.1f} KiB at the end")
            print(f"      1 KiB less runs out {first_shortage(kind, firmware, needed - 1)}")

        print("   heap each module adds when imported (streetlight node, load order):")
        names = LOAD_ORDER + NOW_AND_THEN
        out = run_micropython(IMPORT_RUN % {"names": names}, path=[""], cwd=installed["streetlight"],
                              heap="2M").split()
        sizes = {name: int(size) for name, size in zip(out[::2], out[1::2])}
        total = sum(sizes[name] for name in LOAD_ORDER)
        for name in sorted(LOAD_ORDER, key=lambda name: -sizes[name]):
            print(f"     {name:22} {sizes[name] / 1024:5.1f} KiB  {100 * sizes[name] / total:4.1f} %")
        print(f"     {'total':22} {total / 1024:5.1f} KiB")
        loaded = ", ".join(f"{name} {sizes[name] / 1024:.1f} KiB" for name in NOW_AND_THEN)
        print(f"   while loaded (now and then): {loaded}")

        print(f"2. bytes allocated per cbor.encode_reading, worst-case message (goal <= {ENCODE_GOAL_BYTES} B)")
        out = []
        for kind in kinds:
            cases = [(kind, name, values) for name, values in worst_case(kind).items()]
            out += run_micropython(ENCODE_RUN % {"cases": cases}, path=[""], cwd=installed[kind],
                                   heap="2M").splitlines()
        for line in out:
            kind, name, _fport, payload, used = line.split()
            print(f"   {kind + '/' + name:24} {int(used):4d} B for a {len(payload) // 2}-byte payload"
                  f"{verdict(int(used) <= ENCODE_GOAL_BYTES)}")

        print(f"3. time per call relative to a 13 + 24 byte concatenation in the same run "
              f"(best of {ROUNDS} x {args.n})")
        timing = root / "timing"  # the firmware alone: the real `time`, not the tests' virtual clock
        for kind in kinds:
            stage_firmware("emu", kind, timing)
        # one process encodes every kind: the repository's table of every kind in place of the last kind's own
        (timing / "schema_v1.mpy").write_bytes(compile_module(FIRMWARE_DIR / "schema_v1.py", "schema_v1.py"))
        readings = [(kind, worst_case(kind)["reading"]) for kind in kinds]
        out = run_micropython(TIMING_RUN % {"n": args.n, "rounds": ROUNDS, "cases": readings}, path=[timing],
                              cwd=root, heap="2M").splitlines()
        baseline_us = float(out[0].split()[1])
        print(f"   baseline (concatenation)      {baseline_us:7.2f} us")
        for line in out[1:]:
            parts = line.split()
            label = "data-frame MIC (AES-CMAC)" if parts[0] == "mic" else f"encode {parts[1]} reading"
            took = float(parts[-1])
            print(f"   {label:29} {took:7.2f} us = {took / baseline_us:6.1f} x baseline")


if __name__ == "__main__":
    main()
