"""`dos-edge lorawan`: LoRaWAN 1.0.x frames by hand, for people and scripts.

    decode PHYHEX --nwkskey HEX --appskey HEX [--fcnt-last N]     one JSON object; exit 0 accepted, 1 rejected
    encode --mtype T --devaddr HEX --fcnt N [--fport N --payload HEX] --nwkskey HEX --appskey HEX [--adr] [--ack]
           [--fopts HEX]                                           the PHYPayload hex
    join request --appkey HEX --joineui HEX --deveui HEX --devnonce N                 the JoinRequest hex
    join accept --appkey HEX --joinnonce N --netid HEX --devaddr HEX [--rx1-dr-offset N] [--rx2-dr N] [--rx-delay N]
           [--cflist HZ,...] [--devnonce N]                        the JoinAccept hex (then the session keys)
    join decode PHYHEX --appkey HEX                                one JSON object; exit 0 MIC ok, 1 rejected

Exit 2 is a usage error (bad hex, a key of the wrong length, a number out of range), explained in one line on stderr.
Keys are printed only by `join accept --devnonce`, whose point is to derive them; an error message never shows a key.
`decode` without --fcnt-last takes the upper 16 bits of the counter as 0; with it, the counter is rebuilt as the session
layer does (`fcnt_replay` at or below the last value, `fcnt_gap` more than MAX_FCNT_GAP ahead).
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
from typing import Any, Callable

from dos_codecs.crypto import (
    SessionKeys,
    decrypt_join_accept,
    derive_session_keys,
    join_accept_mic,
    seal_join_accept,
    seal_join_request,
    verify_join_request,
)
from dos_codecs.errors import FrameError
from dos_codecs.lorawan import (
    MIC_LEN,
    DataFrame,
    JoinAccept,
    JoinAcceptFrame,
    JoinRequest,
    MType,
    parse_join_accept,
    parse_phy,
)
from dos_codecs.mac_commands import build_cf_list, parse_cf_list, parse_mac_commands_prefix

from dos_agent.session import MAX_FCNT_GAP, forward_fcnt, next_fcnt, previous_fcnt

EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2

_MTYPES = {"unconfirmed_up": MType.UNCONFIRMED_UP, "confirmed_up": MType.CONFIRMED_UP,
           "unconfirmed_down": MType.UNCONFIRMED_DOWN, "confirmed_down": MType.CONFIRMED_DOWN}


class UsageError(ValueError):
    """An argument that does not make sense; the message names the option, never a key's value."""


# --- argument checks --------------------------------------------------------------------------------------------------


def _hex(text: str, option: str, length: int | None = None, secret: bool = False) -> bytes:
    """Bytes from hex; `length` in bytes when fixed. A secret's value never appears in the message."""
    shown = "" if secret else f" {text!r}"
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{option}{shown} is not hex") from None
    if length is not None and len(value) != length:
        raise UsageError(f"{option} must be {length} bytes ({2 * length} hex digits), got {len(value)}")
    return value


def _key(text: str, option: str) -> bytes:
    return _hex(text, option, 16, secret=True)


