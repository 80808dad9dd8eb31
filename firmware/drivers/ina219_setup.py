"""Setting an INA219 up (drivers.ina219.INA219's constructor loads this module for it and unloads it after): its
configuration and calibration registers written, the power register's LSB worked out (drivers/ina219.py says how);
code that runs once per boot does not stay in the heap."""
from micropython import const

# registers
_CONFIG = const(0)
_CALIBRATION = const(5)
_CONFIG_32V_320MV_12BIT_CONTINUOUS = const(0x399F)
_CALIBRATION_4096 = const(4096)


def set_up(i2c, address, shunt_ohm, buf):
    """Configure the INA219 at `address` (32 V, PGA /8, 12-bit, continuous) and calibrate it (4096), through `buf` (2
    bytes); returns Power_LSB in watts for `shunt_ohm` (20 x Current_LSB, 10 µV / shunt_ohm). ValueError for a shunt
    that is not > 0."""
    if not shunt_ohm > 0:
        raise ValueError("INA219 shunt_ohm must be > 0")
    for register, value in ((_CONFIG, _CONFIG_32V_320MV_12BIT_CONTINUOUS), (_CALIBRATION, _CALIBRATION_4096)):
        buf[0], buf[1] = value >> 8, value & 0xFF
        i2c.writeto_mem(address, register, buf)
    return 20 * 10e-6 / shunt_ohm
