"""Downlink MAC commands of LoRaWAN 1.0.4 (EU868) for the sans-IO MAC: handle_commands() walks a FOpts or FPort 0 command
string, applies each request to the MAC's and the region's state and returns the answers for the next new uplink;
LinkCheckAns and DeviceTimeAns become events. A contiguous block of LinkADRReq is applied as one, as 1.0.4 asks: channel
masks in order, DR, TX power and NbTrans from the last one, all or nothing, and one LinkADRAns per request with the same
status. A CID this device does not know ends the walk (its length is unknown) and is counted. ADR's other side, the
device's steps back when no downlink comes, is lorawan/adr_backoff.py."""
from math import floor

from micropython import const

from lorawan.events import DeviceTime, LinkCheck

# CIDs, as const(): their values go into the code, not the module's globals
_LINK_CHECK = const(0x02)
_LINK_ADR = const(0x03)
_DUTY_CYCLE = const(0x04)
_RX_PARAM_SETUP = const(0x05)
_DEV_STATUS = const(0x06)
_NEW_CHANNEL = const(0x07)
_RX_TIMING_SETUP = const(0x08)
_DL_CHANNEL = const(0x0A)
_DEVICE_TIME = const(0x0D)
_MAX_EIRP_DBM = const(16)
# CID -> length of the request's payload, for CIDs 0x00..0x0D; 0xFF: not a request this device knows
_REQUEST_LEN = b"\xff\xff\x02\x04\x01\x04\x00\x05\x01\xff\x04\xff\xff\x05"
_UNKNOWN = const(0xFF)


def _freq_khz(data, at):
    """A 3-byte little-endian frequency in 100 Hz steps, in kHz."""
    return (data[at] | data[at + 1] << 8 | data[at + 2] << 16) // 10


