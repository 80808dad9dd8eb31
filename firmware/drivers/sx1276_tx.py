"""An SX1276 transmission, the work of drivers.sx1276.SX1276.send(), in a module loaded for each transmission that
unloads itself when done: a node transmits once per uplink and not on a deadline (the receive windows are timed from
the end of the transmission send() returns), so this code need not stay in the heap, beside the MAC's work on a
downlink, between uplinks."""
import time

from micropython import const

from drivers.lora_airtime import time_on_air_us
from drivers.sx1276 import RadioError
from modules import unload

_OP_MODE = const(0x01)
_FIFO_ADDR_PTR = const(0x0D)
_IRQ_FLAGS = const(0x12)
_PAYLOAD_LENGTH = const(0x22)
_DIO_MAPPING1 = const(0x40)
_MODE_STDBY = const(0x81)  # RegOpMode values, with LongRangeMode (LoRa) set
_MODE_TX = const(0x83)
_DIO0_TX_DONE = const(0x40)


def send(radio, packet, tx_at_ms):
    """Transmit `packet` with `radio` (at ticks_ms `tx_at_ms` unless None); returns time.ticks_ms() when TxDone was
    seen on DIO0. This module is forgotten first, so that it is unloaded however this ends (its code lives while it
    runs)."""
    unload(__name__)
    length = len(packet)
    if not 0 < length <= 255:
        raise ValueError("packet length must be 1..255")
    register, cfg, spi = radio._register, radio._cfg, radio._spi
    register(_OP_MODE, _MODE_STDBY)
    register(_FIFO_ADDR_PTR, 0)
    radio._cs(0)
    spi.write(b"\x80")  # RegFifo, written from RegFifoAddrPtr on
    spi.write(packet)
    radio._cs(1)
    register(_PAYLOAD_LENGTH, length)
    register(_DIO_MAPPING1, _DIO0_TX_DONE)
    register(_IRQ_FLAGS, 0xFF)
    if tx_at_ms is not None:
        delay = time.ticks_diff(tx_at_ms, time.ticks_ms())
        if delay > 0:
            time.sleep_ms(delay)
    toa_ms = time_on_air_us(length, cfg["sf"], int(cfg["bw"]), cfg["coding_rate"], cfg["preamble_len"],
                            cfg["crc_en"]) // 1000
    register(_OP_MODE, _MODE_TX)
    started = time.ticks_ms()
    if toa_ms > 2:
        time.sleep_ms(toa_ms - 1)  # nothing can happen before the packet is on the air
    limit_ms = 3 * toa_ms + 100
    dio0 = radio._dio0
    while not dio0():
        if time.ticks_diff(time.ticks_ms(), started) > limit_ms:
            register(_OP_MODE, _MODE_STDBY)
            raise RadioError("SX1276 TX did not finish (no TxDone on DIO0 within %d ms)" % limit_ms)
        time.sleep_ms(1)
    done = time.ticks_ms()
    register(_IRQ_FLAGS, 0xFF)
    return done
