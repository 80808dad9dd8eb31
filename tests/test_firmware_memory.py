"""The firmware's memory budget in the real micropython: every node app with the LoRaWAN stack and the SX1276 driver
(kept loaded as on an SX1276 board; the air is a scripted radio), installed as the installer stages it (precompiled
.mpy), runs in a bounded heap (`-X heapsize`) through an OTAA join, a config downlink with MAC commands and several
readings; one CBOR encode of each kind's worst-case message allocates at most 512 bytes, in a 64K heap.
bench/firmware_memory.py reuses install() and memory_run() for its figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dos_agent.firmware_install import compile_module, node_kinds, stage_firmware
from dos_codecs.crypto import SessionKeys, derive_session_keys, seal_join_accept
from dos_codecs.lorawan import DataFrame, JoinAccept, MType, parse_data_frame, parse_join_request
from dos_codecs.schema import available_kinds, load_schema
from firmware_support import FWTEST_MODULE, VIRTUAL_TIME_MODULE, run_micropython

HEAP_GOAL = "64K"  # issue 4: the full app with the LoRaWAN stack runs under micropython -X heapsize=64K
# Every app runs in it with the SX1276 driver kept loaded, as on an SX1276 board: the bridge, waste and streetlight need
# ~63 KiB that way, environment 61 (60-61 without the driver; bench/firmware_memory.py prints each against the goal).
# On this 64-bit unix port a loaded module's code lives in the heap: what stays loaded (LoRaWAN MAC, app, runtime,
# board, ~540 interned names) is ~48-52 KiB at the end of a run; a reading, a join, a downlink, a config and each radio
# configure() and send() load their code for the job on top. The exchange is the same in every run (virtual time), but
# where objects land in the heap moves a need by up to ~1 KiB.
ENCODE_BUDGET_BYTES = 512
READINGS = 4
APP_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
DEV_ADDR, JOIN_NONCE, NET_ID = 0x26AA0042, 3, 0x13
LINK_ADR_REQ = bytes.fromhex("0350ff0001")  # DR5, power index 0, channels 0-7, NbTrans 1
DEV_STATUS_REQ = b"\x06"

# boards/memtest.py: a board whose sensors all answer with plausible values (the I2C parts of every kit: BH1750 0x23,
# INA219 0x40, TMP102 0x48, ADXL345 0x53, SCD41 0x62, MB7040 0x70; the lamp, the HX711 bank, the gauges) and whose
# radio is the tests' ScriptedRadio playing radio.json. Installed, precompiled, beside the firmware; main.py boots it.
MEMTEST_BOARD = '''"""A board for memory runs: every sensor of every kit answers with a fixed plausible value; the
radio plays radio.json ({"replies": [...], "exit_on_send": n}) and reports the heap in use when main.py asks for it."""
import gc
import json

from fwtest import ScriptedRadio

BATTERY_DIVIDER = 2


class FakeI2C:
    def writeto(self, address, data):
        pass

    def readfrom_into(self, address, buf):
        if address == 0x62:  # SCD41: data ready (3 bytes), or a measurement of 800 ppm, 21.5 C, 45 % (9 bytes)
            answer = bytes.fromhex("800604" if len(buf) == 3 else "03202a61478a733301")
            for i in range(len(buf)):
                buf[i] = answer[i]
            return
        value = 12 if address == 0x23 else 80  # BH1750 raw count (10 lx: dark), MB7040 cm
        buf[0], buf[1] = value >> 8, value & 0xFF

    def readfrom_mem(self, address, register, n):
        return bytes((0xE5,))  # ADXL345 device id

    def writeto_mem(self, address, register, data):
        pass

    def readfrom_mem_into(self, address, register, buf):
        if address == 0x40:  # INA219: power register 18000 is 36 W
            value = 18000 if register == 3 else 0
            buf[0], buf[1] = value >> 8, value & 0xFF
        elif address == 0x48:  # TMP102: 21.5 C
            buf[0], buf[1] = 21, 0x80
        else:  # ADXL345: x 3 counts, z 1 g
            for i, v in enumerate((3, 0, 256)):
                buf[2 * i], buf[2 * i + 1] = v & 0xFF, v >> 8 & 0xFF


class FakePin:
    def __call__(self, value=None):
        return 0


class FakePWM:
    def duty_u16(self, value=None):
        return 0


class FakeStrainAdcs:
    def read(self):
        return [2500, -400, 100]


_i2c = FakeI2C()


def i2c():
    return _i2c


def lamp():
    from drivers.lamp import Lamp  # installed with the streetlight kit only

    return Lamp(FakePin(), FakePWM())


def battery_volts(divider=BATTERY_DIVIDER):
    return 3.7


def strain_adcs(channels=3):
    return FakeStrainAdcs()


def crack_gauge_volts():
    return 0.0836


def radio():
    with open("radio.json") as f:
        script = json.load(f)
    kept = script["sx1276_kept"]
    if kept:  # as an SX1276 board keeps its driver (the scripted radio still plays the air)
        import drivers.sx1276  # noqa: F401
    gc.collect()
    print("started", gc.mem_alloc(), gc.mem_free())
    return ScriptedRadio(script["replies"], exit_on_send=script["exit_on_send"],
                         configure_module="drivers.sx1276_configure" if kept else None,
                         tx_module="drivers.sx1276_tx" if kept else None)
'''

BOOT_RUN = """
import gc
try:
    import main
