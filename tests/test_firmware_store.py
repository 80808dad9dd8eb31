"""store.py in micropython: the FCntUp lease survives reboots (separate micropython runs on one folder) without reusing a
counter and with few flash writes; app values persist; a damaged file is reported, not fatal."""
from __future__ import annotations

import json

from firmware_support import run_micropython

BOOT_AND_SEND = """
from store import Store
s = Store(fcnt_step={step})
start = s.boot_fcnt_up()
for fcnt in range(start, start + {count}):
    s.reserve_fcnt_up(fcnt)
print(start, start + {count} - 1, s.writes)
"""


def boot_and_send(folder, count: int, step: int = 16) -> tuple[int, int, int]:
    """One 'power cycle': boot, send `count` frames, lose power without a clean shutdown. (first fcnt, last fcnt, writes)"""
    first, last, writes = run_micropython(BOOT_AND_SEND.format(step=step, count=count), cwd=folder).split()
    return int(first), int(last), int(writes)


def test_fcnt_never_repeats_across_reboots_and_writes_once_per_step(tmp_path):
    used: list[int] = []
    boots_since_use = 0
    for count in (5, 40, 0, 16, 1):
        first, last, writes = boot_and_send(tmp_path, count)
        boots_since_use += 1
        if used:
            assert first > used[-1], f"boot resumed at {first}, counter {used[-1]} was already sent"
            assert first - used[-1] <= 16 * boots_since_use, "each boot skips ahead by at most one step"
        if count:
            used.extend(range(first, last + 1))
            boots_since_use = 0
        assert writes == 1 + max(count - 1, 0) // 16  # the boot lease, then one write each time the lease runs out
    assert json.loads((tmp_path / "state.json").read_text())["fcnt_up_limit"] > used[-1]


def test_first_boot_starts_at_zero_and_the_next_boot_skips_ahead(tmp_path):
    assert boot_and_send(tmp_path, 3)[:2] == (0, 2)
    assert boot_and_send(tmp_path, 1)[:2] == (16, 16)


def test_app_values_persist_and_a_damaged_file_is_reported(tmp_path):
    out = run_micropython("""
from store import Store
s = Store()
s.put('energy_wh', 12.5)
s.flush()
print(Store().get('energy_wh'))
""", cwd=tmp_path)
    assert out.split() == ["12.5"]
    (tmp_path / "state.json").write_text('{"energy_wh": 1')
    out = run_micropython("""
from store import Store
s = Store()
print(s.get('energy_wh'), s.problem)
print(s.boot_fcnt_up())
""", cwd=tmp_path).splitlines()
    assert out == ["None state.json is not valid JSON", "0"]
    assert not (tmp_path / "state.json.tmp").exists()
