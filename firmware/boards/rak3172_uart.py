"""Any MicroPython board with a RAK3172 LoRaWAN module (RUI3 AT firmware) on a UART; the defaults are an ESP32 DevKitC:
module on UART2 (TX GPIO17 -> module RX, RX GPIO16 <- module TX, 115200 8N1), overridden by config.json "modem" {"uart",
"tx", "rx", "baudrate"} for another board. Sensors: I2C0 SCL GPIO22 / SDA GPIO21 (BH1750, INA219, MB7040, TMP102,
ADXL345); lamp relay GPIO26 and dimmer PWM GPIO25; battery on ADC GPIO35 through a 100k/100k divider; bridge kit: HX711
clock GPIO13, data GPIO34 / GPIO39 / GPIO36, crack gauge on ADC GPIO32. main.py runs the node through drivers/rak3172.py
because this board has `lorawan_modem()`."""
from machine import ADC, I2C, PWM, Pin

NAME = "rak3172_uart"
BATTERY_DIVIDER = 2  # 100k / 100k
UART_ID, UART_TX, UART_RX = 2, 17, 16

_i2c = None


def lorawan_modem(options=None):
    from drivers.rak3172_config import open_uart

    return open_uart(options or {}, UART_ID, UART_TX, UART_RX)


def i2c():
    global _i2c
    if _i2c is None:
        _i2c = I2C(0, scl=Pin(22), sda=Pin(21), freq=400000)
    return _i2c


def lamp():
    from drivers.lamp import Lamp

    return Lamp(Pin(26, Pin.OUT, value=0), PWM(Pin(25), freq=1000, duty_u16=0))


def battery_volts(divider=BATTERY_DIVIDER):
    return ADC(Pin(35), atten=ADC.ATTN_11DB).read_uv() * divider / 1000000


def strain_adcs(channels=3):
    """HX711 strain ADCs (bridge kit): shared clock GPIO13, data GPIO34, GPIO39, GPIO36 (channels 1-3)."""
    from drivers.hx711 import HX711Bank

    return HX711Bank(Pin(13, Pin.OUT, value=0), [Pin(p, Pin.IN) for p in (34, 39, 36)[:channels]])


def crack_gauge_volts():
    """Potentiometric crack gauge (bridge kit) on ADC GPIO32."""
    return ADC(Pin(32), atten=ADC.ATTN_11DB).read_uv() / 1000000
