"""The MAC's outputs: actions for the runner (Transmit, OpenRx, Wait) and events for the app (the rest). Plain objects
with attributes, so a test or a log line can read them without knowing the MAC."""


class Transmit:
    """Action: configure the radio with `radio` and send `frame` now; then call tx_done(end time). A data frame has its
    `fcnt`, a JoinRequest its `dev_nonce` (persist dev_nonce + 1 before sending)."""

    def __init__(self, frame, radio, airtime_us, fcnt=None, dev_nonce=None):
        self.frame, self.radio, self.airtime_us, self.fcnt, self.dev_nonce = frame, radio, airtime_us, fcnt, dev_nonce


class OpenRx:
    """Action: listen with `radio` from `at_ms` for a preamble during `timeout_ms`; then call rx() or rx_timeout()."""

    def __init__(self, at_ms, radio, timeout_ms, window):
        self.at_ms, self.radio, self.timeout_ms, self.window = at_ms, radio, timeout_ms, window


class Wait:
    """Action: nothing to do before `until_ms` (duty cycle, retry or join back-off); then call wake()."""

    def __init__(self, until_ms, why):
        self.until_ms, self.why = until_ms, why


class Sent:
    """Event: a data uplink left the antenna."""

    def __init__(self, fcnt, fport, freq_khz, dr, airtime_us, attempt):
        self.fcnt, self.fport, self.freq_khz, self.dr = fcnt, fport, freq_khz, dr
        self.airtime_us, self.attempt = airtime_us, attempt


class Downlink:
    """Event: application data (FPort 1..223) arrived in an RX window."""

    def __init__(self, fport, payload, fcnt, window, rssi, snr):
        self.fport, self.payload, self.fcnt, self.window, self.rssi, self.snr = fport, payload, fcnt, window, rssi, snr


class LinkCheck:
    """Event: LinkCheckAns (demodulation margin in dB, number of gateways)."""

    def __init__(self, margin, gateways):
        self.margin, self.gateways = margin, gateways


class DeviceTime:
    """Event: DeviceTimeAns: GPS time (ms since 1980-01-06, no leap seconds) at `at_ms`, the end of the uplink."""

    def __init__(self, gps_ms, at_ms):
        self.gps_ms, self.at_ms = gps_ms, at_ms


class Joined:
    """Event: a JoinAccept was accepted; the session (DevAddr as printed, keys, RX settings, CFList) is active."""

    def __init__(self, dev_addr, dev_nonce, window, dr):
        self.dev_addr, self.dev_nonce, self.window, self.dr = dev_addr, dev_nonce, window, dr


class JoinFailed:
    """Event: join attempt `attempt` (DevNonce `dev_nonce`) got no JoinAccept; the next may start at retry_at_ms."""

    def __init__(self, attempt, dev_nonce, retry_at_ms):
        self.attempt, self.dev_nonce, self.retry_at_ms = attempt, dev_nonce, retry_at_ms


class NotSent:
    """Event: the uplink was not sent; `reason` is a snake_case label, `detail` a short text for the log."""

    def __init__(self, reason, detail):
        self.reason, self.detail = reason, detail


class RxIgnored:
    """Event: a frame heard in an RX window was dropped (not ours, bad MIC, replay, ...)."""

    def __init__(self, reason):
        self.reason = reason


class Done:
    """Event: the uplink's exchange is over and the MAC is idle. acked: True/False for confirmed uplinks, else None."""

    def __init__(self, fcnt, acked):
        self.fcnt, self.acked = fcnt, acked