except SystemExit:  # the scripted radio's last send: the run is complete
    gc.collect()
    print('finished', gc.mem_alloc(), gc.mem_free())
"""


def install(folder: Path, kind: str) -> Path:
    """The firmware of a `kind` node as the installer stages it (main.py, the rest .mpy, the schema table of `kind`
    alone) plus the precompiled test modules (virtual clock, ScriptedRadio, boards/memtest); returns `folder`, the
    board's root."""
    stage_firmware("emu", kind, folder)
    test_modules = (("time.py", VIRTUAL_TIME_MODULE), ("fwtest.py", FWTEST_MODULE),
                    ("boards/memtest.py", MEMTEST_BOARD))
    for rel, text in test_modules:
        source = folder / rel
        source.write_text(text)
        (folder / (rel[:-3] + ".mpy")).write_bytes(compile_module(source, rel))
        source.unlink()
    return folder


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> dict[str, Path]:
    """kind -> the folder its firmware is installed in (install())."""
    return {kind: install(tmp_path_factory.mktemp("fw-" + kind), kind) for kind in node_kinds()}


def session() -> tuple[SessionKeys, str]:
    keys = SessionKeys(*derive_session_keys(APP_KEY, JOIN_NONCE, NET_ID, 0))
    accept = seal_join_accept(JoinAccept(join_nonce=JOIN_NONCE, net_id=NET_ID, dev_addr=DEV_ADDR), APP_KEY).hex()
    return keys, accept


def config_for(kind: str) -> dict:
    return {"board": "memtest", "kind": kind, "asset_id": f"MEM-{kind}", "activation": "otaa",
            "dev_eui": "70b3d57ed0050042", "join_eui": "70b3d57ed0000000", "app_key": APP_KEY.hex(), "interval_s": 60,
            "settings": {}, "calibration": {}}


def memory_run(kind: str, firmware: Path, heap: str, after: str = "", sx1276_kept: bool = False) -> list[str]:
    """Boot main.py of the `kind` app on boards/memtest from `firmware` (install(firmware, kind)), the board's root as
    on a real board (its files, config.json and state.json in one folder, imported by short relative paths: a module's
    __file__ takes heap), in a micropython with `heap`: an OTAA join, a config downlink (interval 30 s) carrying
    LinkADRReq and DevStatusReq, then READINGS uplinks; its output lines. The last line is "finished <gc.mem_alloc()>
    <gc.mem_free()>" when the run completed (then what the code `after` prints, run at the end); MicroPythonError if it
    did not. With `sx1276_kept` the board also keeps the SX1276 driver loaded and each configure() and send() loads its
    module, as on an SX1276 board (the bench's figure; the air is still the scripted radio's)."""
    keys, accept = session()
    schema = load_schema(kind)
    change = schema.encode("config", {"interval_s": 30})
    downlink = DataFrame(mtype=MType.UNCONFIRMED_DOWN, dev_addr=DEV_ADDR, fcnt16=0,
                         fport=schema.message("config").fport, frm_payload=change, fopts=LINK_ADR_REQ + DEV_STATUS_REQ)
    (firmware / "config.json").write_text(json.dumps(config_for(kind)))
    (firmware / "radio.json").write_text(json.dumps({"replies": [accept, keys.seal(downlink, 0).hex()],
                                                     "exit_on_send": 2 + READINGS, "sx1276_kept": sx1276_kept}))
    (firmware / "state.json").unlink(missing_ok=True)
    return run_micropython(BOOT_RUN + after, path=[""], cwd=firmware, heap=heap).splitlines()


def shortfalls(kind: str, lines: list[str]) -> list[str]:
    """What the output `lines` of a `kind` app's memory_run() lacks of a complete run, [] when nothing: the join (by
    the first JoinRequest, DevNonce 0), the config downlink applied, READINGS readings sent, the MAC commands answered
    in the uplink after the downlink, every payload decoded without warnings, no error logged (a reading that ran out
    of memory and was skipped counts), and the "finished" line."""
    text = [line for line in lines if not line.startswith("{")]
    problems = [f"logged: {line}" for line in text if "Error" in line or " failed" in line]
    if not any(line.startswith("joined: DevAddr 26aa0042") for line in text):
        problems.append("no join")
    if "config: interval_s 60 -> 30 (downlink fcnt 0)" not in text:
        problems.append("the config downlink was not applied")
    if not text or not text[-1].startswith("finished "):
        problems.append("the run did not finish")
    keys, _accept = session()
    schema = load_schema(kind)
    frames = [bytes.fromhex(json.loads(line)["tx"]) for line in lines if line.startswith("{")]
    nonces = [parse_join_request(f).dev_nonce for f in frames if f[0] >> 5 == MType.JOIN_REQUEST]
    # the script answers the first JoinRequest, and its downlink is sealed in the session of DevNonce 0: a retry means
    # the JoinAccept was lost on the node, another DevNonce that a JoinRequest was built and lost before it was sent
    if nonces != [0]:
        problems.append(f"JoinRequests with DevNonces {nonces}, not [0]")
        return problems  # (the uplinks are not in the session the script's JoinAccept set up)
    uplinks = [parse_data_frame(f) for f in frames if f[0] >> 5 != MType.JOIN_REQUEST]
    if len(uplinks) != READINGS:
        problems.append(f"{len(uplinks)} uplinks, not {READINGS}")
    elif not (uplinks[1].fopts[:1] == LINK_ADR_REQ[:1] and DEV_STATUS_REQ in uplinks[1].fopts):
        problems.append("the MAC commands were not answered")
    for frame in uplinks:
        warnings = schema.decode(frame.fport, keys.open(frame, frame.fcnt16)).warnings
        if warnings:
            problems.append(f"uplink {frame.fcnt16} decodes with warnings {warnings}")
    return problems


