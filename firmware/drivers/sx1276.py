"""Semtech SX1276 LoRa driver at register level over SPI, in micropython-lib's `lora` modem shape:
SX1276(spi, cs, dio0, reset, dio1=None); configure(lora_cfg); send(packet, tx_at_ms=None) -> ticks_ms of TX done;
recv(timeout_ms=None, rx_length=0xFF, rx_packet=None) -> RxPacket | None; standby(); sleep().

The constructor resets and sets up the chip with drivers/sx1276_setup.py (loaded for that, unloaded after): a missing or
miswired radio raises RadioError there, which is the node's radio self-test. send() is drivers/sx1276_tx.py's, loaded
for each transmission, and configure() drivers/sx1276_configure.py's, loaded for each call; receiving stays here (a receive window opens on time, and the MAC checks what it heard at once).
Waiting is polling with time.sleep_ms(1); the PA is PA_BOOST (as on Heltec boards). DIO1 is not used: RxTimeout is read
from RegIrqFlags.
"""
import time

from micropython import const

from drivers.lora_airtime import symbol_us

_OP_MODE = const(0x01)
_FIFO_ADDR_PTR = const(0x0D)
_FIFO_RX_CURRENT = const(0x10)
_IRQ_FLAGS = const(0x12)
_RX_NB_BYTES = const(0x13)
_MODEM_STAT = const(0x18)
_PKT_SNR = const(0x19)
_PKT_RSSI = const(0x1A)
_MODEM_CONFIG2 = const(0x1E)
_SYMB_TIMEOUT_LSB = const(0x1F)
_MAX_PAYLOAD_LENGTH = const(0x23)
_DIO_MAPPING1 = const(0x40)

# RegOpMode values, all with LongRangeMode (LoRa) set
_MODE_SLEEP = const(0x80)
_MODE_STDBY = const(0x81)
_MODE_RXCONTINUOUS = const(0x85)
_MODE_RXSINGLE = const(0x86)
_IRQ_RX_TIMEOUT = const(0x80)
_IRQ_RX_DONE = const(0x40)
_IRQ_CRC_ERROR = const(0x20)
_DIO0_RX_DONE = const(0x00)
_MODEM_STAT_SIGNAL = const(0x01)  # signal detected: a packet is being received
_MAX_SYMBOL_TIMEOUT = const(1023)
_MAX_TOA_MS = const(10000)  # a 255-byte packet at SF12/125 kHz lasts ~9.2 s
_MIN_PACKET_SYMBOLS = const(16)  # shortest packet: a 6-symbol preamble + 4.25 sync symbols + an 8-symbol header


class RadioError(OSError):
    """The radio is missing, miswired or misbehaving; the message says what to check."""


class RxPacket(bytearray):
    """A received packet: its bytes; recv() sets ticks_ms (when it ended), snr (dB), rssi (dBm) and valid_crc."""


