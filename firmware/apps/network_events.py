"""The log lines of a send()'s join and downlink events, and the "config" downlinks (FPort 3) among them: loaded by
apps.runtime.handle only for a send whose events carry a join or a downlink (most carry neither), and unloaded before
a config is applied (apps.runtime.apply_config)."""
from lorawan.events import Downlink, JoinFailed, Joined
from schema_v1 import MESSAGES


def known(value):
    """A counter for a log line: "?" when the radio did not report it (a RAK3172 keeps DevNonce and FCntDown to
    itself)."""
    return "?" if value < 0 else value


def event_lines(events, kind):
    """(lines about the join, lines about downlinks, [(payload, fcnt) of each "config" downlink]) for the events of one
    send() of a `kind` node; apps.runtime.apply_config applies the configs once this module is unloaded."""
    joins, downlinks, configs = [], [], []
    for event in events:
        if isinstance(event, Joined):
            joins.append("joined: DevAddr %08x, DevNonce %s, DR%d" % (event.dev_addr, known(event.dev_nonce), event.dr))
        elif isinstance(event, JoinFailed):
            joins.append("join attempt %d (DevNonce %s) got no JoinAccept" % (event.attempt, known(event.dev_nonce)))
        elif isinstance(event, Downlink):
            if event.fport == MESSAGES[kind]["config"][0]:
                configs.append((event.payload, known(event.fcnt)))
            else:
                downlinks.append("downlink on FPort %d (%d bytes) ignored" % (event.fport, len(event.payload)))
    return joins, downlinks, configs
