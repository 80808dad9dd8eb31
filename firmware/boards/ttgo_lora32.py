"""LilyGO TTGO LoRa32 V2.1 (T3 V1.6.1; ESP32 + SX1276): the real board's pins. Same interface as every board file.

SX1276 on VSPI (SCK 5, MOSI 27, MISO 19, NSS 18, RESET 23, DIO0 26, DIO1 33); sensors on the OLED's I2C bus (SCL 22, SDA
21: BH1750, INA219, MB7040, TMP102, ADXL345); battery on GPIO35 through the board's 100k/100k divider; lamp relay on
GPIO13 and dimmer PWM on GPIO25 (the on-board green LED shows the dim level); bridge kit: HX711 clock GPIO4, data GPIO34
/ GPIO39 / GPIO36, crack gauge on ADC GPIO32.
"""
from machine import ADC, I2C, PWM, SPI, Pin

NAME = "ttgo_lora32"
BATTERY_DIVIDER = 2  # 100k / 100k

_i2c = None


def radio():
    from drivers.sx1276 import SX1276

    spi = SPI(2, baudrate=5000000, sck=Pin(5), mosi=Pin(27), miso=Pin(19))
    return SX1276(spi, cs=Pin(18, Pin.OUT, value=1), dio0=Pin(26, Pin.IN), reset=Pin(23, Pin.OUT, value=1),
                  dio1=Pin(33, Pin.IN))


def i2c():
    global _i2c
    if _i2c is None:
        _i2c = I2C(0, scl=Pin(22), sda=Pin(21), freq=400000)
    return _i2c


def lamp():
    from drivers.lamp import Lamp

    return Lamp(Pin(13, Pin.OUT, value=0), PWM(Pin(25), freq=1000, duty_u16=0))


def battery_volts(divider=BATTERY_DIVIDER):
    return ADC(Pin(35), atten=ADC.ATTN_11DB).read_uv() * divider / 1000000


def strain_adcs(channels=3):
    """HX711 strain ADCs (bridge kit): shared clock GPIO4, data GPIO34, GPIO39, GPIO36 (channels 1-3)."""
    from drivers.hx711 import HX711Bank

    return HX711Bank(Pin(4, Pin.OUT, value=0), [Pin(p, Pin.IN) for p in (34, 39, 36)[:channels]])


def crack_gauge_volts():
    """Potentiometric crack gauge (bridge kit) on ADC GPIO32."""
    return ADC(Pin(32), atten=ADC.ATTN_11DB).read_uv() / 1000000
