"""Tests of the pure-pursuit expert and its noise injection."""

from __future__ import annotations

import math

import pytest

from robot.sim.car import Pose, SimCar
from robot.sim.config import ExpertConfig
from robot.sim.evaluate import evaluate_expert
from robot.sim.expert import ExpertDriver, pursuit_action
from robot.sim.track import make_track
from shared.actions import Action


@pytest.mark.parametrize(
    ("shape", "seed"), [("oval", 0), ("figure8", 1), ("random", 2)]
)
def test_expert_drives_a_full_lap_without_leaving_the_track(
    shape: str, seed: int
) -> None:
    track = make_track(shape, seed=seed)

    result = evaluate_expert(track, duration_s=track.length_m / 0.3)

    assert result.laps >= 1
    assert result.departures == 0
    assert result.max_distance_m < 0.5 * track.half_width_m
    assert result.actions["stop"] == 0 and result.actions["backward"] == 0


@pytest.mark.parametrize(
    ("lateral_m", "expected"),
    [(0.15, Action.RIGHT), (-0.15, Action.LEFT), (0.0, Action.FORWARD)],
)
def test_expert_label_steers_back_to_the_centre_line(
    track_of, lateral_m: float, expected: Action
) -> None:
    track = track_of("oval")
    pose = track.pose_at(0.0, lateral_m=lateral_m)  # on the straight, parallel

    assert ExpertDriver(track).label(pose) is expected


def test_expert_turns_towards_the_track_when_facing_away(track_of) -> None:
    track = track_of("oval")
    on_line = track.pose_at(0.0)
    facing_left = Pose(on_line.x_m, on_line.y_m, on_line.heading_rad + 1.0)
    facing_right = Pose(on_line.x_m, on_line.y_m, on_line.heading_rad - 1.0)

    assert ExpertDriver(track).label(facing_left) is Action.RIGHT
    assert ExpertDriver(track).label(facing_right) is Action.LEFT


def test_expert_without_noise_executes_its_label(track_of) -> None:
    track = track_of("oval")
    car = SimCar(track.pose_at(0.0))
    expert = ExpertDriver(track)

    for _ in range(200):
        executed, label = expert.act(car.pose)
        assert executed is label
        car.drive(executed)
        car.step(0.05)


def test_expert_noise_labels_are_the_corrective_action(track_of) -> None:
    track = track_of("oval")
    config = ExpertConfig(noise=0.1)
    car = SimCar(track.pose_at(0.0))
    expert = ExpertDriver(track, config, seed=7)
    noisy = 0

    for _ in range(1200):
        pose = car.pose
        executed, label = expert.act(pose)

        # The label is the clean expert's choice for this very pose...
        point = track.nearest(pose.x_m, pose.y_m, hint=expert.tracker.point.index)
        assert label is pursuit_action(track, pose, point, config)
        if executed is not label:
            noisy += 1
            assert expert.noisy
            # ... and it turns towards the pursuit target, undoing the noise.
            tx, ty, _ = track.point_at(point.s_m + config.lookahead_m)
            bearing = math.atan2(ty - pose.y_m, tx - pose.x_m) - pose.heading_rad
            error = math.remainder(bearing, 2 * math.pi)
            if label is Action.LEFT:
                assert error > 0
            elif label is Action.RIGHT:
                assert error < 0
            else:
                assert abs(error) <= math.radians(config.heading_tolerance_deg)
        car.drive(executed)
        car.step(0.05)
        assert track.on_track(car.pose.x_m, car.pose.y_m)

    assert expert.bursts > 10
    assert noisy > 50


def test_expert_noise_pushes_the_car_off_the_line_and_it_recovers(track_of) -> None:
    track = track_of("oval")
    clean = evaluate_expert(track, duration_s=40)
    noisy = evaluate_expert(track, duration_s=40, expert=ExpertConfig(noise=0.05))

    assert noisy.mean_distance_m > clean.mean_distance_m * 1.5
    assert noisy.departures == 0
    assert noisy.laps >= 1
