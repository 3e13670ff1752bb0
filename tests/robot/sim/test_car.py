"""Tests of the kinematic skid-steer car."""

from __future__ import annotations

import math

import pytest

from robot.sim.car import Pose, SimCar
from robot.sim.config import CarConfig
from shared.actions import Action
from shared.errors import SimulationError


def test_car_forward_moves_along_its_heading() -> None:
    car = SimCar(Pose(1.0, 2.0, math.radians(30)), CarConfig(speed=0.5))

    car.drive(Action.FORWARD)
    pose = car.step(2.0)

    distance = 0.5 * CarConfig().max_speed_m_s * 2.0
    assert pose.x_m == pytest.approx(1.0 + distance * math.cos(math.radians(30)))
    assert pose.y_m == pytest.approx(2.0 + distance * math.sin(math.radians(30)))
    assert pose.heading_rad == pytest.approx(math.radians(30))


def test_car_backward_moves_against_its_heading() -> None:
    car = SimCar(Pose(0.0, 0.0, 0.0))

    car.drive(Action.BACKWARD)
    pose = car.step(1.0)

    assert pose.x_m == pytest.approx(-car.config.speed_m_s)
    assert pose.y_m == pytest.approx(0.0)


@pytest.mark.parametrize(("action", "sign"), [(Action.LEFT, 1), (Action.RIGHT, -1)])
def test_car_spin_changes_heading_only(action: Action, sign: int) -> None:
    car = SimCar(Pose(0.5, -0.5, 0.0))

    car.drive(action)
    pose = car.step(0.25)

    assert (pose.x_m, pose.y_m) == pytest.approx((0.5, -0.5))
    assert pose.heading_rad == pytest.approx(sign * car.config.yaw_rate_rad_s * 0.25)


def test_car_stop_stays_put() -> None:
    car = SimCar(Pose(0.0, 0.0, 1.0))
    car.drive(Action.FORWARD)

    car.drive(Action.STOP)
    pose = car.step(1.0)

    assert pose == Pose(0.0, 0.0, 1.0)


def test_car_motor_values_become_speed_and_yaw_rate() -> None:
    car = SimCar(
        Pose(0.0, 0.0, 0.0), CarConfig(max_speed_m_s=2.0, max_yaw_rate_rad_s=3.0)
    )

    car.set_motors(0.5, 1.0)

    assert car.speed_m_s == pytest.approx(0.75 * 2.0)
    assert car.yaw_rate_rad_s == pytest.approx(0.25 * 3.0)


def test_car_arc_keeps_its_turn_radius() -> None:
    # Forward while turning follows a circle of radius v / w.
    car = SimCar(
        Pose(0.0, 0.0, 0.0), CarConfig(max_speed_m_s=1.0, max_yaw_rate_rad_s=1.0)
    )
    car.set_motors(0.0, 1.0)  # v = 0.5 m/s, w = 0.5 rad/s: radius 1 m

    for _ in range(10):
        pose = car.step(0.3)

    assert math.hypot(pose.x_m, pose.y_m - 1.0) == pytest.approx(1.0)


def test_car_rejects_motor_values_outside_the_range() -> None:
    car = SimCar(Pose(0.0, 0.0, 0.0))

    with pytest.raises(SimulationError, match="left motor value 1.5"):
        car.set_motors(1.5, 0.0)
