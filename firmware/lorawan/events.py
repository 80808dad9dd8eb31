"""The MAC's outputs: actions for the runner and events for the app. An event is a namedtuple: its type's name says
what it is and its fields are attributes, so the app, a test or a log line can read it without knowing the MAC (a
namedtuple type and its instances take far less heap than a class with __init__ and its objects). An action passes
only between the MAC and the runner (lorawan/node.py): a plain tuple, told from an event by `type(item) is tuple`,
whose first item names it (three fewer types and names on the node):

- ("transmit", frame, radio, airtime_us, fcnt, dev_nonce): configure the radio with the settings dict `radio` and send
  `frame` now; then call tx_done(end time). A data frame has its `fcnt` (dev_nonce None), a JoinRequest its
  `dev_nonce` (fcnt None; persist dev_nonce + 1 before sending).
- ("open_rx", at_ms, radio, timeout_ms, window): listen with `radio` from `at_ms` for a preamble during `timeout_ms`;
  then call rx() or rx_timeout(). `window` is 1 or 2.
- ("wait", until_ms, why): nothing to do before `until_ms` (`why`: duty_cycle, retransmission or join_backoff); then
  call wake().
Events:
- Sent: a data uplink left the antenna.
- Downlink: application data (FPort 1..223) arrived in an RX window.
- LinkCheck: LinkCheckAns (demodulation margin in dB, number of gateways).
- DeviceTime: DeviceTimeAns: GPS time (ms since 1980-01-06, no leap seconds) at `at_ms`, the end of the uplink.
- Joined: a JoinAccept was accepted; the session (DevAddr as printed, keys, RX settings, CFList) is active.
- JoinFailed: join attempt `attempt` (DevNonce `dev_nonce`) got no JoinAccept; the next may start at retry_at_ms.
- NotSent: the uplink was not sent; `reason` is a snake_case label, `detail` a short text for the log.
- RxIgnored: a frame heard in an RX window was dropped (not ours, bad MIC, replay, ...).
- Done: the uplink's exchange is over and the MAC is idle. acked: True/False for confirmed uplinks, else None.
A call the stack cannot honour, or a frame it drops, raises MacError (one class for the MAC, its region and its crypto).
"""
from collections import namedtuple

Sent = namedtuple("Sent", "fcnt fport freq_khz dr airtime_us attempt")
Downlink = namedtuple("Downlink", "fport payload fcnt window rssi snr")
LinkCheck = namedtuple("LinkCheck", "margin gateways")
DeviceTime = namedtuple("DeviceTime", "gps_ms at_ms")
Joined = namedtuple("Joined", "dev_addr dev_nonce window dr")
JoinFailed = namedtuple("JoinFailed", "attempt dev_nonce retry_at_ms")
NotSent = namedtuple("NotSent", "reason detail")
RxIgnored = namedtuple("RxIgnored", "reason")
Done = namedtuple("Done", "fcnt acked")


class MacError(ValueError):
    """A call the MAC (with its region and crypto) cannot honour in its state or with its arguments, or a frame it
    drops: MacError(reason), `reason` (its args[0]) a short snake_case label (no __init__ of its own to keep loaded)."""
