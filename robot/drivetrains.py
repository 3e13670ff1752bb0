"""Drivetrain backends: gpiozero H-bridge, Adafruit Motor HAT, a recorder.

Each backend is a ``robot.drivetrain.Drivetrain``: ``drive(action)`` turns one
of the five actions into left and right motor values at the configured speed
(``motor_speeds``), and closing it, by hand or by leaving a ``with`` block on
an exception, stops the motors before releasing them. ``make_drivetrain``
picks one by ``MotorsConfig.backend``:

- ``gpiozero``: a gpiozero ``Robot`` of two ``Motor`` on an H-bridge board
  (L298N, TB6612FNG, DRV8833...), each motor on a forward and a backward BCM
  pin driven by PWM;
- ``motorhat``: the Adafruit DC Motor HAT (PCA9685 over I2C) through
  ``adafruit-circuitpython-motorkit`` (``pip install "malpi[motorhat]"``);
- ``sim``: the simulator's car (``robot.sim.backends.SimDrivetrain``), or
  ``RecordingDrivetrain`` when the simulator is not installed;
- ``recording``: no motors, only a log of the commands, for tests and demos.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from typing import Any

from robot.drivetrain import Drivetrain
from shared.actions import Action
from shared.config import MotorsConfig
from shared.errors import HardwareError

log = logging.getLogger(__name__)

DRIVETRAIN_BACKENDS = ("gpiozero", "motorhat", "sim", "recording")


def _clamp(value: float) -> float:
    return max(-1.0, min(1.0, float(value)))


class _ClosesOnce(Drivetrain):
    """Closing twice is harmless; stop after close is a no-op, a move an error."""

    closed = False

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            self.closed = True

    def drive(self, action: Action) -> None:
        if self.closed:
            if action is Action.STOP:
                return
            raise HardwareError(
                f"the {self.name} drivetrain is closed; cannot {action.label}"
            )
        super().drive(action)


class GpioZeroDrivetrain(_ClosesOnce):
    """Two DC motors on an H-bridge, driven by a gpiozero ``Robot``.

    ``left_pins`` and ``right_pins`` are each side's (forward, backward) BCM
    pins; PWM on them sets the speed. Tests and demos without a Pi set
    ``GPIOZERO_PIN_FACTORY=mock`` (or ``Device.pin_factory``) and read the
    pins back.
    """

    name = "gpiozero"

    def __init__(
        self,
        *,
        left_pins: tuple[int, int] | list[int] = (17, 18),
        right_pins: tuple[int, int] | list[int] = (27, 22),
        speed: float = 0.6,
        turn_speed: float = 0.6,
        pin_factory: Any = None,
    ) -> None:
        super().__init__(speed=speed, turn_speed=turn_speed)
        for side, pins in (("left", left_pins), ("right", right_pins)):
            if len(pins) != 2:
                raise HardwareError(
                    f"motors.{side}_pins is {list(pins)!r}; give two BCM pins, "
                    "[forward, backward]"
                )
        self.left_pins = tuple(left_pins)
        self.right_pins = tuple(right_pins)
        try:
            gpiozero = importlib.import_module("gpiozero")
        except ImportError as err:
            raise HardwareError(
                "gpiozero is not installed; install the robot extra: "
                'pip install "malpi[robot]"'
            ) from err
        try:
            left = gpiozero.Motor(*self.left_pins, pwm=True, pin_factory=pin_factory)
            try:
                right = gpiozero.Motor(
                    *self.right_pins, pwm=True, pin_factory=pin_factory
                )
            except Exception:
                left.close()
                raise
            self._robot = gpiozero.Robot(left, right, pin_factory=pin_factory)
        except Exception as err:
            raise HardwareError(
                f"cannot drive motors on BCM pins left={list(self.left_pins)!r} "
                f"right={list(self.right_pins)!r}: {type(err).__name__}: {err}; "
                "check motors.left_pins/right_pins in robot.toml, or off the Pi "
                "set GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin"
            ) from err
        log.info(
            "gpiozero motors on BCM pins left=%s right=%s",
            list(self.left_pins),
            list(self.right_pins),
        )

    def set_motors(self, left: float, right: float) -> None:
        self._robot.value = (_clamp(left), _clamp(right))

    def release(self) -> None:
        self._robot.close()
        super().release()


class MotorHatDrivetrain(_ClosesOnce):
    """The Adafruit DC Motor HAT: motor value in [-1, 1] is ``motor.throttle``.

    Needs I2C (enable it with ``sudo raspi-config``) and the ``motorhat``
    extra. Stop sets both throttles to 0 (brake); closing then releases the
    motors (``throttle = None``, coasting).
    """

    name = "motorhat"

    def __init__(
        self,
        *,
        left_channel: int = 1,
        right_channel: int = 2,
        speed: float = 0.6,
        turn_speed: float = 0.6,
        i2c_address: int = 0x60,
    ) -> None:
        super().__init__(speed=speed, turn_speed=turn_speed)
        for side, channel in (("left", left_channel), ("right", right_channel)):
            if channel not in (1, 2, 3, 4):
                raise HardwareError(
                    f"motors.hat_{side}_channel is {channel!r}; the Motor HAT "
                    "has channels 1-4 (M1-M4)"
                )
        try:
            motorkit = importlib.import_module("adafruit_motorkit")
        except ImportError as err:
            raise HardwareError(
                "adafruit-circuitpython-motorkit is not installed; install it "
                'with `pip install "malpi[motorhat]"`'
            ) from err
        try:
            kit = motorkit.MotorKit(address=i2c_address)
            self._left = getattr(kit, f"motor{left_channel}")
            self._right = getattr(kit, f"motor{right_channel}")
        except Exception as err:
            raise HardwareError(
                f"no Motor HAT at I2C address {i2c_address:#04x} ({err}); enable "
                "I2C with `sudo raspi-config` and check `i2cdetect -y 1`"
            ) from err
        self._kit = kit
        log.info(
            "Motor HAT motors on M%d (left), M%d (right)", left_channel, right_channel
        )

    def set_motors(self, left: float, right: float) -> None:
        self._left.throttle = _clamp(left)
        self._right.throttle = _clamp(right)

    def release(self) -> None:
        self._left.throttle = None
        self._right.throttle = None
        super().release()


class RecordingDrivetrain(_ClosesOnce):
    """No motors: remembers every command, for tests and demos."""

    name = "recording"

    def __init__(self, *, speed: float = 0.6, turn_speed: float = 0.6) -> None:
        super().__init__(speed=speed, turn_speed=turn_speed)
        self._lock = threading.Lock()
        #: Every (left, right) set, oldest first.
        self.commands: list[tuple[float, float]] = []

    @property
    def values(self) -> tuple[float, float]:
        """The motor values in effect."""
        with self._lock:
            return self.commands[-1] if self.commands else (0.0, 0.0)

    def set_motors(self, left: float, right: float) -> None:
        with self._lock:
            self.commands.append((_clamp(left), _clamp(right)))


def make_drivetrain(config: MotorsConfig, *, world: Any = None) -> Drivetrain:
    """Build the drivetrain ``config.backend`` names.

    For the ``sim`` backend, ``world`` is the ``robot.sim.backends.SimWorld``
    whose car the motors drive (shared with the sim camera); without one the
    motors get a world of their own.

    Raises:
        HardwareError: the backend is unknown or its hardware is missing.
    """
    backend = config.backend
    speeds = {"speed": config.speed, "turn_speed": config.turn_speed}
    if backend == "gpiozero":
        return GpioZeroDrivetrain(
            left_pins=config.left_pins, right_pins=config.right_pins, **speeds
        )
    if backend == "motorhat":
        return MotorHatDrivetrain(
            left_channel=config.hat_left_channel,
            right_channel=config.hat_right_channel,
            **speeds,
        )
    if backend == "recording":
        return RecordingDrivetrain(**speeds)
    if backend == "sim":
        if importlib.util.find_spec("robot.sim.backends") is None:
            log.warning("the simulator is not installed: motors only record")
            return RecordingDrivetrain(**speeds)
        sim = importlib.import_module("robot.sim.backends")
        return sim.SimDrivetrain(world or sim.SimWorld(), **speeds)
    raise HardwareError(
        f"unknown motors backend {backend!r}; use one of "
        f"{', '.join(DRIVETRAIN_BACKENDS)}"
    )
