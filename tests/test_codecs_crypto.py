"""LoRaWAN crypto: published vectors, an independent block-by-block reference, seal/open and join round trips."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.crypto import (
    SessionKeys,
    aes_cmac,
    crypt_frm_payload,
    data_mic,
    decrypt_join_accept,
    derive_session_keys,
    encrypt_join_accept,
    join_accept_mic,
    join_request_mic,
    open_data_frame,
    open_join_accept,
    seal_data_frame,
    seal_join_accept,
    seal_join_request,
    verify_join_request,
)
from dos_codecs.errors import FrameError
from dos_codecs.lorawan import (
    DATA_MTYPES,
    UPLINK_DATA_MTYPES,
    DataFrame,
    JoinAccept,
    JoinRequest,
    build_join_accept,
    parse_data_frame,
    parse_join_accept,
    parse_join_request,
)

# reference/lorawan.md
RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MSG = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
DATA_UPLINK = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
NWK_S_KEY = bytes.fromhex("44024241ed4ce9a68c6a8bc055233fd3")
APP_S_KEY = bytes.fromhex("ec925802ae430ca77fd3dd73cb2cc588")
JOIN_REQUEST_1 = bytes.fromhex("0039363463336913AA05693574323831330489C65B1304")
APP_KEY_1 = bytes.fromhex("98929b92c49edba9676d646d3b612456")
# A captured OTAA exchange published with lora-packet issue 10 (JoinRequest, JoinAccept, derived session keys).
JOIN_REQUEST_2 = bytes.fromhex("00DC0000D07ED5B3701E6FEDF57CEEAF0085CC587FE913")
JOIN_ACCEPT_2 = bytes.fromhex("204dd85ae608b87fc4889970b7d2042c9e72959b0057aed6094b16003df12de145")
APP_KEY_2 = bytes.fromhex("B6B53F4A168A7A88BDF7EA135CE9CFCA")
NWK_S_KEY_2 = bytes.fromhex("2c96f7028184bb0be8aa49275290d4fc")
APP_S_KEY_2 = bytes.fromhex("f3a5c8f0232a38c144029c165865802c")

keys = st.binary(min_size=16, max_size=16)
uint32 = st.integers(0, 0xFFFFFFFF)


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def reference_crypt(key: bytes, uplink: bool, dev_addr: int, fcnt32: int, payload: bytes) -> bytes:
    """The FRMPayload cipher written out block by block, as the specification states it."""
    out = bytearray()
    for i in range(1, -(-len(payload) // 16) + 1):
        a_i = (
            b"\x01" + bytes(4) + bytes([0 if uplink else 1]) + dev_addr.to_bytes(4, "little")
            + fcnt32.to_bytes(4, "little") + b"\x00" + bytes([i])
        )
        keystream = _aes_block(key, a_i)
        chunk = payload[(i - 1) * 16 : i * 16]
        out += bytes(p ^ s for p, s in zip(chunk, keystream))
    return bytes(out)


def reference_mic(key: bytes, uplink: bool, dev_addr: int, fcnt32: int, msg: bytes) -> bytes:
    b0 = (
        b"\x49" + bytes(4) + bytes([0 if uplink else 1]) + dev_addr.to_bytes(4, "little")
        + fcnt32.to_bytes(4, "little") + b"\x00" + bytes([len(msg)])
    )
    return aes_cmac(key, b0 + msg)[:4]


@pytest.mark.parametrize(
    ("msg", "tag"),
    [
        (b"", "bb1d6929e95937287fa37d129b756746"),
        (RFC4493_MSG[:16], "070a16b46b4d4144f79bdd9dd04a287c"),
        (RFC4493_MSG[:40], "dfa66747de9ae63030ca32611497c827"),
        (RFC4493_MSG, "51f0bebf7e3b9d92fc49741779363cfe"),
    ],
)
def test_rfc4493_cmac(msg: bytes, tag: str) -> None:
    assert aes_cmac(RFC4493_KEY, msg).hex() == tag


def test_published_data_uplink_mic_and_plaintext() -> None:
    frame = parse_data_frame(DATA_UPLINK)
    assert data_mic(NWK_S_KEY, True, frame.dev_addr, 2, DATA_UPLINK[:-4]).hex() == "2b11ff0d"
    assert crypt_frm_payload(APP_S_KEY, True, frame.dev_addr, 2, frame.frm_payload) == b"test"
    assert open_data_frame(frame, 2, NWK_S_KEY, APP_S_KEY) == b"test"
    sealed = seal_data_frame(replace(frame, frm_payload=b"test", mic=b""), 2, NWK_S_KEY, APP_S_KEY)
    assert sealed == DATA_UPLINK


def test_published_join_request_mics() -> None:
    assert join_request_mic(APP_KEY_1, JOIN_REQUEST_1[:19]).hex() == "c65b1304"
    verify_join_request(parse_join_request(JOIN_REQUEST_1), APP_KEY_1)
    request = parse_join_request(JOIN_REQUEST_2)
    verify_join_request(request, APP_KEY_2)
    assert seal_join_request(request, APP_KEY_2) == JOIN_REQUEST_2


def test_published_join_accept_and_session_keys() -> None:
    accept = open_join_accept(JOIN_ACCEPT_2, APP_KEY_2)
    assert accept.join_nonce == 0xE5063A
    assert accept.net_id == 0x000013
    assert accept.dev_addr == 0x26012E43
    assert (accept.rx1_dr_offset, accept.rx2_data_rate, accept.rx_delay) == (0, 3, 1)
    assert accept.cf_list == bytes.fromhex("184F84E85684B85E84886684586E8400")
    assert accept.mic == bytes.fromhex("55121DE0")
    assert seal_join_accept(accept, APP_KEY_2) == JOIN_ACCEPT_2
    dev_nonce = parse_join_request(JOIN_REQUEST_2).dev_nonce
    assert derive_session_keys(APP_KEY_2, accept.join_nonce, accept.net_id, dev_nonce) == (NWK_S_KEY_2, APP_S_KEY_2)


def test_join_accept_is_encrypted_with_aes_decrypt() -> None:
    plaintext = decrypt_join_accept(APP_KEY_2, JOIN_ACCEPT_2)
    # The node side: AES *encrypt* of each block after the MHDR gives the plaintext back.
    assert plaintext[1:17] == _aes_block(APP_KEY_2, JOIN_ACCEPT_2[1:17])
    assert plaintext[17:] == _aes_block(APP_KEY_2, JOIN_ACCEPT_2[17:])
    assert join_accept_mic(APP_KEY_2, plaintext[:-4]) == plaintext[-4:]
    assert encrypt_join_accept(APP_KEY_2, plaintext) == JOIN_ACCEPT_2


@settings(max_examples=200)
@given(keys, st.booleans(), uint32, uint32, st.binary(max_size=255))
def test_frm_payload_cipher_matches_the_block_reference(key, uplink, dev_addr, fcnt32, payload) -> None:
    encrypted = crypt_frm_payload(key, uplink, dev_addr, fcnt32, payload)
    assert encrypted == reference_crypt(key, uplink, dev_addr, fcnt32, payload)
    assert crypt_frm_payload(key, uplink, dev_addr, fcnt32, encrypted) == payload


@settings(max_examples=200)
@given(keys, st.booleans(), uint32, uint32, st.binary(max_size=255))
def test_data_mic_matches_the_b0_reference(key, uplink, dev_addr, fcnt32, msg) -> None:
    assert data_mic(key, uplink, dev_addr, fcnt32, msg) == reference_mic(key, uplink, dev_addr, fcnt32, msg)
    assert SessionKeys(key, bytes(16)).data_mic(uplink, dev_addr, fcnt32, msg) == reference_mic(
        key, uplink, dev_addr, fcnt32, msg
    )


@st.composite
def plaintext_frames(draw: st.DrawFn) -> tuple[DataFrame, int]:
    mtype = draw(st.sampled_from(sorted(DATA_MTYPES)))
    uplink = mtype in UPLINK_DATA_MTYPES
    fcnt32 = draw(uint32)
    fport = draw(st.none() | st.integers(0, 255))
    fopts = b"" if fport == 0 else draw(st.binary(max_size=15))
    frame = DataFrame(
        mtype=mtype,
        dev_addr=draw(uint32),
        fcnt16=fcnt32 & 0xFFFF,
        adr=draw(st.booleans()),
        ack=draw(st.booleans()),
        f_pending=False if uplink else draw(st.booleans()),
        fopts=fopts,
        fport=fport,
        frm_payload=b"" if fport is None else draw(st.binary(max_size=242 - len(fopts))),
    )
    return frame, fcnt32


@settings(max_examples=200)
@given(plaintext_frames(), keys, keys)
def test_seal_open_round_trip(frame_and_fcnt, nwk_s_key, app_s_key) -> None:
    frame, fcnt32 = frame_and_fcnt
    phy = seal_data_frame(frame, fcnt32, nwk_s_key, app_s_key)
    received = parse_data_frame(phy)
    assert open_data_frame(received, fcnt32, nwk_s_key, app_s_key) == frame.frm_payload
    assert received.mic == reference_mic(nwk_s_key, frame.uplink, frame.dev_addr, fcnt32, phy[:-4])
    payload_key = nwk_s_key if frame.fport == 0 else app_s_key
    assert received.frm_payload == reference_crypt(payload_key, frame.uplink, frame.dev_addr, fcnt32, frame.frm_payload)


@settings(max_examples=200)
@given(plaintext_frames(), keys, keys, st.data())
def test_a_flipped_bit_fails_the_mic(frame_and_fcnt, nwk_s_key, app_s_key, data) -> None:
    frame, fcnt32 = frame_and_fcnt
    phy = bytearray(seal_data_frame(frame, fcnt32, nwk_s_key, app_s_key))
    # DevAddr (bytes 1-4), or anything after the FPort (FRMPayload and MIC): the frame still parses.
    positions = [1, 2, 3, 4, *range(len(phy) - len(frame.frm_payload) - 4, len(phy))]
    index = data.draw(st.sampled_from(positions))
    phy[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(FrameError) as info:
        open_data_frame(parse_data_frame(bytes(phy)), fcnt32, nwk_s_key, app_s_key)
    assert info.value.reason == "mic_failed"


def test_mic_failure_does_not_leak_keys() -> None:
    frame = parse_data_frame(DATA_UPLINK)
    session = SessionKeys(APP_S_KEY, NWK_S_KEY)  # swapped: the MIC cannot verify
    with pytest.raises(FrameError) as info:
        session.open(frame, 2)
    assert info.value.reason == "mic_failed"
    for secret in (APP_S_KEY, NWK_S_KEY):
        assert secret.hex() not in str(info.value).lower()
        assert secret.hex() not in repr(session).lower()


def test_wrong_32_bit_counter_fails_the_mic() -> None:
    frame = parse_data_frame(DATA_UPLINK)
    with pytest.raises(FrameError) as info:
        open_data_frame(frame, 0x10002, NWK_S_KEY, APP_S_KEY)
    assert info.value.reason == "mic_failed"


def test_counter_must_match_the_frame() -> None:
    with pytest.raises(ValueError, match="does not match"):
        open_data_frame(parse_data_frame(DATA_UPLINK), 3, NWK_S_KEY, APP_S_KEY)


def test_keys_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SessionKeys(bytes(15), bytes(16))
    with pytest.raises(ValueError, match="16 bytes"):
        aes_cmac(bytes(32), b"")


join_accepts = st.builds(
    JoinAccept,
    join_nonce=st.integers(0, 0xFFFFFF),
    net_id=st.integers(0, 0xFFFFFF),
    dev_addr=uint32,
    rx1_dr_offset=st.integers(0, 7),
    rx2_data_rate=st.integers(0, 15),
    rx_delay=st.integers(0, 255),
    cf_list=st.none() | st.binary(min_size=16, max_size=16),
)


@settings(max_examples=200)
@given(join_accepts, keys, st.integers(1, 32))
def test_join_accept_seal_open_round_trip_and_tamper(accept: JoinAccept, app_key: bytes, index: int) -> None:
    phy = seal_join_accept(accept, app_key)
    opened = open_join_accept(phy, app_key)
    assert replace(opened, mic=accept.mic) == accept
    assert opened.mic == join_accept_mic(app_key, build_join_accept(opened)[:-4])
    tampered = bytearray(phy)
    tampered[index % len(phy) or 1] ^= 0x01
    with pytest.raises(FrameError) as info:
        open_join_accept(bytes(tampered), app_key)
    # Decryption scrambles the whole block, so a flipped bit may also surface as a DLSettings RFU bit.
    assert info.value.reason in ("mic_failed", "rfu_set")


@settings(max_examples=200)
@given(
    st.builds(
        JoinRequest,
        join_eui=st.binary(min_size=8, max_size=8),
        dev_eui=st.binary(min_size=8, max_size=8),
        dev_nonce=st.integers(0, 0xFFFF),
    ),
    keys,
)
def test_join_request_seal_verify(request: JoinRequest, app_key: bytes) -> None:
    received = parse_join_request(seal_join_request(request, app_key))
    verify_join_request(received, app_key)
    with pytest.raises(FrameError) as info:
        verify_join_request(replace(received, dev_nonce=received.dev_nonce ^ 1), app_key)
    assert info.value.reason == "mic_failed"


def test_join_accept_length_is_checked() -> None:
    with pytest.raises(FrameError) as info:
        decrypt_join_accept(APP_KEY_2, JOIN_ACCEPT_2[:20])
    assert info.value.reason == "bad_length"
    with pytest.raises(FrameError):
        parse_join_accept(b"\x20" + bytes(10))


def test_derived_keys_differ_per_nonce() -> None:
    first = derive_session_keys(APP_KEY_2, 1, 0x13, 7)
    assert first[0] != first[1]
    assert derive_session_keys(APP_KEY_2, 1, 0x13, 8) != first
