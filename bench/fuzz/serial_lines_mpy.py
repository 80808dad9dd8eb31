"""Runs in the real micropython (MICROPYPATH = firmware/): one fuzz case per stdin line, `<pending 0|1> <line as hex>`,
through the RAK3172 driver's sans-IO AT core (`AtProtocol.feed`, then `parse_event` for an +EVT line); one outcome per
stdout line. ValueError (UnicodeError is one) is the driver's typed failure; anything else is printed as CRASH."""
import sys
from ubinascii import unhexlify

from drivers.rak3172 import AtProtocol, parse_event

while True:
    case = sys.stdin.readline()
    if not case:
        break
    pending, _, line = case.strip().partition(" ")
    try:
        protocol = AtProtocol()
        if pending == "1":
            protocol.command("SEND", "1:00")
        result = protocol.feed(unhexlify(line))
        if result is None:
            outcome = "none"
        elif isinstance(result, str):
            outcome = "event:" + parse_event(result)[0]
        else:
            outcome = "reply:" + result.status
    except ValueError:
        outcome = "ValueError"
    except Exception as exc:  # noqa: BLE001 (what the fuzzer looks for)
        outcome = "CRASH %s %s" % (type(exc).__name__, exc)
    sys.stdout.write(outcome + "\n")
