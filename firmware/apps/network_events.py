"""The log lines of a send()'s join and downlink events, and a "config" downlink (FPort 3) applied to the app's settings
at once: loaded by apps.runtime.handle only for a send whose events carry a join or a downlink (most carry neither),
and unloaded after."""
from cbor import CborError
from lorawan.events import Downlink, JoinFailed, Joined
from modules import unload
from schema_v1 import MESSAGES


def known(value):
    """A counter for a log line: "?" when the radio did not report it (a RAK3172 keeps DevNonce and FCntDown to
    itself)."""
    return "?" if value < 0 else value


def config_fport(kind):
    """The FPort of the kind's "config" downlink message."""
    return MESSAGES[kind]["config"][0]


def event_lines(events, kind, settings, store, spec):
    """(lines about the join, lines about downlinks) for the events of one send() of a `kind` node; a "config"
    downlink is applied to its settings at once (apply_config)."""
    joins, downlinks = [], []
    for event in events:
        if isinstance(event, Joined):
            joins.append("joined: DevAddr %08x, DevNonce %s, DR%d" % (event.dev_addr, known(event.dev_nonce), event.dr))
        elif isinstance(event, JoinFailed):
            joins.append("join attempt %d (DevNonce %s) got no JoinAccept" % (event.attempt, known(event.dev_nonce)))
        elif isinstance(event, Downlink):
            if event.fport == config_fport(kind):
                downlinks += apply_config(kind, settings, store, spec, event.payload, event.fcnt)
            else:
                downlinks.append("downlink on FPort %d (%d bytes) ignored" % (event.fport, len(event.payload)))
    return joins, downlinks


def apply_config(kind, values, store, spec, payload, fcnt):
    """Apply a "config" downlink payload to the settings `values` at once; returns its log lines. The payload is decoded
    by cbor_decode.py, then applied by remote_settings.py: each loaded for its step and unloaded after, never both at
    once."""
    from cbor_decode import decode_message

    try:
        decoded = decode_message(kind, config_fport(kind), payload)
    except CborError as exc:
        decoded = exc
    finally:
        del decode_message  # a function keeps its module's code alive: this name would, until apply_config returns
        unload("cbor_decode")
    from remote_settings import configure

    try:
        return configure(values, store, spec, decoded, known(fcnt))
    finally:
        unload("remote_settings")
