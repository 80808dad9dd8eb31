"""Fuzz targets for everything the agent takes from outside: GWMP datagrams, PHYPayloads (with forgeries of a known
device's frames), CBOR payloads against the schema decoder, MQTT downlink request JSON, and ChirpStack uplink JSON
(the ChirpStack MQTT input).

A target is a hypothesis strategy and a check. The check feeds one case to the real code and returns an outcome label
(`ok:...` or the typed error's reason); any other exception is a crash and escapes. The PHYPayload check also raises
`ForgeryAccepted` when a frame that is not byte-for-byte a genuine one is accepted. `bench/fuzz/run.py` runs the
campaign (>= 100,000 cases a target), `tests/test_fuzz_short.py` a few thousand cases with the same targets.

Serial lines (RAK3172 AT replies and `+EVT:` lines) go through the firmware driver's AT core in the real micropython
(`serial_lines`) and through the agent's RAK3172 receiver core (`rak_receiver_lines`).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cbor2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dos_agent.chirpstack_input import ChirpStackInput, ChirpStackInputError
from dos_agent.downlink import MAX_PAYLOAD, DownlinkRequestError, parse_downlink_request
from dos_agent.events import SchemaBook
from dos_agent.mqtt_sink import BrokerSettings
from dos_agent.rak_input import FrameHeard, LineRejected, Notice, RadioSettings, ReceiverCore, SendLine
from dos_agent.registry import Registry
from dos_agent.session import JoinAccepted, Reception, SessionLayer, UplinkAccepted
from dos_codecs.crypto import SessionKeys, seal_join_request
from dos_codecs.errors import CodecError, DatagramError, FrameError
from dos_codecs.gwmp import GwmpKind, Rxpk, parse_datagram, parse_rxpk, parse_tx_ack_error, rxpk_to_json
from dos_codecs.lorawan import DataFrame, JoinRequest, MType, parse_phy
from dos_codecs.schema import available_kinds, load_schema
from dos_rig.board import find_micropython


class ForgeryAccepted(AssertionError):
    """The session layer accepted a frame that was not a genuine one."""


@dataclass(frozen=True)
class Target:
    """One fuzz target: `strategy` draws a case, `check(case)` returns its outcome label."""

    name: str
    strategy: st.SearchStrategy
    check: Callable[[object], str]


# --- shared strategies ------------------------------------------------------------------------------------------------

_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                 | st.text(max_size=20))
#: A JSON string a strategy puts where the JSON text then gets one of _NON_JSON_NUMBERS: numbers Python's json module
#: reads (and so a naive input takes) although JSON has no such thing.
_NON_JSON_MARK = "=non-json-number="
_NON_JSON_NUMBERS = ("Infinity", "-Infinity", "NaN", "1e999", "-1e999")
#: Strings close to base64, some not quite (padding, URL-safe letters, non-ASCII).
_BASE64_LIKE = st.text("AQZaz09+/=-_\u0080\u00e9", max_size=12)
JSON_VALUES = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _flip_bits(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for position in positions:
        out[position % len(out)] ^= 1 << (position // len(out) % 8)
    return bytes(out)


# --- GWMP datagrams ---------------------------------------------------------------------------------------------------

_EUI = bytes.fromhex("aa555a0000000001")
_GOOD_RXPK = rxpk_to_json(Rxpk(tmst=1_000_000, freq=868.1, chan=0, rfch=0, stat=1, sf=7, bw_khz=125, codr="4/5",
                               rssi=-60, lsnr=9.0, data=bytes(range(20)), time="2026-11-22T08:30:00.000000Z"))


@st.composite
def _rxpk_like(draw: st.DrawFn) -> dict:
    """A good rxpk with some fields replaced by arbitrary JSON values or removed."""
    rxpk = dict(_GOOD_RXPK)
    for key in draw(st.lists(st.sampled_from(sorted(rxpk)), max_size=3)):
        if draw(st.booleans()):
            rxpk[key] = draw(JSON_VALUES)
        else:
            rxpk.pop(key, None)
    return rxpk


def _header(token: bytes, kind: GwmpKind) -> bytes:
    """Protocol version 2, token, identifier, gateway EUI (the JSON that follows is the case's own)."""
    return bytes([2]) + token + bytes([kind]) + _EUI


@st.composite
def _datagram_bytes(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(("random", "push_data", "tx_ack", "mutated")))
    if shape == "random":
        return draw(st.binary(max_size=300))
    token = draw(st.binary(min_size=2, max_size=2))
    if shape == "tx_ack":
        payload = draw(st.none() | st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3)
                       | st.builds(lambda e: {"txpk_ack": {"error": e}}, JSON_VALUES))
        return _header(token, GwmpKind.TX_ACK) + (b"" if payload is None else json.dumps(payload).encode())
    rxpks = draw(st.lists(_rxpk_like(), max_size=3) | JSON_VALUES)
    data = _header(token, GwmpKind.PUSH_DATA) + json.dumps({"rxpk": rxpks}).encode()
    if shape == "mutated":
        data = _flip_bits(data, draw(st.lists(st.integers(0, 8 * len(data) - 1), min_size=1, max_size=4)))
    return data


