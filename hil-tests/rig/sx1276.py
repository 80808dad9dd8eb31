"""SX1276 in LoRa mode at register level, behind an SPI slave interface, on the air (reference/sx1276.md).

SPI: a transaction runs from NSS low to NSS high; its first byte is (write ? 0x80 : 0) | address, then data bytes with
address auto-increment, except RegFifo (0x00), which reads/writes at RegFifoAddrPtr and advances that pointer. While writing,
MISO returns the old value. LongRangeMode changes only in SLEEP; the FIFO is cleared and inaccessible in SLEEP. TX sends
RegPayloadLength bytes from RegFifoTxBaseAddr and sets TxDone after the time on air; RXSINGLE ends with RxDone or, when no
preamble started within RegSymbTimeout symbols, RxTimeout; both fall back to STDBY, RXCONTINUOUS keeps listening. IRQ
flags are cleared by writing 1 and masked ones are never set; DIO0/DIO1 follow the flags RegDioMapping1 maps to them.
Pulling the RESET line low resets every register.
"""
from __future__ import annotations

import random
from typing import Callable

from dos_rig.air import Air, Modulation, Reception, Transmission, modulation_matches
from dos_rig.airtime import noise_floor_dbm, symbol_time_us
from dos_rig.clock import Timer, VirtualClock

FXOSC_HZ = 32_000_000
FSTEP_HZ = FXOSC_HZ / (1 << 19)

REG_FIFO, REG_OP_MODE = 0x00, 0x01
REG_FRF_MSB, REG_FRF_MID, REG_FRF_LSB = 0x06, 0x07, 0x08
REG_PA_CONFIG = 0x09
REG_FIFO_ADDR_PTR, REG_FIFO_TX_BASE, REG_FIFO_RX_BASE, REG_FIFO_RX_CURRENT = 0x0D, 0x0E, 0x0F, 0x10
REG_IRQ_FLAGS_MASK, REG_IRQ_FLAGS, REG_RX_NB_BYTES = 0x11, 0x12, 0x13
REG_MODEM_STAT, REG_PKT_SNR, REG_PKT_RSSI, REG_RSSI_VALUE = 0x18, 0x19, 0x1A, 0x1B
REG_MODEM_CONFIG1, REG_MODEM_CONFIG2, REG_SYMB_TIMEOUT_LSB = 0x1D, 0x1E, 0x1F
REG_PREAMBLE_MSB, REG_PREAMBLE_LSB, REG_PAYLOAD_LENGTH = 0x20, 0x21, 0x22
REG_FIFO_RX_BYTE_ADDR, REG_MODEM_CONFIG3, REG_RSSI_WIDEBAND = 0x25, 0x26, 0x2C
REG_INVERT_IQ, REG_SYNC_WORD, REG_INVERT_IQ2 = 0x33, 0x39, 0x3B
REG_DIO_MAPPING1, REG_VERSION, REG_PA_DAC = 0x40, 0x42, 0x4D

MODE_SLEEP, MODE_STDBY, MODE_FSTX, MODE_TX, MODE_FSRX, MODE_RXCONTINUOUS, MODE_RXSINGLE, MODE_CAD = range(8)
LONG_RANGE = 0x80

IRQ_RX_TIMEOUT, IRQ_RX_DONE, IRQ_CRC_ERROR, IRQ_VALID_HEADER = 0x80, 0x40, 0x20, 0x10
IRQ_TX_DONE, IRQ_CAD_DONE, IRQ_FHSS, IRQ_CAD_DETECTED = 0x08, 0x04, 0x02, 0x01

VERSION = 0x12
RESET_VALUES = {
    REG_OP_MODE: 0x09, REG_FRF_MSB: 0x6C, REG_FRF_MID: 0x80, REG_FRF_LSB: 0x00, REG_PA_CONFIG: 0x4F, 0x0A: 0x09,
    0x0B: 0x2B, 0x0C: 0x20, REG_FIFO_TX_BASE: 0x80, REG_MODEM_STAT: 0x10, REG_MODEM_CONFIG1: 0x72,
    REG_MODEM_CONFIG2: 0x70, REG_SYMB_TIMEOUT_LSB: 0x64, REG_PREAMBLE_LSB: 0x08, REG_PAYLOAD_LENGTH: 0x01,
    0x23: 0xFF, 0x24: 0x00, REG_MODEM_CONFIG3: 0x04, 0x31: 0xC3, REG_INVERT_IQ: 0x27, 0x37: 0x0A,
    REG_SYNC_WORD: 0x12, REG_INVERT_IQ2: 0x1D, REG_VERSION: VERSION, 0x4B: 0x09, REG_PA_DAC: 0x84,
}
READ_ONLY = {REG_FIFO_RX_CURRENT, REG_RX_NB_BYTES, 0x14, 0x15, 0x16, 0x17, REG_MODEM_STAT, REG_PKT_SNR, REG_PKT_RSSI,
             REG_RSSI_VALUE, 0x1C, REG_FIFO_RX_BYTE_ADDR, REG_RSSI_WIDEBAND, REG_VERSION}
