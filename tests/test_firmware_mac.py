"""The sans-IO LoRaWAN MAC (lorawan/mac.py + lorawan/region.py) in micropython: frames checked with the CPython codecs and
`cryptography`, Class A window timing, downlinks and MAC commands, confirmed retries, duty cycle."""
from __future__ import annotations

import json
import math

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.crypto import SessionKeys
from dos_codecs.lorawan import DataFrame, MType, parse_data_frame
from firmware_support import run_firmware, run_micropython

DEV_ADDR = 0x26011BDA
NWK = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
APP = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
KEYS = SessionKeys(NWK, APP)


def prelude(dev_addr=DEV_ADDR, nwk=NWK, app=APP, fcnt_up=0, data_rate=5, seed=7) -> str:
    return f"""
import json
from fwshow import describe, show
from lorawan.events import *
from lorawan.node_config import activate_abp
from lorawan.mac import *
from lorawan.region import EU868
B = bytes.fromhex

def try_(call, *args):
    try:
        show(call(*args))
    except MacError as e:
        print(json.dumps([{{'type': 'MacError', 'reason': e.args[0]}}]))

mac = Mac(EU868(seed={seed}), data_rate={data_rate})
activate_abp(mac, {dev_addr:#x}, B('{nwk.hex()}'), B('{app.hex()}'), fcnt_up={fcnt_up})
"""


def run_steps(body: str, **kwargs) -> list[list[dict]]:
    """Run prelude + body; every show() line comes back as a list of action/event dicts."""
    return [json.loads(line) for line in run_firmware(prelude(**kwargs) + body).splitlines()]


def downlink(fcnt: int, *, confirmed=False, ack=False, fopts=b"", fport=None, payload=b"", dev_addr=DEV_ADDR,
             keys=KEYS) -> str:
    """A downlink sealed by the CPython codecs, as hex."""
    frame = DataFrame(mtype=MType.CONFIRMED_DOWN if confirmed else MType.UNCONFIRMED_DOWN, dev_addr=dev_addr,
                      fcnt16=fcnt & 0xFFFF, ack=ack, fopts=fopts, fport=fport, frm_payload=payload)
    return keys.seal(frame, fcnt).hex()


def spec_cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


@settings(max_examples=12, deadline=None)
@given(nwk=st.binary(min_size=16, max_size=16), app=st.binary(min_size=16, max_size=16),
       dev_addr=st.integers(0, 2**32 - 1), fcnt_up=st.integers(0, 2**32 - 2), fport=st.integers(1, 223),
       payload=st.binary(max_size=51), confirmed=st.booleans())
