"""Emulated board ROM: `machine` with Pin, SPI/SoftSPI, I2C/SoftI2C, ADC, PWM, UART, unique_id, reset, deepsleep,
lightsleep and idle acting on the rig's models of the board's hardware (MicroPython; only the built-ins when DOS_RIG is
unset).

Pin writes, SPI writes, PWM settings and UART writes are fire-and-forget; reads and transfers wait for the rig's reply.
A UART read waits in virtual time (the board sleeps meanwhile) until bytes arrive or its `timeout` (ms) passed, as on a
real board. reset() asks the rig to reboot the board (the process ends, the rig starts it again and it boots main.py);
deepsleep(ms) sleeps then resets.
"""
from umachine import *
import _rig_link as _link

if _link.ENABLED:
    import struct as _struct

    _NONE = 255

    def _pin_id(pin):
        if pin is None:
            return _NONE
        return pin.id if isinstance(pin, Pin) else int(pin)

    class Pin(PinBase):
        IN = 0
        OUT = 1
        OPEN_DRAIN = 2
        PULL_UP = 1
        PULL_DOWN = 2
        IRQ_FALLING = 1
        IRQ_RISING = 2

        def __init__(self, id, mode=-1, pull=-1, *, value=None, **kwargs):
            self.id = int(id)
            if mode != -1 or pull != -1 or value is not None:
                self.init(mode, pull, value=value)

        def init(self, mode=-1, pull=-1, *, value=None, **kwargs):
            level = _NONE if value is None else (1 if value else 0)
            pull_code = -1 if pull == -1 else (0 if pull is None else pull)
            _link.send(_link.frame(_link.OP_PIN_INIT, "Bbbb", self.id, mode, pull_code, -1 if level == _NONE else level))

        def value(self, x=None):
            if x is None:
                return _link.call(_link.frame(_link.OP_PIN_READ, "B", self.id))[0]
            _link.send(_link.frame(_link.OP_PIN_WRITE, "BB", self.id, 1 if x else 0))

        def __call__(self, x=None):
            return self.value(x)

        def on(self):
            self.value(1)

        def off(self):
            self.value(0)

        def irq(self, handler=None, trigger=3, **kwargs):
            if handler is None:
                _link.irq_handlers.pop(self.id, None)
                trigger = 0
            else:
                _link.irq_handlers[self.id] = (handler, self)
            _link.send(_link.frame(_link.OP_PIN_IRQ, "BB", self.id, trigger))

        def __repr__(self):
            return "Pin(%d)" % self.id

    class SPI:
        MSB = 0
        LSB = 1

        def __init__(self, id=1, baudrate=1000000, *, sck=None, mosi=None, miso=None, **kwargs):
            self.id = -1 if id is None else id
            self._wiring = _struct.pack("bBBB", self.id, _pin_id(sck), _pin_id(mosi), _pin_id(miso))

        def init(self, baudrate=1000000, *, sck=None, mosi=None, miso=None, **kwargs):
            if sck is not None or mosi is not None or miso is not None:
                self._wiring = _struct.pack("bBBB", self.id, _pin_id(sck), _pin_id(mosi), _pin_id(miso))

        def deinit(self):
            pass

        def write(self, buf):
            _link.send(_link.frame_with(_link.OP_SPI_WRITE, "4s", buf, self._wiring))

        def _transfer(self, out):
            return _link.call(_link.frame_with(_link.OP_SPI_XFER, "4s", out, self._wiring))

        def read(self, nbytes, write=0):
            return self._transfer(bytes([write]) * nbytes)

        def readinto(self, buf, write=0):
            data = self._transfer(bytes([write]) * len(buf))
            for i in range(len(buf)):
                buf[i] = data[i]

        def write_readinto(self, write_buf, read_buf):
            data = self._transfer(write_buf)
            for i in range(len(read_buf)):
                read_buf[i] = data[i]

    class SoftSPI(SPI):
        def __init__(self, baudrate=500000, *, sck=None, mosi=None, miso=None, **kwargs):
            super().__init__(-1, baudrate, sck=sck, mosi=mosi, miso=miso)

    class I2C:
        def __init__(self, id=0, *, scl=None, sda=None, freq=400000, **kwargs):
            self.id = -1 if id is None else id
            self._wiring = _struct.pack("bBB", self.id, _pin_id(scl), _pin_id(sda))

        def init(self, *, scl=None, sda=None, freq=400000, **kwargs):
            if scl is not None or sda is not None:
                self._wiring = _struct.pack("bBB", self.id, _pin_id(scl), _pin_id(sda))

        def deinit(self):
            pass

        def scan(self):
            return list(_link.call(_link.frame(_link.OP_I2C_SCAN, "3s", self._wiring)))

        def writeto(self, addr, buf, stop=True):
            reply = _link.call(_link.frame_with(_link.OP_I2C_WRITE, "3sBB", buf, self._wiring, addr, 1 if stop else 0))
            if reply[0]:
                raise OSError(reply[0])
            return reply[1]

        def writevto(self, addr, vector, stop=True):
            return self.writeto(addr, b"".join(bytes(v) for v in vector), stop)

        def readfrom(self, addr, nbytes, stop=True):
            reply = _link.call(_link.frame(_link.OP_I2C_READ, "3sBBH", self._wiring, addr, 1 if stop else 0, nbytes))
            if reply[0]:
                raise OSError(reply[0])
            return bytes(reply[1:])

        def readfrom_into(self, addr, buf, stop=True):
            data = self.readfrom(addr, len(buf), stop)
            for i in range(len(buf)):
                buf[i] = data[i]

        def _mem_address(self, memaddr, addrsize):
            return memaddr.to_bytes(addrsize // 8, "big")

        def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
            self.writeto(addr, self._mem_address(memaddr, addrsize) + bytes(buf))

        def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
            self.writeto(addr, self._mem_address(memaddr, addrsize), False)
            return self.readfrom(addr, nbytes)

        def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
            data = self.readfrom_mem(addr, memaddr, len(buf), addrsize=addrsize)
            for i in range(len(buf)):
                buf[i] = data[i]

    class SoftI2C(I2C):
        def __init__(self, scl=None, sda=None, *, freq=400000, **kwargs):
            super().__init__(-1, scl=scl, sda=sda, freq=freq)

    class ADC:
        ATTN_0DB = 0
        ATTN_2_5DB = 1
        ATTN_6DB = 2
        ATTN_11DB = 3
        WIDTH_12BIT = 3

        def __init__(self, pin, *, atten=None, **kwargs):
            self._pin = _pin_id(pin)

        def init(self, *, atten=None, **kwargs):
            pass

        def atten(self, atten):
            pass

        def width(self, width):
            pass

        def _read(self):
            return _struct.unpack(">IH", _link.call(_link.frame(_link.OP_ADC_READ, "B", self._pin)))

        def read_uv(self):
            return self._read()[0]

        def read_u16(self):
            return self._read()[1]

        def read(self):
            return self._read()[1] >> 4

    class PWM:
        def __init__(self, dest, *, freq=None, duty_u16=None, duty_ns=None, duty=None, **kwargs):
            self._pin = _pin_id(dest)
            self._freq = 5000
            self._duty = 32768
            self.init(freq=freq, duty_u16=duty_u16, duty_ns=duty_ns, duty=duty)

        def init(self, *, freq=None, duty_u16=None, duty_ns=None, duty=None, **kwargs):
            if freq is not None:
                self._freq = int(freq)
            if duty_u16 is not None:
                self._duty = int(duty_u16)
            elif duty_ns is not None:
                self._duty = min(65535, int(duty_ns) * self._freq * 65535 // 1000000000)
            elif duty is not None:
                self._duty = int(duty) * 65535 // 1023
            self._send(1)

        def _send(self, enabled):
            _link.send(_link.frame(_link.OP_PWM, "BIHB", self._pin, self._freq, self._duty, enabled))

        def freq(self, value=None):
            if value is None:
                return self._freq
            self._freq = int(value)
            self._send(1)

        def duty_u16(self, value=None):
            if value is None:
                return self._duty
            self._duty = max(0, min(65535, int(value)))
            self._send(1)

        def duty_ns(self, value=None):
            if value is None:
                return self._duty * 1000000000 // (self._freq * 65535)
            self.init(duty_ns=value)

        def duty(self, value=None):
            if value is None:
                return self._duty * 1023 // 65535
            self.init(duty=value)

        def deinit(self):
            self._send(0)

    class UART:
        """A UART whose far end is what the rig wires to its TX/RX pins (e.g. a RAK3172 modem)."""

        _CHUNK = 512

        def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None, timeout=0,
                     timeout_char=0, **kwargs):
            self.id = id
            self._rx_buf = b""
            self._tx, self._rx = _NONE, _NONE
            self.init(baudrate, bits, parity, stop, tx=tx, rx=rx, timeout=timeout, timeout_char=timeout_char)

        def init(self, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None, timeout=None,
                 timeout_char=None, **kwargs):
            if tx is not None:
                self._tx = _pin_id(tx)
            if rx is not None:
                self._rx = _pin_id(rx)
            if timeout is not None:
                self._timeout_ms = int(timeout)
            self.baudrate = int(baudrate)
            _link.send(_link.frame(_link.OP_UART_INIT, "bIBB", self.id, self.baudrate, self._tx, self._rx))

        def deinit(self):
            pass

        def write(self, buf):
            _link.send(_link.frame_with(_link.OP_UART_WRITE, "BB", buf, self._tx, self._rx))
            return len(buf)

        def flush(self):
            pass

        def _pull(self, flags, value):
            """Fetch what the rig received for this UART, waiting until `value` (µs, an instant with SLEEP_ABSOLUTE)
            when nothing is there; returns the deadline instant."""
            body = _link.call(_link.frame(_link.OP_UART_READ, "BBHBQ", self._tx, self._rx, self._CHUNK, flags, value))
            now, deadline = _struct.unpack_from(">QQ", body, 0)
            self._rx_buf += body[16:]
            return now, deadline

        def _wait_until(self, enough):
            """Pull bytes until enough(buffer) or the timeout passed."""
            if enough(self._rx_buf):
                return
            now, deadline = self._pull(0, self._timeout_ms * 1000)
            while not enough(self._rx_buf) and now < deadline:
                now, deadline = self._pull(_link.SLEEP_ABSOLUTE, deadline)

        def any(self):
            if not self._rx_buf:
                self._pull(0, 0)
            return len(self._rx_buf)

        def _take(self, n):
            data, self._rx_buf = self._rx_buf[:n], self._rx_buf[n:]
            return data or None

        def read(self, nbytes=None):
            if nbytes is None:
                self._wait_until(lambda buf: len(buf) > 0)
                return self._take(len(self._rx_buf))
            self._wait_until(lambda buf: len(buf) >= nbytes)
            return self._take(nbytes)

        def readinto(self, buf, nbytes=None):
            data = self.read(len(buf) if nbytes is None else nbytes)
            if data is None:
                return None
            for i in range(len(data)):
                buf[i] = data[i]
            return len(data)

        def readline(self):
            self._wait_until(lambda buf: b"\n" in buf)
            end = self._rx_buf.find(b"\n")
            return self._take(len(self._rx_buf) if end < 0 else end + 1)

    def unique_id():
        _link.connect()
        return _link.uid

    def reset():
        _link.call(_link.frame(_link.OP_RESET))

    def soft_reset():
        reset()

    def lightsleep(ms=None):
        _link.sleep_us(_link.FOREVER_US if ms is None else int(ms) * 1000, True)

    def deepsleep(ms=None):
        _link.sleep_us(_link.FOREVER_US if ms is None else int(ms) * 1000)
        reset()

    def idle():
        _link.sleep_us(1000, True)