def handle_commands(mac, data, snr, tx_end_ms):
    """Apply the requests in `data` (a downlink heard with `snr` dB after an uplink that ended at tx_end_ms).
    Returns (events, answers). Each request that takes more than a line has a function of its own: a module's code
    is loaded as one block per function, and small blocks fit in the gaps of a busy heap."""
    events, answers, adr_block = [], [], []
    region = mac.region
    pos = 0
    while pos < len(data):
        cid = data[pos]
        size = _REQUEST_LEN[cid] if cid < len(_REQUEST_LEN) else _UNKNOWN
        if size == _UNKNOWN or pos + 1 + size > len(data):
            mac.count("bad_mac_command")
            break
        args = data[pos + 1:pos + 1 + size]
        pos += 1 + size
        if cid == _LINK_ADR:
            adr_block.append(args)
            if pos < len(data) and data[pos] == _LINK_ADR:
                continue
            _link_adr(mac, adr_block, answers)
            adr_block = []
        elif cid == _LINK_CHECK:
            events.append(LinkCheck(args[0], args[1]))
        elif cid == _DEVICE_TIME:
            seconds = args[0] | args[1] << 8 | args[2] << 16 | args[3] << 24
            events.append(DeviceTime(seconds * 1000 + args[4] * 125 // 32, tx_end_ms))
        elif cid == _DUTY_CYCLE:
            region.aggregate_divisor = 1 << (args[0] & 0x0F)
            answers.append(bytes((_DUTY_CYCLE,)))
        elif cid == _DEV_STATUS:
            margin = max(-32, min(31, floor(snr + 0.5)))
            answers.append(bytes((_DEV_STATUS, mac.battery_level, margin & 0x3F)))
        elif cid == _RX_TIMING_SETUP:
            mac.rx1_delay_ms = 1000 * ((args[0] & 0x0F) or 1)
            answers.append(bytes((_RX_TIMING_SETUP,)))
        else:
            answers.append(_rx_param_setup(mac, region, args) if cid == _RX_PARAM_SETUP
                           else _new_channel(region, args) if cid == _NEW_CHANNEL
                           else _dl_channel(region, args))
    if adr_block:  # a LinkADRReq block cut short by a broken command after it
        _link_adr(mac, adr_block, answers)
    return events, answers


def _rx_param_setup(mac, region, args):
    """Apply an RXParamSetupReq (all or nothing); its answer."""
    offset, rx2_dr, freq_khz = args[0] >> 4 & 0x07, args[0] & 0x0F, _freq_khz(args, 1)
    offset_ok, dr_ok, freq_ok = offset <= 5, region.valid_dr(rx2_dr), region.valid_frequency(freq_khz, False)
    if offset_ok and dr_ok and freq_ok:
        mac.rx1_dr_offset, mac.rx2_dr, mac.rx2_freq_khz = offset, rx2_dr, freq_khz
    return bytes((_RX_PARAM_SETUP, (4 if offset_ok else 0) | (2 if dr_ok else 0) | (1 if freq_ok else 0)))


def _new_channel(region, args):
    """Apply a NewChannelReq (a frequency of 0 removes the channel); its answer."""
    index, freq_khz, min_dr, max_dr = args[0], _freq_khz(args, 1), args[4] & 0x0F, args[4] >> 4
    fixed = index < len(region.DEFAULT_CHANNELS) or index >= len(region.channel_freqs)
    freq_ok = not fixed and (freq_khz == 0 or region.valid_frequency(freq_khz))
    dr_ok = not fixed and min_dr <= max_dr and region.valid_dr(max_dr)
    if freq_ok and dr_ok:
        region.set_channel(index, freq_khz, min_dr, max_dr)
    return bytes((_NEW_CHANNEL, (2 if dr_ok else 0) | (1 if freq_ok else 0)))


def _dl_channel(region, args):
    """Apply a DlChannelReq (RX1's frequency of an existing channel); its answer."""
    index, freq_khz = args[0], _freq_khz(args, 1)
    exists = index < len(region.channel_freqs) and region.channel_freqs[index] != 0
    freq_ok = region.valid_frequency(freq_khz, False)
    if exists and freq_ok:
        region.dl_freqs[index] = freq_khz
    return bytes((_DL_CHANNEL, (2 if exists else 0) | (1 if freq_ok else 0)))


def _link_adr(mac, block, answers):
    """Apply a block of LinkADRReq (payloads) as one; one LinkADRAns per request, with the same status, to answers."""
    region = mac.region
    channels = range(len(region.channel_freqs))
    defined = 0
    for i in channels:
        if region.channel_freqs[i]:
            defined |= 1 << i
    mask, mask_ok = region.channel_mask, True
    for args in block:
        control = args[3] >> 4 & 0x07
        if control == 0:
            mask = args[1] | args[2] << 8
        elif control == 6:
            mask = defined
        else:
            mask_ok = False
    mask_ok = mask_ok and mask != 0 and not mask & ~defined
    last = block[-1]
    dr, power_index = last[0] >> 4, last[0] & 0x0F
    new_dr = mac.data_rate if dr == 0x0F else dr
    dr_ok = False  # a valid DR that an enabled channel carries
    if region.valid_dr(new_dr):
        for i in channels:
            if mask >> i & 1 and region.carries(i, new_dr):
                dr_ok = True
    power = None  # TXPower index -> EIRP dBm (MaxEIRP - 2 dB per step); 0xF keeps it, 8..14 are not valid
    if power_index == 0x0F:
        power = mac.tx_power_dbm
    elif power_index <= 7:
        power = _MAX_EIRP_DBM - 2 * power_index
    if mask_ok and dr_ok and power is not None:
        region.channel_mask = mask
        mac.data_rate, mac.tx_power_dbm = new_dr, power
        mac.nb_trans = (last[3] & 0x0F) or 1
    status = (4 if power is not None else 0) | (2 if dr_ok else 0) | (1 if mask_ok else 0)
    for _ in block:
        answers.append(bytes((_LINK_ADR, status)))
