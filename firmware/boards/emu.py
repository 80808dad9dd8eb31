"""The emulated board of the HIL rig (a Heltec WiFi LoRa 32 V2 in shape): pins and buses exactly as the wiring table in
docs/architecture.md. Same interface as every board file: radio(), i2c(), lamp(), presence(), battery_volts(),
BATTERY_DIVIDER; for the waste and bridge kits also strain_adcs() (HX711 bank) and crack_gauge_volts(). The kits' I2C
sensors (MB7040 0x70, TMP102 0x48, ADXL345 0x53, the environment kit's SCD41 0x62) share i2c()."""
from machine import ADC, I2C, PWM, SPI, Pin

NAME = "emu"
BATTERY_DIVIDER = 2  # 1:2 divider in front of the ADC pin

_i2c = None


def radio():
    from drivers.sx1276 import SX1276

    spi = SPI(1, sck=Pin(5), mosi=Pin(27), miso=Pin(19))
    return SX1276(spi, cs=Pin(18, Pin.OUT, value=1), dio0=Pin(26, Pin.IN), reset=Pin(14, Pin.OUT, value=1),
                  dio1=Pin(35, Pin.IN))


def i2c():
    global _i2c
    if _i2c is None:
        _i2c = I2C(0, scl=Pin(15), sda=Pin(4))
    return _i2c


def lamp():
    from drivers.lamp import Lamp

    return Lamp(Pin(12, Pin.OUT, value=0), PWM(Pin(25), freq=1000, duty_u16=0))


def presence():
    """The streetlight's PIR presence sensor: output on pin 33, high while it senses presence."""
    from drivers.pir import PIR

    return PIR(Pin(33, Pin.IN))


def battery_volts(divider=BATTERY_DIVIDER):
    return ADC(Pin(37)).read_uv() * divider / 1000000


def strain_adcs(channels=3):
    """The HX711 strain ADCs of the bridge kit: shared clock on pin 13, data on pins 34, 38 and 39 (channels 1-3)."""
    from drivers.hx711 import HX711Bank

    return HX711Bank(Pin(13, Pin.OUT, value=0), [Pin(p, Pin.IN) for p in (34, 38, 39)[:channels]])


def crack_gauge_volts():
    """The potentiometric crack gauge of the bridge kit on ADC pin 36."""
    return ADC(Pin(36)).read_uv() / 1000000
