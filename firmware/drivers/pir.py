"""A passive-infrared presence sensor with a digital output (HC-SR501 and the like): high while it senses presence,
and for its own hold time after (set on the module)."""


class PIR:
    def __init__(self, pin):
        self._pin = pin

    def sensed(self):
        """Whether the sensor's output is high now."""
        return self._pin.value() == 1
