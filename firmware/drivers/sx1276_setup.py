"""Setting an SX1276 up, the work of drivers.sx1276.SX1276's constructor, in a module loaded for it that unloads itself
when done (code that runs once per boot does not stay in the heap): the driver wired to its SPI bus and pins, the chip
reset, its RegVersion checked (a missing or miswired radio raises RadioError: the node's radio self-test), LoRa mode,
the FIFO's TX and RX bases, the LNA's boost, and the default LoRa settings applied."""
import time

from micropython import const

from drivers.sx1276 import RadioError
from modules import unload

_OP_MODE = const(0x01)
_LNA = const(0x0C)
_FIFO_TX_BASE = const(0x0E)
_FIFO_RX_BASE = const(0x0F)
_VERSION = const(0x42)
_LONG_RANGE = const(0x80)
_SLEEP = const(0)
_STDBY = const(1)
_CHIP_VERSION = const(0x12)
_LNA_BOOST_HF = const(0x03)


def set_up(radio, spi, cs, dio0, reset):
    """Wire `radio` (an SX1276 being constructed) to `spi`, its chip select `cs` and `dio0`, reset the chip with
    `reset`, check it, put it in LoRa STDBY and configure it with the defaults (which are every key configure()
    takes). This module is forgotten first, so that it is unloaded however this ends (its code lives while it runs)."""
    unload(__name__)
    radio._spi, radio._cs, radio._dio0 = spi, cs, dio0
    radio._reg = bytearray(2)
    register = radio._register
    cs(1)
    reset(0)
    time.sleep_ms(1)
    reset(1)
    time.sleep_ms(6)
    version = register(_VERSION)
    if version != _CHIP_VERSION:
        raise RadioError("SX1276 not found: RegVersion is 0x%02x, expected 0x12 (check SPI pins, NSS and RESET)"
                         % version)
    register(_OP_MODE, _SLEEP)  # LongRangeMode changes only in SLEEP
    register(_OP_MODE, _LONG_RANGE | _SLEEP)
    if not register(_OP_MODE) & _LONG_RANGE:
        raise RadioError("SX1276 did not enter LoRa mode")
    register(_OP_MODE, _LONG_RANGE | _STDBY)
    register(_FIFO_TX_BASE, 0)
    register(_FIFO_RX_BASE, 0)
    register(_LNA, register(_LNA) | _LNA_BOOST_HF)
    radio._cfg = {"freq_khz": 868100, "sf": 7, "bw": "125", "coding_rate": 5, "preamble_len": 8, "output_power": 14,
                  "syncword": 0x34, "invert_iq_tx": False, "invert_iq_rx": False, "crc_en": True}
    radio.configure({})