def check_datagram(data: bytes) -> str:
    """parse_datagram, then every rxpk of a PUSH_DATA or the error of a TX_ACK: DatagramError is the only failure."""
    try:
        datagram = parse_datagram(data)
        if datagram.kind == GwmpKind.PUSH_DATA:
            rxpks = datagram.payload.get("rxpk", [])
            if not isinstance(rxpks, list):
                return "rxpk_not_list"
            outcomes = []
            for obj in rxpks:
                try:
                    parse_rxpk(obj)
                    outcomes.append("ok")
                except DatagramError as exc:
                    outcomes.append(exc.reason)
            return f"push_data:{'+'.join(sorted(set(outcomes))) or 'empty'}"
        if datagram.kind == GwmpKind.TX_ACK:
            return f"tx_ack:{parse_tx_ack_error(datagram.payload)}"
        return f"ok:{datagram.kind.name.lower()}"
    except DatagramError as exc:
        return exc.reason


# --- PHYPayloads and forgeries ----------------------------------------------------------------------------------------

ABP = {"dev_eui": "70b3d57ed000fa01", "asset_id": "fuzz-lamp", "kind": "streetlight", "activation": "abp",
       "dev_addr": "2601fa01", "nwk_s_key": "3c" * 16, "app_s_key": "c3" * 16}
OTAA = {"dev_eui": "70b3d57ed000fa02", "asset_id": "fuzz-bin", "kind": "waste", "activation": "otaa",
        "join_eui": "70b3d57ed0000000", "app_key": "e1" * 16}
_RECEPTION = Reception(gateway_eui="aa555a0000000001", tmst=1_000_000, freq=868_100_000, sf=7, bw=125_000, rssi=-60,
                       snr=9.0, can_transmit=False)


