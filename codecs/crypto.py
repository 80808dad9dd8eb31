"""LoRaWAN 1.0.x cryptography: AES-CMAC MICs, FRMPayload encryption, JoinAccept encryption, session key derivation.

Keys are 16-byte `bytes` and never appear in a repr or an error message. `SessionKeys` keeps keyed AES-ECB and AES-CMAC
contexts for one session so the per-frame work is a context copy and a few AES blocks. The B0 and A_i blocks are the
16-byte cipher inputs of the LoRaWAN specification (never on air), packed with `struct`.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import replace

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from dos_codecs.errors import FrameError
from dos_codecs.lorawan import (
    JOIN_ACCEPT_CFLIST_LEN,
    JOIN_ACCEPT_LEN,
    MIC_LEN,
    DataFrame,
    JoinAccept,
    JoinRequest,
    build_data_frame,
    build_join_accept,
    build_join_request,
    parse_join_accept,
)

KEY_LEN = 16
BLOCK_LEN = 16
#: B0 = 0x49 | 0x00*4 | Dir | DevAddr | FCnt32 | 0x00 | len(msg)
_B0 = struct.Struct("<B4xBIIxB")
#: A_i without its last byte i: 0x01 | 0x00*4 | Dir | DevAddr | FCnt32 | 0x00
_A_PREFIX = struct.Struct("<B4xBIIx")
_MIC_BLOCK_TAG = 0x49
_CRYPT_BLOCK_TAG = 0x01
_NWK_S_KEY_TAG = 0x01
_APP_S_KEY_TAG = 0x02
_MAX_MSG_LEN = 255
#: The last byte i of the blocks A_1, A_2, ... (enough for the longest FRMPayload).
_BLOCK_INDEXES = tuple(bytes((i,)) for i in range(1, -(-_MAX_MSG_LEN // BLOCK_LEN) + 1))


def _check_key(key: bytes, name: str) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_LEN:
        raise ValueError(f"{name} must be {KEY_LEN} bytes")
    return bytes(key)


class AesKey:
    """One AES-128 key with its keyed AES-ECB encryptor and AES-CMAC context, reusable for any number of operations."""

    __slots__ = ("_cmac", "_ecb")

    def __init__(self, key: bytes, name: str = "key") -> None:
        key = _check_key(key, name)
        self._cmac = CMAC(algorithms.AES(key))
        self._ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def __repr__(self) -> str:
        return "AesKey(<hidden>)"

    def cmac(self, *parts: bytes) -> bytes:
        """AES-CMAC (RFC 4493) of the concatenated parts: 16 bytes."""
        context = self._cmac.copy()
        for part in parts:
            context.update(part)
        return context.finalize()

    def encrypt_blocks(self, blocks: bytes) -> bytes:
        """AES-128 encrypt whole 16-byte blocks independently (ECB)."""
        return self._ecb.update(blocks)


def aes_cmac(key: bytes, msg: bytes) -> bytes:
    """AES-CMAC (RFC 4493) of `msg` under `key`: 16 bytes."""
    return AesKey(key).cmac(msg)


def _direction(uplink: bool) -> int:
    return 0 if uplink else 1


def _check_frame_numbers(dev_addr: int, fcnt32: int) -> None:
    if not 0 <= dev_addr <= 0xFFFFFFFF:
        raise ValueError(f"DevAddr {dev_addr} is not a 32-bit unsigned int")
    if not 0 <= fcnt32 <= 0xFFFFFFFF:
        raise ValueError(f"FCnt {fcnt32} is not a 32-bit unsigned int")


def _data_mic(nwk_s_key: AesKey, uplink: bool, dev_addr: int, fcnt32: int, msg: bytes) -> bytes:
    _check_frame_numbers(dev_addr, fcnt32)
    if len(msg) > _MAX_MSG_LEN:
        raise FrameError("too_long", f"MIC input of {len(msg)} bytes exceeds {_MAX_MSG_LEN}")
    return nwk_s_key.cmac(_B0.pack(_MIC_BLOCK_TAG, _direction(uplink), dev_addr, fcnt32, len(msg)) + msg)[:MIC_LEN]


def _crypt_frm_payload(key: AesKey, uplink: bool, dev_addr: int, fcnt32: int, payload: bytes) -> bytes:
    _check_frame_numbers(dev_addr, fcnt32)
    if not payload:
        return b""
    if len(payload) > _MAX_MSG_LEN:
        raise FrameError("too_long", f"FRMPayload of {len(payload)} bytes exceeds {_MAX_MSG_LEN}")
    prefix = _A_PREFIX.pack(_CRYPT_BLOCK_TAG, _direction(uplink), dev_addr, fcnt32)
    size = len(payload)
    keystream = key.encrypt_blocks(b"".join([prefix + i for i in _BLOCK_INDEXES[: -(-size // BLOCK_LEN)]]))
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keystream[:size], "big")).to_bytes(size, "big")


def data_mic(nwk_s_key: bytes, uplink: bool, dev_addr: int, fcnt32: int, msg: bytes) -> bytes:
    """MIC of a data frame: first 4 bytes of AES-CMAC(NwkSKey, B0 | msg), msg = MHDR | FHDR | FPort | FRMPayload."""
    return _data_mic(AesKey(nwk_s_key, "NwkSKey"), uplink, dev_addr, fcnt32, msg)


def crypt_frm_payload(key: bytes, uplink: bool, dev_addr: int, fcnt32: int, payload: bytes) -> bytes:
    """Encrypt or decrypt (the same operation) an FRMPayload: XOR with AES(key, A_i) for i = 1, 2, ..."""
    return _crypt_frm_payload(AesKey(key), uplink, dev_addr, fcnt32, payload)


class SessionKeys:
    """The session keys of one device (NwkSKey, AppSKey) with their keyed contexts, for sealing and opening frames."""

    __slots__ = ("_nwk", "_app")

    def __init__(self, nwk_s_key: bytes, app_s_key: bytes) -> None:
        self._nwk = AesKey(nwk_s_key, "NwkSKey")
        self._app = AesKey(app_s_key, "AppSKey")

    def __repr__(self) -> str:
        return "SessionKeys(<hidden>)"

    def data_mic(self, uplink: bool, dev_addr: int, fcnt32: int, msg: bytes) -> bytes:
        """MIC of a data frame (see `data_mic`)."""
        return _data_mic(self._nwk, uplink, dev_addr, fcnt32, msg)

    def crypt_frm_payload(self, fport: int, uplink: bool, dev_addr: int, fcnt32: int, payload: bytes) -> bytes:
        """Encrypt or decrypt an FRMPayload: with NwkSKey for FPort 0 (MAC commands), else with AppSKey."""
        key = self._nwk if fport == 0 else self._app
        return _crypt_frm_payload(key, uplink, dev_addr, fcnt32, payload)

    def seal(self, frame: DataFrame, fcnt32: int) -> bytes:
        """The PHYPayload of `frame` (plaintext FRMPayload, MIC ignored) with FRMPayload encrypted and the MIC set."""
        _check_fcnt16(frame, fcnt32)
        encrypted = self.crypt_frm_payload(frame.fport or 0, frame.uplink, frame.dev_addr, fcnt32, frame.frm_payload)
        msg = build_data_frame(replace(frame, frm_payload=encrypted, mic=b"\x00" * MIC_LEN))[:-MIC_LEN]
        return msg + _data_mic(self._nwk, frame.uplink, frame.dev_addr, fcnt32, msg)

    def open(self, frame: DataFrame, fcnt32: int) -> bytes:
        """The plaintext FRMPayload of a received `frame` whose 32-bit FCnt is `fcnt32`; FrameError 'mic_failed' if
        the MIC does not verify."""
        _check_fcnt16(frame, fcnt32)
        expected = _data_mic(self._nwk, frame.uplink, frame.dev_addr, fcnt32, frame.mic_input())
        if not hmac.compare_digest(expected, frame.mic):
            raise FrameError("mic_failed", f"MIC does not verify (DevAddr {frame.dev_addr:08x}, FCnt {fcnt32})")
        if frame.fport is None:
            return b""
        return self.crypt_frm_payload(frame.fport, frame.uplink, frame.dev_addr, fcnt32, frame.frm_payload)


def _check_fcnt16(frame: DataFrame, fcnt32: int) -> None:
    if fcnt32 & 0xFFFF != frame.fcnt16:
        raise ValueError(f"FCnt {fcnt32} does not match the frame's 16-bit FCnt {frame.fcnt16}")


def seal_data_frame(frame_without_mic: DataFrame, fcnt32: int, nwk_s_key: bytes, app_s_key: bytes) -> bytes:
    """Encrypt the (plaintext) FRMPayload of a frame, compute its MIC, and return the PHYPayload."""
    return SessionKeys(nwk_s_key, app_s_key).seal(frame_without_mic, fcnt32)


def open_data_frame(frame: DataFrame, fcnt32: int, nwk_s_key: bytes, app_s_key: bytes) -> bytes:
    """Verify a received frame's MIC and return its plaintext FRMPayload; FrameError 'mic_failed' on a bad MIC."""
    return SessionKeys(nwk_s_key, app_s_key).open(frame, fcnt32)


