"""The rig's models without processes: time on air, the virtual clock, the SX1276 register model on the air, sensors."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dos_rig import link
from dos_rig.air import Air
from dos_rig.airtime import time_on_air_us
from dos_rig.clock import VirtualClock
from dos_rig.sensors import BH1750, INA219, Battery, Lamp, Scenario, SensorLog
from dos_rig.sx1276 import SX1276, hz_to_frf


class FakeWall:
    """A wall clock the test moves by hand (the rig's wall is time.monotonic)."""

    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def run_clock(clock: VirtualClock, wall: FakeWall | None = None, steps: int = 10_000) -> None:
    """Step the clock until nothing is left to do now."""
    for _ in range(steps):
        wait = clock.step(wall() if wall else 0.0)
        if wait != 0.0:
            return
    raise AssertionError("clock kept stepping")


# --- time on air -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length, sf, cr, expected_ms", [(1, 8, 2, 53.76), (37, 7, 1, 82.2), (37, 12, 1, 1974.3),
                                                        (23, 12, 1, 1482.8)])
def test_time_on_air_matches_the_reference_check_values(length, sf, cr, expected_ms):
    assert time_on_air_us(length, sf, 125_000, cr) / 1000 == pytest.approx(expected_ms, abs=0.05)


# --- clock -------------------------------------------------------------------------------------------------------------
class Participant:
    def __init__(self):
        self.until = None

    def blocking_until(self, wall_now):
        return self.until


def test_clock_fires_timers_in_order_and_jumps_between_them():
    clock = VirtualClock()
    fired = []
    clock.call_at(5_000, fired.append, "b")
    clock.call_at(1_000, fired.append, "a")
    clock.call_at(5_000, fired.append, "c")
    cancelled = clock.call_at(3_000, fired.append, "x")
    cancelled.cancel()
    run_clock(clock)
    assert fired == ["a", "b", "c"] and clock.now_us == 5_000


def test_clock_waits_for_a_blocking_participant_then_moves_when_it_stalls():
    wall = FakeWall()
    clock = VirtualClock(wall=wall)
    board = Participant()
    clock.add_participant(board)
    clock.call_at(1_000_000, lambda: None)
    board.until = wall.t + 1.0  # awake: blocks for up to the stall limit
    assert clock.step(wall()) == pytest.approx(1.0)
    assert clock.now_us == 0
    wall.t += 1.0  # stall limit reached
    run_clock(clock, wall)
    assert clock.now_us == 1_000_000


def test_hold_caps_the_clock_until_released_or_grace_runs_out():
    wall = FakeWall()
    clock = VirtualClock(wall=wall)
    clock.call_at(3_000_000, lambda: None)
    hold = clock.hold(1_000_000, grace_s=0.2)
    run_clock(clock, wall)
    assert clock.now_us == 1_000_000
    hold.release()
    run_clock(clock, wall)
    assert clock.now_us == 3_000_000
    clock.call_at(9_000_000, lambda: None)
    clock.hold(4_000_000, grace_s=0.2)
    run_clock(clock, wall)
    assert clock.now_us == 4_000_000
    wall.t += 0.25
    run_clock(clock, wall)
    assert clock.now_us == 9_000_000 and clock.holds_expired == 1


def test_speed_paces_virtual_time_against_wall_time():
    wall = FakeWall()
    clock = VirtualClock(speed=10.0, wall=wall)
    clock.call_at(60_000_000, lambda: None)
    clock.step(wall())
    wall.t += 0.5
    clock.step(wall())
    assert clock.now_us == 5_000_000


