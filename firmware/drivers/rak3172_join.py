"""A RAK3172 modem node's rare paths (drivers/rak3172.py): the module's settings written (at boot, and again after it
lost its session), the OTAA join with its back-off, and a refused AT+SEND. ModemNode.send loads this module only when it
has no session or the module refused the uplink, and unloads it after (modules.unload): a node joins once per boot, so
the code need not stay in the heap."""
from micropython import const

from lorawan.events import JoinFailed, Joined, NotSent

_UNKNOWN = const(-1)  # the DevNonce, which the module does not report (drivers/rak3172.py)
_JOIN_TIMEOUT_MS = const(15000)  # JoinRequest + JoinAccept windows at 5 s and 6 s, at SF12
_JOIN_BACKOFF_FIRST_MS = const(15000)  # first wait after a failed join, doubling up to the next
_JOIN_BACKOFF_MAX_MS = const(3600000)


def configure(node):
    """Write the session's settings to the module (at boot, and again after it lost its session: a module that reset
    itself may have lost them too). An ABP session is up at once; OTAA joins at the next send."""
    for name, value in node.settings:
        node.modem.at(name, value)
    node.configured = True
    node._confirmed = False
    node.data_rate = int(dict(node.settings)["DR"])
    node.mac.activated = not node.otaa


def start_session(node):
    """ModemNode.send() without a session: configure the module if it needs it, then join (OTAA) unless the back-off
    of the last failed attempt runs; the events so far, ending with NotSent("not_joined") when no session is up."""
    if not node.configured:
        configure(node)
    events = []
    if not node.mac.activated and node.now_ms() >= node.next_join_ms:
        events.append(_join(node))
    if not node.mac.activated:
        wait_s = (node.next_join_ms - node.now_ms() + 999) // 1000
        events.append(NotSent("not_joined", "next join attempt in %d s" % wait_s))
    return events


def _join(node):
    """One join attempt: Joined, or JoinFailed with the time the next may start."""
    modem = node.modem
    node.join_attempts += 1
    modem.events = []
    modem.at("JOIN", "1:0:10:1")
    while True:
        name, _event = node._next_event(_JOIN_TIMEOUT_MS, "JOIN (no join result)")
        if name == "joined":
            node.mac.activated = True
            node.fcnt_up = 0
            node.join_attempts = 0
            return Joined(int(modem.at("DEVADDR", read=True), 16), _UNKNOWN, None, node.data_rate)
        if name == "join_failed":
            wait = min(_JOIN_BACKOFF_FIRST_MS << min(node.join_attempts - 1, 12), _JOIN_BACKOFF_MAX_MS)
            node.next_join_ms = node.now_ms() + wait
            return JoinFailed(node.join_attempts, _UNKNOWN, node.next_join_ms)


def not_sent(node, status, length):
    """NotSent for an AT+SEND the module refused with `status` (a payload of `length` bytes), None for a status that
    is a fault (the caller raises it). A lost session (AT_NO_NETWORK_JOINED: the module may have reset itself) is set
    up again at the next send."""
    if status == "AT_NO_NETWORK_JOINED":
        node.mac.activated = node.configured = False
        return NotSent("not_joined", "the module lost its session; set up again at the next send")
    if status == "AT_BUSY_ERROR":
        return NotSent("busy", "the module is still busy with an exchange")
    if status == "AT_PARAM_ERROR":
        return NotSent("too_long", "%d bytes refused at DR%d" % (length, node.data_rate))
    return None