def test_uplink_frame_opens_with_the_codecs_and_with_cryptography(nwk, app, dev_addr, fcnt_up, fport, payload, confirmed):
    [[transmit]] = run_steps(f"show(mac.uplink({fport}, B('{payload.hex()}'), 0, confirmed={confirmed}))",
                             dev_addr=dev_addr, nwk=nwk, app=app, fcnt_up=fcnt_up)
    assert transmit["type"] == "Transmit" and transmit["fcnt"] == fcnt_up
    phy = bytes.fromhex(transmit["frame"])
    frame = parse_data_frame(phy)
    assert frame.mtype == (MType.CONFIRMED_UP if confirmed else MType.UNCONFIRMED_UP)
    assert (frame.dev_addr, frame.fcnt16, frame.fport, frame.fopts) == (dev_addr, fcnt_up & 0xFFFF, fport, b"")
    assert SessionKeys(nwk, app).open(frame, fcnt_up) == payload
    # straight from the specification: B0 MIC and A_i keystream
    addr, count = dev_addr.to_bytes(4, "little"), fcnt_up.to_bytes(4, "little")
    b0 = b"\x49" + bytes(4) + b"\x00" + addr + count + b"\x00" + bytes([len(phy) - 4])
    assert spec_cmac(nwk, b0 + phy[:-4])[:4] == phy[-4:]
    blocks = b"".join(b"\x01" + bytes(4) + b"\x00" + addr + count + b"\x00" + bytes([i])
                      for i in range(1, len(payload) // 16 + 2))
    stream = Cipher(algorithms.AES(app), modes.ECB()).encryptor().update(blocks)
    assert bytes(a ^ b for a, b in zip(phy[9:-4], stream)) == payload
    expected_airtime = airtime_us(len(phy), 7, 125)
    assert transmit["airtime_us"] == expected_airtime


def airtime_us(pl: int, sf: int, bw_khz: int, cr: int = 1, crc: bool = True, preamble: int = 8) -> int:
    """AN1200.13 in floating point, rounded down to µs."""
    tsym = (2**sf) / (bw_khz * 1000)
    de = 1 if tsym >= 0.016 else 0
    n = 8 + max(math.ceil((8 * pl - 4 * sf + 28 + 16 * crc) / (4 * (sf - 2 * de))) * (cr + 4), 0)
    return math.floor(((preamble + 4.25) * tsym + n * tsym) * 1e6 + 1e-6)


def test_a_new_mac_and_region_start_idle_with_the_default_channels_and_their_set_up_module_unloaded():
    out = json.loads(run_firmware("""
import json, sys
from lorawan.mac import Mac
from lorawan.region import EU868
mac = Mac(EU868(seed=7), data_rate=3, tx_power_dbm=12, adr=True)
region = mac.region
print(json.dumps([mac.state, mac.activated, mac.data_rate, mac.tx_power_dbm, mac.adr, mac.battery_level, mac.fcnt_up,
                  list(region.channel_freqs[:4]), region.channel_mask, list(region.band_airtime[:3]),
                  'lorawan.mac_setup' in sys.modules]))
"""))
    assert out == [0, False, 3, 12, True, 255, 0, [868100, 868300, 868500, 0], 0b111, [0, 0, 0], False]


def test_class_a_timeline_of_an_unconfirmed_uplink():
    steps = run_steps("""
show(mac.uplink(1, b'hello', 10_000))
show(mac.tx_done(10_062))
show(mac.rx_timeout(11_020))
show(mac.rx_timeout(12_300))
show(mac.uplink(1, b'again', 70_000))
""")
    [tx], [sent, rx1], [rx2], [done], [tx2] = steps
    radio = tx["radio"]
    assert radio["freq_khz"] in (868100, 868300, 868500)
    assert (radio["sf"], radio["bw"], radio["coding_rate"], radio["syncword"], radio["preamble_len"]) == (7, "125", 5, 0x34, 8)
    assert (radio["invert_iq_tx"], radio["crc_en"], radio["output_power"]) == (False, True, 14)
    assert sent["type"] == "Sent" and (sent["fcnt"], sent["fport"], sent["freq_khz"], sent["dr"]) == (0, 1, radio["freq_khz"], 5)
    assert rx1["type"] == "OpenRx" and rx1["window"] == 1
    assert rx1["at_ms"] == 10_062 + 1000 - 5
    assert rx1["radio"]["freq_khz"] == radio["freq_khz"] and rx1["radio"]["sf"] == 7
    assert rx1["radio"]["invert_iq_rx"] is True and rx1["radio"]["crc_en"] is False
    assert 8 * 1.024 + 5 < rx1["timeout_ms"] < 50
    assert rx2["type"] == "OpenRx" and rx2["window"] == 2 and rx2["at_ms"] == 10_062 + 2000 - 5
    assert (rx2["radio"]["freq_khz"], rx2["radio"]["sf"], rx2["radio"]["bw"]) == (869525, 12, "125")
    assert rx2["timeout_ms"] > 8 * 32.768
    assert done == {"type": "Done", "fcnt": 0, "acked": None}
    assert parse_data_frame(bytes.fromhex(tx2["frame"])).fcnt16 == 1 and tx2["fcnt"] == 1


def test_downlink_in_rx1_delivers_data_answers_commands_and_acks_next_uplink():
    # Confirmed downlink: FOpts LinkCheckAns (margin 20, 2 gateways) + DevStatusReq, FPort 5 payload.
    frame = downlink(0, confirmed=True, fopts=bytes([0x02, 20, 2, 0x06]), fport=5, payload=b"dim=40")
    steps = run_steps(f"""
mac.battery_level = 200
show(mac.uplink(1, b'x', 0))
show(mac.tx_done(50))
show(mac.rx(B('{frame}'), 1060, -90, -7.5))
show(mac.uplink(1, b'y', 60_000))
print(json.dumps([{{'type': 'fcnt_down', 'value': mac.fcnt_down}}]))
""")
    link_check, data, done = steps[2]
    assert link_check == {"type": "LinkCheck", "margin": 20, "gateways": 2}
    assert data["type"] == "Downlink"
    assert (data["fport"], bytes.fromhex(data["payload"]), data["fcnt"], data["window"]) == (5, b"dim=40", 0, 1)
    assert (data["rssi"], data["snr"]) == (-90, -7.5)
    assert done == {"type": "Done", "fcnt": 0, "acked": None}
    next_up = parse_data_frame(bytes.fromhex(steps[3][0]["frame"]))
    assert next_up.ack is True
    assert next_up.fopts == bytes([0x06, 200, (-7) & 0x3F])  # DevStatusAns: battery, margin (6-bit signed SNR)
    assert KEYS.open(next_up, 1) == b"y"
    assert steps[4] == [{"type": "fcnt_down", "value": 1}]


def test_bad_downlinks_are_dropped_counted_and_rx2_still_opens():
    good = downlink(0, fport=2, payload=b"ok")
    bad_mic = good[:-2] + f"{int(good[-2:], 16) ^ 1:02x}"
    other = downlink(0, fport=2, payload=b"ok", dev_addr=DEV_ADDR + 1)
    steps = run_steps(f"""
show(mac.uplink(1, b'x', 0))
show(mac.tx_done(50))
show(mac.rx(B('{bad_mic}'), 1060))
show(mac.rx(B('{other}'), 2100))
show(mac.uplink(1, b'x', 60_000))
show(mac.tx_done(60_050))
show(mac.rx(B('{good}'), 61_060))
show(mac.uplink(1, b'x', 120_000))
show(mac.tx_done(120_050))
show(mac.rx(B('{good}'), 121_060))
show(mac.rx(B('00'), 122_100))
print(json.dumps([dict(type='counters', **mac.counters)]))
""")
    assert steps[2] == [{"type": "RxIgnored", "reason": "mic_mismatch"}, steps[2][1]]
    assert steps[2][1]["type"] == "OpenRx" and steps[2][1]["window"] == 2
    assert steps[3] == [{"type": "RxIgnored", "reason": "other_dev_addr"}, {"type": "Done", "fcnt": 0, "acked": None}]
    assert [e["type"] for e in steps[6]] == ["Downlink", "Done"]
    assert steps[9][0] == {"type": "RxIgnored", "reason": "fcnt_stale"}  # the same downlink again is a replay
    assert steps[10][0] == {"type": "RxIgnored", "reason": "too_short"}
    assert steps[11] == [{"type": "counters", "mic_mismatch": 1, "other_dev_addr": 1, "fcnt_stale": 1, "too_short": 1}]


def test_confirmed_uplink_is_retried_with_the_same_fcnt_until_acked():
    ack = downlink(0, ack=True)
    steps = run_steps(f"""
show(mac.uplink(3, b'alarm', 0, confirmed=True))
show(mac.tx_done(60))
show(mac.rx_timeout(1100))
show(mac.rx_timeout(2400))
show(mac.wake(6000))
show(mac.tx_done(6060))
show(mac.rx(B('{ack}'), 7100))
""")
    first, retry = steps[0][0], steps[4][0]
    [wait] = steps[3]
    assert steps[2][0]["type"] == "OpenRx" and steps[2][0]["window"] == 2
    assert wait["type"] == "Wait" and wait["why"] == "retransmission" and 2400 + 1000 <= wait["until_ms"] <= 2400 + 3000
    assert retry["type"] == "Transmit" and retry["fcnt"] == first["fcnt"] == 0
    assert parse_data_frame(bytes.fromhex(retry["frame"])).mtype == MType.CONFIRMED_UP
    assert steps[5][0]["attempt"] == 2
    assert steps[6] == [{"type": "Done", "fcnt": 0, "acked": True}]


def test_confirmed_uplink_gives_up_after_eight_tries():
    steps = run_steps("""
t = 0
show(mac.uplink(3, b'alarm', t, confirmed=True))
for attempt in range(8):
    t += 200_000
    show(mac.tx_done(t))
    show(mac.rx_timeout(t + 1100))
    result = mac.rx_timeout(t + 2400)
    show(result)
    if describe(result[0])['type'] == 'Wait':
        t += 200_000
        show(mac.wake(t))
""")
    finals = [s for s in steps if s and s[0]["type"] == "Done"]
    assert finals == [[{"type": "Done", "fcnt": 0, "acked": False}]]
    assert sum(1 for s in steps if s and s[0]["type"] == "Transmit") == 8


def test_duty_cycle_holds_the_next_uplink_until_the_sub_band_reopens():
    steps = run_steps("""
show(mac.uplink(1, bytes(20), 0))
show(mac.tx_done(100))
show(mac.rx_timeout(1200))
show(mac.rx_timeout(2400))
show(mac.uplink(1, bytes(20), 5000))
""" + "airtime = mac._tx_airtime_us\nprint(json.dumps([{'type': 'airtime', 'us': airtime}]))\n" + """
show(mac.wake(mac.region.band_free_at[2]))
""")
    [tx] = steps[0]
    [wait] = steps[4]
    airtime = steps[5][0]["us"]
    assert airtime == tx["airtime_us"] == airtime_us(len(bytes.fromhex(tx["frame"])), 7, 125)
    assert wait["type"] == "Wait" and wait["why"] == "duty_cycle"
    assert wait["until_ms"] == 100 + math.ceil(99 * airtime / 1000)
    assert steps[6][0]["type"] == "Transmit"


def test_link_adr_req_changes_data_rate_power_and_channels_and_is_answered():
    accept = downlink(0, fopts=bytes([0x03, 0x32, 0x03, 0x00, 0x01]))  # DR3, TXPower 2 (12 dBm), channels 0+1, NbTrans 1
    reject = downlink(1, fopts=bytes([0x03, 0x52, 0x20, 0x00, 0x01]))  # channel 5 is not defined
    steps = run_steps(f"""
show(mac.uplink(1, b'x', 0))
show(mac.tx_done(50))
show(mac.rx(B('{accept}'), 1060))
show(mac.uplink(1, b'x', 100_000))
show(mac.tx_done(101_000))
show(mac.rx(B('{reject}'), 102_000))
show(mac.uplink(1, b'x', 300_000))
""")
    tx = steps[3][0]
    assert (tx["radio"]["sf"], tx["radio"]["output_power"]) == (9, 12)
    assert tx["radio"]["freq_khz"] in (868100, 868300)
    assert parse_data_frame(bytes.fromhex(tx["frame"])).fopts == b"\x03\x07"
    after_reject = steps[6][0]
    assert parse_data_frame(bytes.fromhex(after_reject["frame"])).fopts == b"\x03\x04"
    assert after_reject["radio"]["sf"] == 9


def test_rx_param_and_timing_setup_answers_repeat_until_a_downlink_arrives():
    setup = downlink(0, fopts=bytes([0x05, 0x13]) + (8695250).to_bytes(3, "little") + bytes([0x08, 0x02]))
    plain = downlink(1, fport=1, payload=b"z")
    steps = run_steps(f"""
show(mac.uplink(1, b'x', 0))
show(mac.tx_done(50))
show(mac.rx(B('{setup}'), 1060))
show(mac.uplink(1, b'x', 100_000))
show(mac.tx_done(100_050))
show(mac.rx_timeout(102_100))
show(mac.rx_timeout(103_200))
show(mac.uplink(1, b'x', 200_000))
show(mac.tx_done(200_050))
show(mac.rx(B('{plain}'), 202_100))
show(mac.uplink(1, b'x', 300_000))
""")
    assert parse_data_frame(bytes.fromhex(steps[3][0]["frame"])).fopts == b"\x05\x07\x08"
    rx1 = steps[4][1]
    assert rx1["at_ms"] == 100_050 + 2000 - 5 and rx1["radio"]["sf"] == 8  # RxDelay 2 s, RX1 DR = 5 - offset 1
    rx2 = steps[5][0]
    assert rx2["at_ms"] == 100_050 + 3000 - 5 and rx2["radio"]["sf"] == 9  # RX2 DR3
    assert parse_data_frame(bytes.fromhex(steps[7][0]["frame"])).fopts == b"\x05\x07\x08"  # sticky: no downlink yet
    assert parse_data_frame(bytes.fromhex(steps[10][0]["frame"])).fopts == b""


def test_bad_calls_are_typed_errors():
    out = run_firmware(prelude() + """
fresh = Mac(EU868())
try_(fresh.uplink, 1, b'x', 0)
try_(mac.uplink, 0, b'x', 0)
try_(mac.uplink, 224, b'x', 0)
try_(mac.uplink, 1, bytes(223), 0)
try_(mac.tx_done, 0)
mac.uplink(1, b'x', 0)
try_(mac.uplink, 1, b'x', 0)
try_(mac.rx_timeout, 0)
slow = Mac(EU868(), data_rate=0)
activate_abp(slow, 1, bytes(16), bytes(16))
try_(slow.uplink, 1, bytes(52), 0)
show(slow.uplink(1, bytes(51), 0))
""")
    reasons = [json.loads(line)[0].get("reason") for line in out.splitlines()]
    assert reasons == ["not_activated", "bad_fport", "bad_fport", "payload_too_long", "unexpected_tx_done", "busy",
                       "unexpected_rx_timeout", "payload_too_long", None]


def test_region_time_on_air_check_values():
    out = run_micropython("""
from drivers.lora_airtime import time_on_air_us
from lorawan.region import EU868
print(time_on_air_us(1, 8, 125, 6), time_on_air_us(37, 7, 125), time_on_air_us(37, 12, 125), time_on_air_us(23, 12, 125))
r = EU868()
print(r.airtime_us(37, 5), r.airtime_us(37, 0), r.airtime_us(13, 6), r.airtime_us(13, 5, crc=False))
""").splitlines()
    assert [int(v) for v in out[0].split()] == [53760, 82176, 1974272, 1482752]  # airtime.md: 53.76, 82.2, 1974.3, 1482.8 ms
    assert [int(v) for v in out[1].split()] == [82176, 1974272, airtime_us(13, 7, 250), airtime_us(13, 7, 125, crc=False)]


def test_region_duty_cycle_blocks_the_sub_band_but_not_another():
    out = run_micropython("""
from lorawan.region import EU868, sub_band
r = EU868(seed=3)
picked = set()
for _ in range(60):
    picked.add(r.next_channel(5, 0, 61_696)[0])
print(sorted(picked))
r.note_transmission(868100, 1000, 61_696)
print(r.next_channel(5, 1001, 61_696), r.next_channel(5, 1000 + 6107, 61_696), r.next_channel(5, 1000 + 6108, 61_696)[0] > 0)
r.set_channel(3, 869850)
print(r.next_channel(5, 1001, 61_696), sub_band(869850), sub_band(868500))
""").splitlines()
    assert out[0] == "[868100, 868300, 868500]"  # pseudo-random over every enabled channel
    # 99 x 61.696 ms = 6107.9 ms closed on the whole 868.0-868.6 sub-band, all three default channels
    assert out[1] == "(None, 7108) (None, 7108) True"
    assert out[2] == "(869850, 0) 5 2"


def test_cancel_after_a_radio_failure_leaves_the_mac_idle_without_reusing_the_fcnt():
    steps = run_steps("""
show(mac.uplink(1, b'x', 0))
mac.cancel()
show(mac.uplink(1, b'y', 1000))
show(mac.tx_done(1100))
mac.cancel()
show(mac.uplink(1, b'z', 20_000))
""")
    fcnts = [parse_data_frame(bytes.fromhex(s[0]["frame"])).fcnt16 for s in (steps[0], steps[1], steps[3])]
    assert fcnts == [0, 1, 2]
