"""The RAK3172 serial line format (dos_codecs.rak3172): P2P frame events both ways, typed errors on any text, and the
node driver's status table (MicroPython, which cannot import dos_codecs) kept equal to the codec's."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dos_codecs.errors import CodecError
from dos_codecs.rak3172 import (EVENT_PREFIX, MAX_LINE, MAX_P2P_BYTES, RX_P2P_EVENT, STATUS_LINES, AtLineError, RxP2p,
                                banner, event_line, format_rx_p2p, parse_rx_p2p)

FIRMWARE_DRIVER = Path(__file__).resolve().parents[1] / "firmware" / "drivers" / "rak3172.py"


@settings(max_examples=200)
@given(rssi=st.integers(-200, 20), snr=st.integers(-50, 50), phy=st.binary(min_size=1, max_size=MAX_P2P_BYTES))
def test_a_heard_frame_reads_back_as_written(rssi: int, snr: int, phy: bytes) -> None:
    line = event_line(format_rx_p2p(rssi, snr, phy))
    assert line.startswith(EVENT_PREFIX + RX_P2P_EVENT) and line.endswith("\r\n")
    assert len(line) <= MAX_LINE
    assert parse_rx_p2p(line[len(EVENT_PREFIX + RX_P2P_EVENT):-2]) == RxP2p(rssi, snr, phy)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ("-40:7", "bad_rx_line"),
        ("-40:7:00:11", "bad_rx_line"),
        ("x:7:00", "bad_rssi"),
        ("-201:7:00", "bad_rssi"),
        ("-40:51:00", "bad_snr"),
        ("-40:7:", "empty_frame"),
        ("-40:7:abc", "bad_hex"),
        ("-40:7:zz", "bad_hex"),
        ("-40:7:" + "00" * (MAX_P2P_BYTES + 1), "frame_too_long"),
    ],
)
def test_bad_fields_carry_their_reason(fields: str, reason: str) -> None:
    with pytest.raises(AtLineError) as caught:
        parse_rx_p2p(fields)
    assert caught.value.reason == reason


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_a_codec_error(fields: str) -> None:
    try:
        frame = parse_rx_p2p(fields)
    except CodecError as exc:
        assert exc.reason
    else:
        assert parse_rx_p2p(format_rx_p2p(frame.rssi, frame.snr, frame.phy)[len(RX_P2P_EVENT):]) == frame


def test_banner_names_module_version_and_mode() -> None:
    lines = banner("RUI_4.0.6", "LoRa P2P").split("\r\n")
    assert lines[:2] == ["RAKwireless RAK3172 RUI_4.0.6", "Current Work Mode: LoRa P2P."]


def test_the_node_driver_knows_the_same_status_lines() -> None:
    source = FIRMWARE_DRIVER.read_text()
    table = re.search(r"^STATUSES = \(([^)]*)\)", source, re.M)
    assert table is not None, "firmware/drivers/rak3172.py has no STATUSES table"
    assert set(re.findall(r'"([A-Z_]+)"', table.group(1))) == STATUS_LINES
