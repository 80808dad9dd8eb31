"""A dimmable lamp: a relay output (on/off) and a PWM dimmer (level in percent)."""


class Lamp:
    def __init__(self, relay, pwm):
        self._relay, self._pwm = relay, pwm
        self.set(False, 0)

    def set(self, on, level_pct):
        """Switch the relay and set the dimmer (0 when off)."""
        level = max(0, min(100, level_pct)) if on else 0
        self._pwm.duty_u16(level * 65535 // 100)
        self._relay(1 if on else 0)
        self.on, self.level_pct = bool(on), level