# --- SX1276 on the air -------------------------------------------------------------------------------------------------
class Chip:
    """An SX1276 model driven the way a driver drives it over SPI."""

    def __init__(self, name, clock, air, position=(0.0, 0.0)):
        self.radio = SX1276(name, clock, air, position)

    def xfer(self, data: bytes) -> bytes:
        self.radio.nss(0)
        out = self.radio.transfer(data)
        self.radio.nss(1)
        return out

    def read(self, address: int, n: int = 1) -> bytes:
        return self.xfer(bytes([address]) + bytes(n))[1:]

    def reg(self, address: int) -> int:
        return self.read(address)[0]

    def write(self, address: int, *values: int) -> None:
        self.xfer(bytes([address | 0x80, *values]))

    def lora(self, freq_hz=868_100_000, sf=7, iq_rx=False, iq_tx=False, sync=0x34):
        self.write(0x01, 0x00)
        self.write(0x01, 0x80)
        self.write(0x01, 0x81)
        frf = hz_to_frf(freq_hz)
        self.write(0x06, frf >> 16, (frf >> 8) & 0xFF, frf & 0xFF)
        self.write(0x1D, 0x72)
        self.write(0x1E, (sf << 4) | 0x04)
        self.write(0x26, 0x04 | (0x08 if sf >= 11 else 0))
        self.write(0x39, sync)
        self.write(0x33, 0x26 | (0x40 if iq_rx else 0) | (0 if iq_tx else 1))
        self.write(0x3B, 0x19 if iq_rx else 0x1D)
        self.write(0x0E, 0x00, 0x00)

    def send(self, payload: bytes) -> None:
        self.write(0x0D, 0)
        self.write(0x00, *payload)
        self.write(0x22, len(payload))
        self.write(0x40, 0x40)
        self.write(0x01, 0x83)

    def listen(self, single_symbols: int | None = None) -> None:
        self.write(0x40, 0x00)
        if single_symbols is not None:
            self.write(0x1F, single_symbols)
            self.write(0x01, 0x86)
        else:
            self.write(0x01, 0x85)

    def packet(self) -> bytes:
        self.write(0x0D, self.reg(0x10))
        return self.read(0x00, self.reg(0x13))


@pytest.fixture
def world():
    clock = VirtualClock()
    return clock, Air(clock)


def test_register_reset_values_burst_and_version(world):
    chip = Chip("a", *world)
    assert chip.reg(0x42) == 0x12
    assert chip.read(0x06, 3) == bytes([0x6C, 0x80, 0x00])  # auto-increment in a burst
    assert chip.reg(0x01) == 0x09 and chip.reg(0x1D) == 0x72 and chip.reg(0x39) == 0x12
    chip.write(0x42, 0x55)
    assert chip.reg(0x42) == 0x12  # read-only
    assert chip.xfer(bytes([0x80 | 0x39, 0x34]))[1] == 0x12  # MISO returns the old value while writing
    assert chip.reg(0x39) == 0x34


def test_long_range_mode_changes_only_in_sleep_and_sleep_clears_the_fifo(world):
    chip = Chip("a", *world)
    chip.write(0x01, 0x81)  # from FSK STDBY: the LoRa bit is ignored
    assert chip.reg(0x01) & 0x80 == 0
    chip.write(0x01, 0x80)
    chip.write(0x01, 0x81)
    assert chip.reg(0x01) == 0x81
    chip.write(0x0D, 0x10)
    chip.write(0x00, 1, 2, 3)
    assert chip.reg(0x0D) == 0x13  # the FIFO pointer advanced, the address did not
    chip.write(0x0D, 0x10)
    assert chip.read(0x00, 3) == bytes([1, 2, 3])
    chip.write(0x01, 0x80)  # SLEEP
    assert chip.read(0x00, 2) == bytes(2)  # not accessible in SLEEP
    chip.write(0x01, 0x81)
    chip.write(0x0D, 0x10)
    assert chip.read(0x00, 3) == bytes(3)  # cleared


def test_tx_done_after_time_on_air_then_standby_and_dio0_follows_the_flag(world):
    clock, air = world
    chip = Chip("a", clock, air)
    chip.lora()
    chip.send(b"hello world")
    assert chip.reg(0x01) == 0x83 and chip.radio.dio0 == 0
    run_clock(clock)
    assert clock.now_us == time_on_air_us(11, 7, 125_000, 1)
    assert chip.reg(0x12) == 0x08 and chip.reg(0x01) == 0x81 and chip.radio.dio0 == 1
    chip.write(0x12, 0x08)  # cleared by writing 1
    assert chip.reg(0x12) == 0 and chip.radio.dio0 == 0


def test_reset_line_restores_every_register(world):
    chip = Chip("a", *world)
    chip.lora(sf=9)
    chip.radio.reset_line(0)
    chip.radio.reset_line(1)
    assert chip.reg(0x01) == 0x09 and chip.reg(0x1E) == 0x70 and chip.reg(0x39) == 0x12


