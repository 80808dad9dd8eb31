"""The log lines of one send() of a node app, and the "config" downlinks (FPort 3) it brought: loaded by
apps.runtime.send_message once the exchange is over (its code is not resident while the radio works) and unloaded
before a config is applied (apps.runtime.apply_config)."""
from lorawan.events import Done, Downlink, JoinFailed, Joined, NotSent, Sent
from schema_v1 import MESSAGES


def known(value):
    """A counter for a log line: "?" when the radio did not report it (a RAK3172 keeps DevNonce and FCntDown to
    itself)."""
    return "?" if value < 0 else value


def radio_summary(events):
    """How one send() went, for the message's log line (one pass over the events, no list of them)."""
    last, tries, not_sent, acks = None, 0, "not sent", ""
    for event in events:
        if isinstance(event, Sent):
            last, tries = event, tries + 1
        elif isinstance(event, NotSent) and not_sent == "not sent":
            not_sent = "not sent: %s (%s)" % (event.reason, event.detail)
        elif isinstance(event, Done) and event.acked is not None:
            acks += " acked" if event.acked else " not acked"
    if last is None:
        return not_sent
    radio = "fcnt %d %s DR%d" % (last.fcnt, "%.1f MHz" % (last.freq_khz / 1000) if last.freq_khz else "? MHz", last.dr)
    if tries > 1:
        radio += " after %d tries" % tries
    return radio + acks


def report(events, kind, line):
    """Print the log of one send() of a `kind` node: the join's lines, then `line` -> how the send went, then the
    ignored downlinks' lines; returns ([(payload, fcnt) of each "config" downlink], whether the network acknowledged
    the message)."""
    ignored, configs, acked = [], [], False
    for event in events:
        if isinstance(event, Joined):
            print("joined: DevAddr %08x, DevNonce %s, DR%d" % (event.dev_addr, known(event.dev_nonce), event.dr))
        elif isinstance(event, JoinFailed):
            print("join attempt %d (DevNonce %s) got no JoinAccept" % (event.attempt, known(event.dev_nonce)))
        elif isinstance(event, Downlink):
            if event.fport == MESSAGES[kind]["config"][0]:
                configs.append((event.payload, known(event.fcnt)))
            else:
                ignored.append("downlink on FPort %d (%d bytes) ignored" % (event.fport, len(event.payload)))
        elif isinstance(event, Done) and event.acked:
            acked = True
    print(line, "->", radio_summary(events))
    for text in ignored:
        print(text)
    return configs, acked
