"""Firmware memory and speed in the real micropython, measured in one run (never asserts; see bench/README.md).

1. heap high-water of each app with the LoRaWAN stack: the smallest `-X heapsize` (1 KiB steps, by bisection) in which
   the app, installed as the installer stages it (precompiled .mpy), completes an OTAA join, a config downlink with MAC
   commands and several readings (tests/test_firmware_memory.py's run: main.py boots on a board whose sensors answer and
   whose radio plays the exchange; main.py sets gc.threshold itself). Goal: 64 KiB (issue 4). Also printed: the heap
   in use (gc.mem_alloc after a collect) when main.py brings the radio up and at the end, where the run runs out
   of memory in a heap 1 KiB smaller (the moment of the high-water), and the smallest heap when the board also keeps
   the SX1276 driver loaded, as an SX1276 board does (the scripted radio still plays the air).
   Then where the heap goes in the app that needs the most, at the end of its run: what forgetting each module frees,
   the interned names (they stay for good), and what each module the node loads only for a job adds while loaded.
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
from test_firmware_memory import ENCODE_RUN, install, memory_run, shortfalls, worst_case  # noqa: E402

HEAP_GOAL_KIB = 64
ENCODE_GOAL_BYTES = 512
HEAP_RANGE_KIB = (16, 1024)
ROUNDS = 5

# After the memory run, at its end: what forgetting each module the node kept frees (the app and the board first, so
# that the code they import is no longer referenced when its turn comes; the events module last, as every stack module
# imports from it); the interned names first (they stay for good).
RESIDENT_RUN = """
import micropython, sys


def forget(name):
    sys.modules.pop(name)
    package, _, attr = name.rpartition('.')
    if package in sys.modules and attr in sys.modules[package].__dict__:
        delattr(sys.modules[package], attr)


micropython.qstr_info()
FIRST = ('node_main', 'apps.%(kind)s', 'boards.memtest', 'fwtest', 'apps.runtime', 'lorawan.node', 'lorawan.mac')
resident = [name for name in FIRST if name in sys.modules]
resident += [name for name in sys.modules if name not in resident and name != 'lorawan.events' and '.' in name
             or name in ('cbor', 'schema_v1', 'store')]
resident += ['lorawan.events'] if 'lorawan.events' in sys.modules else []
for name in resident:
    gc.collect()
    before = gc.mem_alloc()
    forget(name)
    gc.collect()
    print('resident', name, before - gc.mem_alloc())
"""
# After the memory run, in a process of its own (so that no other job's leftovers are counted): what a module the node
# loads only for a job (the boot, a reading, the join, a downlink, MAC commands, a config) adds while loaded beside
# what the node keeps, with whatever it imports that is not loaded yet.
JOB_RUN = """
gc.collect()
before = gc.mem_alloc()
try:
    __import__(%(name)r)
    gc.collect()
    print('job', %(name)r, gc.mem_alloc() - before)
except Exception:  # not for this board (boards.emu needs the rig)
    pass
"""
# modules staged for a node that are neither kept nor loaded for a job by the memory run
NOT_JOBS = ("selftest", "main", "time", "fwtest", "modules", "node_main")
TIMING_RUN = """
import gc, time
from cbor import encode_reading
from lorawan.crypto import data_mic

N, ROUNDS = %(n)d, %(rounds)d
cases = %(cases)r
header, body = bytes(13), bytes(24)
nwk_s_key = bytes(range(16))
frame = header + body
dev_addr = bytes(4)


def baseline():
    for _ in range(N):
        header + body


def mic():
    for i in range(N):
        data_mic(nwk_s_key, 0, dev_addr, i, frame)


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


def smallest_heap_kib(kind: str, firmware: Path, sx1276_kept: bool = False) -> int | None:
    """The smallest heap (KiB) in which the `kind` app's memory run completes with nothing short (the test's
    shortfalls(): no reading skipped, the downlink applied); None if not even in the largest. `sx1276_kept`: the
    board keeps the SX1276 driver loaded, as a real SX1276 board does (memory_run())."""
    def completes(kib: int) -> bool:
        try:
            return not shortfalls(kind, memory_run(kind, firmware, f"{kib}K", sx1276_kept=sx1276_kept))
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
    MemoryError and that error (e.g. the first reading, which joins), else what the run lacks (shortfalls())."""
    try:
        lines = memory_run(kind, firmware, f"{kib}K")
        problems = shortfalls(kind, lines)
    except MicroPythonError as exc:
        lines, problems = str(exc).splitlines(), ["the run stopped"]
    lines = [line for line in lines if not line.startswith("{")]  # the scripted radio's transmissions
    for index, line in enumerate(lines):
        if "MemoryError" in line:
            before = lines[index - 1] if index else "(start)"
            return f"after {before[:60]!r}: {line.strip()[:100]}"
    return f"with no MemoryError logged: {'; '.join(problems)[:120]}"


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
        needs = {}
        print(f"1. heap high-water per app (smallest -X heapsize that completes the run; goal {HEAP_GOAL_KIB} KiB)")
        for kind in kinds:
            firmware = installed[kind]
            needed = needs[kind] = smallest_heap_kib(kind, firmware)
            if needed is None:
                print(f"   {kind:12} does not complete even in {HEAP_RANGE_KIB[1]} KiB  MISSED")
                continue
            lines = memory_run(kind, firmware, "2M")
            started = next(line for line in lines if line.startswith("started ")).split()[1]
            finished = lines[-1].split()[1]
            print(f"   {kind:12} {needed:4d} KiB{verdict(needed <= HEAP_GOAL_KIB)}; "
                  f"in use {int(started) / 1024:.1f} KiB once up, {int(finished) / 1024:.1f} KiB at the end")
            print(f"      1 KiB less runs out {first_shortage(kind, firmware, needed - 1)}")
            with_driver = smallest_heap_kib(kind, firmware, sx1276_kept=True)
            print(f"      with the SX1276 driver kept as on an SX1276 board (its configure and TX code loaded per call): "
                  f"{with_driver} KiB{verdict(with_driver is not None and with_driver <= HEAP_GOAL_KIB)}")

        largest = max((kind for kind in needs if needs[kind]), key=needs.get)
        print(f"   where the heap goes ({largest}, the largest need), at the end of its run:")
        lines = memory_run(largest, installed[largest], "2M", after=RESIDENT_RUN % {"kind": largest})
        pool = next(line for line in lines if line.startswith("qstr pool:"))
        names = dict(part.split("=") for part in pool.split(": ")[1].split(", "))
        resident = [(line.split()[1], int(line.split()[2])) for line in lines if line.startswith("resident ")]
        for name, size in sorted(resident, key=lambda item: -item[1]):
            print(f"     {name:22} {size / 1024:5.1f} KiB")
        print(f"     {'(interned names)':22} {int(names['n_total_bytes']) / 1024:5.1f} KiB for {names['n_qstr']} names")
        kept = {name for name, _size in resident} | set(NOT_JOBS)
        jobs = []
        for module in sorted(installed[largest].rglob("*.mpy")):
            name = ".".join(module.relative_to(installed[largest]).with_suffix("").parts)
            if name not in kept and not name.startswith("boards."):
                sizes = [int(line.split()[2]) for line in memory_run(largest, installed[largest], "2M",
                                                                     after=JOB_RUN % {"name": name})
                         if line.startswith("job ")]
                if sizes:
                    jobs.append((name, sizes[0] / 1024))
        print("   while loaded for a job: " + ", ".join(f"{name} {size:.1f} KiB" for name, size in jobs))

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
