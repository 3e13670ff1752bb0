"""Tests of closed-loop evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from robot.sim.evaluate import evaluate, evaluate_expert
from shared.actions import Action
from shared.errors import SimulationError, UnknownActionError
from shared.frames import FRAME_SHAPE


@pytest.fixture(scope="module")
def oval(track_of):
    return track_of("oval", 0)


def test_evaluate_expert_counts_laps_by_progress(oval) -> None:
    result = evaluate_expert(oval, duration_s=70)

    assert result.laps == int(result.progress_m // oval.length_m)
    assert result.laps >= 2
    assert result.clean_laps == result.laps
    assert len(result.lap_times_s) == result.laps
    assert result.mean_lap_time_s == pytest.approx(np.mean(result.lap_times_s))
    # A lap at roughly the car's speed: longer than driving straight at full speed.
    assert result.mean_lap_time_s > oval.length_m / 0.6
    assert result.mean_distance_m < 0.05


def test_evaluate_expert_counts_figure8_laps_once_through_the_crossing(
    track_of,
) -> None:
    track = track_of("figure8", 0)

    result = evaluate_expert(track, duration_s=75)

    # The car crosses the middle twice a lap; laps still follow the distance.
    driven_m = result.progress_m
    assert result.laps == int(driven_m // track.length_m) >= 2
    assert driven_m < 75 * 0.6


def test_evaluate_counts_departures_of_a_policy_that_never_turns(oval) -> None:
    result = evaluate(lambda frame: Action.FORWARD, oval, duration_s=30)

    assert result.departures >= 5
    assert result.clean_laps == 0
    assert result.max_distance_m > oval.half_width_m
    assert result.reset_on_departure


def test_evaluate_without_reset_counts_one_departure(oval) -> None:
    result = evaluate(
        lambda frame: Action.FORWARD, oval, duration_s=20, reset_on_departure=False
    )

    assert result.departures == 1
    assert result.laps == 0


def test_evaluate_spinning_policy_makes_no_progress(oval) -> None:
    result = evaluate(lambda frame: Action.LEFT, oval, duration_s=10)

    # Spinning in place never leaves the track, and never gets anywhere.
    assert result.laps == 0
    assert result.departures == 0
    assert abs(result.progress_m) < 0.05
    assert result.actions["left"] == result.frames == 200


def test_evaluate_backward_driving_counts_no_laps(oval) -> None:
    result = evaluate(lambda frame: Action.BACKWARD, oval, duration_s=60)

    assert result.progress_m < -oval.length_m
    assert result.laps == 0


def test_evaluate_gives_the_policy_camera_frames(oval) -> None:
    seen = []

    def policy(frame: np.ndarray) -> int:
        seen.append((frame.shape, frame.dtype))
        return 1  # forward, by class id

    result = evaluate(policy, oval, max_steps=5)

    assert seen == [(FRAME_SHAPE, np.uint8)] * 5
    assert result.frames == 5
    assert result.actions["forward"] == 5


def test_evaluate_rejects_a_policy_answer_that_is_no_action(oval) -> None:
    with pytest.raises(UnknownActionError):
        evaluate(lambda frame: "jump", oval, max_steps=3)


def test_evaluate_rejects_an_empty_run(oval) -> None:
    with pytest.raises(SimulationError, match="run length 0"):
        evaluate(lambda frame: Action.FORWARD, oval, duration_s=0)


def test_evaluate_result_is_json_able(oval) -> None:
    result = evaluate(lambda frame: Action.LEFT, oval, max_steps=10)

    data = json.loads(json.dumps(result.to_dict()))

    assert data["mean_lap_time_s"] is None
    assert data["frames"] == 10
    assert "0 laps" in result.summary()


def test_evaluate_writes_a_gif_with_a_map_inset(oval, tmp_path) -> None:
    path = tmp_path / "run.gif"

    evaluate_expert(oval, max_steps=20, gif_path=path, gif_every=2)

    with Image.open(path) as gif:
        assert gif.n_frames == 10
        assert gif.size == (240, 240)
