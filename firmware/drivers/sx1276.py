"""Semtech SX1276 LoRa driver at register level over SPI, in micropython-lib's `lora` modem shape:
SX1276(spi, cs, dio0, reset, dio1=None); configure(lora_cfg); send(packet, tx_at_ms=None) -> ticks_ms of TX done;
recv(timeout_ms=None, rx_length=0xFF, rx_packet=None) -> RxPacket | None; standby(); sleep().

The constructor resets the chip and checks RegVersion (0x12): a missing or miswired radio raises RadioError there, which is
the node's radio self-test. Waiting is polling with time.sleep_ms(1); the PA is PA_BOOST (as on Heltec boards).
"""
import time

from micropython import const

from drivers.lora_airtime import low_data_rate, symbol_us, time_on_air_us

_FIFO = const(0x00)
_OP_MODE = const(0x01)
_FRF_MSB = const(0x06)
_PA_CONFIG = const(0x09)
_OCP = const(0x0B)
_LNA = const(0x0C)
_FIFO_ADDR_PTR = const(0x0D)
_FIFO_TX_BASE = const(0x0E)
_FIFO_RX_BASE = const(0x0F)
_FIFO_RX_CURRENT = const(0x10)
_IRQ_FLAGS = const(0x12)
_RX_NB_BYTES = const(0x13)
_MODEM_STAT = const(0x18)
_PKT_SNR = const(0x19)
_PKT_RSSI = const(0x1A)
_MODEM_CONFIG1 = const(0x1D)
_MODEM_CONFIG2 = const(0x1E)
_SYMB_TIMEOUT_LSB = const(0x1F)
_PREAMBLE_MSB = const(0x20)
_PAYLOAD_LENGTH = const(0x22)
_MAX_PAYLOAD_LENGTH = const(0x23)
_MODEM_CONFIG3 = const(0x26)
_INVERT_IQ = const(0x33)
_SYNC_WORD = const(0x39)
_INVERT_IQ2 = const(0x3B)
_DIO_MAPPING1 = const(0x40)
_VERSION = const(0x42)
_PA_DAC = const(0x4D)

_LONG_RANGE = const(0x80)
_SLEEP = const(0)
_STDBY = const(1)
_TX = const(3)
_RXCONTINUOUS = const(5)
_RXSINGLE = const(6)
_IRQ_RX_TIMEOUT = const(0x80)
_IRQ_RX_DONE = const(0x40)
_IRQ_CRC_ERROR = const(0x20)
_DIO0_RX_DONE = const(0x00)
_DIO0_TX_DONE = const(0x40)
_MODEM_STAT_SIGNAL = const(0x01)  # signal detected: a packet is being received
_CHIP_VERSION = const(0x12)
_BANDWIDTHS = ("125", "250", "500")  # in RegModemConfig1 these are Bw 7, 8, 9
_MAX_SYMBOL_TIMEOUT = const(1023)
_MAX_TOA_MS = const(10000)  # a 255-byte packet at SF12/125 kHz lasts ~9.2 s
_MIN_PACKET_SYMBOLS = const(16)  # shortest packet: a 6-symbol preamble + 4.25 sync symbols + an 8-symbol header

DEFAULT_CONFIG = {"freq_khz": 868100, "sf": 7, "bw": "125", "coding_rate": 5, "preamble_len": 8, "output_power": 14,
                  "syncword": 0x34, "invert_iq_tx": False, "invert_iq_rx": False, "crc_en": True}


class RadioError(OSError):
    """The radio is missing, miswired or misbehaving; the message says what to check."""


class RxPacket(bytearray):
    """A received packet: its bytes, plus ticks_ms (when it ended), snr (dB), rssi (dBm) and valid_crc."""

    def __init__(self, payload, ticks_ms=None, snr=None, rssi=None, valid_crc=True):
        super().__init__(payload)
        self.ticks_ms, self.snr, self.rssi, self.valid_crc = ticks_ms, snr, rssi, valid_crc