class PhyTarget:
    """A session layer over a registry (in a temporary folder) with one ABP and one OTAA device. Each case is
    random bytes, a genuine frame of the ABP device with a fresh FCnt, or a genuine frame or JoinRequest with bits
    flipped or the MIC replaced. Genuine frames must be accepted (so the oracle can tell), others never."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="dos-fuzz-")
        self.registry = Registry(Path(self._folder.name) / "registry.sqlite")
        self.registry.import_devices([ABP, OTAA])
        self.session = SessionLayer(self.registry, SchemaBook(), dedup_window_s=0)
        self.keys = SessionKeys(bytes.fromhex(ABP["nwk_s_key"]), bytes.fromhex(ABP["app_s_key"]))
        self._fcnt = itertools.count(1)
        self._dev_nonce = itertools.count(1)
        self._time = itertools.count(1_700_000_000)

    def close(self) -> None:
        self.registry.close()
        self._folder.cleanup()

    def genuine_frame(self, payload: bytes, fport: int, confirmed: bool) -> bytes:
        fcnt = next(self._fcnt)
        frame = DataFrame(mtype=MType.CONFIRMED_UP if confirmed else MType.UNCONFIRMED_UP,
                          dev_addr=int(ABP["dev_addr"], 16), fcnt16=fcnt & 0xFFFF, adr=False, ack=False, fopts=b"",
                          fport=fport, frm_payload=payload)
        return self.keys.seal(frame, fcnt)

    def genuine_join(self) -> bytes:
        request = JoinRequest(bytes.fromhex(OTAA["join_eui"]), bytes.fromhex(OTAA["dev_eui"]),
                              next(self._dev_nonce) & 0xFFFF)
        return seal_join_request(request, bytes.fromhex(OTAA["app_key"]))

    def strategy(self) -> st.SearchStrategy:
        frames = st.builds(lambda p, f, c: ("frame", p, f, c), st.binary(max_size=40), st.integers(1, 223),
                           st.booleans())
        mutation = st.one_of(
            st.builds(lambda bits: ("flip", bits), st.lists(st.integers(0, 10_000), min_size=1, max_size=3)),
            st.builds(lambda mic: ("mic", mic), st.binary(min_size=4, max_size=4)),
        )
        return st.one_of(
            st.builds(lambda data: ("random", data), st.binary(max_size=64)),
            st.builds(lambda f: ("genuine", f), frames),
            st.builds(lambda f, m: ("forged", f, m), frames | st.just(("join",)), mutation),
        )

    def _build(self, spec: tuple) -> bytes:
        return self.genuine_join() if spec[0] == "join" else self.genuine_frame(*spec[1:])

    def check(self, case: tuple) -> str:
        if case[0] == "random":
            try:
                parse_phy(case[1])
                parsed = "parsed"
            except FrameError as exc:
                parsed = exc.reason
            accepted = self._accepted(case[1])
            if accepted:  # random bytes that verify under a device's key: a forgery
                raise ForgeryAccepted(f"random bytes accepted: {case[1].hex()}")
            return f"random:{parsed}"
        if case[0] == "genuine":
            phy = self._build(case[1])
            if not self._accepted(phy):
                raise AssertionError(f"a genuine frame was not accepted: {phy.hex()}")
            return "genuine:accepted"
        original = self._build(case[1])
        mutation = case[2]
        if mutation[0] == "flip":
            forged = _flip_bits(original, mutation[1])
        else:
            forged = original[:-4] + mutation[1]
        if forged == original:  # flips that cancel out, or the same MIC drawn
            return "forged:unchanged"
        if self._accepted(forged):
            raise ForgeryAccepted(f"forged frame accepted: {forged.hex()} (genuine {original.hex()})")
        return "forged:rejected"

    def _accepted(self, phy: bytes) -> bool:
        outputs = self.session.handle_uplink(phy, _RECEPTION, float(next(self._time)))
        return any(isinstance(o, (UplinkAccepted, JoinAccepted)) for o in outputs)


# --- CBOR payloads ----------------------------------------------------------------------------------------------------

_CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.binary(max_size=8) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.integers(-2, 30) | st.text(max_size=3), inner,
                                                                  max_size=4),
    max_leaves=4)
_SCHEMAS = {kind: load_schema(kind) for kind in available_kinds()}


@st.composite
def _payload_case(draw: st.DrawFn) -> tuple[str, int, bytes]:
    kind = draw(st.sampled_from(sorted(_SCHEMAS)))
    known = st.sampled_from([m.fport for m in _SCHEMAS[kind].messages if m.direction == "up"])
    fport = draw(known if draw(st.integers(0, 3)) else st.integers(0, 255))  # mostly a message's FPort
    shape = draw(st.sampled_from(("random", "map", "value", "mutated")))
    if shape == "random":
        return kind, fport, draw(st.binary(max_size=40))
    if shape == "value":
        return kind, fport, cbor2.dumps(draw(_CBOR_VALUES))
    raw = draw(st.dictionaries(st.integers(0, 30), st.one_of(st.integers(-2**33, 2**33), st.integers(0, 2000),
                                                             st.booleans(), _CBOR_VALUES), max_size=10))
    data = cbor2.dumps(raw)
    if shape == "mutated" and data:
        data = _flip_bits(data, draw(st.lists(st.integers(0, 8 * len(data) - 1), min_size=1, max_size=3)))
    return kind, fport, data


def check_payload(case: tuple[str, int, bytes]) -> str:
    """Schema.decode: PayloadError (a CodecError) is the only failure; a decoded value is of the field's type."""
    kind, fport, payload = case
    try:
        decoded = _SCHEMAS[kind].decode(fport, payload)
    except CodecError as exc:
        return exc.reason
    for name, reading in decoded.readings.items():
        if not isinstance(reading["value"], (bool, int, float)):
            raise AssertionError(f"{kind} {name}: decoded a {type(reading['value']).__name__}")
    return "ok:warnings" if decoded.warnings else "ok"


# --- MQTT downlink requests -------------------------------------------------------------------------------------------

_REQUEST_FIELDS = st.sampled_from(("fport", "fport", "confirmed", "data", "object", "id", "extra"))


