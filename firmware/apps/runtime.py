"""What every node app shares: applying the FPort 3 "config" downlink, log lines for joins, downlinks and how a send()
went, the settings banner at boot, random offsets that keep nodes powered up together from colliding, and the reporting
loop (one reading per interval slot; a failed reading is logged, RESET_AFTER_FAILURES in a row reset the board)."""
import os

import machine

from cbor import CborError, decode_message
from lorawan.events import Done, Downlink, JoinFailed, Joined, NotSent, Sent
from schema_v1 import MESSAGES

RESET_AFTER_FAILURES = 5  # consecutive failed readings before the board resets itself
BOOT_SPREAD_MS = 30000  # the first reading comes within this long after boot


def config_fport(kind):
    """The FPort of the kind's "config" downlink message."""
    return MESSAGES[kind]["config"][0]


def apply_config(kind, settings, payload, fcnt):
    """Apply a "config" downlink payload at once; returns its log lines (one per applied, refused or unknown
    setting)."""
    try:
        _name, changes, unknown = decode_message(kind, config_fport(kind), payload)
    except CborError as exc:
        return ["config downlink fcnt %d refused: %s" % (fcnt, exc)]
    applied, refused = settings.apply(changes)
    lines = ["config: %s %s -> %s (downlink fcnt %d)" % (name, old, new, fcnt) for name, old, new in applied]
    lines += ["config: %s not applied: %s (downlink fcnt %d)" % (name, why, fcnt) for name, why in refused]
    lines += ["config: unknown key %s ignored (downlink fcnt %d)" % (key, fcnt) for key in unknown]
    return lines


def handle(events, fport, configure):
    """(lines about the join, lines about downlinks) for the events of one send(); a downlink on `fport` goes to
    configure(payload, fcnt), which returns its log lines."""
    joins, downlinks = [], []
    for event in events:
        if isinstance(event, Joined):
            joins.append("joined: DevAddr %08x, DevNonce %d, DR%d" % (event.dev_addr, event.dev_nonce, event.dr))
        elif isinstance(event, JoinFailed):
            joins.append("join attempt %d (DevNonce %d) got no JoinAccept" % (event.attempt, event.dev_nonce))
        elif isinstance(event, Downlink):
            if event.fport == fport:
                downlinks += configure(event.payload, event.fcnt)
            else:
                downlinks.append("downlink on FPort %d (%d bytes) ignored" % (event.fport, len(event.payload)))
    return joins, downlinks


def radio_summary(events):
    """How one send() went, for the reading's log line."""
    sent = [e for e in events if isinstance(e, Sent)]
    if not sent:
        for event in events:
            if isinstance(event, NotSent):
                return "not sent: %s (%s)" % (event.reason, event.detail)
        return "not sent"
    radio = "fcnt %d %.1f MHz DR%d" % (sent[-1].fcnt, sent[-1].freq_khz / 1000, sent[-1].dr)
    if len(sent) > 1:
        radio += " after %d tries" % len(sent)
    for event in events:
        if isinstance(event, Done) and event.acked is not None:
            radio += " acked" if event.acked else " not acked"
    return radio


def print_settings(settings, specs):
    """The boot lines: remote settings a newly installed config.json overrode, then every setting in force."""
    values = settings.values
    for name in settings.dropped:
        print("config: remote %s dropped: config.json was installed with another value (%s)" % (name, values[name]))
    print("settings: " + " ".join("%s=%s" % (spec[0], values[spec[0]]) for spec in specs))


def random_below(n):
    """A random integer in [0, n) (0 when n <= 0)."""
    return int.from_bytes(os.urandom(4), "big") % n if n > 0 else 0


def first_delay_ms(interval_s):
    """A random wait before the first reading: within half an interval, at most BOOT_SPREAD_MS."""
    return random_below(min(interval_s * 500, BOOT_SPREAD_MS))


def guarded(step, failures):
    """Run step() (one reading); returns how many readings failed in a row. A sensor, radio or encoding failure is
    logged and must not end the loop; RESET_AFTER_FAILURES in a row reset the board."""
    try:
        step()
        return 0
    except Exception as exc:
        failures += 1
        print("reading failed (%d in a row): %s: %s" % (failures, type(exc).__name__, exc))
        if failures >= RESET_AFTER_FAILURES:
            print("resetting after %d failed readings" % failures)
            machine.reset()
        return failures


def run_slots(node, settings, step):
    """Forever: step() once per interval_s slot (settings["interval_s"], read anew each slot), at a random instant in
    the first half of the slot, so that nodes powered up together do not keep colliding on the air."""
    failures = 0
    slot_ms = node.now_ms()
    offset_ms = first_delay_ms(settings["interval_s"])
    while True:
        node.sleep_until(slot_ms + offset_ms)
        failures = guarded(step, failures)
        interval_ms = int(settings["interval_s"] * 1000)
        spread_ms = interval_ms // 2
        offset_ms = random_below(spread_ms)
        slot_ms += interval_ms
        now = node.now_ms()
        while slot_ms + spread_ms <= now:  # the exchange outlasted whole slots (duty cycle): skip them
            slot_ms += interval_ms