class SX1276:
    """One SX1276 in LoRa mode on `spi` with chip select `cs`, DIO0 (TxDone/RxDone), RESET and optionally DIO1."""

    def __init__(self, spi, cs, dio0, reset, dio1=None):
        self._spi, self._cs, self._dio0, self._reset, self._dio1 = spi, cs, dio0, reset, dio1
        self._reg = bytearray(2)
        self._cfg = {}
        cs(1)
        reset(0)
        time.sleep_ms(1)
        reset(1)
        time.sleep_ms(6)
        version = self._read(_VERSION)
        if version != _CHIP_VERSION:
            raise RadioError("SX1276 not found: RegVersion is 0x%02x, expected 0x12 (check SPI pins, NSS and RESET)"
                             % version)
        self._write(_OP_MODE, _SLEEP)  # LongRangeMode changes only in SLEEP
        self._write(_OP_MODE, _LONG_RANGE | _SLEEP)
        if not self._read(_OP_MODE) & _LONG_RANGE:
            raise RadioError("SX1276 did not enter LoRa mode")
        self._write(_OP_MODE, _LONG_RANGE | _STDBY)
        self._write(_FIFO_TX_BASE, 0)
        self._write(_FIFO_RX_BASE, 0)
        self._write(_LNA, self._read(_LNA) | 0x03)  # LnaBoostHf
        self.configure(DEFAULT_CONFIG)

    # ---- SPI

    def _read(self, address):
        reg = self._reg
        reg[0], reg[1] = address & 0x7F, 0
        self._cs(0)
        self._spi.write_readinto(reg, reg)
        self._cs(1)
        return reg[1]

    def _write(self, address, value):
        reg = self._reg
        reg[0], reg[1] = address | 0x80, value
        self._cs(0)
        self._spi.write(reg)
        self._cs(1)

    def _write_burst(self, address, data):
        self._cs(0)
        self._spi.write(bytes((address | 0x80,)) + bytes(data))
        self._cs(1)

    def _read_burst(self, address, buf):
        self._cs(0)
        self._spi.write(bytes((address & 0x7F,)))
        self._spi.readinto(buf)
        self._cs(1)

    def _mode(self, mode):
        self._write(_OP_MODE, _LONG_RANGE | mode)

    # ---- configuration

    def configure(self, lora_cfg):
        """Apply LoRa settings (keys as DEFAULT_CONFIG; missing keys keep their value). Leaves the radio in STDBY."""
        for key in lora_cfg:
            if key not in DEFAULT_CONFIG:
                raise ValueError("unknown radio setting " + key)
        cfg = self._cfg
        cfg.update(lora_cfg)
        sf, cr, bw = cfg["sf"], cfg["coding_rate"], str(cfg["bw"])
        if not 7 <= sf <= 12 or not 5 <= cr <= 8 or bw not in _BANDWIDTHS:
            raise ValueError("radio settings out of range: sf 7..12, coding_rate 5..8, bw 125|250|500")
        bw_khz, bw_code = int(bw), 7 + _BANDWIDTHS.index(bw)
        self._mode(_STDBY)
        frf = cfg["freq_khz"] * 2048 // 125  # Frf = f * 2^19 / 32 MHz
        self._write_burst(_FRF_MSB, bytes((frf >> 16 & 0xFF, frf >> 8 & 0xFF, frf & 0xFF)))
        power = max(2, min(20, int(cfg["output_power"])))
        if power > 17:  # +20 dBm needs the high-power DAC and more current
            self._write(_PA_DAC, 0x87)
            self._write(_OCP, 0x20 | 18)  # 150 mA
            self._write(_PA_CONFIG, 0x80 | 0x70 | 15)
        else:
            self._write(_PA_DAC, 0x84)
            self._write(_OCP, 0x20 | 11)  # 100 mA
            self._write(_PA_CONFIG, 0x80 | 0x70 | (power - 2))  # PA_BOOST: Pout = 2 + OutputPower
        self._write(_MODEM_CONFIG1, bw_code << 4 | (cr - 4) << 1)
        self._write(_MODEM_CONFIG2, sf << 4 | (0x04 if cfg["crc_en"] else 0) | (self._read(_MODEM_CONFIG2) & 0x03))
        self._write(_MODEM_CONFIG3, (0x08 if low_data_rate(sf, bw_khz) else 0) | 0x04)  # LDRO, AgcAutoOn
        preamble = cfg["preamble_len"]
        self._write_burst(_PREAMBLE_MSB, bytes((preamble >> 8 & 0xFF, preamble & 0xFF)))
        self._write(_SYNC_WORD, cfg["syncword"])
        self._write(_INVERT_IQ, 0x26 | (0x40 if cfg["invert_iq_rx"] else 0) | (0 if cfg["invert_iq_tx"] else 0x01))
        self._write(_INVERT_IQ2, 0x19 if cfg["invert_iq_rx"] else 0x1D)
        self._bw_khz = bw_khz

    def standby(self):
        self._mode(_STDBY)

    def sleep(self):
        """Lowest power; registers are kept (the FIFO is not)."""
        self._mode(_SLEEP)

    def time_on_air_us(self, length):
        cfg = self._cfg
        return time_on_air_us(length, cfg["sf"], self._bw_khz, cfg["coding_rate"], cfg["preamble_len"], cfg["crc_en"])

    # ---- TX

    def send(self, packet, tx_at_ms=None):
        """Transmit `packet` (at ticks_ms `tx_at_ms` if given); returns time.ticks_ms() when TxDone was seen."""
        length = len(packet)
        if not 0 < length <= 255:
            raise ValueError("packet length must be 1..255")
        self._mode(_STDBY)
        self._write(_FIFO_ADDR_PTR, 0)
        self._write_burst(_FIFO, packet)
        self._write(_PAYLOAD_LENGTH, length)
        self._write(_DIO_MAPPING1, _DIO0_TX_DONE)
        self._write(_IRQ_FLAGS, 0xFF)
        if tx_at_ms is not None:
            delay = time.ticks_diff(tx_at_ms, time.ticks_ms())
            if delay > 0:
                time.sleep_ms(delay)
        toa_ms = self.time_on_air_us(length) // 1000
        self._mode(_TX)
        started = time.ticks_ms()
        if toa_ms > 2:
            time.sleep_ms(toa_ms - 1)  # nothing can happen before the packet is on the air
        limit_ms = 3 * toa_ms + 100
        while not self._dio0():
            if time.ticks_diff(time.ticks_ms(), started) > limit_ms:
                self._mode(_STDBY)
                raise RadioError("SX1276 TX did not finish (no TxDone on DIO0 within %d ms)" % limit_ms)
            time.sleep_ms(1)
        done = time.ticks_ms()
        self._write(_IRQ_FLAGS, 0xFF)
        return done

    # ---- RX

    def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        """Receive one packet: RXSINGLE with a symbol timeout covering `timeout_ms` (RXCONTINUOUS if None or too long for
        one). A packet whose preamble started in time is received to its end. Returns an RxPacket or None."""
        self._mode(_STDBY)
        self._write(_FIFO_ADDR_PTR, 0)
        self._write(_MAX_PAYLOAD_LENGTH, rx_length)
        self._write(_DIO_MAPPING1, _DIO0_RX_DONE)  # DIO1 = RxTimeout
        self._write(_IRQ_FLAGS, 0xFF)
        started = time.ticks_ms()
        deadline_ms = None
        if timeout_ms is not None:
            tsym_us = symbol_us(self._cfg["sf"], self._bw_khz)
            symbols = -(-timeout_ms * 1000 // tsym_us)
            if symbols <= _MAX_SYMBOL_TIMEOUT:
                self._write(_MODEM_CONFIG2, (self._read(_MODEM_CONFIG2) & 0xFC) | symbols >> 8)
                self._write(_SYMB_TIMEOUT_LSB, symbols & 0xFF)
                self._mode(_RXSINGLE)
                deadline_ms = timeout_ms + _MAX_TOA_MS  # only if the chip never answers
                # Neither RxTimeout nor RxDone (a whole packet: preamble + header) can come sooner: no need to poll.
                quiet_ms = min(symbols, _MIN_PACKET_SYMBOLS) * tsym_us // 1000 - 1
                if quiet_ms > 0:
                    time.sleep_ms(quiet_ms)
            else:
                self._mode(_RXCONTINUOUS)
                deadline_ms = timeout_ms
        else:
            self._mode(_RXCONTINUOUS)
        while True:
            flags = self._read(_IRQ_FLAGS)
            if flags & (_IRQ_RX_DONE | _IRQ_RX_TIMEOUT):
                break
            if deadline_ms is not None and time.ticks_diff(time.ticks_ms(), started) > deadline_ms:
                if not self._read(_MODEM_STAT) & _MODEM_STAT_SIGNAL:
                    self._mode(_STDBY)
                    return None
                deadline_ms += _MAX_TOA_MS
            time.sleep_ms(1)
        done = time.ticks_ms()
        self._write(_IRQ_FLAGS, 0xFF)
        if not flags & _IRQ_RX_DONE:
            return None
        length = self._read(_RX_NB_BYTES)
        self._write(_FIFO_ADDR_PTR, self._read(_FIFO_RX_CURRENT))
        snr_raw = self._read(_PKT_SNR)
        snr = (snr_raw - 256 if snr_raw > 127 else snr_raw) / 4
        rssi = -157 + self._read(_PKT_RSSI) + (snr if snr < 0 else 0)
        packet = rx_packet if rx_packet is not None and len(rx_packet) == length else RxPacket(length)
        self._read_burst(_FIFO, packet)
        packet.ticks_ms, packet.snr, packet.rssi = done, snr, rssi
        packet.valid_crc = not flags & _IRQ_CRC_ERROR
        self._mode(_STDBY)
        return packet