@st.composite
def _downlink_request(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(_SCHEMAS)))
    shape = draw(st.sampled_from(("random", "json", "request", "data")))
    if shape == "random":
        return kind, draw(st.binary(max_size=80))
    if shape == "json":
        return kind, json.dumps(draw(JSON_VALUES)).encode()
    if shape == "data":  # well formed but for the size, which may be too long
        request = {"fport": draw(st.integers(1, 223)), "data": draw(st.binary(max_size=230)).hex(),
                   "confirmed": draw(st.booleans())}
        return kind, json.dumps(request).encode()
    request: dict[str, object] = {}
    for key in draw(st.lists(_REQUEST_FIELDS, min_size=1, max_size=4, unique=True)):
        request[key] = draw(JSON_VALUES | {
            "fport": st.integers(1, 4) | st.integers(-5, 300),
            "data": st.binary(max_size=240).map(bytes.hex) | st.text(max_size=8),
            "object": st.dictionaries(st.sampled_from(("interval_s", "confirmed", "dim_level", "dusk_lux", "x")),
                                      JSON_VALUES | st.integers(-10, 100_000) | st.just(_NON_JSON_MARK), max_size=3),
            "id": st.text("Az09._:-", min_size=1, max_size=64) | st.text("Az09/ ", max_size=70),
        }.get(key, JSON_VALUES))
    text = json.dumps(request).replace(f'"{_NON_JSON_MARK}"', draw(st.sampled_from(_NON_JSON_NUMBERS)))
    return kind, text.encode()


def check_downlink(case: tuple[str, bytes]) -> str:
    """parse_downlink_request: DownlinkRequestError is the only failure; what is queued fits a downlink."""
    kind, raw = case
    try:
        item = parse_downlink_request(raw, "70b3d57ed000fa01", lambda: _SCHEMAS[kind], lambda: "generated-id")
    except DownlinkRequestError as exc:
        return exc.reason
    if not (1 <= item.fport <= 223 and len(item.payload) <= MAX_PAYLOAD and isinstance(item.confirmed, bool)):
        raise AssertionError(f"queued an impossible downlink: {item}")
    return "ok"


# --- ChirpStack input JSON -------------------------------------------------------------------------------------------

class ChirpStackTarget:
    """ChirpStack `event/up` JSON through the ChirpStack input's `translate` (over the PHYPayload target's registry):
    ChirpStackInputError is the only failure, and what it makes is an event that is strict JSON (no NaN/Infinity)."""

    def __init__(self, registry: Registry) -> None:
        # translate() only reads the registry and decodes; it never publishes, so there are no outputs to give it
        self.input = ChirpStackInput(BrokerSettings(), registry, SchemaBook(), outputs=None)  # type: ignore[arg-type]

    def strategy(self) -> st.SearchStrategy:
        return st.one_of(st.binary(max_size=80), st.builds(lambda v: json.dumps(v).encode(), JSON_VALUES),
                         _chirpstack_message())

    def check(self, payload: bytes) -> str:
        try:
            document, _dev_addr = self.input.translate(payload)
        except ChirpStackInputError as exc:
            return exc.reason
        json.dumps(document, allow_nan=False)  # ValueError: an event consumers could not parse
        return "ok:decode_error" if document["decode_error"] else "ok"


_CHIRPSTACK_PATHS = (("deviceInfo",), ("deviceInfo", "devEui"), ("devAddr",), ("fCnt",), ("fPort",), ("data",),
                     ("time",), ("rxInfo",), ("rxInfo", "rssi"), ("rxInfo", "snr"), ("rxInfo", "gatewayId"),
                     ("rxInfo", "context"), ("txInfo",), ("txInfo", "frequency"), ("txInfo", "modulation"),
                     ("confirmed",), ("adr",))