def test_transmission_reaches_only_matching_listeners(world):
    clock, air = world
    sender = Chip("a", clock, air, (0, 0))
    same = Chip("same", clock, air, (100, 0))
    other_sf = Chip("sf9", clock, air, (100, 0))
    inverted = Chip("iq", clock, air, (100, 0))
    other_sync = Chip("sync", clock, air, (100, 0))
    for chip, kwargs in ((sender, {}), (same, {}), (other_sf, {"sf": 9}), (inverted, {"iq_rx": True}),
                         (other_sync, {"sync": 0x12})):
        chip.lora(**kwargs)
    for chip in (same, other_sf, inverted, other_sync):
        chip.listen()
    sender.send(b"\x40payload")
    run_clock(clock)
    assert same.reg(0x12) & 0x40 and same.packet() == b"\x40payload"
    assert not same.reg(0x12) & 0x20  # no CRC error
    for chip in (other_sf, inverted, other_sync):
        assert chip.reg(0x12) == 0
    snr = ((same.reg(0x19) + 128) & 0xFF) - 128
    entry = [e for e in air.log if e["receiver"] == "same"][0]
    assert snr == round(min(entry["snr"], 31.75) * 4) and entry["result"] == "ok" and entry["phy"] == b"\x40payload".hex()
    assert {e["receiver"] for e in air.log} == {"same"}


def test_rx_single_times_out_after_its_symbols_and_a_late_listener_hears_nothing(world):
    clock, air = world
    sender, late = Chip("a", clock, air), Chip("late", clock, air, (10, 0))
    sender.lora()
    late.lora()
    sender.send(b"early")
    clock.call_at(1_000, late.listen, 8)  # starts listening after the preamble started
    run_clock(clock)
    assert late.reg(0x12) == 0x80 and late.reg(0x01) == 0x81  # RxTimeout, back to STDBY
    assert clock.now_us == max(1_000 + 8 * 1024, time_on_air_us(5, 7, 125_000, 1))


def test_collision_unless_one_is_six_db_stronger(world):
    clock, air = world
    near, far, also_far, rx = (Chip("near", clock, air, (50, 0)), Chip("far", clock, air, (3000, 0)),
                               Chip("far2", clock, air, (3000, 10)), Chip("rx", clock, air, (0, 0)))
    for chip in (near, far, also_far, rx):
        chip.lora()
    rx.listen()
    near.send(b"strong")
    far.send(b"weak")
    run_clock(clock)
    assert rx.packet() == b"strong"  # captured: near is far more than 6 dB stronger
    results = {e["sender"]: e["result"] for e in air.log if e["receiver"] == "rx"}
    assert results == {"near": "ok"}  # rx was locked on near's packet and never started far's
    rx.write(0x12, 0xFF)
    rx.listen()
    far.send(b"one")
    also_far.send(b"two")
    run_clock(clock)
    assert rx.reg(0x12) & 0x60 == 0x60  # RxDone with a CRC error: same strength, collision
    assert [e["result"] for e in air.log if e["receiver"] == "rx"][-1] == "collision"


def test_too_weak_signals_are_not_detected(world):
    clock, air = world
    sender, distant = Chip("a", clock, air, (0, 0)), Chip("distant", clock, air, (200_000, 0))
    sender.lora()
    distant.lora()
    distant.listen()
    sender.send(b"x")
    run_clock(clock)
    assert distant.reg(0x12) == 0 and air.log[-1]["result"] == "too_weak"


def test_fault_injection_corrupts_with_valid_crc_or_drops(world):
    clock, air = world
    sender, rx = Chip("a", clock, air), Chip("rx", clock, air, (10, 0))
    sender.lora()
    rx.lora()
    air.corrupt_next("a", flip_bit=3)
    rx.listen()
    sender.send(b"\x00\x00")
    run_clock(clock)
    assert rx.reg(0x12) & 0x60 == 0x40 and rx.packet() == b"\x08\x00"
    rx.write(0x12, 0xFF)
    air.drop_next("a")
    sender.send(b"\x01")
    run_clock(clock)
    assert rx.reg(0x12) == 0 and air.log[-1]["result"] == "dropped"
    sender.send(b"\x02")
    run_clock(clock)
    assert rx.packet() == b"\x02"  # faults apply to one frame only


