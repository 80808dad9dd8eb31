"""Emulated board ROM: `time` on the rig's virtual clock (MicroPython; the built-in `time` when DOS_RIG is unset).

Ticks count virtual µs since the rig started; sleeps ask the rig to wake the board at now + d (code runs in zero virtual
time); time()/localtime() count from the rig's virtual epoch (UTC).
"""
from utime import *
import _rig_link as _link

if _link.ENABLED:
    import utime as _utime

    _TICKS_MASK = _utime.ticks_add(0, -1)

    def ticks_us():
        return _link.now_us() & _TICKS_MASK

    def ticks_cpu():
        return _link.now_us() & _TICKS_MASK

    def ticks_ms():
        return (_link.now_us() // 1000) & _TICKS_MASK

    def sleep_us(us):
        _link.sleep_us(us)

    def sleep_ms(ms):
        _link.sleep_us(int(ms) * 1000)

    def sleep(seconds):
        _link.sleep_us(round(seconds * 1000000))

    def time():
        now = _link.now_us()
        return _link.epoch_s + now // 1000000

    def time_ns():
        now = _link.now_us()
        return _link.epoch_s * 1000000000 + now * 1000

    def gmtime(secs=None):
        return _utime.gmtime(time() if secs is None else secs)

    def localtime(secs=None):
        return _utime.gmtime(time() if secs is None else secs)
