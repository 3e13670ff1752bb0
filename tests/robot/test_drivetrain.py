"""Drivetrain backends on gpiozero's own mock pins, and the factory."""

from __future__ import annotations

import sys
import types

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from robot.drivetrain import motor_speeds
from robot.drivetrains import (
    GpioZeroDrivetrain,
    MotorHatDrivetrain,
    RecordingDrivetrain,
    make_drivetrain,
)
from shared.actions import Action
from shared.config import MotorsConfig
from shared.errors import HardwareError

LEFT_PINS = (17, 18)
RIGHT_PINS = (27, 22)
SPEED = 0.6
TURN_SPEED = 0.4


@pytest.fixture
def mock_pins():
    """gpiozero's mock pin factory with PWM pins; yields the factory."""
    previous = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


def pin_states(factory: MockFactory) -> dict[str, float]:
    """Each motor pin's duty: left/right forward/backward."""
    names = {
        LEFT_PINS[0]: "left_fwd",
        LEFT_PINS[1]: "left_back",
        RIGHT_PINS[0]: "right_fwd",
        RIGHT_PINS[1]: "right_back",
    }
    return {name: float(factory.pin(pin).state) for pin, name in names.items()}


def make_gpio() -> GpioZeroDrivetrain:
    return GpioZeroDrivetrain(
        left_pins=LEFT_PINS, right_pins=RIGHT_PINS, speed=SPEED, turn_speed=TURN_SPEED
    )


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Action.STOP, (0, 0, 0, 0)),
        (Action.FORWARD, (SPEED, 0, SPEED, 0)),
        (Action.BACKWARD, (0, SPEED, 0, SPEED)),
        (Action.LEFT, (0, TURN_SPEED, TURN_SPEED, 0)),
        (Action.RIGHT, (TURN_SPEED, 0, 0, TURN_SPEED)),
    ],
)
def test_gpiozero_drivetrain_sets_pins_per_action(mock_pins, action, expected):
    with make_gpio() as motors:
        motors.drive(action)
        states = pin_states(mock_pins)
        assert tuple(states.values()) == pytest.approx(expected)
        assert motors.action is action


def test_gpiozero_drivetrain_stops_on_close(mock_pins):
    motors = make_gpio()
    motors.drive(Action.FORWARD)
    assert pin_states(mock_pins)["left_fwd"] == pytest.approx(SPEED)
    motors.close()
    assert set(pin_states(mock_pins).values()) == {0.0}
    motors.close()  # twice is fine


def test_gpiozero_drivetrain_stops_on_exception_in_with_block(mock_pins):
    with pytest.raises(RuntimeError, match="crash"):
        with make_gpio() as motors:
            motors.drive(Action.RIGHT)
            assert pin_states(mock_pins)["right_back"] == pytest.approx(TURN_SPEED)
            raise RuntimeError("crash")
    assert set(pin_states(mock_pins).values()) == {0.0}


def test_gpiozero_drivetrain_stop_follows_any_action(mock_pins):
    with make_gpio() as motors:
        for action in Action:
            motors.drive(action)
            motors.stop()
            assert set(pin_states(mock_pins).values()) == {0.0}


def test_gpiozero_drivetrain_rejects_bad_pin_list(mock_pins):
    with pytest.raises(HardwareError, match="left_pins"):
        GpioZeroDrivetrain(left_pins=[17], right_pins=RIGHT_PINS)


def test_gpiozero_drivetrain_refuses_a_pin_in_use(mock_pins):
    with make_gpio():
        with pytest.raises(HardwareError, match="BCM pins"):
            make_gpio()


def test_make_drivetrain_uses_configured_pins_and_speed(mock_pins):
    config = MotorsConfig(
        backend="gpiozero", left_pins=[5, 6], right_pins=[13, 19], speed=0.8
    )
    with make_drivetrain(config) as motors:
        motors.drive(Action.FORWARD)
        assert float(mock_pins.pin(5).state) == pytest.approx(0.8)
        assert float(mock_pins.pin(13).state) == pytest.approx(0.8)
        assert float(mock_pins.pin(6).state) == 0.0


def test_make_drivetrain_rejects_unknown_backend():
    with pytest.raises(HardwareError, match="unknown motors backend 'l298'"):
        make_drivetrain(MotorsConfig(backend="l298"))


def test_motorhat_drivetrain_without_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "adafruit_motorkit", None)
    with pytest.raises(HardwareError, match=r"malpi\[motorhat\]"):
        MotorHatDrivetrain()


class _HatMotor:
    def __init__(self) -> None:
        self.throttle: float | None = None


def _fake_motorkit(monkeypatch) -> list:
    """A stand-in ``adafruit_motorkit`` (the real one needs I2C hardware)."""
    kits: list = []

    class MotorKit:
        def __init__(self, address: int = 0x60) -> None:
            self.address = address
            self.motor1, self.motor2 = _HatMotor(), _HatMotor()
            self.motor3, self.motor4 = _HatMotor(), _HatMotor()
            kits.append(self)

    module = types.ModuleType("adafruit_motorkit")
    module.MotorKit = MotorKit
    monkeypatch.setitem(sys.modules, "adafruit_motorkit", module)
    return kits


def test_motorhat_drivetrain_maps_actions_to_throttle(monkeypatch):
    kits = _fake_motorkit(monkeypatch)
    config = MotorsConfig(
        backend="motorhat", hat_left_channel=3, hat_right_channel=4, speed=0.5
    )
    with pytest.raises(RuntimeError):
        with make_drivetrain(config) as motors:
            (kit,) = kits
            for action in Action:
                motors.drive(action)
                expected = motor_speeds(action, 0.5, config.turn_speed)
                assert (kit.motor3.throttle, kit.motor4.throttle) == expected
            motors.drive(Action.FORWARD)
            raise RuntimeError("crash")
    # Stopped (throttle 0) and then released (None): never left running.
    assert (kit.motor3.throttle, kit.motor4.throttle) == (None, None)
    assert kit.motor1.throttle is None


def test_motorhat_drivetrain_rejects_channel_5():
    with pytest.raises(HardwareError, match="channels 1-4"):
        MotorHatDrivetrain(left_channel=5)


def test_recording_drivetrain_keeps_commands_and_stops_on_close():
    motors = RecordingDrivetrain(speed=1.0, turn_speed=0.5)
    motors.drive(Action.LEFT)
    assert motors.values == (-0.5, 0.5)
    motors.close()
    assert motors.values == (0.0, 0.0)
    assert motors.closed
