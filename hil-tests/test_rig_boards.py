"""The rig with real micropython boards: the emulated SPI radio, the air between boards, virtual time, the board link for
mpremote, and robustness against garbage. Boards run the small radio probe (dos_rig.probe), not the firmware."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dos_rig.airtime import time_on_air_us
from dos_rig.probe import install_probe
from dos_rig.rig import Rig

pytestmark = pytest.mark.hil

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


@pytest.fixture
def rig(tmp_path):
    with Rig(tmp_path / "rig") as rig:
        yield rig


def result(board, tag: str, timeout_s: float = 10.0) -> str:
    """Wait for the first console line starting with tag and return the rest of it."""
    pattern = re.compile(r"^" + re.escape(tag) + r"(?: (.*))?\r?$", re.M)
    try:
        match = board.rig.run_until(lambda: pattern.search(board.console), timeout_s)
        return (match.group(1) or "").strip()
    except TimeoutError:
        raise AssertionError(f"{board.board_id} printed no {tag!r} line; console:\n{board.console[-2000:]}") from None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_reg_version_over_the_emulated_spi(rig, tmp_path):
    board = rig.add_board("b1", install_probe(tmp_path / "b1", "print('VERSION', hex(read(0x42)))\n"))
    assert result(board, "VERSION") == "0x12"
    pid = board.pid
    rig.stop()
    assert not pid_alive(pid) and not board.link.exists()


def test_a_transmission_reaches_the_board_on_the_same_settings_only(rig, tmp_path):
    listen = "setup(**{})\nprint('GOT', repr(receive(3000)))\n"
    same = rig.add_board("same", install_probe(tmp_path / "same", listen.format("{'sf': 9}")), (100, 0))
    other_sf = rig.add_board("sf10", install_probe(tmp_path / "sf10", listen.format("{'sf': 10}")), (100, 10))
    wrong_iq = rig.add_board("iq", install_probe(tmp_path / "iq", listen.format("{'sf': 9, 'iq_rx': True}")), (100, 20))
    sender = rig.add_board("tx", install_probe(tmp_path / "tx", (
        "setup(sf=9)\ntime.sleep_ms(100)\nprint('TXUS', transmit(b'hello air'))\n")), (0, 0))
    assert result(same, "GOT").startswith("(b'hello air', ")
    assert result(other_sf, "GOT", 15) == "None"
    assert result(wrong_iq, "GOT", 15) == "None"
    toa = time_on_air_us(9, 9, 125_000, 1)
    assert toa <= int(result(sender, "TXUS")) <= toa + 400  # TxDone after the time on air (polled every 200 µs)
    heard = [e for e in rig.air_log() if e["sender"] == "tx"]
    assert [e["receiver"] for e in heard] == ["same"] and heard[0]["result"] == "ok"
    assert heard[0]["t_us"] >= 100_000 + toa


def test_tx_done_timing_in_virtual_time_at_sf12(rig, tmp_path):
    board = rig.add_board("slow", install_probe(tmp_path / "slow", (
        "setup(sf=12)\nt0 = time.ticks_us()\nus = transmit(bytes(23))\n"
        "print('TIMING', us, time.ticks_diff(time.ticks_us(), t0))\n")))
    tx_us, total_us = map(int, result(board, "TIMING").split())
    assert time_on_air_us(23, 12, 125_000, 1) == 1_482_752
    assert 1_482_752 <= tx_us <= 1_482_752 + 400 and total_us >= tx_us
    start = [e for e in rig.air_log()]
    assert start == []  # nobody listened: nothing to log


def test_rx_single_timeout_on_the_board(rig, tmp_path):
    board = rig.add_board("rx", install_probe(tmp_path / "rx", (
        "setup(sf=7)\nt0 = time.ticks_us()\nr = receive(2000, single=True, symbols=20)\n"
        "print('RX', r, time.ticks_diff(time.ticks_us(), t0))\n")))
    outcome, elapsed = result(board, "RX").split()
    assert outcome == "timeout" and 20 * 1024 <= int(elapsed) <= 20 * 1024 + 2_500


def test_a_spinning_board_and_a_board_at_its_repl_do_not_stop_virtual_time(tmp_path):
    with Rig(tmp_path / "rig", stall_limit_s=0.3) as rig:
        spinning = tmp_path / "spin"
        spinning.mkdir()
        (spinning / "main.py").write_text("import time\nprint('SPINNING')\nwhile True:\n    pass\n")
        polling = tmp_path / "poll"
        polling.mkdir()
        (polling / "main.py").write_text("import time\nt = time.ticks_ms()\nwhile True:\n    time.ticks_ms()\n")
        rig.add_board("spin", spinning)
        rig.add_board("poll", polling)
        rig.add_board("repl", tmp_path / "repl")  # empty folder: sits at the REPL
        sleeper = rig.add_board("sleeper", install_probe(tmp_path / "sleeper", (
            "for i in range(5):\n    time.sleep(2)\n    print('TICK', i, time.ticks_ms())\n")))
        started = time.monotonic()
        assert result(sleeper, "TICK 4", 10).split()[0] == "10000"
        assert time.monotonic() - started < 3  # well below the 5 s busy limit: the polling board counts as waiting
        assert "SPINNING" in rig.board("spin").console


def test_mpremote_copies_into_the_board_folder_and_interrupts_a_running_loop(rig, tmp_path):
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "main.py").write_text("import time\nloops = 0\nwhile True:\n    loops += 1\n    print('LOOP', loops)\n"
                                    "    time.sleep_ms(50)\n")
    board = rig.add_board("m1", folder)
    rig.run_until(lambda: rig.now_us() > 500_000, 5)  # main.py is looping
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "deep.py").write_text("X = 1\n")
    tree = subprocess.run([MPREMOTE, "connect", str(board.link), "resume", "fs", "cp", "-r", "pkg", ":"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=20)
    assert tree.returncode == 0, tree.stderr  # a board VFS: stat("") is its root, as flash tools expect
    assert (folder / "pkg" / "sub" / "deep.py").read_text() == "X = 1\n"
    source = tmp_path / "hello.py"
    source.write_text("GREETING = 'hello from mpremote'\n")
    copy = subprocess.run([MPREMOTE, "connect", str(board.link), "resume", "fs", "cp", str(source), ":hello.py"],
                          capture_output=True, text=True, timeout=20)
    assert copy.returncode == 0, copy.stderr
    assert (folder / "hello.py").read_text() == source.read_text()
    run = subprocess.run([MPREMOTE, "connect", str(board.link), "resume", "exec",
                          "import hello; print(hello.GREETING)"],
                         capture_output=True, text=True, timeout=20)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from mpremote"
    assert "LOOP 5\n" in board.console and "[boot] main.py interrupted" in board.console and board.restarts == 0
    # a loop started from the raw REPL is interrupted too (the supervisor turns Ctrl-C into SIGINT)
    looping = subprocess.Popen([MPREMOTE, "connect", str(board.link), "resume", "exec",
                                "import time\nwhile True:\n    time.sleep_ms(10)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    looping.kill()
    looping.wait()
    again = subprocess.run([MPREMOTE, "connect", str(board.link), "resume", "exec", "print(6 * 7)"],
                           capture_output=True, text=True, timeout=20)
    assert again.stdout.strip() == "42" and board.process.interrupts_sent >= 1 and board.restarts == 0


def test_machine_reset_reboots_the_board_and_boots_main_again(rig, tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "main.py").write_text(
        "import machine, os\n"
        "n = len(os.listdir('marks')) if 'marks' in os.listdir() else 0\n"
        "print('BOOT', n)\n"
        "if n < 2:\n"
        "    'marks' in os.listdir() or os.mkdir('marks')\n"
        "    open('marks/%d' % n, 'w').close()\n"
        "    machine.reset()\n")
    board = rig.add_board("r", folder)
    assert result(board, "BOOT 2", 10) == ""
    assert board.restarts == 2


def test_garbage_on_the_link_tcp_port_udp_and_tty_never_kills_the_rig(tmp_path):
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    with agent, Rig(tmp_path / "rig", agent_addr=agent.getsockname()) as rig:
        gateway = rig.add_gateway("0016C001FF10A235", (0, 0))
        board = rig.add_board("g", install_probe(tmp_path / "g", (
            "i = 0\nwhile True:\n    i += 1\n    time.sleep(1)\n    print('ALIVE', i)\n")))
        idle = rig.add_board("idle", tmp_path / "idle")
        assert result(board, "ALIVE")
        host, port = rig.link_address.split(":")
        for junk in (b"\x00\x00", b"\x00\x05\x99garbage", b"\x00\x03\x01\x00", b"\xff" * 100,
                     b"\x00\x04\x01xyz"):
            with socket.create_connection((host, int(port))) as s:
                s.sendall(junk)
        with socket.create_connection((host, int(port))) as s:  # a known board that then talks nonsense
            s.sendall(b"\x00\x05\x01idle\x00\x02\x99\x99")
            s.settimeout(5)
            assert s.recv(64)[:2] == b"\x00\x0e"  # the HELLO reply (epoch + unique id), then it is dropped
        for junk in (b"", b"\x02", b"\x02\x00\x00\x03{", b"\x07\x00\x00\x01", b'\x02\xaa\xbb\x03{"txpk":{}}',
                     b"\x02\x00\x01\x01\x00"):
            agent.sendto(junk, ("127.0.0.1", gateway.local_port))
        count = len(re.findall(r"ALIVE \d+", board.console))
        rig.run_until(lambda: len(re.findall(r"ALIVE \d+", board.console)) > count, 10)
        counters = rig.counters()
        assert counters["link_rejected"] == {"empty_frame": 1, "no_hello": 3, "unknown_board": 1}
        assert counters["boards"]["idle"]["protocol_errors"] == {"unknown_op": 1}
        rig.run_until(lambda: sum(gateway.malformed.values()) >= 6, 5)
        assert {"too_short", "bad_json", "bad_version", "trailing_bytes"} <= set(gateway.malformed)
        with open(board.link, "wb", buffering=0) as tty:  # line noise on the serial link
            tty.write(b"\x04\x02\x01garbage\x04\x00\xff\x05\x02\r\n")
        # Known flake (about 1 full-suite run in 6, not reproduced alone): the first mpremote after the noise can time
        # out entering the raw REPL. A technician would try again; the rig must answer then.
        for attempt in (1, 2):
            try:
                answer = subprocess.run([MPREMOTE, "connect", str(board.link), "resume", "exec", "print(6 * 7)"],
                                        capture_output=True, text=True, timeout=20)
                break
            except subprocess.TimeoutExpired:
                if attempt == 2:
                    raise
        assert answer.stdout.strip() == "42", answer.stderr
        assert idle.pid is not None and pid_alive(idle.pid)


def test_sensors_over_i2c_adc_and_pwm_from_micropython(rig, tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "main.py").write_text(
        "import machine, time\n"
        "i2c = machine.I2C(0, scl=machine.Pin(15), sda=machine.Pin(4))\n"
        "print('SCAN', i2c.scan())\n"
        "i2c.writeto(0x23, b'\\x01'); i2c.writeto(0x23, b'\\x10'); time.sleep_ms(180)\n"
        "raw = i2c.readfrom(0x23, 2)\n"
        "print('LUX', round((raw[0] << 8 | raw[1]) / 1.2))\n"
        "i2c.writeto_mem(0x40, 5, b'\\x10\\x00')\n"
        "relay = machine.Pin(12, machine.Pin.OUT, value=1)\n"
        "pwm = machine.PWM(machine.Pin(25), freq=1000, duty_u16=65535 * 40 // 100)\n"
        "buf = bytearray(2)\n"
        "i2c.readfrom_mem_into(0x40, 3, buf)\n"
        "print('POWER', round((buf[0] << 8 | buf[1]) * 0.002, 1))\n"
        "print('BUS', (int.from_bytes(i2c.readfrom_mem(0x40, 2, 2), 'big') >> 3) * 4)\n"
        "print('BATTERY', machine.ADC(machine.Pin(37)).read_uv() * 2 / 1000000)\n"
        "try:\n"
        "    i2c.writeto(0x51, b'x')\n"
        "except OSError as e:\n"
        "    print('ABSENT', e.errno)\n")
    board = rig.add_board("s", folder, scenario={"lux": 321, "lamp_power_w": 50.0, "battery_v": 3.64})
    assert result(board, "SCAN") == "[35, 64]"
    assert result(board, "LUX") == "321"
    assert result(board, "POWER") == "20.0"  # 50 W rated, relay on, 40 % duty
    assert result(board, "BUS") == "24000"
    assert result(board, "BATTERY") == "3.64"
    assert result(board, "ABSENT") == "19"  # ENODEV
    served = [(e["sensor"], e["value"]) for e in rig.sensor_log("s")]
    assert served == [("bh1750", 321), ("ina219", 20.0), ("battery", 3.64)]


def test_pin_irq_on_dio0_wakes_lightsleep_at_tx_done(rig, tmp_path):
    board = rig.add_board("irq", install_probe(tmp_path / "irq", (
        "import machine\n"
        "seen = []\n"
        "dio0.irq(lambda pin: seen.append(time.ticks_us()), machine.Pin.IRQ_RISING)\n"
        "setup(sf=10)\n"
        "write(0x0D, 0)\nnss(0)\nspi.write(bytes((0x80, 1, 2, 3)))\nnss(1)\n"
        "write(0x22, 3)\nwrite(0x40, 0x40)\n"
        "t0 = time.ticks_us()\nwrite(0x01, 0x83)\n"
        "machine.lightsleep(10000)\n"
        "print('WOKE', time.ticks_diff(time.ticks_us(), t0), len(seen), time.ticks_diff(seen[0], t0))\n")))
    woke, count, at = map(int, result(board, "WOKE").split())
    toa = time_on_air_us(3, 10, 125_000, 1)
    assert woke == toa and count == 1 and at == toa  # woken by the edge, long before the 10 s


def test_rom_falls_back_to_the_built_ins_without_a_rig(tmp_path):
    from dos_rig.board import ROM_DIR, find_micropython

    env = {k: v for k, v in os.environ.items() if k not in ("DOS_RIG", "DOS_BOARD")}
    env["MICROPYPATH"] = f":.frozen:{ROM_DIR}"
    code = ("import machine, time, os\nt = time.ticks_ms(); time.sleep_ms(20)\n"
            "print(hasattr(machine, 'Pin'), time.ticks_diff(time.ticks_ms(), t) >= 20, os.stat('')[0] > 0)")
    done = subprocess.run([find_micropython(), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=10)
    assert done.stdout.split() == ["False", "True", "True"], done.stderr


def test_speed_paces_virtual_time_for_a_sleeping_board(tmp_path):
    with Rig(tmp_path / "rig", speed=10.0) as rig:
        board = rig.add_board("paced", install_probe(tmp_path / "paced", (
            "while True:\n    time.sleep_ms(500)\n    print('AT', time.ticks_ms())\n")))
        result(board, "AT 500")
        started_wall, started_virtual = time.monotonic(), rig.now_us()
        time.sleep(1.0)
        virtual_s = (rig.now_us() - started_virtual) / 1e6
        wall_s = time.monotonic() - started_wall
        assert 0.6 * 10 * wall_s <= virtual_s <= 10 * wall_s + 0.6
