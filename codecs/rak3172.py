"""The RAK3172 (RUI3 firmware) serial line format, as far as DOS Edge uses it (reference/rak3172.md): the one
definition for the agent's single-channel receiver (`dos_agent.rak_input`) and the rig's module emulator
(`dos_rig.rak3172`). The node's MicroPython driver (`firmware/drivers/rak3172.py`) cannot import this package; a test
keeps its status table equal to `STATUS_LINES`.

Lines end with CR LF at 115200 8N1. A command is answered by an optional value line, then one status line. What happens
later arrives as `+EVT:` lines; a frame heard in P2P receive mode is `+EVT:RXP2P:<rssi>:<snr>:<HEX>`. After a reset
the module prints a boot banner ("RAKwireless RAK3172 <version>", "Current Work Mode: <mode>.").

`parse_rx_p2p(fields)` raises only `AtLineError` (a `CodecError`) with a counter label as `reason`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dos_codecs.errors import CodecError

BAUDRATE = 115200
#: Longest line either side takes: AT+PSEND or +EVT:RXP2P of a 255-byte frame is well under this.
MAX_LINE = 600
MAX_P2P_BYTES = 255

OK, AT_ERROR, AT_PARAM_ERROR, AT_BUSY_ERROR = "OK", "AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR"
AT_TEST_PARAM_OVERFLOW, AT_NO_NETWORK_JOINED, AT_RX_ERROR = ("AT_TEST_PARAM_OVERFLOW", "AT_NO_NETWORK_JOINED",
                                                             "AT_RX_ERROR")
AT_MODE_NO_SUPPORT, AT_COMMAND_NOT_FOUND = "AT_MODE_NO_SUPPORT", "AT_COMMAND_NOT_FOUND"
#: Every status line that ends a command's answer.
STATUS_LINES = frozenset({OK, AT_ERROR, AT_PARAM_ERROR, AT_BUSY_ERROR, AT_TEST_PARAM_OVERFLOW, AT_NO_NETWORK_JOINED,
                          AT_RX_ERROR, AT_MODE_NO_SUPPORT, AT_COMMAND_NOT_FOUND})

EVENT_PREFIX = "+EVT:"
RX_P2P_EVENT = "RXP2P:"  # after EVENT_PREFIX: <rssi>:<snr>:<HEX>
RX_P2P_TIMEOUT_EVENT = "RXP2P RECEIVE TIMEOUT"
TX_P2P_DONE_EVENT = "TXP2P DONE"

#: AT+PRECV values: receive until told otherwise, or for one packet (others: a window in ms; 0 stops).
PRECV_CONTINUOUS, PRECV_ONE_PACKET = 65534, 65535
#: AT+P2P bandwidth index -> kHz.
P2P_BANDWIDTHS_KHZ = (125, 250, 500)
#: AT+SYNCWORD of the public LoRaWAN sync word 0x34, in RUI3's two-byte notation.
LORAWAN_SYNC_WORD = "3444"

#: How the lines of the boot banner start (upper-cased).
BANNER_STARTS = ("RAKWIRELESS", "CURRENT WORK MODE")
RSSI_RANGE_DBM = (-200, 20)
SNR_RANGE_DB = (-50, 50)


class AtLineError(CodecError):
    """A line from the module that cannot be used."""


@dataclass(frozen=True, slots=True)
class RxP2p:
    """`+EVT:RXP2P:<rssi>:<snr>:<HEX>`: a frame the module heard in P2P receive mode."""

    rssi: int
    snr: int
    phy: bytes


def banner(version: str, mode: str) -> str:
    """The boot banner's lines (CR LF ended) for firmware `version` in work `mode` ("LoRaWAN", "LoRa P2P")."""
    return f"RAKwireless RAK3172 {version}\r\nCurrent Work Mode: {mode}.\r\n"


def event_line(text: str) -> str:
    """An event line: `+EVT:<text>` CR LF."""
    return f"{EVENT_PREFIX}{text}\r\n"


def format_rx_p2p(rssi: int, snr: int, phy: bytes) -> str:
    """The text after `+EVT:` for a frame heard in P2P mode."""
    return f"{RX_P2P_EVENT}{rssi}:{snr}:{phy.hex().upper()}"


def _signed_int(text: str, bounds: tuple[int, int], name: str) -> int:
    digits = text[1:] if text[:1] == "-" else text
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 4:
        raise AtLineError(f"bad_{name}", f"{name} {text[:8]!r} is not an integer")
    value = int(text)
    if not bounds[0] <= value <= bounds[1]:
        raise AtLineError(f"bad_{name}", f"{name} {value} is outside {bounds[0]}..{bounds[1]}")
    return value


def parse_rx_p2p(fields: str) -> RxP2p:
    """`<rssi>:<snr>:<HEX>` (the text after `+EVT:RXP2P:`) -> the frame heard."""
    parts = fields.split(":")
    if len(parts) != 3:
        raise AtLineError("bad_rx_line", f"RXP2P has {len(parts)} fields, not rssi:snr:hex")
    rssi = _signed_int(parts[0], RSSI_RANGE_DBM, "rssi")
    snr = _signed_int(parts[1], SNR_RANGE_DB, "snr")
    hex_text = parts[2]
    if not hex_text:
        raise AtLineError("empty_frame", "RXP2P without payload")
    if len(hex_text) > 2 * MAX_P2P_BYTES:
        raise AtLineError("frame_too_long", f"RXP2P payload of {len(hex_text) // 2} bytes")
    if len(hex_text) % 2:
        raise AtLineError("bad_hex", "RXP2P payload has an odd number of hex digits")
    try:
        phy = bytes.fromhex(hex_text)
    except ValueError:
        raise AtLineError("bad_hex", "RXP2P payload is not hex") from None
    return RxP2p(rssi, snr, phy)