class SX1276:
    """One SX1276 in LoRa mode on `spi` with chip select `cs`, DIO0 (TxDone) and RESET; DIO1 is accepted, not used."""

    def __init__(self, spi, cs, dio0, reset, dio1=None):
        from drivers.sx1276_setup import set_up  # at boot only: it unloads itself

        set_up(self, spi, cs, dio0, reset)

    def _register(self, address, value=None):
        """Read register `address`, or write `value` to it; returns the byte the chip answered (when writing, the
        register's value before the write)."""
        reg = self._reg
        reg[0] = address if value is None else address | 0x80
        reg[1] = value or 0  # a read clocks out a zero
        self._cs(0)
        self._spi.write_readinto(reg, reg)
        self._cs(1)
        return reg[1]

    def configure(self, lora_cfg):
        """Apply LoRa settings (keys as drivers/sx1276_setup.py's defaults; missing keys keep their value). Leaves the
        radio in STDBY. The work is drivers/sx1276_configure.py's, loaded for each call."""
        from drivers.sx1276_configure import configure  # unloads itself

        configure(self, lora_cfg)

    def standby(self):
        self._register(_OP_MODE, _MODE_STDBY)

    def sleep(self):
        """Lowest power; registers are kept (the FIFO is not)."""
        self._register(_OP_MODE, _MODE_SLEEP)

    # ---- TX

    def send(self, packet, tx_at_ms=None):
        """Transmit `packet` (at ticks_ms `tx_at_ms` if given); returns time.ticks_ms() when TxDone was seen. The work
        is drivers/sx1276_tx.py's, loaded for each transmission."""
        from drivers.sx1276_tx import send  # unloads itself

        return send(self, packet, tx_at_ms)

    # ---- RX

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        """Receive one packet: RXSINGLE with a symbol timeout covering `timeout_ms` (RXCONTINUOUS if None or too long
        for one). A packet whose preamble started in time is received to its end. Returns an RxPacket or None."""
        register = self._register
        register(_OP_MODE, _MODE_STDBY)
        register(_FIFO_ADDR_PTR, 0)
        register(_MAX_PAYLOAD_LENGTH, rx_length)
        register(_DIO_MAPPING1, _DIO0_RX_DONE)  # DIO1 = RxTimeout
        register(_IRQ_FLAGS, 0xFF)
        started = time.ticks_ms()
        deadline_ms = None
        if timeout_ms is not None:
            cfg = self._cfg
            tsym_us = symbol_us(cfg["sf"], int(cfg["bw"]))
            symbols = -(-timeout_ms * 1000 // tsym_us)
            if symbols <= _MAX_SYMBOL_TIMEOUT:
                register(_MODEM_CONFIG2, (register(_MODEM_CONFIG2) & 0xFC) | symbols >> 8)
                register(_SYMB_TIMEOUT_LSB, symbols & 0xFF)
                register(_OP_MODE, _MODE_RXSINGLE)
                deadline_ms = timeout_ms + _MAX_TOA_MS  # only if the chip never answers
                # Neither RxTimeout nor RxDone (a whole packet: preamble + header) can come sooner: no need to poll.
                quiet_ms = min(symbols, _MIN_PACKET_SYMBOLS) * tsym_us // 1000 - 1
                if quiet_ms > 0:
                    time.sleep_ms(quiet_ms)
            else:
                register(_OP_MODE, _MODE_RXCONTINUOUS)
                deadline_ms = timeout_ms
        else:
            register(_OP_MODE, _MODE_RXCONTINUOUS)
        while True:
            flags = register(_IRQ_FLAGS)
            if flags & (_IRQ_RX_DONE | _IRQ_RX_TIMEOUT):
                break
            if deadline_ms is not None and time.ticks_diff(time.ticks_ms(), started) > deadline_ms:
                if not register(_MODEM_STAT) & _MODEM_STAT_SIGNAL:
                    register(_OP_MODE, _MODE_STDBY)
                    return None
                deadline_ms += _MAX_TOA_MS
            time.sleep_ms(1)
        done = time.ticks_ms()
        register(_IRQ_FLAGS, 0xFF)
        if not flags & _IRQ_RX_DONE:
            return None
        length = register(_RX_NB_BYTES)
        register(_FIFO_ADDR_PTR, register(_FIFO_RX_CURRENT))
        snr_raw = register(_PKT_SNR)
        snr = (snr_raw - 256 if snr_raw > 127 else snr_raw) / 4
        rssi = -157 + register(_PKT_RSSI) + (snr if snr < 0 else 0)
        packet = rx_packet if rx_packet is not None and len(rx_packet) == length else RxPacket(length)
        self._cs(0)
        self._spi.write(b"\x00")  # RegFifo, read from RegFifoAddrPtr on
        self._spi.readinto(packet)
        self._cs(1)
        packet.ticks_ms, packet.snr, packet.rssi = done, snr, rssi
        packet.valid_crc = not flags & _IRQ_CRC_ERROR
        register(_OP_MODE, _MODE_STDBY)
        return packet
