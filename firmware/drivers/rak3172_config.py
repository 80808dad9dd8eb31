"""Setting up a RAK3172 modem node at boot (drivers/rak3172.py's node_from_config loads this module for that and
forgets it after, as the node starts once per boot): the module's UART from config.json's "modem" section, its reset
and the session's settings from config.json."""
from micropython import const

from config import hex_bytes, lorawan_options, number, section
from drivers.rak3172 import ModemNode, Rak3172
from modules import unload

_CONFIRMED_RETRIES = const(3)
_BAUDRATE = const(115200)
_UART_TIMEOUT_MS = const(1000)  # one readline() waits at most this long


def open_uart(options, uart_id, tx, rx):
    """machine.UART to the module: `options` (config.json "modem": uart, tx, rx, baudrate) over the board's defaults
    (a board's lorawan_modem() calls it while node_from_config runs, or for the self-test)."""
    from machine import UART, Pin

    uart_id = int(number(options, "uart", uart_id, 0, 9, "modem"))
    tx, rx = int(number(options, "tx", tx, 0, 63, "modem")), int(number(options, "rx", rx, 0, 63, "modem"))
    baudrate = int(number(options, "baudrate", _BAUDRATE, 1200, 921600, "modem"))
    return UART(uart_id, baudrate=baudrate, tx=Pin(tx), rx=Pin(rx), timeout=_UART_TIMEOUT_MS, timeout_char=50)


def node_from_config(config, make_uart):
    """Configure the module on make_uart() for the session config.json describes and return its ModemNode (OTAA joins
    at the first send). Keys: activation (abp: dev_addr, nwk_s_key, app_s_key; otaa: dev_eui, join_eui, app_key),
    data_rate (0..5, default 5), adr (default true). ConfigError before the UART is touched; ModemError when the module
    does not answer. The module keeps DevNonce and frame counters in its own flash. make_uart(options) gets the
    config's "modem" section (UART id, pins, baud rate over the board's defaults)."""
    activation, data_rate, adr = lorawan_options(config)
    if activation == "otaa":
        keys = (("DEVEUI", hex_bytes(config, "dev_eui", 8)), ("APPEUI", hex_bytes(config, "join_eui", 8)),
                ("APPKEY", hex_bytes(config, "app_key", 16)))
    else:
        keys = (("DEVADDR", hex_bytes(config, "dev_addr", 4)), ("NWKSKEY", hex_bytes(config, "nwk_s_key", 16)),
                ("APPSKEY", hex_bytes(config, "app_s_key", 16)))
    modem = Rak3172(make_uart(section(config, "modem")))
    modem.reset()  # whatever the module did before this boot (an exchange, P2P, other keys) ends here
    settings = [("NWM", "1"), ("BAND", "4"), ("NJM", "1" if activation == "otaa" else "0")]
    settings += [(name, value.hex()) for name, value in keys]
    settings += [("CLASS", "A"), ("ADR", "1" if adr else "0"), ("DR", str(data_rate)),
                 ("RETY", str(_CONFIRMED_RETRIES)), ("CFM", "0")]
    node = ModemNode(modem, settings, activation == "otaa", data_rate, adr)
    from drivers.rak3172_join import configure

    configure(node)
    unload("drivers.rak3172_join")
    return node
