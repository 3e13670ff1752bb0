"""Drivetrains: how the five actions become motor commands.

The car is a differential (skid-steer) drive: forward and backward run both
sides the same way, left and right spin in place. ``motor_speeds`` is that
mapping, with no I/O; a ``Drivetrain`` backend applies it to real motors.
Every drivetrain stops its motors when closed, and ``with`` closes it on any
exception.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from shared.actions import Action

log = logging.getLogger(__name__)


def motor_speeds(
    action: Action, speed: float, turn_speed: float
) -> tuple[float, float]:
    """Left and right motor values in [-1, 1] for ``action``."""
    if action is Action.FORWARD:
        return speed, speed
    if action is Action.BACKWARD:
        return -speed, -speed
    if action is Action.LEFT:
        return -turn_speed, turn_speed
    if action is Action.RIGHT:
        return turn_speed, -turn_speed
    return 0.0, 0.0


class Drivetrain(ABC):
    """Motors of a skid-steer car; use as ``with SomeDrivetrain(...) as motors:``."""

    #: Short backend name shown in logs and the web app.
    name = "drivetrain"

    def __init__(self, *, speed: float = 0.6, turn_speed: float = 0.6) -> None:
        self.speed = speed
        self.turn_speed = turn_speed
        self.action = Action.STOP

    def __enter__(self) -> Drivetrain:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def drive(self, action: Action) -> None:
        """Run the motors for ``action`` until the next call."""
        left, right = motor_speeds(action, self.speed, self.turn_speed)
        self.set_motors(left, right)
        self.action = action

    def stop(self) -> None:
        self.drive(Action.STOP)

    @abstractmethod
    def set_motors(self, left: float, right: float) -> None:
        """Set each side's motor value in [-1, 1] (negative is backward)."""

    def close(self) -> None:
        """Stop the motors and release them; safe to call twice."""
        try:
            self.stop()
        finally:
            self.release()

    def release(self) -> None:
        """Free the hardware after the motors are stopped (backend-specific)."""
        log.debug("%s drivetrain released", self.name)
