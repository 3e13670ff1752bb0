"""The whole loop on the simulator: record, train, export, drive new tracks.

The expert records drives with noise injection (so that the learner sees
recoveries) on an oval and two random tracks (tile and wood floors); a
one-trial search trains the seed's CNN through the trainer's own command
line; ``trainer export`` makes the int8 TFLite model the car runs; and
``robot.pilot.Pilot``, the car's runtime, must then drive a full lap of the
figure-eight and of another random track on a carpet, shapes and a floor it
never saw, without leaving the track.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot.sim.record import record_expert_drives
from trainer.cli import main as trainer
from trainer.evaluate import TrackSpec, evaluate_model

pytestmark = pytest.mark.slow

#: Training worlds: (shape, seed, simulated minutes of expert driving).
TRAINING_TRACKS = (("oval", 0, 1.0), ("random", 1, 1.0), ("random", 2, 1.0))
#: Chance per control step that the expert starts a burst of wrong actions.
NOISE = 0.03
#: The one configuration trained (a fixed point of the seed's space).
SPACE = {
    "learning_rate": 0.001,
    "l2_reg": 1e-5,
    "batch_size": 32,
    "dropouts": "low",
    "optimizer": "adam",
    "head": "dk",
}
EPOCHS = 4
#: Held-out worlds (shapes and a carpet floor never trained on), and how
#: long the pilot drives each.
TEST_TRACKS = (TrackSpec("figure8", 0), TrackSpec("random", 7))
TEST_MINUTES = 1.0


def test_end_to_end_pilot_drives_a_lap_of_a_track_it_never_saw(
    tmp_path: Path,
) -> None:
    drives = tmp_path / "drives"
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))

    # Record: the expert drives each training world, both ways round.
    for shape, seed, minutes in TRAINING_TRACKS:
        record_expert_drives(
            drives, shape, seed, minutes=minutes, noise=NOISE, drive_minutes=minutes / 2
        )

    # Train: a one-trial search through the real command line.
    search = [
        "search",
        str(drives),
        "--project",
        str(tmp_path),
        "--name",
        "e2e",
        "--space",
        str(space),
        "--trials",
        "1",
        "--epochs",
        str(EPOCHS),
        "--top-k",
        "0",
        "--seed",
        "0",
    ]
    assert trainer(["--quiet", *search]) == 0

    # Export: the int8 model the car would run, checked against Keras.
    folder = tmp_path / "searches" / "e2e"
    assert trainer(["--quiet", "export", str(folder), "--quantize", "int8"]) == 0

    # Drive: the car's own pilot on track shapes it was not trained on.
    results = evaluate_model(folder, TEST_TRACKS, duration_s=TEST_MINUTES * 60)
    for result in results:
        model = result.model
        assert model is not None
        summary = f"model: {model.summary()}; expert: {result.expert.summary()}"
        assert model.clean_laps >= 1, summary
        assert model.departures == 0, summary
