"""The firmware's LoRaWAN crypto (lorawan/crypto.py on cryptolib), run in micropython, against RFC 4493, the published
LoRaWAN vectors, the `cryptography` package and the CPython codecs."""
from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs import crypto as codec_crypto
from dos_codecs.lorawan import parse_data_frame
from firmware_support import run_micropython

PRELUDE = ("from lorawan.events import MacError\nfrom lorawan.crypto import *\nfrom lorawan.join import *\n"
           "from lorawan.join_accept import *\nB = bytes.fromhex\n")
# EU868 sub-bands (ETSI EN 300 220, as LoRaWAN uses them), [low, high) kHz
SUB_BANDS_KHZ = ((863_000, 865_000), (865_000, 868_000), (868_000, 868_600), (868_700, 869_200), (869_400, 869_650),
                 (869_700, 870_000))
RFC4493_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
RFC4493_MESSAGE = ("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                   "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")


def reference_cmac(key: bytes, message: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def test_aes_cmac_rfc4493_examples():
    lengths = [0, 16, 40, 64]
    out = run_micropython(PRELUDE + f"""
key, message = B('{RFC4493_KEY}'), B('{RFC4493_MESSAGE}')
for n in {lengths}:
    print(cmac(key, message[:n]).hex())
""").split()
    assert out == ["bb1d6929e95937287fa37d129b756746", "070a16b46b4d4144f79bdd9dd04a287c",
                   "dfa66747de9ae63030ca32611497c827", "51f0bebf7e3b9d92fc49741779363cfe"]


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.lists(st.binary(max_size=70), min_size=1, max_size=30),
       st.binary(max_size=20))
def test_aes_cmac_matches_cryptography(key, messages, prefix):
    out = run_micropython(PRELUDE + f"""
key = B('{key.hex()}')
for m in {[m.hex() for m in messages]}:
    print(cmac(key, B(m)).hex(), cmac(key, B(m), B('{prefix.hex()}')).hex())
""").splitlines()
    assert [line.split() for line in out] == [
        [reference_cmac(key, m).hex(), reference_cmac(key, prefix + m).hex()] for m in messages]


def test_published_lorawan_data_uplink_vector():
    out = run_micropython(PRELUDE + """
frame = B('40F17DBE4900020001954378762B11FF0D')
nwk = B('44024241ed4ce9a68c6a8bc055233fd3')
dev_addr_le = frame[1:5]
print(data_mic(nwk, 0, dev_addr_le, 2, frame[:-4]).hex())
print(bytes(crypt_payload(B('ec925802ae430ca77fd3dd73cb2cc588'), 0, dev_addr_le, 2, frame[9:-4])))
""").splitlines()
    assert out == ["2b11ff0d", "b'test'"]


def test_published_join_request_vector():
    out = run_micropython(PRELUDE + """
frame = B('0039363463336913AA05693574323831330489C65B1304')
print(join_request_mic(B('98929b92c49edba9676d646d3b612456'), frame[:-4]).hex())
""").split()
    assert out == ["c65b1304"]


@settings(max_examples=10, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), dev_addr=st.integers(0, 2**32 - 1), fcnt=st.integers(0, 2**32 - 1),
       payload=st.binary(max_size=60), uplink=st.booleans())
def test_payload_crypt_and_mic_match_the_cpython_codecs(key, dev_addr, fcnt, payload, uplink):
    direction = 0 if uplink else 1
    out = run_micropython(PRELUDE + f"""
addr = ({dev_addr}).to_bytes(4, 'little')
print(bytes(crypt_payload(B('{key.hex()}'), {direction}, addr, {fcnt}, B('{payload.hex()}'))).hex())
print(data_mic(B('{key.hex()}'), {direction}, addr, {fcnt}, B('{payload.hex()}')).hex())
""").split("\n")
    assert out[0] == codec_crypto.crypt_frm_payload(key, uplink, dev_addr, fcnt, payload).hex()
    assert out[1] == codec_crypto.data_mic(key, uplink, dev_addr, fcnt, payload).hex()


