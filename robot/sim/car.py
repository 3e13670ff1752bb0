"""A kinematic skid-steer car: two motor values in, a pose out.

The car has no mass and no slip: the motor values set a forward speed and a
yaw rate, held until the next command, and ``step`` integrates them exactly
(an arc when both are non-zero). The five actions reach the motors through
``robot.drivetrain.motor_speeds``, as on the real car.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from robot.drivetrain import motor_speeds
from robot.sim.config import CarConfig
from shared.actions import Action
from shared.errors import SimulationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pose:
    """Where the car is on the floor: metres, and radians counter-clockwise from +x."""

    x_m: float
    y_m: float
    heading_rad: float


def wrap_angle(angle_rad: float) -> float:
    """``angle_rad`` folded into [-pi, pi)."""
    return (angle_rad + math.pi) % (2 * math.pi) - math.pi


class SimCar:
    """The simulated car: ``drive(action)`` or ``set_motors``, then ``step(dt_s)``."""

    def __init__(self, pose: Pose, config: CarConfig | None = None) -> None:
        self.config = config or CarConfig()
        self.pose = pose
        self.speed_m_s = 0.0
        self.yaw_rate_rad_s = 0.0

    def set_motors(self, left: float, right: float) -> None:
        """Hold each side's motor value in [-1, 1] until the next command."""
        for side, value in (("left", left), ("right", right)):
            if not -1.0 <= value <= 1.0:
                raise SimulationError(
                    f"{side} motor value {value!r} is outside [-1, 1]; "
                    "scale motor commands to that range"
                )
        self.speed_m_s = (left + right) / 2 * self.config.max_speed_m_s
        self.yaw_rate_rad_s = (right - left) / 2 * self.config.max_yaw_rate_rad_s

    def drive(self, action: Action) -> None:
        """Run the motors for ``action`` at the configured duties."""
        left, right = motor_speeds(action, self.config.speed, self.config.turn_speed)
        self.set_motors(left, right)

    def step(self, dt_s: float) -> Pose:
        """Move for ``dt_s`` seconds at the held speed and yaw rate."""
        if dt_s < 0:
            raise SimulationError(f"time step {dt_s!r} s is negative")
        self.pose = advance(self.pose, self.speed_m_s, self.yaw_rate_rad_s, dt_s)
        return self.pose


def advance(pose: Pose, speed_m_s: float, yaw_rate_rad_s: float, dt_s: float) -> Pose:
    """The pose after ``dt_s`` seconds at a constant speed and yaw rate."""
    heading = pose.heading_rad
    turn = yaw_rate_rad_s * dt_s
    distance = speed_m_s * dt_s
    if abs(turn) < 1e-9:
        dx = distance * math.cos(heading)
        dy = distance * math.sin(heading)
    else:
        # Exact arc: the chord of an arc of angle ``turn`` and length ``distance``.
        radius = distance / turn
        dx = radius * (math.sin(heading + turn) - math.sin(heading))
        dy = -radius * (math.cos(heading + turn) - math.cos(heading))
    return Pose(pose.x_m + dx, pose.y_m + dy, wrap_angle(heading + turn))
