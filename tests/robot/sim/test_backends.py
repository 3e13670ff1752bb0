"""Tests of the simulator as the robot's camera and drivetrain."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from robot.camera import Camera
from robot.drivetrain import Drivetrain
from robot.sim.backends import SimCamera, SimDrivetrain, SimWorld, make_sim_backends
from robot.sim.car import Pose
from robot.sim.config import SimConfig
from shared.actions import Action
from shared.frames import FRAME_SHAPE


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return SimConfig(shape="oval", seed=1, control_rate_hz=100.0)


def test_sim_backends_are_a_camera_and_a_drivetrain(config) -> None:
    world, camera, motors = make_sim_backends(config)
    try:
        assert isinstance(camera, Camera) and isinstance(motors, Drivetrain)
        assert camera.world is world and motors.world is world
    finally:
        motors.close()


def test_sim_camera_publishes_new_frames_in_real_time(config) -> None:
    world, camera, motors = make_sim_backends(config, camera_rate_hz=50.0)

    with camera, motors:
        first = camera.read(timeout_s=2.0)
        later = camera.read(after_index=first.index + 3, timeout_s=2.0)
        while later.index <= first.index + 3:
            later = camera.read(after_index=later.index, timeout_s=2.0)

    assert first.image.shape == FRAME_SHAPE and first.image.dtype == np.uint8
    assert later.t_mono_s > first.t_mono_s
    assert not any(t.name == "sim-world" for t in threading.enumerate())


def test_sim_drivetrain_forward_moves_the_car_along_the_track(config) -> None:
    world, camera, motors = make_sim_backends(config)
    start = world.pose

    with camera, motors:
        motors.drive(Action.FORWARD)
        frame = camera.read(timeout_s=2.0)
        while world.time_s < 0.3:
            frame = camera.read(after_index=frame.index, timeout_s=2.0)
        motors.stop()
        moved = world.pose

    # The oval starts on a straight heading +x.
    assert moved.x_m > start.x_m + 0.1
    assert moved.y_m == pytest.approx(start.y_m)
    assert world.status()["on_track"]


@pytest.mark.parametrize(
    ("action", "speed_sign", "yaw_sign"),
    [
        (Action.FORWARD, 1, 0),
        (Action.BACKWARD, -1, 0),
        (Action.LEFT, 0, 1),
        (Action.RIGHT, 0, -1),
        (Action.STOP, 0, 0),
    ],
)
def test_sim_drivetrain_maps_actions_as_the_stepped_car(
    config, track_of, action: Action, speed_sign: int, yaw_sign: int
) -> None:
    world = SimWorld(config, track_of("oval", 1))
    car = config.car
    motors = SimDrivetrain(world, speed=car.speed, turn_speed=car.turn_speed)
    try:
        motors.drive(action)
        assert world.car.speed_m_s == pytest.approx(speed_sign * car.speed_m_s)
        assert world.car.yaw_rate_rad_s == pytest.approx(yaw_sign * car.yaw_rate_rad_s)
    finally:
        motors.close()
    assert world.car.speed_m_s == 0 and world.car.yaw_rate_rad_s == 0


def test_sim_world_puts_a_car_back_after_it_stays_off_the_track(track_of) -> None:
    config = SimConfig(shape="oval", reset_after_off_track_s=1.0)
    world = SimWorld(config, track_of("oval"))
    outside = world.track.pose_at(2.0, lateral_m=0.6)
    world.reset(outside)

    world.step(0.1)
    assert world.departures == 1
    assert not world.status()["on_track"]
    for _ in range(10):
        world.step(0.1)

    assert world.status()["on_track"]
    assert world.track.nearest(world.pose.x_m, world.pose.y_m).distance_m < 1e-6
    assert world.departures == 1


def test_sim_world_walls_keep_the_car_in_the_room(track_of) -> None:
    config = SimConfig(shape="oval", reset_after_off_track_s=0.0)
    world = SimWorld(config, track_of("oval"))
    world.reset(Pose(0.0, 0.0, math.pi / 2))
    world.set_motors(1.0, 1.0)

    for _ in range(200):
        world.step(0.05)

    floor = world.track.floor
    top_m = floor.origin_y_m + floor.shape_px[0] * floor.resolution_m
    assert world.pose.y_m == pytest.approx(top_m)


def test_sim_world_map_image_and_status(config, track_of) -> None:
    world = SimWorld(config, track_of("oval", 1))

    image = world.map_image(120)
    status = world.status()

    assert image.shape == (120, 120, 3) and image.dtype == np.uint8
    assert status["track"] == "oval" and status["seed"] == 1
    assert status["laps"] == 0 and status["departures"] == 0


def test_sim_camera_close_is_safe_twice(config, track_of) -> None:
    world = SimWorld(config, track_of("oval", 1))
    camera = SimCamera(world)

    camera.open()
    camera.close()
    camera.close()

    assert camera.latest() is not None