@st.composite
def _chirpstack_message(draw: st.DrawFn) -> bytes:
    """A good ChirpStack v4 uplink of the ABP device, its base64 fields now and then only nearly base64, with up to three
    fields replaced by arbitrary values or removed."""
    kind_payload = draw(st.sampled_from([b"\xa1\x01\xf5", b"\xa2\x03\x19\x01\x5e\x06\x19\x01\x73", b"", b"\xff"]))
    message: dict[str, object] = {
        "deviceInfo": {"devEui": ABP["dev_eui"], "applicationName": "dos"}, "devAddr": ABP["dev_addr"],
        "fCnt": draw(st.integers(0, 2**32 + 5)), "fPort": draw(st.integers(0, 230)),
        "data": base64.b64encode(kind_payload).decode() if draw(st.integers(0, 3)) else draw(_BASE64_LIKE),
        "confirmed": draw(st.booleans()), "time": "2026-11-22T08:30:00.000+00:00",
        "rxInfo": [{"gatewayId": "aa555a0000000001", "rssi": -60, "snr": 7.5,
                    "context": "AAAAAQ==" if draw(st.integers(0, 3)) else draw(_BASE64_LIKE)}],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7}}},
    }
    for path in draw(st.lists(st.sampled_from(_CHIRPSTACK_PATHS), max_size=3)):
        *parents, leaf = path
        holder: object = message
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
            if isinstance(holder, list):  # rxInfo: its first entry
                holder = holder[0] if holder else None
        if not isinstance(holder, dict):
            continue
        if draw(st.booleans()):
            holder[leaf] = draw(JSON_VALUES | st.just(_NON_JSON_MARK) | _BASE64_LIKE)
        else:
            holder.pop(leaf, None)
    return json.dumps(message).replace(f'"{_NON_JSON_MARK}"', draw(st.sampled_from(_NON_JSON_NUMBERS))).encode()


# --- serial lines (RAK3172) -------------------------------------------------------------------------------------------

SERIAL_LINES_SCRIPT = Path(__file__).resolve().parent / "serial_lines_mpy.py"
FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
_RAK_EVENTS = ("JOINED", "JOIN_FAILED_RX_TIMEOUT", "TX_DONE", "SEND_CONFIRMED_OK", "SEND_CONFIRMED_FAILED", "RX_1",
               "RX_2", "LINKCHECK", "RXP2P", "TXP2P DONE", "RXP2P RECEIVE TIMEOUT")
_RAK_FIELDS = st.one_of(st.integers(-200, 300).map(str), st.binary(max_size=12).map(bytes.hex),
                        st.sampled_from(("UNICAST", "", "-", "ff", "0x1", "1e3", "\u00e4")), st.text(max_size=6))


@st.composite
def _serial_line(draw: st.DrawFn) -> tuple[bool, bytes]:
    """(a command pending?, one line as the UART gives it)."""
    shape = draw(st.sampled_from(("random", "event", "downlink", "status")))
    if shape == "random":
        line = draw(st.binary(max_size=80))
    elif shape == "downlink":  # +EVT:RX_1:<rssi>:<snr>:UNICAST:<port>:<hex> (or RXP2P's), one field perhaps replaced
        fields = [draw(st.sampled_from(("RX_1", "RX_2", "RXP2P"))), str(draw(st.integers(-140, 0))),
                  str(draw(st.integers(-20, 15))), "UNICAST", str(draw(st.integers(0, 255))),
                  draw(st.binary(max_size=20)).hex()]
        if draw(st.booleans()):
            fields[draw(st.integers(0, len(fields) - 1))] = draw(_RAK_FIELDS)
        line = ("+EVT:" + ":".join(fields)).encode()
    elif shape == "event":
        fields = draw(st.lists(_RAK_FIELDS, max_size=7))
        line = ("+EVT:" + ":".join([draw(st.sampled_from(_RAK_EVENTS)), *fields])).encode()
    else:
        line = draw(st.sampled_from(("OK", "AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR", "value", "RAKwireless"))
                    ).encode()
    return draw(st.booleans()), line + draw(st.sampled_from((b"\r\n", b"\n", b"")))


