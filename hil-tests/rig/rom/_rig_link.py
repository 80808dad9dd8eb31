"""Emulated board ROM: the link from this board to the DOS Edge rig (MicroPython).

TCP to DOS_RIG (host:port) as board DOS_BOARD. Frames both ways: a 2-byte big-endian length, then the body. A request
body starts with an op byte; pin writes, SPI writes, PWM settings and UART init/writes are fire-and-forget, everything
else waits for its reply (a UART read until bytes came or its virtual deadline passed). Any failure inside a request (a
KeyboardInterrupt too) closes the link, so a half-done request can never desynchronise it: the next request reconnects.
Without DOS_RIG the link is disabled and machine/time stay the built-ins.
"""
import os
import socket
import struct

OP_HELLO = 1
OP_TIME = 2
OP_SLEEP = 3
OP_RESET = 4
OP_PIN_INIT = 16
OP_PIN_WRITE = 17
OP_PIN_READ = 18
OP_PIN_IRQ = 19
OP_SPI_WRITE = 32
OP_SPI_XFER = 33
OP_I2C_WRITE = 48
OP_I2C_READ = 49
OP_I2C_SCAN = 50
OP_ADC_READ = 64
OP_PWM = 80
OP_UART_INIT = 96
OP_UART_WRITE = 97
OP_UART_READ = 98

SLEEP_ABSOLUTE = 1  # SLEEP and UART_READ: the time value is an instant, not a duration
SLEEP_WAKE_ON_IRQ = 2
FOREVER_US = (1 << 62)

ADDRESS = os.getenv("DOS_RIG")
BOARD = os.getenv("DOS_BOARD") or "board"
ENABLED = bool(ADDRESS)

epoch_s = 0
uid = b""
irq_handlers = {}  # pin id -> (handler, Pin object)
_sock = None


def frame(op, fmt="", *args):
    """A request frame: length, op byte, struct-packed args."""
    return struct.pack(">HB" + fmt, struct.calcsize(">" + fmt) + 1, op, *args)


def frame_with(op, fmt, data, *args):
    """A request frame whose packed args are followed by raw bytes."""
    return struct.pack(">HB" + fmt, struct.calcsize(">" + fmt) + 1 + len(data), op, *args) + bytes(data)


def _read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.read(n - len(data))
        if not chunk:
            raise OSError("rig link closed")
        data += chunk
    return data


def _reply(s):
    head = _read_exact(s, 2)
    return _read_exact(s, (head[0] << 8) | head[1])


def _close():
    global _sock
    s, _sock = _sock, None
    if s is not None:
        s.close()


def _open():
    global _sock, epoch_s, uid
    host, port = ADDRESS.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(socket.getaddrinfo(host, int(port))[0][-1])
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: requests are tiny and latency-bound
        name = BOARD.encode()
        s.write(frame_with(OP_HELLO, "", name))
        body = _reply(s)
    except BaseException:
        s.close()
        raise
    epoch_s = struct.unpack_from(">Q", body, 0)[0]
    uid = bytes(body[8:])
    _sock = s
    return s


def connect():
    """Open the link now if it is not open (HELLO tells the epoch and the unique id)."""
    if _sock is None:
        _open()


def send(data):
    """Send a fire-and-forget request."""
    s = _sock or _open()
    try:
        s.write(data)
    except BaseException:
        _close()
        raise


def call(data):
    """Send a request and return its reply body."""
    s = _sock or _open()
    try:
        s.write(data)
        return _reply(s)
    except BaseException:
        _close()
        raise


def now_us():
    return struct.unpack(">Q", call(frame(OP_TIME)))[0]


def dispatch_irqs(pins):
    for pin_id in pins:
        entry = irq_handlers.get(pin_id)
        if entry is not None:
            entry[0](entry[1])


def sleep_us(us, wake_on_irq=False):
    """Sleep us µs of virtual time; pin IRQ handlers run when their edge comes; wake_on_irq returns after one."""
    flags = SLEEP_WAKE_ON_IRQ if wake_on_irq else 0
    body = call(frame(OP_SLEEP, "BQ", flags, max(0, int(us))))
    while True:
        now, deadline = struct.unpack_from(">QQ", body, 0)
        pins = body[16:]
        if pins:
            dispatch_irqs(pins)
            if wake_on_irq:
                return
        if now >= deadline:
            return
        body = call(frame(OP_SLEEP, "BQ", flags | SLEEP_ABSOLUTE, deadline))
