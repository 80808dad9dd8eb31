"""The runner between the sans-IO MAC and the world: it executes the MAC's actions with a radio (micropython-lib `lora`
modem shape: configure/send/recv/sleep) and `time` (ticks_ms/sleep_ms), feeds the results back, and keeps what must
survive a reboot in the store: the FCntUp lease, FCntDown after an exchange that changed it, and the next DevNonce,
written before each JoinRequest leaves. Receive windows open at the times the MAC gives (a few ms early).

OTAA across reboots: the node joins again after every boot, with the next persisted DevNonce; session keys are never
written to the store. That costs one JoinRequest per boot, keeps no key on flash beyond config.json, and a node whose
network lost the session is back at its next boot, or sooner when the MAC finds the session stale (ADR heard nothing
for a long time). The join happens in send(); a send() while the join back-off runs returns NotSent("not_joined") at
once instead of sleeping through it, so the app's own work (the lamp) goes on.
"""
import time

from lorawan.events import DeviceTime, Joined, NotSent
from modules import unload


class Node:
    """A LoRaWAN end device: `send()` runs one uplink's whole exchange (joining first if needed), returns the events."""

    def __init__(self, radio, mac, store=None):
        self.radio, self.mac, self.store = radio, mac, store
        self.counters = {}
        self._ticks = time.ticks_ms()
        self._now = 0
        self._saved_fcnt_down = mac.fcnt_down
        self._gps_offset_ms = None

    def now_ms(self):
        """Milliseconds since this node started (monotonic; ticks_ms wrap-around handled)."""
        ticks = time.ticks_ms()
        self._now += time.ticks_diff(ticks, self._ticks)
        self._ticks = ticks
        return self._now

    def sleep_until(self, at_ms):
        delay = at_ms - self.now_ms()
        if delay > 0:
            time.sleep_ms(delay)

    def gps_time_ms(self):
        """GPS time now (ms since 1980-01-06) from the last DeviceTimeAns; None before one arrived."""
        return None if self._gps_offset_ms is None else self.now_ms() + self._gps_offset_ms

    def send(self, fport, payload, confirmed=False):
        """Send `payload` on `fport` and run the exchange (join, TX, RX1, RX2, retries) to its end; returns the events.
        If the radio fails, the exchange is abandoned (the MAC is idle again) and the error is raised."""
        mac = self.mac
        events = []
        mac.end_stale_session()
        if not mac.activated:
            now = self.now_ms()
            if now >= mac.next_join_ms:
                events = self._run(mac.join(now))
            if not mac.activated:
                wait_s = max(0, mac.next_join_ms - self.now_ms() + 999) // 1000
                return events + [NotSent("not_joined", "next join attempt in %d s" % wait_s)]
        return events + self._run(mac.uplink(fport, payload, self.now_ms(), confirmed))

    def _run(self, items):
        """Execute the MAC's actions in `items` and those they lead to, until none are left; returns the events. If the
        radio fails, the exchange is abandoned (the MAC is idle again) and the error is raised."""
        events = []
        radio, mac, store = self.radio, self.mac, self.store
        try:
            while items:
                item = items.pop(0)
                if type(item) is not tuple:  # an event for the app (the actions are plain tuples: lorawan/events.py)
                    if isinstance(item, Joined) and store is not None:
                        store.start_session()
                        self._saved_fcnt_down = 0
                    elif isinstance(item, DeviceTime):
                        self._gps_offset_ms = item.gps_ms - item.at_ms
                    events.append(item)
                    continue
                action = item[0]
                if action == "transmit":
                    _, frame, settings, _, fcnt, dev_nonce = item
                    if store is not None:
                        if dev_nonce is None:
                            store.reserve_fcnt_up(fcnt)
                        else:
                            store.use_dev_nonce(dev_nonce)
                    radio.configure(settings)
                    sent_ticks = radio.send(frame)  # the ticks_ms() at which the frame's end left
                    item = frame = settings = None  # done with: not kept through the MAC's work
                    items.extend(mac.tx_done(self.now_ms() - time.ticks_diff(self._ticks, sent_ticks)))
                elif action == "open_rx":
                    _, at_ms, settings, timeout_ms, _ = item
                    radio.configure(settings)
                    radio.sleep()
                    self.sleep_until(at_ms)
                    packet = radio.recv(timeout_ms=timeout_ms)
                    item = settings = None  # (as above: not kept while the MAC opens the frame, the JoinAccept's peak)
                    now = self.now_ms()
                    if packet is not None and not packet.valid_crc:
                        self.counters["crc_error"] = self.counters.get("crc_error", 0) + 1
                        packet = None
                    items.extend(mac.rx_timeout(now) if packet is None
                                 else mac.rx(packet, now, packet.rssi, packet.snr))
                else:  # "wait"
                    _, until_ms, _ = item
                    radio.sleep()
                    self.sleep_until(until_ms)
                    items.extend(mac.wake(self.now_ms()))
        except Exception:
            mac.cancel()
            raise
        radio.sleep()
        if store is not None and mac.fcnt_down != self._saved_fcnt_down:
            store.put("fcnt_down", mac.fcnt_down)
            store.flush()
            self._saved_fcnt_down = mac.fcnt_down
        return events


def node_from_config(config, make_radio, store):
    """The Node a config.json describes (lorawan/node_config.py: its code is needed only while the node starts, so it
    is loaded for that and forgotten; ConfigError for a bad config, before make_radio() brings the radio up)."""
    from lorawan.node_config import node_from_config as build

    unload("lorawan.node_config")
    return build(config, make_radio, store)