def test_air_log_file_has_one_json_line_per_reception(tmp_path: Path):
    clock = VirtualClock()
    air = Air(clock, tmp_path / "air.jsonl")
    sender, rx = Chip("a", clock, air), Chip("rx", clock, air, (10, 0))
    sender.lora(freq_hz=868_300_000, sf=8)
    rx.lora(freq_hz=868_300_000, sf=8)
    rx.listen()
    sender.send(b"\xab\xcd")
    run_clock(clock)
    air.close()
    lines = [json.loads(line) for line in (tmp_path / "air.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["sf"] == 8 and lines[0]["bw_khz"] == 125 and lines[0]["phy"] == "abcd"
    assert abs(lines[0]["freq_hz"] - 868_300_000) < 100 and lines[0]["t_us"] == clock.now_us


# --- sensors -----------------------------------------------------------------------------------------------------------
def test_ina219_registers_convert_back_to_the_served_power_at_0_1_w():
    scenario = Scenario({"lamp_power_w": 70.0, "bus_v": 24.0, "shunt_ohm": 0.1})
    lamp = Lamp()
    log = SensorLog("b")
    ina = INA219(scenario, lamp, lambda: 0, log)
    ina.write(bytes([5, 0x10, 0x00]))  # calibration 4096: current LSB = 10 µV / R, power LSB = 20 x that
    current_lsb = 10e-6 / 0.1
    lamp.relay = 1
    for duty in range(0, 65536, 97):
        lamp.duty_u16 = duty
        power = lamp.power_w(70.0)
        regs = ina.registers(power)
        assert round(regs[INA219.POWER] * 20 * current_lsb, 1) == power
        assert round((regs[INA219.BUS] >> 3) * 0.004 * regs[INA219.CURRENT] * current_lsb, 1) == power


def test_ina219_reads_big_endian_at_the_pointer_and_logs_one_measurement():
    scenario = Scenario({"lamp_power_w": 36.0})
    lamp = Lamp()
    lamp.relay = 1
    log = SensorLog("b")
    ina = INA219(scenario, lamp, lambda: 7, log)
    ina.write(bytes([5, 0x10, 0x00]))
    ina.write(bytes([3]))
    assert int.from_bytes(ina.read(2), "big") * 0.002 == pytest.approx(36.0)
    ina.write(bytes([2]))
    assert (int.from_bytes(ina.read(2), "big") >> 3) * 0.004 == pytest.approx(24.0)
    assert log.snapshot() == [{"t_us": 7, "board": "b", "sensor": "ina219", "value": 36.0}]


def test_bh1750_and_battery_serve_scenario_values_exactly():
    t = {"now": 0}
    scenario = Scenario({"lux": {"day": 30000, "night": 3, "sunrise_h": 6, "sunset_h": 18}, "battery_v": 3.71})
    log = SensorLog("b")
    sensor = BH1750(scenario, lambda: t["now"], log)
    sensor.write(bytes([0x01, 0x10]))
    assert int.from_bytes(sensor.read(2), "big") == round(3 * 1.2)  # midnight
    t["now"] = 12 * 3600 * 10**6
    raw = int.from_bytes(sensor.read(2), "big")
    assert round(raw / 1.2) == 30000
    battery = Battery(scenario, lambda: t["now"], log)
    microvolts, _ = battery.read()
    assert microvolts * 2 / 1e6 == 3.71
    assert [(e["sensor"], e["value"]) for e in log.snapshot()] == [("bh1750", 3), ("bh1750", 30000), ("battery", 3.71)]


def test_scenario_rejects_unknown_keys_and_lamps_beyond_the_shunt_range():
    with pytest.raises(ValueError, match="unknown scenario keys"):
        Scenario({"lux_typo": 3})
    with pytest.raises(ValueError, match="shunt"):
        Scenario({"lamp_power_w": 200.0, "shunt_ohm": 0.1})


# --- the ROM and the rig agree on the link protocol --------------------------------------------------------------------
def test_rom_and_rig_use_the_same_op_codes():
    rom = (Path(link.__file__).parent / "rom" / "_rig_link.py").read_text()
    rom_ops = dict(re.findall(r"^(OP_\w+|SLEEP_\w+) = (\d+)\s*(?:#.*)?$", rom, re.M))
    assert rom_ops and all(int(v) == getattr(link, k) for k, v in rom_ops.items())
    assert len(rom_ops) == len([n for n in dir(link) if n.startswith(("OP_", "SLEEP_"))])
