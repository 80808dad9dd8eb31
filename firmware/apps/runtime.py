"""What every node app shares: applying the FPort 3 "config" downlink, log lines for joins, downlinks and how a send()
went, the settings banner at boot, and random offsets that keep nodes powered up together from colliding."""
import os

from cbor import CborError, decode_message
from lorawan.events import Done, Downlink, JoinFailed, Joined, NotSent, Sent
from schema_v1 import MESSAGES


def config_fport(kind):
    """The FPort of the kind's "config" downlink message."""
    return MESSAGES[kind]["config"][0]


def apply_config(kind, settings, payload, fcnt):
    """Apply a "config" downlink payload at once; returns its log lines (one per applied, refused or unknown setting)."""
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
