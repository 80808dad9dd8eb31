"""Emulated board ROM: `os` as on a board's VFS (MicroPython). On a board, stat('') and statvfs('') describe the current
directory (tools such as `mpremote fs cp -r DIR :` rely on it); the unix port's POSIX calls reject the empty path."""
from uos import *
import uos as _uos


def stat(path):
    return _uos.stat(path or ".")


def statvfs(path):
    return _uos.statvfs(path or ".")
