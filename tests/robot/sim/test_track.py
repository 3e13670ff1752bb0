"""Tests of the simulated track: shapes, validation, geometry and the floor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot.sim.config import TrackConfig
from robot.sim.track import ProgressTracker, make_track
from shared.errors import SimulationError


@pytest.mark.parametrize("shape", ["oval", "figure8", "random"])
def test_make_track_shapes_are_closed_and_evenly_spaced(shape: str) -> None:
    track = make_track(shape, seed=0)

    gaps = np.hypot(*np.diff(np.vstack([track.points, track.points[:1]]), axis=0).T)
    assert gaps.max() < 2 * track.config.spacing_m
    assert gaps.min() > 0.5 * track.config.spacing_m
    assert track.length_m == pytest.approx(gaps.sum())
    turns = np.angle(np.exp(1j * np.diff(np.append(track.headings, track.headings[0]))))
    assert np.abs(turns).max() < 0.1


def test_make_track_oval_has_the_stadium_length() -> None:
    config = TrackConfig(oval_straight_m=2.0, oval_radius_m=1.0)

    track = make_track("oval", config=config)

    assert track.length_m == pytest.approx(2 * 2.0 + 2 * math.pi * 1.0, rel=1e-3)


def test_make_track_random_shape_depends_on_the_seed() -> None:
    first = make_track("random", seed=0)
    second = make_track("random", seed=1)

    assert first.length_m != pytest.approx(second.length_m)
    assert make_track("random", seed=0).length_m == pytest.approx(first.length_m)


def test_make_track_random_seed_with_a_tight_turn_raises() -> None:
    # Seed 4 of the default settings curves tighter than the minimum radius.
    with pytest.raises(SimulationError, match=r"seed 4 .*try another seed, e\.g\. 5"):
        make_track("random", seed=4)


def test_make_track_random_with_extreme_amplitude_raises() -> None:
    config = TrackConfig(random_amplitude=0.95, random_harmonics=6)

    with pytest.raises(SimulationError, match="random track seed 0"):
        make_track("random", seed=0, config=config)


def test_make_track_unknown_shape_raises() -> None:
    with pytest.raises(SimulationError, match="'square' is unknown"):
        make_track("square")


def test_track_config_rejects_negative_width() -> None:
    with pytest.raises(SimulationError, match="width_m is -0.5"):
        TrackConfig(width_m=-0.5)


def test_track_nearest_gives_signed_lateral_distance_and_progress() -> None:
    track = make_track("oval")
    left = track.pose_at(1.5, lateral_m=0.1)
    right = track.pose_at(1.5, lateral_m=-0.2)

    on_left = track.nearest(left.x_m, left.y_m)
    on_right = track.nearest(right.x_m, right.y_m)

    assert on_left.lateral_m == pytest.approx(0.1, abs=1e-3)
    assert on_right.lateral_m == pytest.approx(-0.2, abs=1e-3)
    assert on_left.s_m == pytest.approx(1.5, abs=0.02)
    assert track.progress(right.x_m, right.y_m) == pytest.approx(1.5, abs=0.02)


def test_track_on_track_is_true_between_the_edge_lines_only() -> None:
    track = make_track("oval")
    inside = track.pose_at(4.0, lateral_m=0.2)
    outside = track.pose_at(4.0, lateral_m=-0.3)

    assert track.on_track(inside.x_m, inside.y_m)
    assert not track.on_track(outside.x_m, outside.y_m)


def test_progress_tracker_counts_one_lap_of_the_figure8() -> None:
    # Drive exactly along the centre line, through the crossing twice.
    track = make_track("figure8")
    tracker = ProgressTracker(track)

    for s in np.arange(0.0, track.length_m + 0.5, 0.03):
        x, y, _ = track.point_at(s)
        tracker.update(x, y)

    assert tracker.laps == 1
    assert tracker.progress_m == pytest.approx(track.length_m + 0.5, abs=0.05)


def test_progress_tracker_driving_backwards_undoes_progress() -> None:
    track = make_track("oval")
    tracker = ProgressTracker(track)

    for s in np.arange(0.0, -2.0, -0.03):
        tracker.update(*track.point_at(s)[:2])

    assert tracker.progress_m == pytest.approx(-1.98, abs=0.05)
    assert tracker.laps == 0


def test_track_reversed_runs_the_other_way_on_the_same_floor(track_of) -> None:
    track = track_of("oval")

    backwards = track.reversed()

    assert backwards.floor is track.floor
    assert backwards.length_m == pytest.approx(track.length_m)
    assert backwards.point_at(0.0)[:2] == pytest.approx(track.point_at(0.0)[:2])
    turn = math.remainder(
        backwards.point_at(0.0)[2] - track.point_at(0.0)[2], 2 * math.pi
    )
    assert abs(turn) == pytest.approx(math.pi, abs=0.05)


def test_track_floor_has_yellow_dashes_and_white_edges(track_of) -> None:
    track = track_of("oval", 2)
    floor = track.floor

    def pixel(x_m: float, y_m: float) -> np.ndarray:
        col = int((x_m - floor.origin_x_m) / floor.resolution_m)
        row = int((y_m - floor.origin_y_m) / floor.resolution_m)
        return floor.rgb[row, col].astype(int)

    # The first dash starts at s=0; the edge tape lies half a width to each side.
    dash = pixel(*track.point_at(0.05)[:2])
    edge = track.pose_at(0.05, lateral_m=track.half_width_m)
    plain = track.pose_at(0.05, lateral_m=track.half_width_m / 2)
    white = pixel(edge.x_m, edge.y_m)
    floor_colour = pixel(plain.x_m, plain.y_m)
    assert dash[0] > dash[2] + 80 and dash[1] > dash[2] + 60
    assert white.min() > floor_colour.max() + 30


def test_track_floor_differs_per_seed(track_of) -> None:
    first = track_of("oval", 0).floor.rgb
    second = track_of("oval", 3).floor.rgb

    assert np.abs(first.mean(axis=(0, 1)) - second.mean(axis=(0, 1))).max() > 10