# --- join -------------------------------------------------------------------------------------------------------------


def join_request_mic(app_key: bytes, msg: bytes) -> bytes:
    """MIC of a JoinRequest: first 4 bytes of AES-CMAC(AppKey, MHDR | JoinEUI | DevEUI | DevNonce)."""
    return AesKey(app_key, "AppKey").cmac(msg)[:MIC_LEN]


def join_accept_mic(app_key: bytes, msg: bytes) -> bytes:
    """MIC of a JoinAccept: first 4 bytes of AES-CMAC(AppKey, MHDR | JoinNonce | NetID | DevAddr | DLSettings |
    RxDelay | CFList)."""
    return AesKey(app_key, "AppKey").cmac(msg)[:MIC_LEN]


def _check_join_accept_length(phy: bytes) -> None:
    if len(phy) not in (JOIN_ACCEPT_LEN, JOIN_ACCEPT_CFLIST_LEN):
        raise FrameError("bad_length", f"JoinAccept of {len(phy)} bytes (17 or 33 needed)")


def encrypt_join_accept(app_key: bytes, plaintext_phy: bytes) -> bytes:
    """The on-air JoinAccept: MHDR, then everything after it (MIC included) through AES-128 *decrypt* with AppKey,
    so that the node needs only AES encrypt."""
    _check_join_accept_length(plaintext_phy)
    decryptor = Cipher(algorithms.AES(_check_key(app_key, "AppKey")), modes.ECB()).decryptor()
    return bytes(plaintext_phy[:1]) + decryptor.update(bytes(plaintext_phy[1:])) + decryptor.finalize()