def _uint(text: str, option: str, maximum: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a number") from None
    if not 0 <= value <= maximum:
        raise UsageError(f"{option} {value} is not in 0..{maximum}")
    return value


def _be_int(text: str, option: str, length: int) -> int:
    """A big-endian hex number of `length` bytes (DevAddr, NetID as people write them)."""
    return int.from_bytes(_hex(text, option, length), "big")


def _frequencies(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--cflist {text!r}: frequencies are whole Hz, comma-separated") from None
    try:
        build_cf_list(values)
    except FrameError as exc:
        raise UsageError(f"--cflist: {exc.detail}") from None
    return values


# --- decode -----------------------------------------------------------------------------------------------------------


def _mtype_name(phy: bytes) -> str | None:
    return MType(phy[0] >> 5).name.lower() if phy else None


def _fctrl(frame: DataFrame) -> dict[str, Any]:
    return {"adr": frame.adr, "adr_ack_req": frame.adr_ack_req, "ack": frame.ack, "class_b": frame.class_b,
            "f_pending": frame.f_pending, "fopts_len": len(frame.fopts)}


def _open_with_counter(
    keys: SessionKeys, frame: DataFrame, fcnt_last: int | None
) -> tuple[int | None, bytes | None, str | None]:
    """(32-bit FCnt, plaintext FRMPayload or None when no counter verifies, rejection reason or None)."""

    def opened(fcnt: int | None) -> bytes | None:
        if fcnt is None:
            return None
        try:
            return keys.open(frame, fcnt)
        except FrameError:
            return None

    if fcnt_last is None:
        plaintext = opened(frame.fcnt16)
        return frame.fcnt16, plaintext, None if plaintext is not None else "mic_failed"
    fresh = next_fcnt(fcnt_last, frame.fcnt16)
    plaintext = opened(fresh)
    if plaintext is not None:
        return fresh, plaintext, None
    stale = previous_fcnt(fcnt_last, frame.fcnt16)
    plaintext = opened(stale)
    if plaintext is not None:
        return stale, plaintext, "fcnt_replay"
    ahead = forward_fcnt(fcnt_last, frame.fcnt16)
    if ahead is not None and ahead - fcnt_last > MAX_FCNT_GAP:
        plaintext = opened(ahead)
        if plaintext is not None:
            return ahead, plaintext, "fcnt_gap"
    return fresh, None, "mic_failed"


def decode_data_frame(phy: bytes, nwk_s_key: bytes, app_s_key: bytes, fcnt_last: int | None = None) -> dict[str, Any]:
    """The JSON view of a data frame PHYPayload; `reason` is None when accepted. FOpts MAC commands are parsed
    always (they travel in clear in 1.0.x), FPort 0 ones once the MIC verifies; `mac_commands` lists those before
    the first one that does not parse, and `mac_error` says why that one did not."""
    result: dict[str, Any] = {
        "mtype": _mtype_name(phy), "devaddr": None, "fctrl": None, "fcnt16": None, "fcnt32": None, "fopts": None,
        "fport": None, "frm_payload": None, "mic_ok": False, "reason": None, "mac_commands": None, "mac_error": None,
    }
    try:
        frame = parse_phy(phy)
    except FrameError as exc:
        result["reason"] = exc.reason
        return result
    if not isinstance(frame, DataFrame):
        result["reason"] = "not_data_frame"
        return result
    result.update(devaddr=f"{frame.dev_addr:08x}", fctrl=_fctrl(frame), fcnt16=frame.fcnt16, fopts=frame.fopts.hex(),
                  fport=frame.fport)
    fcnt32, plaintext, reason = _open_with_counter(SessionKeys(nwk_s_key, app_s_key), frame, fcnt_last)
    result.update(fcnt32=fcnt32, mic_ok=plaintext is not None, reason=reason)
    if plaintext is not None:
        result["frm_payload"] = plaintext.hex()
    commands_bytes = frame.fopts if frame.fport != 0 else plaintext
    if commands_bytes is not None:
        commands, error = parse_mac_commands_prefix(commands_bytes, frame.uplink)
        result["mac_commands"] = [command.to_dict() for command in commands]
        result["mac_error"] = None if error is None else error.reason
    return result


def _decode(args: argparse.Namespace) -> int:
    phy = _hex(args.phy, "PHYHEX")
    nwk, app = _key(args.nwkskey, "--nwkskey"), _key(args.appskey, "--appskey")
    fcnt_last = None if args.fcnt_last is None else _uint(args.fcnt_last, "--fcnt-last", 0xFFFFFFFF)
    result = decode_data_frame(phy, nwk, app, fcnt_last)
    print(json.dumps(result))
    return EXIT_ACCEPTED if result["reason"] is None else EXIT_REJECTED


# --- encode -----------------------------------------------------------------------------------------------------------


def _encode(args: argparse.Namespace) -> int:
    nwk, app = _key(args.nwkskey, "--nwkskey"), _key(args.appskey, "--appskey")
    fcnt = _uint(args.fcnt, "--fcnt", 0xFFFFFFFF)
    fport = None if args.fport is None else _uint(args.fport, "--fport", 255)
    payload = _hex(args.payload, "--payload")
    if fport is None and payload:
        raise UsageError("--payload needs --fport")
    frame = DataFrame(
        mtype=_MTYPES[args.mtype], dev_addr=_be_int(args.devaddr, "--devaddr", 4), fcnt16=fcnt & 0xFFFF,
        adr=args.adr, ack=args.ack, fopts=_hex(args.fopts, "--fopts"), fport=fport, frm_payload=payload,
    )
    try:
        phy = SessionKeys(nwk, app).seal(frame, fcnt)
    except FrameError as exc:
        raise UsageError(f"cannot build this frame: {exc.detail}") from None
    print(phy.hex())
    return EXIT_ACCEPTED


# --- join -------------------------------------------------------------------------------------------------------------


def _join_request(args: argparse.Namespace) -> int:
    request = JoinRequest(
        join_eui=_hex(args.joineui, "--joineui", 8), dev_eui=_hex(args.deveui, "--deveui", 8),
        dev_nonce=_uint(args.devnonce, "--devnonce", 0xFFFF),
    )
    print(seal_join_request(request, _key(args.appkey, "--appkey")).hex())
    return EXIT_ACCEPTED


def _join_accept(args: argparse.Namespace) -> int:
    app_key = _key(args.appkey, "--appkey")
    accept = JoinAccept(
        join_nonce=_uint(args.joinnonce, "--joinnonce", 0xFFFFFF),
        net_id=_be_int(args.netid, "--netid", 3),
        dev_addr=_be_int(args.devaddr, "--devaddr", 4),
        rx1_dr_offset=_uint(args.rx1_dr_offset, "--rx1-dr-offset", 7),
        rx2_data_rate=_uint(args.rx2_dr, "--rx2-dr", 15),
        rx_delay=_uint(args.rx_delay, "--rx-delay", 15),
        cf_list=None if args.cflist is None else build_cf_list(_frequencies(args.cflist)),
    )
    dev_nonce = None if args.devnonce is None else _uint(args.devnonce, "--devnonce", 0xFFFF)
    print(seal_join_accept(accept, app_key).hex())
    if dev_nonce is not None:
        nwk_s_key, app_s_key = derive_session_keys(app_key, accept.join_nonce, accept.net_id, dev_nonce)
        print(f"nwk_s_key={nwk_s_key.hex()}")
        print(f"app_s_key={app_s_key.hex()}")
    return EXIT_ACCEPTED


def decode_join_frame(phy: bytes, app_key: bytes) -> dict[str, Any]:
    """The JSON view of a JoinRequest (MIC verified) or an on-air JoinAccept (decrypted, MIC verified); fields are
    None when the frame does not verify. `reason` is None when the MIC verifies."""
    result: dict[str, Any] = {"mtype": _mtype_name(phy), "mic_ok": False, "reason": None}
    try:
        frame = parse_phy(phy)
    except FrameError as exc:
        result["reason"] = exc.reason
        return result
    if isinstance(frame, JoinRequest):
        result.update(join_eui=frame.join_eui.hex(), dev_eui=frame.dev_eui.hex(), dev_nonce=frame.dev_nonce)
        try:
            verify_join_request(frame, app_key)
        except FrameError as exc:
            result["reason"] = exc.reason
            return result
        result["mic_ok"] = True
        return result
    if not isinstance(frame, JoinAcceptFrame):
        result["reason"] = "not_join_frame"
        return result
    fields = ("join_nonce", "net_id", "devaddr", "rx1_dr_offset", "rx2_dr", "rx_delay", "cflist")
    result.update(dict.fromkeys(fields))
    # The MIC is checked on the decrypted bytes before they are parsed: under a wrong AppKey they are noise, and
    # `mic_failed` says so where a parse error (an RFU bit) would mislead.
    plaintext = decrypt_join_accept(app_key, frame.phy)
    if not hmac.compare_digest(join_accept_mic(app_key, plaintext[:-MIC_LEN]), plaintext[-MIC_LEN:]):
        result["reason"] = "mic_failed"
        return result
    try:
        accept = parse_join_accept(plaintext)
        cflist = None if accept.cf_list is None else parse_cf_list(accept.cf_list)
    except FrameError as exc:
        result["reason"] = exc.reason
        return result
    result.update(
        mic_ok=True, join_nonce=accept.join_nonce, net_id=f"{accept.net_id:06x}", devaddr=f"{accept.dev_addr:08x}",
        rx1_dr_offset=accept.rx1_dr_offset, rx2_dr=accept.rx2_data_rate, rx_delay=accept.rx_delay, cflist=cflist,
    )
    return result


def _join_decode(args: argparse.Namespace) -> int:
    result = decode_join_frame(_hex(args.phy, "PHYHEX"), _key(args.appkey, "--appkey"))
    print(json.dumps(result))
    return EXIT_ACCEPTED if result["reason"] is None else EXIT_REJECTED


# --- command line -----------------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `lorawan` and its actions to a `dos-edge` subparsers object. Each action's parser sets `lorawan_handler`;
    run the parsed arguments with `run(args)`."""
    lorawan = subparsers.add_parser("lorawan", help="LoRaWAN frame tools: decode, encode, join")
    actions = lorawan.add_subparsers(dest="action", required=True, metavar="ACTION")

    def leaf(parent: argparse._SubParsersAction, name: str, help_text: str,
             handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(lorawan_handler=handler)
        return parser

    decode = leaf(actions, "decode", "decode and check a data frame (JSON out; exit 0 accepted, 1 rejected)", _decode)
    decode.add_argument("phy", metavar="PHYHEX", help="the PHYPayload in hex")
    decode.add_argument("--nwkskey", required=True, metavar="HEX")
    decode.add_argument("--appskey", required=True, metavar="HEX")
    decode.add_argument("--fcnt-last", metavar="N", help="last accepted 32-bit uplink counter (replay check)")

    encode = leaf(actions, "encode", "build a data frame (PHYPayload hex out)", _encode)
    encode.add_argument("--mtype", required=True, choices=list(_MTYPES))
    encode.add_argument("--devaddr", required=True, metavar="HEX", help="DevAddr, 8 hex digits as written (MSB first)")
    encode.add_argument("--fcnt", required=True, metavar="N", help="32-bit frame counter")
    encode.add_argument("--fport", metavar="N", help="FPort 0..255 (omit for a frame without FPort)")
    encode.add_argument("--payload", default="", metavar="HEX", help="plaintext FRMPayload")
    encode.add_argument("--nwkskey", required=True, metavar="HEX")
    encode.add_argument("--appskey", required=True, metavar="HEX")
    encode.add_argument("--adr", action="store_true", help="set FCtrl.ADR")
    encode.add_argument("--ack", action="store_true", help="set FCtrl.ACK")
    encode.add_argument("--fopts", default="", metavar="HEX", help="FOpts (MAC commands, at most 15 bytes)")

    join = actions.add_parser("join", help="JoinRequest / JoinAccept tools")
    join_actions = join.add_subparsers(dest="join_action", required=True, metavar="ACTION")
    request = leaf(join_actions, "request", "build a JoinRequest (hex out)", _join_request)
    request.add_argument("--appkey", required=True, metavar="HEX")
    request.add_argument("--joineui", required=True, metavar="HEX", help="JoinEUI, 16 hex digits MSB first")
    request.add_argument("--deveui", required=True, metavar="HEX", help="DevEUI, 16 hex digits MSB first")
    request.add_argument("--devnonce", required=True, metavar="N")

    accept = leaf(join_actions, "accept", "build an encrypted JoinAccept (hex out; session keys with --devnonce)",
                  _join_accept)
    accept.add_argument("--appkey", required=True, metavar="HEX")
    accept.add_argument("--joinnonce", required=True, metavar="N")
    accept.add_argument("--netid", required=True, metavar="HEX", help="NetID, 6 hex digits")
    accept.add_argument("--devaddr", required=True, metavar="HEX", help="DevAddr, 8 hex digits MSB first")
    accept.add_argument("--rx1-dr-offset", default="0", metavar="N")
    accept.add_argument("--rx2-dr", default="0", metavar="N")
    accept.add_argument("--rx-delay", default="1", metavar="N", help="RX1 delay in s (0 means 1)")
    accept.add_argument("--cflist", metavar="HZ,...", help="up to five channel frequencies in Hz (channels 3..7)")
    accept.add_argument("--devnonce", metavar="N", help="the JoinRequest's DevNonce: also print the session keys")

    join_decode = leaf(join_actions, "decode", "check a JoinRequest or decrypt and check a JoinAccept (JSON out)",
                       _join_decode)
    join_decode.add_argument("phy", metavar="PHYHEX")
    join_decode.add_argument("--appkey", required=True, metavar="HEX")


def run(args: argparse.Namespace) -> int:
    """Run a parsed `lorawan` command; usage errors print one line on stderr and give EXIT_USAGE."""
    try:
        return args.lorawan_handler(args)
    except UsageError as exc:
        print(f"dos-edge lorawan: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: list[str]) -> int:
    """`dos-edge lorawan ARGS...` on its own (argv without the word `lorawan`); returns the exit code."""
    parser = argparse.ArgumentParser(prog="dos-edge")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["lorawan", *argv])
    except SystemExit as exc:  # --help exits 0, argparse usage errors 2
        return int(exc.code or 0)
    return run(args)
