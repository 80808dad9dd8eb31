"""`dos-edge lorawan`: decode and join decode on the published vectors, encode reproducing them, counter checks against
--fcnt-last, join accept with independently derived keys, structural rejects, usage errors in one line without keys."""

from __future__ import annotations

import argparse
import json

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dos_agent import lorawan_tool
from dos_agent.lorawan_tool import EXIT_ACCEPTED, EXIT_REJECTED, EXIT_USAGE, main

# Published vectors (reference/lorawan.md).
DATA_UPLINK = "40f17dbe4900020001954378762b11ff0d"
NWK = "44024241ed4ce9a68c6a8bc055233fd3"
APP = "ec925802ae430ca77fd3dd73cb2cc588"
JOIN_REQUEST = "0039363463336913aa05693574323831330489c65b1304"
APP_KEY = "98929b92c49edba9676d646d3b612456"
# The JoinRequest's fields: EUIs travel little-endian, DevNonce is 0x8904 little-endian.
JOIN_EUI = "aa13693363343639"
DEV_EUI = "3331383274356905"
DEV_NONCE = 0x8904


def run_tool(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def decode(capsys: pytest.CaptureFixture[str], phy: str, *extra: str, nwk: str = NWK, app: str = APP):  # noqa: ANN201
    code, out, err = run_tool(capsys, "decode", phy, "--nwkskey", nwk, "--appskey", app, *extra)
    return code, json.loads(out), err


def aes_ecb_encrypt(key: str, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(bytes.fromhex(key)), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


# --- decode -----------------------------------------------------------------------------------------------------------


def test_decode_published_uplink(capsys: pytest.CaptureFixture[str]) -> None:
    code, result, err = decode(capsys, DATA_UPLINK.upper())
    assert code == EXIT_ACCEPTED and err == ""
    assert result == {
        "mtype": "unconfirmed_up", "devaddr": "49be7df1",
        "fctrl": {"adr": False, "adr_ack_req": False, "ack": False, "class_b": False, "f_pending": False,
                  "fopts_len": 0},
        "fcnt16": 2, "fcnt32": 2, "fopts": "", "fport": 1, "frm_payload": b"test".hex(), "mic_ok": True,
        "reason": None, "mac_commands": [], "mac_error": None,
    }


def test_decode_with_a_wrong_key_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    code, result, _err = decode(capsys, DATA_UPLINK, nwk="00" * 16)
    assert code == EXIT_REJECTED
    assert (result["mic_ok"], result["reason"], result["frm_payload"]) == (False, "mic_failed", None)
    assert result["devaddr"] == "49be7df1"  # the structure is still shown


def test_decode_checks_the_counter_against_fcnt_last(capsys: pytest.CaptureFixture[str]) -> None:
    code, result, _ = decode(capsys, DATA_UPLINK, "--fcnt-last", "1")
    assert code == EXIT_ACCEPTED and result["fcnt32"] == 2
    code, result, _ = decode(capsys, DATA_UPLINK, "--fcnt-last", "2")
    assert code == EXIT_REJECTED and result["reason"] == "fcnt_replay" and result["fcnt32"] == 2
    assert result["mic_ok"] is True and result["frm_payload"] == b"test".hex()
    code, result, _ = decode(capsys, DATA_UPLINK, "--fcnt-last", "9")
    assert code == EXIT_REJECTED and result["reason"] == "fcnt_replay"
    # A frame 29990 past the last counter is further than MAX_FCNT_GAP (16384) ahead.
    _code, phy, _err = run_tool(capsys, "encode", "--mtype", "unconfirmed_up", "--devaddr", "26011f01", "--fcnt",
                                "30000", "--fport", "1", "--payload", "01", "--nwkskey", NWK, "--appskey", APP)
    code, result, _ = decode(capsys, phy.strip(), "--fcnt-last", "10")
    assert code == EXIT_REJECTED and result["reason"] == "fcnt_gap" and result["fcnt32"] == 30000
    # Counters with the upper 16 bits set are rebuilt from the last one.
    _code, phy, _err = run_tool(capsys, "encode", "--mtype", "confirmed_up", "--devaddr", "26011f01", "--fcnt",
                                "70001", "--fport", "1", "--payload", "01", "--nwkskey", NWK, "--appskey", APP)
    code, result, _ = decode(capsys, phy.strip(), "--fcnt-last", "69990")
    assert code == EXIT_ACCEPTED and (result["fcnt16"], result["fcnt32"]) == (70001 - 65536, 70001)
    code, result, _ = decode(capsys, phy.strip())  # without --fcnt-last the upper bits are taken as 0
    assert code == EXIT_REJECTED and result["reason"] == "mic_failed"


@pytest.mark.parametrize(
    ("phy", "reason", "mtype"),
    [
        ("", "too_short", None),
        ("40f17dbe49", "too_short", "unconfirmed_up"),
        ("41f17dbe4900020001954378762b11ff0d", "bad_major", "unconfirmed_up"),
        ("c0f17dbe4900020001954378762b11ff0d", "unknown_mtype", "rfu"),
        ("40f17dbe490f020001954378762b11ff0d", "fopts_past_end", "unconfirmed_up"),
        ("40f17dbe4901020002000378762b11ff0d", "fport0_with_fopts", "unconfirmed_up"),
        ("40" + "00" * 255, "too_long", "unconfirmed_up"),
        (JOIN_REQUEST, "not_data_frame", "join_request"),
    ],
)
def test_decode_structural_rejects(
    capsys: pytest.CaptureFixture[str], phy: str, reason: str, mtype: str | None
) -> None:
    code, result, _err = decode(capsys, phy)
    assert code == EXIT_REJECTED
    assert (result["reason"], result["mtype"], result["mic_ok"]) == (reason, mtype, False)


# --- encode -----------------------------------------------------------------------------------------------------------


def test_encode_reproduces_the_published_uplink(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_tool(capsys, "encode", "--mtype", "unconfirmed_up", "--devaddr", "49be7df1", "--fcnt", "2",
                              "--fport", "1", "--payload", b"test".hex(), "--nwkskey", NWK, "--appskey", APP)
    assert (code, out, err) == (EXIT_ACCEPTED, DATA_UPLINK + "\n", "")


def test_encode_decode_downlink_with_flags_and_fopts(capsys: pytest.CaptureFixture[str]) -> None:
    # FOpts: LinkADRReq(DR5, TXPower 2, ChMask 0x0007, NbTrans 1) and DevStatusReq.
    code, out, _ = run_tool(capsys, "encode", "--mtype", "confirmed_down", "--devaddr", "26011f01", "--fcnt", "7",
                            "--fport", "3", "--payload", "a1", "--nwkskey", NWK, "--appskey", APP, "--adr", "--ack",
                            "--fopts", "035207000106")
    assert code == EXIT_ACCEPTED
    code, result, _ = decode(capsys, out.strip())
    assert code == EXIT_ACCEPTED
    assert result["mtype"] == "confirmed_down" and result["devaddr"] == "26011f01"
    assert result["fctrl"]["adr"] and result["fctrl"]["ack"] and result["fctrl"]["fopts_len"] == 6
    assert (result["fport"], result["frm_payload"], result["fopts"]) == (3, "a1", "035207000106")
    assert result["mac_commands"] == [
        {"command": "LinkADRReq", "data_rate": 5, "tx_power": 2, "ch_mask": 7, "ch_mask_cntl": 0, "nb_trans": 1},
        {"command": "DevStatusReq"},
    ]


def test_fport0_mac_commands_are_encrypted_with_the_network_key(capsys: pytest.CaptureFixture[str]) -> None:
    # Uplink MAC commands on FPort 0: LinkADRAns all acked, DevStatusAns(battery 200, margin -3).
    code, out, _ = run_tool(capsys, "encode", "--mtype", "unconfirmed_up", "--devaddr", "26011f01", "--fcnt", "8",
                            "--fport", "0", "--payload", "030706c83d", "--nwkskey", NWK, "--appskey", APP)
    assert code == EXIT_ACCEPTED
    assert "030706c83d" not in out  # encrypted on air
    code, result, _ = decode(capsys, out.strip())
    assert code == EXIT_ACCEPTED and result["frm_payload"] == "030706c83d"
    assert result["mac_commands"] == [
        {"command": "LinkADRAns", "power_ack": True, "data_rate_ack": True, "channel_mask_ack": True},
        {"command": "DevStatusAns", "battery": 200, "margin": -3},
    ]
    # Any AppSKey gives the same plaintext: FPort 0 is encrypted with the NwkSKey.
    code, result, _ = decode(capsys, out.strip(), app="11" * 16)
    assert code == EXIT_ACCEPTED and result["frm_payload"] == "030706c83d"


def test_malformed_mac_commands_are_reported_without_rejecting_the_frame(capsys: pytest.CaptureFixture[str]) -> None:
    _c, out, _ = run_tool(capsys, "encode", "--mtype", "unconfirmed_up", "--devaddr", "26011f01", "--fcnt", "9",
                          "--nwkskey", NWK, "--appskey", APP, "--fopts", "0601")
    code, result, _ = decode(capsys, out.strip())
    assert code == EXIT_ACCEPTED and result["fport"] is None
    assert (result["mac_commands"], result["mac_error"]) == ([], "truncated_mac_command")
    # The commands before an unknown CID are still shown (a receiver acts on them).
    _c, out, _ = run_tool(capsys, "encode", "--mtype", "unconfirmed_up", "--devaddr", "26011f01", "--fcnt", "10",
                          "--nwkskey", NWK, "--appskey", APP, "--fopts", "020d01")
    code, result, _ = decode(capsys, out.strip())
    assert code == EXIT_ACCEPTED
    assert result["mac_commands"] == [{"command": "LinkCheckReq"}, {"command": "DeviceTimeReq"}]
    assert result["mac_error"] == "unknown_mac_command"


# --- join -------------------------------------------------------------------------------------------------------------


def test_join_request_reproduces_the_published_vector(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_tool(capsys, "join", "request", "--appkey", APP_KEY, "--joineui", JOIN_EUI, "--deveui", DEV_EUI,
                            "--devnonce", str(DEV_NONCE))
    assert (code, out) == (EXIT_ACCEPTED, JOIN_REQUEST + "\n")


def test_join_decode_verifies_the_published_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_tool(capsys, "join", "decode", JOIN_REQUEST, "--appkey", APP_KEY)
    assert code == EXIT_ACCEPTED
    assert json.loads(out) == {"mtype": "join_request", "mic_ok": True, "reason": None, "join_eui": JOIN_EUI,
                               "dev_eui": DEV_EUI, "dev_nonce": DEV_NONCE}
    code, out, _ = run_tool(capsys, "join", "decode", JOIN_REQUEST, "--appkey", "00" * 16)
    assert code == EXIT_REJECTED and json.loads(out)["reason"] == "mic_failed"
    code, out, _ = run_tool(capsys, "join", "decode", DATA_UPLINK, "--appkey", APP_KEY)
    assert code == EXIT_REJECTED and json.loads(out)["reason"] == "not_join_frame"


def test_join_accept_round_trip_and_independently_derived_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_tool(capsys, "join", "accept", "--appkey", APP_KEY, "--joinnonce", "0x000102", "--netid",
                            "000013", "--devaddr", "26011f01", "--rx1-dr-offset", "1", "--rx2-dr", "3", "--rx-delay",
                            "2", "--cflist", "867100000,867300000,867500000", "--devnonce", str(DEV_NONCE))
    assert code == EXIT_ACCEPTED
    phy_hex, nwk_line, app_line = out.splitlines()
    phy = bytes.fromhex(phy_hex)
    assert phy[0] == 0x20 and len(phy) == 33
    # The network encrypts with AES decrypt, so AES encrypt recovers the plaintext (checked here with plain AES).
    plain = aes_ecb_encrypt(APP_KEY, phy[1:])
    assert plain[:3] == bytes.fromhex("020100")  # JoinNonce 0x000102, little-endian
    assert plain[3:6] == bytes.fromhex("130000")  # NetID
    assert plain[6:10] == bytes.fromhex("011f0126")  # DevAddr
    assert plain[10] == 0x13 and plain[11] == 2  # DLSettings (RX1DRoffset 1, RX2 DR3), RxDelay
    tail = bytes.fromhex("020100") + bytes.fromhex("130000") + DEV_NONCE.to_bytes(2, "little") + bytes(7)
    assert nwk_line == "nwk_s_key=" + aes_ecb_encrypt(APP_KEY, b"\x01" + tail).hex()
    assert app_line == "app_s_key=" + aes_ecb_encrypt(APP_KEY, b"\x02" + tail).hex()

    code, out, _ = run_tool(capsys, "join", "decode", phy_hex, "--appkey", APP_KEY)
    assert code == EXIT_ACCEPTED
    assert json.loads(out) == {
        "mtype": "join_accept", "mic_ok": True, "reason": None, "join_nonce": 0x102, "net_id": "000013",
        "devaddr": "26011f01", "rx1_dr_offset": 1, "rx2_dr": 3, "rx_delay": 2,
        "cflist": [867_100_000, 867_300_000, 867_500_000, 0, 0],
    }
    code, out, _ = run_tool(capsys, "join", "decode", phy_hex, "--appkey", "00" * 16)
    assert code == EXIT_REJECTED and json.loads(out)["reason"] == "mic_failed"
    assert json.loads(out)["devaddr"] is None


def test_join_accept_prints_keys_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_tool(capsys, "join", "accept", "--appkey", APP_KEY, "--joinnonce", "5", "--netid", "000000",
                            "--devaddr", "00000001")
    assert code == EXIT_ACCEPTED
    assert len(out.splitlines()) == 1 and len(bytes.fromhex(out.strip())) == 17  # no CFList, no keys
    assert APP_KEY not in out


# --- usage errors -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decode", "zz", "--nwkskey", NWK, "--appskey", APP], "PHYHEX 'zz' is not hex"),
        (["decode", DATA_UPLINK, "--nwkskey", NWK[:-2], "--appskey", APP], "--nwkskey must be 16 bytes"),
        (["decode", DATA_UPLINK, "--nwkskey", NWK, "--appskey", APP[:-1] + "x"], "--appskey is not hex"),
        (["decode", DATA_UPLINK, "--nwkskey", NWK, "--appskey", APP, "--fcnt-last", "-1"], "--fcnt-last -1 is not"),
        (["encode", "--mtype", "unconfirmed_up", "--devaddr", "0102", "--fcnt", "1", "--nwkskey", NWK, "--appskey",
          APP], "--devaddr must be 4 bytes"),
        (["encode", "--mtype", "unconfirmed_up", "--devaddr", "01020304", "--fcnt", "1", "--fport", "0", "--fopts",
          "02", "--nwkskey", NWK, "--appskey", APP], "FPort 0"),
        (["encode", "--mtype", "unconfirmed_up", "--devaddr", "01020304", "--fcnt", "1", "--payload", "01",
          "--nwkskey", NWK, "--appskey", APP], "--payload needs --fport"),
        (["encode", "--mtype", "unconfirmed_up", "--devaddr", "01020304", "--fcnt", "4294967296", "--nwkskey", NWK,
          "--appskey", APP], "--fcnt 4294967296 is not in"),
        (["join", "request", "--appkey", APP_KEY, "--joineui", JOIN_EUI, "--deveui", DEV_EUI, "--devnonce", "65536"],
         "--devnonce 65536"),
        (["join", "accept", "--appkey", APP_KEY, "--joinnonce", "1", "--netid", "00", "--devaddr", "01020304"],
         "--netid must be 3 bytes"),
        (["join", "accept", "--appkey", APP_KEY, "--joinnonce", "1", "--netid", "000000", "--devaddr", "01020304",
          "--cflist", "1,2,3,4,5,6"], "--cflist"),
        (["join", "accept", "--appkey", APP_KEY, "--joinnonce", "1", "--netid", "000000", "--devaddr", "01020304",
          "--cflist", "868.1"], "--cflist"),
    ],
)
def test_usage_errors_are_one_line_and_never_show_a_key(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_tool(capsys, *argv)
    assert code == EXIT_USAGE and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("dos-edge lorawan: ") and message in err
    for key in (NWK, APP, APP_KEY, NWK[:-2], APP[:-1] + "x"):
        assert key not in err


@pytest.mark.parametrize(
    "argv",
    [[], ["decode"], ["decode", DATA_UPLINK, "--nwkskey", NWK], ["encode", "--mtype", "sideways"], ["join"],
     ["join", "accept", "--appkey", APP_KEY]],
)
def test_missing_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _out, err = run_tool(capsys, *argv)
    assert code == EXIT_USAGE and "usage: dos-edge lorawan" in err


def test_register_plugs_into_another_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """What `dos-edge` does: its own subparsers, `register`, then `run` for the lorawan command."""
    parser = argparse.ArgumentParser(prog="dos-edge")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("agent")
    lorawan_tool.register(commands)
    args = parser.parse_args(["lorawan", "decode", DATA_UPLINK, "--nwkskey", NWK, "--appskey", APP])
    assert (args.command, args.action) == ("lorawan", "decode")
    assert lorawan_tool.run(args) == EXIT_ACCEPTED
    assert json.loads(capsys.readouterr().out)["frm_payload"] == b"test".hex()
    assert parser.parse_args(["agent"]).command == "agent"