def decrypt_join_accept(app_key: bytes, phy: bytes) -> bytes:
    """The plaintext JoinAccept PHYPayload from the on-air one (AES-128 encrypt with AppKey after the MHDR)."""
    _check_join_accept_length(phy)
    return bytes(phy[:1]) + AesKey(app_key, "AppKey").encrypt_blocks(bytes(phy[1:]))


def derive_session_keys(app_key: bytes, join_nonce: int, net_id: int, dev_nonce: int) -> tuple[bytes, bytes]:
    """(NwkSKey, AppSKey) = AES-128(AppKey, 0x01 | 0x02, JoinNonce | NetID | DevNonce | zero padding)."""
    if not (0 <= join_nonce < 1 << 24 and 0 <= net_id < 1 << 24 and 0 <= dev_nonce < 1 << 16):
        raise ValueError("JoinNonce and NetID are 24-bit, DevNonce 16-bit unsigned ints")
    tail = join_nonce.to_bytes(3, "little") + net_id.to_bytes(3, "little") + dev_nonce.to_bytes(2, "little") + bytes(7)
    keys = AesKey(app_key, "AppKey").encrypt_blocks(bytes((_NWK_S_KEY_TAG,)) + tail + bytes((_APP_S_KEY_TAG,)) + tail)
    return keys[:KEY_LEN], keys[KEY_LEN:]


def seal_join_request(request: JoinRequest, app_key: bytes) -> bytes:
    """The PHYPayload of a JoinRequest with its MIC computed."""
    msg = build_join_request(replace(request, mic=b"\x00" * MIC_LEN))[:-MIC_LEN]
    return msg + join_request_mic(app_key, msg)


def verify_join_request(request: JoinRequest, app_key: bytes) -> None:
    """Raise FrameError 'mic_failed' unless the JoinRequest's MIC verifies under `app_key`."""
    if not hmac.compare_digest(join_request_mic(app_key, request.mic_input()), request.mic):
        raise FrameError("mic_failed", f"JoinRequest MIC does not verify (DevEUI {request.dev_eui.hex()})")


def seal_join_accept(accept: JoinAccept, app_key: bytes) -> bytes:
    """The on-air PHYPayload of a JoinAccept: MIC computed, then encrypted."""
    msg = build_join_accept(replace(accept, mic=b"\x00" * MIC_LEN))[:-MIC_LEN]
    return encrypt_join_accept(app_key, msg + join_accept_mic(app_key, msg))


def open_join_accept(phy: bytes, app_key: bytes) -> JoinAccept:
    """Decrypt and parse an on-air JoinAccept; FrameError 'mic_failed' if its MIC does not verify."""
    accept = parse_join_accept(decrypt_join_accept(app_key, phy))
    if not hmac.compare_digest(join_accept_mic(app_key, accept.mic_input()), accept.mic):
        raise FrameError("mic_failed", "JoinAccept MIC does not verify")
    return accept
