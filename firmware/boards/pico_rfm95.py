"""Raspberry Pi Pico (RP2040) + HopeRF RFM95W (SX1276): the real board's pins. Same interface as every board file.

RFM95W on SPI0 (SCK GP18, MOSI GP19, MISO GP16), NSS GP17, RESET GP20, DIO0 GP21, DIO1 GP22. On the RP2040, machine.SPI
and machine.I2C take the bus number (0/1) and Pin objects, and only GP26..GP29 are ADC inputs (ADC0..ADC3; read_u16, 3.3
V full scale). Sensors on I2C0 (SCL GP5, SDA GP4: BH1750, INA219, MB7040, TMP102, ADXL345); battery: VSYS through the
Pico's own 200k/100k divider on GP29 (ADC3); lamp relay GP14 and dimmer PWM GP15; bridge kit: HX711 clock GP10, data
GP11 / GP12 / GP13, crack gauge on GP26 (ADC0).
"""
from machine import ADC, I2C, PWM, SPI, Pin

NAME = "pico_rfm95"
BATTERY_DIVIDER = 3  # (200k + 100k) / 100k on VSYS
ADC_FULL_SCALE_V = 3.3

_i2c = None


def radio():
    from drivers.sx1276 import SX1276

    spi = SPI(0, baudrate=5000000, sck=Pin(18), mosi=Pin(19), miso=Pin(16))
    return SX1276(spi, cs=Pin(17, Pin.OUT, value=1), dio0=Pin(21, Pin.IN), reset=Pin(20, Pin.OUT, value=1),
                  dio1=Pin(22, Pin.IN))


def i2c():
    global _i2c
    if _i2c is None:
        _i2c = I2C(0, scl=Pin(5), sda=Pin(4), freq=400000)
    return _i2c


def lamp():
    from drivers.lamp import Lamp

    return Lamp(Pin(14, Pin.OUT, value=0), PWM(Pin(15), freq=1000, duty_u16=0))


def _adc_volts(pin):
    return ADC(Pin(pin)).read_u16() * ADC_FULL_SCALE_V / 65535


def battery_volts(divider=BATTERY_DIVIDER):
    return _adc_volts(29) * divider


def strain_adcs(channels=3):
    """HX711 strain ADCs (bridge kit): shared clock GP10, data GP11, GP12, GP13 (channels 1-3)."""
    from drivers.hx711 import HX711Bank

    return HX711Bank(Pin(10, Pin.OUT, value=0), [Pin(p, Pin.IN) for p in (11, 12, 13)[:channels]])


def crack_gauge_volts():
    """Potentiometric crack gauge (bridge kit) on GP26 (ADC0)."""
    return _adc_volts(26)