@settings(max_examples=10, deadline=None)
@given(app_key=st.binary(min_size=16, max_size=16), join_nonce=st.integers(0, 2**24 - 1),
       net_id=st.integers(0, 2**24 - 1), dev_nonce=st.integers(0, 2**16 - 1), dev_addr=st.integers(0, 2**32 - 1),
       cflist=st.one_of(st.just(b""), st.binary(min_size=16, max_size=16),
                        st.lists(st.integers(8_630_000, 8_700_000), min_size=5, max_size=5).map(
                            lambda f: b"".join(x.to_bytes(3, "little") for x in f) + b"\x00")))
def test_join_accept_and_session_keys_match_the_cpython_codecs(app_key, join_nonce, net_id, dev_nonce, dev_addr, cflist):
    plain = (b"\x20" + join_nonce.to_bytes(3, "little") + net_id.to_bytes(3, "little") + dev_addr.to_bytes(4, "little")
             + b"\x23\x02" + cflist)  # RX1 DR offset 2, RX2 DR3, RxDelay 2 s
    on_air = codec_crypto.encrypt_join_accept(app_key, plain + codec_crypto.join_accept_mic(app_key, plain))
    tampered = on_air[:-1] + bytes([on_air[-1] ^ 1])
    out = run_micropython(PRELUDE + f"""
from lorawan.mac import Mac
from lorawan.node_config import set_otaa
from lorawan.region import EU868
def join_with(frame):
    mac = Mac(EU868())
    set_otaa(mac, bytes(8), bytes(8), B('{app_key.hex()}'), {dev_nonce})
    mac.join(0)
    _, at_ms, _, _, _ = mac.tx_done(100)[-1]  # RX1's ("open_rx", at_ms, radio, timeout_ms, window)
    return mac, mac.rx(frame, at_ms)
mac, events = join_with(B('{on_air.hex()}'))
joined = events[0]
_, uplink, _, _, _, _ = mac.uplink(1, b'session', 600000)[0]  # ("transmit", frame, radio, airtime_us, fcnt, dev_nonce)
print(type(joined).__name__, joined.dev_addr, joined.dev_nonce, uplink.hex())
print(mac.rx1_dr_offset, mac.rx2_dr, mac.rx1_delay_ms, sorted(mac.counters), list(mac.region.channel_freqs)[:8])
print(join_with(B('{tampered.hex()}'))[1][0].reason)
""").splitlines()
    nwk, app = codec_crypto.derive_session_keys(app_key, join_nonce, net_id, dev_nonce)
    name, got_addr, got_nonce, frame_hex = out[0].split()
    assert (name, int(got_addr), int(got_nonce)) == ("Joined", dev_addr, dev_nonce)
    # the session keys: the MAC's first uplink verifies and decrypts with the keys the CPython codecs derive
    uplink = parse_data_frame(bytes.fromhex(frame_hex))
    assert uplink.dev_addr == dev_addr
    assert codec_crypto.SessionKeys(nwk, app).open(uplink, uplink.fcnt16) == b"session"
    # the CFList (type 0): five frequencies in 100 Hz, each 0 or in an EU868 sub-band (whose duty cycle the node
    # keeps), for channels 3..7, else none is set
    freqs = [int.from_bytes(cflist[i:i + 3], "little") // 10 for i in range(0, 15, 3)] if cflist else []
    in_sub_band = [f == 0 or any(low <= f < high for low, high in SUB_BANDS_KHZ) for f in freqs]
    usable = cflist[15:] == b"\x00" and all(in_sub_band)
    channels = [868100, 868300, 868500] + (freqs if usable else [0] * 5)
    counters = ["bad_cflist"] if cflist and not usable else []
    assert out[1] == f"2 3 2000 {counters} {channels}"
    assert out[2] == "mic_mismatch"
    # and the derivation straight from the specification, with cryptography
    block = join_nonce.to_bytes(3, "little") + net_id.to_bytes(3, "little") + dev_nonce.to_bytes(2, "little") + bytes(7)
    ecb = Cipher(algorithms.AES(app_key), modes.ECB()).encryptor()
    assert nwk == ecb.update(b"\x01" + block)


def test_bad_key_length_is_a_typed_error():
    out = run_micropython(PRELUDE + """
for bad in (b'', bytes(15), bytes(17)):
    try:
        cmac(bad, b'')
        print('accepted')
    except MacError as e:
        print(e.args[0])
""").split()
    assert out == ["bad_key_length"] * 3