BANDWIDTHS_HZ = {0: 7800, 1: 10400, 2: 15600, 3: 20800, 4: 31250, 5: 41700, 6: 62500, 7: 125000, 8: 250000, 9: 500000}
DIO0_FLAGS = {0: IRQ_RX_DONE, 1: IRQ_TX_DONE, 2: IRQ_CAD_DONE, 3: 0}
DIO1_FLAGS = {0: IRQ_RX_TIMEOUT, 1: IRQ_FHSS, 2: IRQ_CAD_DETECTED, 3: 0}
INVERT_IQ2_NORMAL, INVERT_IQ2_INVERTED = 0x1D, 0x19


def frf_to_hz(frf: int) -> float:
    return frf * FSTEP_HZ


def hz_to_frf(freq_hz: float) -> int:
    return round(freq_hz / FSTEP_HZ)


class SX1276:
    """One SX1276 chip: registers, FIFO, modes, IRQ flags and DIO lines, transmitting on and receiving from `air`."""

    def __init__(self, radio_id: str, clock: VirtualClock, air: Air, position: tuple = (0.0, 0.0),
                 on_dio_change: Callable[[int, int], None] | None = None):
        self.receiver_id = radio_id
        self.clock, self.air = clock, air
        self.position = tuple(position)
        self.on_dio_change = on_dio_change
        self._random = random.Random(radio_id)
        self.transmitted: list[Transmission] = []
        self.reset()
        air.attach(self)

    # --- state ------------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Power-on / RESET-line reset: every register to its reset value, FIFO cleared, activity stopped."""
        self._stop_activity()
        self.regs = bytearray(0x80)
        for address, value in RESET_VALUES.items():
            self.regs[address] = value
        self.fifo = bytearray(256)
        self._selected = False
        self._address: int | None = None
        self._writing = False
        self._in_reset = False
        self._dio = (0, 0)
        self._update_dio()

    def _stop_activity(self) -> None:
        for name in ("_tx_timer", "_rx_timer"):
            timer: Timer | None = getattr(self, name, None)
            if timer is not None:
                timer.cancel()
            setattr(self, name, None)
        tx = getattr(self, "_tx", None)
        if tx is not None and self.clock.now_us < tx.end_us:
            self.air.abort(tx)
        self._tx: Transmission | None = None
        self._receiving: Reception | None = None
        self._rx_write_addr = 0

    @property
    def lora(self) -> bool:
        return bool(self.regs[REG_OP_MODE] & LONG_RANGE)

    @property
    def mode(self) -> int:
        return self.regs[REG_OP_MODE] & 0x07

    @property
    def dio0(self) -> int:
        return self._dio[0]

    @property
    def dio1(self) -> int:
        return self._dio[1]

    def _update_dio(self) -> None:
        flags = self.regs[REG_IRQ_FLAGS] if self.lora else 0
        mapping = self.regs[REG_DIO_MAPPING1]
        levels = (int(bool(flags & DIO0_FLAGS[mapping >> 6])), int(bool(flags & DIO1_FLAGS[(mapping >> 4) & 3])))
        old, self._dio = self._dio, levels
        if self.on_dio_change is not None:
            for index in (0, 1):
                if old[index] != levels[index]:
                    self.on_dio_change(index, levels[index])

    def _raise_irq(self, flags: int) -> None:
        self.regs[REG_IRQ_FLAGS] |= flags & ~self.regs[REG_IRQ_FLAGS_MASK] & 0xFF
        self._update_dio()

    def _set_mode(self, mode: int) -> None:
        self.regs[REG_OP_MODE] = (self.regs[REG_OP_MODE] & 0xF8) | mode

    # --- modulation from registers -------------------------------------------------------------------------------
    def frequency_hz(self) -> float:
        return frf_to_hz((self.regs[REG_FRF_MSB] << 16) | (self.regs[REG_FRF_MID] << 8) | self.regs[REG_FRF_LSB])

    def modulation(self, receive: bool) -> Modulation:
        """The LoRa settings the registers describe, for transmitting or for receiving (IQ inversion differs)."""
        cfg1, cfg2 = self.regs[REG_MODEM_CONFIG1], self.regs[REG_MODEM_CONFIG2]
        bw = BANDWIDTHS_HZ.get(cfg1 >> 4, 125000)
        if receive:
            invert_bit = bool(self.regs[REG_INVERT_IQ] & 0x40)
            expected_iq2 = INVERT_IQ2_INVERTED if invert_bit else INVERT_IQ2_NORMAL
            # the chip only demodulates inverted IQ when both registers agree; a half-configured radio hears nothing
            iq = invert_bit if self.regs[REG_INVERT_IQ2] == expected_iq2 else None
        else:
            iq = not (self.regs[REG_INVERT_IQ] & 0x01)
        return Modulation(freq_hz=self.frequency_hz(), sf=max(6, min(12, cfg2 >> 4)), bw_hz=bw,
                          sync_word=self.regs[REG_SYNC_WORD], iq_inverted=iq, cr=max(1, min(4, (cfg1 >> 1) & 0x07)),
                          crc=bool(cfg2 & 0x04), preamble=(self.regs[REG_PREAMBLE_MSB] << 8) | self.regs[REG_PREAMBLE_LSB],
                          implicit_header=bool(cfg1 & 0x01), ldro=bool(self.regs[REG_MODEM_CONFIG3] & 0x08))

    def tx_power_dbm(self) -> float:
        pa = self.regs[REG_PA_CONFIG]
        output_power = pa & 0x0F
        if pa & 0x80:  # PA_BOOST
            return output_power + (5 if self.regs[REG_PA_DAC] & 0x07 == 0x07 else 2)
        max_power = (pa >> 4) & 0x07
        return 10.8 + 0.6 * max_power - (15 - output_power)

    # --- SPI slave --------------------------------------------------------------------------------------------------
    def nss(self, level: int) -> None:
        """The NSS (chip select) line: low starts a transaction, high ends it."""
        if level:
            self._selected = False
            self._address = None
        elif not self._selected:
            self._selected = True
            self._address = None

    @property
    def writing(self) -> bool:
        """Whether the open SPI transaction writes (a read-only one only polls the chip)."""
        return self._selected and self._address is not None and self._writing

    def reset_line(self, level: int) -> None:
        """The NRESET line: low holds the chip in reset; releasing it leaves every register at its reset value."""
        if not level and not self._in_reset:
            self.reset()
            self._in_reset = True
        elif level:
            self._in_reset = False

    def transfer(self, data: bytes) -> bytes:
        """Clock data in on MOSI; returns what the chip drives on MISO (zeros while not selected or in reset)."""
        if not self._selected or self._in_reset:
            return bytes(len(data))
        out = bytearray()
        for byte in data:
            if self._address is None:
                self._address, self._writing = byte & 0x7F, bool(byte & 0x80)
                out.append(0)
                continue
            address = self._address
            out.append(self._read(address))
            if self._writing:
                self._write(address, byte)
            if address != REG_FIFO:
                self._address = (address + 1) & 0x7F
        return bytes(out)

    def _read(self, address: int) -> int:
        if address == REG_FIFO:
            if self.mode == MODE_SLEEP:
                return 0
            pointer = self.regs[REG_FIFO_ADDR_PTR]
            value = self.fifo[pointer]
            if not self._writing:
                self.regs[REG_FIFO_ADDR_PTR] = (pointer + 1) & 0xFF
            return value
        if address == REG_RSSI_VALUE:
            level = self.air.strongest_signal(self.frequency_hz(), self.position, exclude=self.receiver_id)
            rssi = noise_floor_dbm(self.modulation(True).bw_hz) if level is None else level
            return max(0, min(255, round(rssi + 157)))
        if address == REG_RSSI_WIDEBAND:
            return self._random.getrandbits(8)
        if address == REG_MODEM_STAT:
            return 0x0B if self._receiving is not None else 0x10
        return self.regs[address]

    def _write(self, address: int, value: int) -> None:
        if address == REG_FIFO:
            if self.mode != MODE_SLEEP:
                pointer = self.regs[REG_FIFO_ADDR_PTR]
                self.fifo[pointer] = value
                self.regs[REG_FIFO_ADDR_PTR] = (pointer + 1) & 0xFF
        elif address == REG_OP_MODE:
            self._write_op_mode(value)
        elif address == REG_IRQ_FLAGS:
            self.regs[REG_IRQ_FLAGS] &= ~value & 0xFF
            self._update_dio()
        elif address in READ_ONLY:
            return
        else:
            self.regs[address] = value
            if address in (REG_DIO_MAPPING1, REG_IRQ_FLAGS_MASK):
                self._update_dio()

    def _write_op_mode(self, value: int) -> None:
        old_mode, old_lora = self.mode, self.regs[REG_OP_MODE] & LONG_RANGE
        lora = value & LONG_RANGE if old_mode == MODE_SLEEP else old_lora
        new_mode = value & 0x07
        self.regs[REG_OP_MODE] = lora | (value & 0x7F)
        if lora != old_lora:
            self._update_dio()
        if not lora:
            return
        if new_mode == old_mode and new_mode in (MODE_TX, MODE_RXCONTINUOUS, MODE_RXSINGLE, MODE_CAD):
            return
        self._stop_activity()
        if new_mode == MODE_SLEEP:
            self.fifo = bytearray(256)
        elif new_mode == MODE_TX:
            self._start_tx()
        elif new_mode in (MODE_RXCONTINUOUS, MODE_RXSINGLE):
            self._start_rx(new_mode)
        elif new_mode == MODE_CAD:
            self._start_cad()

    # --- TX -----------------------------------------------------------------------------------------------------------
    def _start_tx(self) -> None:
        base, length = self.regs[REG_FIFO_TX_BASE], self.regs[REG_PAYLOAD_LENGTH]
        payload = bytes(self.fifo[(base + i) & 0xFF] for i in range(length))
        self._tx = self.air.transmit(self.receiver_id, self.position, self.modulation(False), payload, self.tx_power_dbm())
        self.transmitted.append(self._tx)
        self._tx_timer = self.clock.call_at(self._tx.end_us, self._tx_done)

    def _tx_done(self) -> None:
        self._tx_timer = None
        self._tx = None
        self._set_mode(MODE_STDBY)
        self._raise_irq(IRQ_TX_DONE)

    # --- RX -----------------------------------------------------------------------------------------------------------
    def _start_rx(self, mode: int) -> None:
        self._rx_write_addr = self.regs[REG_FIFO_RX_BASE]
        if mode == MODE_RXSINGLE:
            symbols = ((self.regs[REG_MODEM_CONFIG2] & 0x03) << 8) | self.regs[REG_SYMB_TIMEOUT_LSB]
            mod = self.modulation(True)
            timeout_us = round(symbols * symbol_time_us(mod.sf, mod.bw_hz))
            self._rx_timer = self.clock.call_later(timeout_us, self._rx_timeout)

    def _rx_timeout(self) -> None:
        self._rx_timer = None
        if self._receiving is None and self.mode == MODE_RXSINGLE:
            self._set_mode(MODE_STDBY)
            self._raise_irq(IRQ_RX_TIMEOUT)

    def hears(self, tx: Transmission) -> Modulation | None:
        if not self.lora or self.mode not in (MODE_RXCONTINUOUS, MODE_RXSINGLE) or self._receiving is not None:
            return None
        listening = self.modulation(True)
        if listening.iq_inverted is None or not modulation_matches(listening, tx.mod, self.air.freq_tolerance_hz):
            return None
        return listening

    def begin_reception(self, rx: Reception) -> None:
        self._receiving = rx

    def still_receiving(self, rx: Reception) -> bool:
        return self._receiving is rx

    def end_reception(self, rx: Reception) -> None:
        self._receiving = None
        phy = rx.phy
        flags = IRQ_RX_DONE | IRQ_VALID_HEADER
        if not rx.delivered:
            flags |= IRQ_CRC_ERROR
            phy = bytes(b ^ self._random.getrandbits(8) for b in phy)
        start = self._rx_write_addr
        for i, byte in enumerate(phy):
            self.fifo[(start + i) & 0xFF] = byte
        self._rx_write_addr = (start + len(phy)) & 0xFF
        snr_raw = max(-128, min(127, round(rx.snr * 4)))
        rssi_raw = rx.rssi + 157 - (snr_raw / 4 if snr_raw < 0 else 0)
        self.regs[REG_FIFO_RX_CURRENT] = start
        self.regs[REG_FIFO_RX_BYTE_ADDR] = self._rx_write_addr
        self.regs[REG_RX_NB_BYTES] = len(phy)
        self.regs[REG_PKT_SNR] = snr_raw & 0xFF
        self.regs[REG_PKT_RSSI] = max(0, min(255, round(rssi_raw)))
        if self.mode == MODE_RXSINGLE:
            if self._rx_timer is not None:
                self._rx_timer.cancel()
                self._rx_timer = None
            self._set_mode(MODE_STDBY)
        self._raise_irq(flags)

    # --- CAD ----------------------------------------------------------------------------------------------------------
    def _start_cad(self) -> None:
        mod = self.modulation(True)
        self._rx_timer = self.clock.call_later(round(2 * symbol_time_us(mod.sf, mod.bw_hz)), self._cad_done)

    def _cad_done(self) -> None:
        self._rx_timer = None
        mod = self.modulation(True)
        level = self.air.strongest_signal(mod.freq_hz, self.position, sf=mod.sf, exclude=self.receiver_id)
        self._set_mode(MODE_STDBY)
        detected = level is not None and level - noise_floor_dbm(mod.bw_hz) >= -20.0
        self._raise_irq(IRQ_CAD_DONE | (IRQ_CAD_DETECTED if detected else 0))
