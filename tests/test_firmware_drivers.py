"""The I2C sensor drivers in micropython against a register-level fake bus: the ADXL345's set-up (its id checked, the
data-rate code, full resolution, measuring; drivers/adxl345_setup.py unloaded after) and its signed samples, the
TMP102's signed 12-bit temperature, the INA219's configuration, calibration and power for its shunt (a shunt not above
zero refused; drivers/ina219_setup.py unloaded after)."""
from __future__ import annotations

import struct

import pytest

from firmware_support import MicroPythonError, run_micropython

FAKE_BUS = """
import sys


class FakeI2C:
    '''Registers of one chip: {register: bytes}; writes are printed as "write <address> <register> <hex>".'''

    def __init__(self, registers):
        self.registers = registers

    def readfrom_mem(self, address, register, n):
        return self.registers[register][:n]

    def readfrom_mem_into(self, address, register, buf):
        data = self.registers[register]
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, address, register, data):
        print("write", address, register, bytes(data).hex())
"""


@pytest.mark.parametrize("rate_hz, code", [(12.5, 0x07), (25, 0x08), (50, 0x09), (400, 0x0C)])
def test_adxl345_is_checked_and_set_up_at_its_rate_and_its_set_up_module_unloaded(rate_hz, code):
    out = run_micropython(FAKE_BUS + f"""
from drivers.adxl345 import ADXL345
accelerometer = ADXL345(FakeI2C({{0x00: bytes((0xE5,))}}), address=0x53, rate_hz={rate_hz!r})
print(accelerometer.rate_hz, "drivers.adxl345_setup" in sys.modules)
""").splitlines()
    # BW_RATE (0x2C) the rate's code, DATA_FORMAT (0x31) full resolution +-16 g, POWER_CTL (0x2D) measure
    assert out == [f"write 83 44 {code:02x}", "write 83 49 0b", "write 83 45 08", f"{rate_hz} False"]


def test_adxl345_with_another_chip_id_is_an_os_error():
    with pytest.raises(MicroPythonError, match="OSError: no ADXL345 at 0x53"):
        run_micropython(FAKE_BUS + """
from drivers.adxl345 import ADXL345
ADXL345(FakeI2C({0x00: bytes((0xE6,))}))
""")


@pytest.mark.parametrize("sample", [(0, 0, 256), (-1, 255, -256), (-32768, 32767, 3), (-3, -222, 0)])
def test_adxl345_samples_are_signed_little_endian_counts(sample):
    out = run_micropython(FAKE_BUS + f"""
from drivers.adxl345 import ADXL345
accelerometer = ADXL345(FakeI2C({{0x00: bytes((0xE5,)), 0x32: {struct.pack("<3h", *sample)!r}}}))
print(accelerometer.counts())
""").splitlines()
    assert out[-1] == repr(sample)


@pytest.mark.parametrize("count", [0, 1, 344, 2047, -1, -117, -2048])
def test_tmp102_celsius_is_the_signed_12_bit_count_in_sixteenths(count):
    register = struct.pack(">h", count << 4)  # left-justified in two big-endian bytes
    out = run_micropython(FAKE_BUS + f"""
from drivers.tmp102 import TMP102
print(TMP102(FakeI2C({{0x00: {register!r}}})).celsius())
""")
    assert float(out) == count * 0.0625


@pytest.mark.parametrize("shunt_ohm, power_register, watts", [(0.1, 18000, 36.0), (0.01, 1000, 20.0)])
def test_ina219_is_configured_and_calibrated_and_reads_power_for_its_shunt(shunt_ohm, power_register, watts):
    out = run_micropython(FAKE_BUS + f"""
from drivers.ina219 import INA219
monitor = INA219(FakeI2C({{3: {power_register.to_bytes(2, "big")!r}}}), shunt_ohm={shunt_ohm!r})
print(monitor.power_watts(), "drivers.ina219_setup" in sys.modules)
""").splitlines()
    # CONFIG (0) 32 V, PGA /8, 12-bit, continuous; CALIBRATION (5) 4096; Power_LSB = 20 x 10 uV / shunt
    assert out[:2] == ["write 64 0 399f", "write 64 5 1000"]
    power, setup_loaded = out[2].split()
    assert float(power) == pytest.approx(watts) and setup_loaded == "False"


@pytest.mark.parametrize("shunt_ohm", [0, -0.1])
def test_ina219_with_a_shunt_not_above_zero_is_a_value_error(shunt_ohm):
    with pytest.raises(MicroPythonError, match="ValueError: INA219 shunt_ohm must be > 0"):
        run_micropython(FAKE_BUS + f"""
from drivers.ina219 import INA219
INA219(FakeI2C({{}}), shunt_ohm={shunt_ohm!r})
""")