@pytest.mark.parametrize("kind", node_kinds())
def test_each_app_with_the_lorawan_stack_and_the_sx1276_driver_runs_in_a_64k_heap(kind, firmware):
    lines = memory_run(kind, firmware[kind], HEAP_GOAL, sx1276_kept=True)
    assert shortfalls(kind, lines) == [], [line for line in lines if not line.startswith("{")]


def test_a_run_that_skipped_a_reading_or_lost_the_downlink_is_not_complete(firmware):
    """shortfalls() sees a reading skipped for want of memory, a config downlink or a JoinAccept lost, not only a run
    that stops."""
    lines = memory_run("environment", firmware["environment"], "1M")
    assert shortfalls("environment", lines) == []
    skipped = lines[:-1] + ["reading failed (1 in a row): MemoryError: memory allocation failed, allocating 320 bytes",
                            lines[-1]]
    assert shortfalls("environment", skipped) == [f"logged: {skipped[-2]}"]
    lost = [line for line in lines if not line.startswith("config: ")]
    assert shortfalls("environment", lost) == ["the config downlink was not applied"]
    first_join = next(i for i, line in enumerate(lines)  # MHDR 0x00: the JoinRequest
                      if line.startswith("{") and json.loads(line)["tx"].startswith("00"))
    retried = lines[:first_join + 1] + lines[first_join:]  # the first JoinAccept lost, joined at the second try
    assert shortfalls("environment", retried) == ["JoinRequests with DevNonces [0, 0], not [0]"]


def test_the_run_with_the_sx1276_driver_kept_keeps_it_and_loads_its_code_for_each_call(firmware):
    """The bench's figure for an SX1276 board: the driver stays loaded; its configure and TX modules, loaded by each
    call, are not kept."""
    check = ("import sys\nprint('driver', 'drivers.sx1276' in sys.modules, 'drivers.sx1276_configure' in sys.modules,"
             " 'drivers.sx1276_tx' in sys.modules)\n")
    lines = memory_run("environment", firmware["environment"], "1M", after=check, sx1276_kept=True)
    assert shortfalls("environment", lines[:-1]) == [] and lines[-1] == "driver True False False"
    plain = memory_run("environment", firmware["environment"], "1M", after=check)
    assert plain[-1] == "driver False False False"


# ---- one CBOR encode

def worst_case(kind: str) -> dict[str, tuple[str, dict]]:
    """Each message of `kind` with every field at the value whose encoding is longest (the widest raw integer)."""
    messages = {}
    schema = load_schema(kind)
    for message in schema.messages:
        values = {}
        for field in message.fields:
            if field.type == "bool":
                values[field.name] = True
            else:
                values[field.name] = max((field.min, field.max), key=lambda v: abs(field.raw_of(v)))
        messages[message.name] = values
    return messages


ENCODE_RUN = """
import gc
from cbor import encode_reading
cases = %(cases)r
for kind, message, values in cases:
    encode_reading(kind, message, values)  # the first call may set up what later calls reuse
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    fport, payload = encode_reading(kind, message, values)
    used = gc.mem_alloc() - before
    gc.enable()
    print(kind, message, fport, payload.hex(), used)
"""


@pytest.mark.parametrize("kind", available_kinds(1))
def test_one_cbor_encode_of_a_worst_case_reading_allocates_at_most_512_bytes(kind, firmware):
    cases = [(kind, name, values) for name, values in worst_case(kind).items()]
    out = run_micropython(ENCODE_RUN % {"cases": cases}, path=[""], cwd=firmware[kind], heap=HEAP_GOAL).splitlines()
    assert len(out) == len(cases)
    schema = load_schema(kind)
    for line, (kind, name, values) in zip(out, cases):
        got_kind, got_name, fport, payload, used = line.split()
        assert (int(fport), bytes.fromhex(payload)) == (schema.message(name).fport, schema.encode(name, values))
        assert int(used) <= ENCODE_BUDGET_BYTES, f"{kind}/{name}: one encode allocated {used} bytes"
