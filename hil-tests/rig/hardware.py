"""The emulated board's hardware: its pins and buses wired to the SX1276, the sensors and the lamp
(a Heltec WiFi LoRa 32 V2 in shape; docs/architecture.md "The emulated board").

| SX1276 | SPI sck 5 / mosi 27 / miso 19, NSS 18, RESET 14, DIO0 26, DIO1 35 |
| BH1750 0x23, INA219 0x40 | I2C scl 15 / sda 4 |
| battery | ADC pin 37 (1:2 divider) |
| lamp | relay pin 12, PWM dimmer pin 25 |
| waste/bridge kits: TMP102 0x48, ADXL345 0x53; waste: MB7040 0x70 | same I2C |
| bridge kit: HX711 bank | clock pin 13, data pins 34 / 38 / 39 (channels 1-3) |
| bridge kit: crack gauge | ADC pin 36 |
| streetlight kit: PIR presence sensor | pin 33 (input, high while sensing; IRQ on its edges) |
| environment kit: SCD41 0x62 | same I2C |

A bus reaches its devices when the MicroPython object names their pins (or names none). The radio keeps its state across an
MCU reset (it is a separate chip); the MCU's pins, PWM and IRQs do not.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Callable

from dos_rig.air import Air
from dos_rig.clock import Timer, VirtualClock
from dos_rig.sensors import (ADXL345, ADXL345_ADDRESS, BH1750, BH1750_ADDRESS, INA219, INA219_ADDRESS, MB7040,
                             MB7040_ADDRESS, PIN_CRACK_GAUGE, PIN_PIR, SCD41, SCD41_ADDRESS, TMP102, TMP102_ADDRESS,
                             Battery, CrackGauge, HX711Bank, I2CDevice, I2CNack, Lamp, Scenario, SensorLog)
from dos_rig.sx1276 import SX1276

PIN_NSS, PIN_RADIO_RESET, PIN_DIO0, PIN_DIO1 = 18, 14, 26, 35
SPI_PINS = (5, 27, 19)  # sck, mosi, miso
I2C_PINS = (15, 4)  # scl, sda
PIN_BATTERY, PIN_LAMP_PWM, PIN_LAMP_RELAY = 37, 25, 12
PIN_HX711_CLOCK, PINS_HX711_DATA = 13, (34, 38, 39)
NO_PIN = 255

MODE_IN, MODE_OUT, MODE_OPEN_DRAIN = 0, 1, 2
PULL_UP, PULL_DOWN = 1, 2
IRQ_FALLING, IRQ_RISING = 1, 2

@dataclass
class PinState:
    mode: int = MODE_IN
    pull: int = 0
    level: int = 0  # driven level when an output


class BoardHardware:
    """Pins and buses of one emulated board, and the devices on them."""

    def __init__(self, board_id: str, clock: VirtualClock, air: Air, position: tuple, scenario: Scenario,
                 sensor_log: SensorLog, on_irq: Callable[[int], None], on_radio_event: Callable[[], None]):
        self.board_id = board_id
        self.clock = clock
        self.scenario = scenario
        self.on_irq = on_irq
        self.on_radio_event = on_radio_event
        self.pins: dict[int, PinState] = {}
        self.irq_triggers: dict[int, int] = {}
        self.radio = SX1276(board_id, clock, air, position, on_dio_change=self._dio_changed)
        self.lamp = Lamp()
        now = lambda: clock.now_us  # noqa: E731
        self.i2c_devices: dict[int, I2CDevice] = {
            BH1750_ADDRESS: BH1750(scenario, now, sensor_log),
            INA219_ADDRESS: INA219(scenario, self.lamp, now, sensor_log),
        }
        self.battery = Battery(scenario, now, sensor_log)
        kit = scenario.values["kit"]
        self.sensor_log = sensor_log
        self.strain_bank: HX711Bank | None = None
        self.crack_gauge: CrackGauge | None = None
        self.has_pir = kit == "streetlight"
        self._pir_edge: Timer | None = None
        if kit in ("waste", "bridge"):
            self.i2c_devices[TMP102_ADDRESS] = TMP102(scenario, now, sensor_log)
            self.i2c_devices[ADXL345_ADDRESS] = ADXL345(scenario, kit, now, sensor_log)
        if kit == "waste":
            self.i2c_devices[MB7040_ADDRESS] = MB7040(scenario, now, sensor_log)
        if kit == "bridge":
            self.strain_bank = HX711Bank(scenario, now, sensor_log, channels=len(PINS_HX711_DATA))
            self.crack_gauge = CrackGauge(scenario, now, sensor_log)
        if kit == "environment":
            self.i2c_devices[SCD41_ADDRESS] = SCD41(scenario, now, sensor_log)
        if self.has_pir:
            scenario.listeners.append(self._schedule_pir_edge)
            self._schedule_pir_edge()
        self.pwm: dict[int, tuple[int, int]] = {}  # pin -> (freq, duty_u16) while enabled

    @property
    def position(self) -> tuple:
        return self.radio.position

    def move(self, position: tuple) -> None:
        self.radio.position = tuple(position)

    def mcu_reset(self) -> None:
        """The MCU rebooted: pins back to inputs, no PWM, no IRQs (the radio chip keeps its state)."""
        self.pins.clear()
        self.irq_triggers.clear()
        self.pwm.clear()
        self.lamp.duty_u16 = None
        self._outputs_changed()

    # --- pins ---------------------------------------------------------------------------------------------------------
    def _pin(self, pin: int) -> PinState:
        return self.pins.setdefault(pin, PinState())

    def pin_init(self, pin: int, mode: int, pull: int, value: int) -> None:
        state = self._pin(pin)
        if mode >= 0:
            state.mode = mode
        if pull >= 0:
            state.pull = pull
        if value >= 0:
            state.level = value
        self._outputs_changed()

    def pin_write(self, pin: int, value: int) -> None:
        self._pin(pin).level = 1 if value else 0
        self._outputs_changed()

    def pin_read(self, pin: int) -> int:
        if pin == PIN_DIO0:
            return self.radio.dio0
        if pin == PIN_DIO1:
            return self.radio.dio1
        if self.strain_bank is not None and pin in PINS_HX711_DATA:
            return self.strain_bank.data(PINS_HX711_DATA.index(pin))
        if self.has_pir and pin == PIN_PIR:
            level = 1 if self.scenario.presence(self.clock.now_us) else 0
            self.sensor_log.record(self.clock.now_us, "pir", level)
            return level
        state = self.pins.get(pin)
        if state is None:
            return 0
        if state.mode == MODE_OUT:
            return state.level
        if state.mode == MODE_OPEN_DRAIN and state.level == 0:
            return 0
        return 1 if state.pull == PULL_UP or pin == PIN_RADIO_RESET else 0

    def _driven(self, pin: int) -> int | None:
        """The level the MCU drives on pin, or None when it does not drive it."""
        state = self.pins.get(pin)
        if state is None or state.mode == MODE_IN:
            return None
        if state.mode == MODE_OPEN_DRAIN:
            return 0 if state.level == 0 else None
        return state.level

    def _outputs_changed(self) -> None:
        nss = self._driven(PIN_NSS)
        self.radio.nss(1 if nss is None else nss)
        reset = self._driven(PIN_RADIO_RESET)
        self.radio.reset_line(1 if reset is None else reset)  # NRESET has a pull-up inside the chip
        relay = self._driven(PIN_LAMP_RELAY)
        self.lamp.relay = 1 if relay else 0
        if self.strain_bank is not None:
            self.strain_bank.clock(1 if self._driven(PIN_HX711_CLOCK) else 0)

    def pin_irq(self, pin: int, trigger: int) -> None:
        if trigger:
            self.irq_triggers[pin] = trigger
        else:
            self.irq_triggers.pop(pin, None)

    def _input_edge(self, pin: int, level: int) -> None:
        """An input pin changed level: its IRQ fires when armed for that edge."""
        if self.irq_triggers.get(pin, 0) & (IRQ_RISING if level else IRQ_FALLING):
            self.on_irq(pin)

    def _dio_changed(self, index: int, level: int) -> None:
        self._input_edge(PIN_DIO0 if index == 0 else PIN_DIO1, level)
        self.on_radio_event()

    def _schedule_pir_edge(self) -> None:
        """Arm a timer for the PIR output's next edge after now (again after every scenario change)."""
        if self._pir_edge is not None:
            self._pir_edge.cancel()
            self._pir_edge = None
        now = self.clock.now_us
        upcoming = [t for t in map(self.scenario.rig_us, self.scenario.presence_edges_s()) if t is not None and t > now]
        if upcoming:
            self._pir_edge = self.clock.call_at(upcoming[0], self._pir_edge_reached)

    def _pir_edge_reached(self) -> None:
        self._pir_edge = None
        self._input_edge(PIN_PIR, 1 if self.scenario.presence(self.clock.now_us) else 0)
        self._schedule_pir_edge()

    # --- SPI ----------------------------------------------------------------------------------------------------------
    @staticmethod
    def _wired(given: tuple[int, ...], expected: tuple[int, ...]) -> bool:
        return all(g == NO_PIN for g in given) or given == expected

    def spi_transfer(self, sck: int, mosi: int, miso: int, data: bytes) -> tuple[bytes, bool]:
        """Clock data over the SPI bus; returns (MISO bytes, whether the radio took a write)."""
        if not self._wired((sck, mosi, miso), SPI_PINS):
            return b"\xff" * len(data), False
        out = self.radio.transfer(data)
        return out, self.radio.writing

    # --- I2C ----------------------------------------------------------------------------------------------------------
    def _i2c_device(self, scl: int, sda: int, address: int) -> I2CDevice | None:
        if not self._wired((scl, sda), I2C_PINS):
            return None
        return self.i2c_devices.get(address)

    def i2c_write(self, scl: int, sda: int, address: int, data: bytes) -> tuple[int, int]:
        """(errno or 0, number of ACKed bytes)."""
        device = self._i2c_device(scl, sda, address)
        if device is None:
            return errno.ENODEV, 0
        try:
            device.write(data)
        except I2CNack:
            return errno.ENODEV, 0
        return 0, len(data)

    def i2c_read(self, scl: int, sda: int, address: int, nbytes: int) -> tuple[int, bytes]:
        device = self._i2c_device(scl, sda, address)
        if device is None:
            return errno.ENODEV, b""
        try:
            return 0, device.read(nbytes)
        except I2CNack:
            return errno.ENODEV, b""

    def i2c_scan(self, scl: int, sda: int) -> list[int]:
        return sorted(self.i2c_devices) if self._wired((scl, sda), I2C_PINS) else []

    # --- ADC, PWM -----------------------------------------------------------------------------------------------------
    def adc_read(self, pin: int) -> tuple[int, int]:
        """(µV, 16-bit reading) at an ADC pin."""
        if pin == PIN_BATTERY:
            return self.battery.read()
        if self.crack_gauge is not None and pin == PIN_CRACK_GAUGE:
            return self.crack_gauge.read()
        return 0, 0

    def set_pwm(self, pin: int, freq: int, duty_u16: int, enabled: bool) -> None:
        if enabled:
            self.pwm[pin] = (freq, duty_u16)
        else:
            self.pwm.pop(pin, None)
        dimmer = self.pwm.get(PIN_LAMP_PWM)
        self.lamp.duty_u16 = None if dimmer is None else dimmer[1]