class SerialLinesTarget:
    """RAK3172 serial lines through the firmware driver's AT core (`drivers/rak3172.py`: AtProtocol.feed and
    parse_event), run in the real micropython: one persistent process, one case per line over a pipe. ValueError is the
    typed failure; any other exception comes back as CRASH and fails the case."""

    def __init__(self) -> None:
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(FIRMWARE_DIR)]))
        self.proc = subprocess.Popen([find_micropython(), "-X", "heapsize=1M", str(SERIAL_LINES_SCRIPT)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=FIRMWARE_DIR)

    def check(self, case: tuple[bool, bytes]) -> str:
        pending, line = case
        self.proc.stdin.write(b"%d %s\n" % (pending, line.hex().encode()))
        self.proc.stdin.flush()
        outcome = self.proc.stdout.readline().decode().strip()
        if not outcome:
            raise AssertionError(f"micropython ended (exit {self.proc.poll()}) on {line!r}")
        if outcome.startswith("CRASH"):
            raise AssertionError(f"{outcome} on {line!r} (command pending: {pending})")
        return outcome

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc.stdout.close()


# --- the agent's RAK3172 receiver (single-channel P2P) ----------------------------------------------------------------

@st.composite
def receiver_case(draw: st.DrawFn) -> tuple[bool, bytes, bytes | None]:
    """(receiving already?, bytes from the module's UART, the frame a well-formed +EVT:RXP2P line must give)."""
    receiving = draw(st.booleans())
    shape = draw(st.sampled_from(("firmware_line", "genuine_rx", "damaged_rx", "random")))
    if shape == "genuine_rx":
        phy = draw(st.binary(min_size=1, max_size=255))
        hex_text = phy.hex().upper() if draw(st.booleans()) else phy.hex()
        line = f"+EVT:RXP2P:{draw(st.integers(-200, 20))}:{draw(st.integers(-50, 50))}:{hex_text}\r\n".encode()
        return receiving, line, phy
    if shape == "damaged_rx":
        fields = [str(draw(st.integers(-140, 0))), str(draw(st.integers(-20, 15))),
                  draw(st.binary(max_size=300)).hex()]
        fields[draw(st.integers(0, 2))] = draw(_RAK_FIELDS)
        extra = draw(st.lists(_RAK_FIELDS, max_size=2))
        return receiving, ("+EVT:RXP2P:" + ":".join(fields + extra) + "\r\n").encode("utf-8"), None
    if shape == "random":
        return receiving, draw(st.binary(max_size=700)), None
    return receiving, draw(_serial_line())[1], None


def check_receiver_line(case: tuple[bool, bytes, bytes | None]) -> str:
    """`ReceiverCore.feed` while configuring or receiving: it never raises, its actions are lines to send, frames
    (1..255 bytes), rejected lines and notices, and a well-formed RXP2P line gives exactly its frame. The outcome is
    what the line counted (an AtLineError reason, `frame`, `unexpected_*`, `module_reset`), `reply` or `quiet`."""
    receiving, data, expected_phy = case
    core = ReceiverCore(RadioSettings())
    core.opened(0.0)
    if receiving:
        core.feed(b"OK\r\n" * len(core.commands), 0.0)
    before = Counter(core.counts)
    actions = core.feed(data, 1.0)
    frames = [a.phy for a in actions if isinstance(a, FrameHeard)]
    if any(not isinstance(a, (SendLine, FrameHeard, LineRejected, Notice)) for a in actions) or any(
            not 1 <= len(phy) <= 255 for phy in frames):
        raise AssertionError(f"impossible actions {actions!r} from {data!r}")
    if expected_phy is not None and frames != [expected_phy]:
        raise AssertionError(f"{data!r} gave frames {frames!r}, not its own")
    counted = core.counts - before
    if counted:
        return "+".join(sorted(counted))
    return "reply" if actions else "quiet"


def targets() -> list[Target]:
    """Every target; the PHYPayload one owns a registry: call `close_targets` when done."""
    phy = PhyTarget()
    chirpstack = ChirpStackTarget(phy.registry)
    return [
        Target("gwmp_datagram", _datagram_bytes(), check_datagram),
        Target("phy_payload", phy.strategy(), phy.check),
        Target("cbor_payload", _payload_case(), check_payload),
        Target("downlink_json", _downlink_request(), check_downlink),
        Target("chirpstack_json", chirpstack.strategy(), chirpstack.check),
        Target("serial_lines", _serial_line(), SerialLinesTarget().check),
        Target("rak_receiver_lines", receiver_case(), check_receiver_line),
    ]


def close_targets(chosen: list[Target]) -> None:
    """Release what the targets hold (the PHYPayload target's registry, the serial lines' micropython)."""
    for target in chosen:
        owner = getattr(target.check, "__self__", None)
        if isinstance(owner, (PhyTarget, SerialLinesTarget)):
            owner.close()



def run_target(target: Target, cases: int) -> Counter[str]:
    """Run `cases` cases of `target` through hypothesis (generation, then shrinking of a failure; no example
    database); returns the outcome counts. A crash or an accepted forgery propagates, shrunk."""
    outcomes: Counter[str] = Counter()

    @settings(max_examples=cases, deadline=None, database=None, phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def fuzz(case: object) -> None:
        outcomes[target.check(case)] += 1

    fuzz()
    return outcomes
