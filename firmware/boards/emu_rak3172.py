"""The emulated board of the HIL rig with a RAK3172 LoRaWAN module on UART1 instead of its SX1276 (the rig's
`add_board(..., rak3172=True)`): UART1 TX GPIO17 -> module RX, RX GPIO23 <- module TX, 115200 8N1. Sensors, lamp,
battery and the kits' parts are those of boards/emu.py. `lorawan_modem(options)` opens the module's UART; main.py then
runs the node through drivers/rak3172.py."""
from boards.emu import BATTERY_DIVIDER, battery_volts, crack_gauge_volts, i2c, lamp, strain_adcs  # noqa: F401

NAME = "emu_rak3172"
UART_ID, UART_TX, UART_RX = 1, 17, 23


def lorawan_modem(options=None):
    from drivers.rak3172_config import open_uart

    return open_uart(options or {}, UART_ID, UART_TX, UART_RX)
