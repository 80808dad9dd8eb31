"""An SX1276's LoRa settings applied, the work of drivers.sx1276.SX1276.configure(), in a module loaded for each call
that unloads itself when done: the node configures the radio before a transmission and before it sleeps until a
receive window opens, never on a deadline, so this code need not stay in the heap beside the MAC's work on a
downlink."""
from micropython import const

from drivers.lora_airtime import low_data_rate
from modules import unload

_OP_MODE = const(0x01)
_FRF_MSB = const(0x06)
_FRF_MID = const(0x07)
_FRF_LSB = const(0x08)
_PA_CONFIG = const(0x09)
_OCP = const(0x0B)
_MODEM_CONFIG1 = const(0x1D)
_MODEM_CONFIG2 = const(0x1E)
_PREAMBLE_MSB = const(0x20)
_PREAMBLE_LSB = const(0x21)
_MODEM_CONFIG3 = const(0x26)
_INVERT_IQ = const(0x33)
_SYNC_WORD = const(0x39)
_INVERT_IQ2 = const(0x3B)
_PA_DAC = const(0x4D)
_MODE_STDBY = const(0x81)  # RegOpMode's STDBY with LongRangeMode (LoRa) set


def configure(radio, lora_cfg):
    """Apply LoRa settings `lora_cfg` to `radio` (keys as drivers/sx1276_setup.py's defaults; missing keys keep their
    value); leaves the radio in STDBY. This module is forgotten first, so that it is unloaded however this ends (its
    code lives while it runs)."""
    unload(__name__)
    cfg = radio._cfg
    for key in lora_cfg:
        if key not in cfg:
            raise ValueError("unknown radio setting " + key)
    cfg.update(lora_cfg)
    sf, cr, bw_khz = cfg["sf"], cfg["coding_rate"], int(cfg["bw"])
    if not 7 <= sf <= 12 or not 5 <= cr <= 8 or bw_khz not in (125, 250, 500):
        raise ValueError("radio settings out of range: sf 7..12, coding_rate 5..8, bw 125|250|500")
    register = radio._register
    register(_OP_MODE, _MODE_STDBY)
    frf = cfg["freq_khz"] * 2048 // 125  # Frf = f * 2^19 / 32 MHz
    register(_FRF_MSB, frf >> 16 & 0xFF)
    register(_FRF_MID, frf >> 8 & 0xFF)
    register(_FRF_LSB, frf & 0xFF)
    power = max(2, min(20, int(cfg["output_power"])))
    high_power = power > 17  # +20 dBm needs the high-power DAC and more current
    register(_PA_DAC, 0x87 if high_power else 0x84)
    register(_OCP, 0x20 | (18 if high_power else 11))  # 150 or 100 mA
    register(_PA_CONFIG, 0x80 | 0x70 | (15 if high_power else power - 2))  # PA_BOOST: Pout = 2 + OutputPower
    register(_MODEM_CONFIG1, (bw_khz // 250 + 7) << 4 | (cr - 4) << 1)  # Bw 7, 8, 9: 125, 250, 500 kHz
    # SymbTimeout's two high bits are recv()'s, written before each RXSINGLE
    register(_MODEM_CONFIG2, sf << 4 | (0x04 if cfg["crc_en"] else 0))
    register(_MODEM_CONFIG3, (0x08 if low_data_rate(sf, bw_khz) else 0) | 0x04)  # LDRO, AgcAutoOn
    preamble = cfg["preamble_len"]
    register(_PREAMBLE_MSB, preamble >> 8 & 0xFF)
    register(_PREAMBLE_LSB, preamble & 0xFF)
    register(_SYNC_WORD, cfg["syncword"])
    invert_rx = cfg["invert_iq_rx"]
    register(_INVERT_IQ, 0x26 | (0x40 if invert_rx else 0) | (0 if cfg["invert_iq_tx"] else 0x01))
    register(_INVERT_IQ2, 0x19 if invert_rx else 0x1D)
