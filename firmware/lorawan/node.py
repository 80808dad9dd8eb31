"""The runner between the sans-IO MAC and the world: it executes the MAC's actions with a radio (micropython-lib `lora`
modem shape: configure/send/recv/sleep) and `time` (ticks_ms/sleep_ms), feeds the results back, and keeps the frame
counters persistent through the store. Receive windows open at the times the MAC gives (RX1 1 s and RX2 2 s after the
end of the uplink, a few ms early)."""
import os
import time

from config import ConfigError, hex_bytes, number
from lorawan.mac import Mac, OpenRx, Transmit, Wait
from lorawan.region import EU868


class Node:
    """A LoRaWAN end device: `send()` runs one uplink's whole exchange and returns the MAC's events."""

    def __init__(self, radio, mac, store=None):
        self.radio, self.mac, self.store = radio, mac, store
        self.counters = {}
        self._ticks = time.ticks_ms()
        self._now = 0
        self._saved_fcnt_down = mac.fcnt_down

    def now_ms(self):
        """Milliseconds since this node started (monotonic; ticks_ms wrap-around handled)."""
        ticks = time.ticks_ms()
        self._now += time.ticks_diff(ticks, self._ticks)
        self._ticks = ticks
        return self._now

    def _at(self, ticks):
        """now_ms() value of an earlier ticks_ms() reading."""
        now = self.now_ms()
        return now - time.ticks_diff(self._ticks, ticks)

    def sleep_until(self, at_ms):
        delay = at_ms - self.now_ms()
        if delay > 0:
            time.sleep_ms(delay)

    def send(self, fport, payload, confirmed=False):
        """Send `payload` on `fport` and run the exchange (TX, RX1, RX2, retries) to its end; returns the events.
        If the radio fails, the exchange is abandoned (the MAC is idle again) and the error is raised."""
        items = self.mac.uplink(fport, payload, self.now_ms(), confirmed)
        try:
            return self._run(items)
        except Exception:
            self.mac.cancel()
            raise

    def _run(self, items):
        events = []
        radio, mac = self.radio, self.mac
        while items:
            item = items.pop(0)
            if isinstance(item, Transmit):
                if self.store is not None:
                    self.store.reserve_fcnt_up(item.fcnt)
                radio.configure(item.radio)
                items.extend(mac.tx_done(self._at(radio.send(item.frame))))
            elif isinstance(item, OpenRx):
                radio.configure(item.radio)
                radio.sleep()
                self.sleep_until(item.at_ms)
                packet = radio.recv(timeout_ms=item.timeout_ms)
                now = self.now_ms()
                if packet is not None and not packet.valid_crc:
                    self.counters["crc_error"] = self.counters.get("crc_error", 0) + 1
                    packet = None
                items.extend(mac.rx_timeout(now) if packet is None else mac.rx(packet, now, packet.rssi, packet.snr))
            elif isinstance(item, Wait):
                radio.sleep()
                self.sleep_until(item.until_ms)
                items.extend(mac.wake(self.now_ms()))
            else:
                events.append(item)
        radio.sleep()
        if self.store is not None and mac.fcnt_down != self._saved_fcnt_down:
            self.store.put("fcnt_down", mac.fcnt_down)
            self.store.flush()
            self._saved_fcnt_down = mac.fcnt_down
        return events


def node_from_config(config, make_radio, store):
    """The Node a config.json describes (ABP for now), resuming its frame counters from the store. The config is checked
    (ConfigError) before make_radio() brings the radio up."""
    activation = config.get("activation")
    if activation != "abp":
        raise ConfigError("activation %r is not supported (abp)" % (activation,))
    dev_addr = int.from_bytes(hex_bytes(config, "dev_addr", 4), "big")
    nwk_s_key = hex_bytes(config, "nwk_s_key", 16)
    app_s_key = hex_bytes(config, "app_s_key", 16)
    data_rate = int(number(config, "data_rate", 5, 0, 5, "config"))
    radio = make_radio()
    mac = Mac(EU868(seed=int.from_bytes(os.urandom(4), "big") ^ dev_addr), data_rate=data_rate)
    mac.activate_abp(dev_addr, nwk_s_key, app_s_key, fcnt_up=store.boot_fcnt_up(), fcnt_down=store.get("fcnt_down", 0))
    return Node(radio, mac, store)
