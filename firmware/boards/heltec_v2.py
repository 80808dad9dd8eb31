"""Heltec WiFi LoRa 32 V2 (ESP32 + SX1276): the real board's pins. Same interface as every board file.

SX1276 on HSPI (SCK 5, MOSI 27, MISO 19, NSS 18, RESET 14, DIO0 26, DIO1 35); sensors on the OLED's I2C bus (SCL 15,
SDA 4), powered from Vext, which GPIO21 switches on when low; battery on GPIO37 through the board's 220k/100k divider;
lamp relay on GPIO12 and dimmer PWM on GPIO25 (the on-board LED shows the dim level); HC-SR501 PIR presence sensor
output on GPIO33 (an input-capable pin; the module's 3.3 V output needs no level shifting). An environment node's
Sensirion SCD41 CO2 sensor sits on the same I2C bus (address 0x62, 3.3 V from Vext).
"""
from machine import ADC, I2C, PWM, SPI, Pin

NAME = "heltec_v2"
BATTERY_DIVIDER = 3.2  # (220k + 100k) / 100k

_vext = Pin(21, Pin.OUT, value=0)  # external 3.3 V (sensors) on
_i2c = None


def radio():
    from drivers.sx1276 import SX1276

    spi = SPI(1, baudrate=5000000, sck=Pin(5), mosi=Pin(27), miso=Pin(19))
    return SX1276(spi, cs=Pin(18, Pin.OUT, value=1), dio0=Pin(26, Pin.IN), reset=Pin(14, Pin.OUT, value=1),
                  dio1=Pin(35, Pin.IN))


def i2c():
    global _i2c
    if _i2c is None:
        Pin(16, Pin.OUT, value=1)  # OLED reset released so it does not hold the shared bus
        _i2c = I2C(0, scl=Pin(15), sda=Pin(4), freq=400000)
    return _i2c


def lamp():
    from drivers.lamp import Lamp

    return Lamp(Pin(12, Pin.OUT, value=0), PWM(Pin(25), freq=1000, duty_u16=0))


def presence():
    from drivers.pir import PIR

    return PIR(Pin(33, Pin.IN))


def battery_volts(divider=BATTERY_DIVIDER):
    return ADC(Pin(37), atten=ADC.ATTN_11DB).read_uv() * divider / 1000000
