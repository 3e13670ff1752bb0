"""The closed-loop objective: how well a trained model drives the simulator.

With ``--objective laps`` each run is scored by driving, not by validation
accuracy. The Keras model is converted to a float32 TFLite model, loaded by
``robot.pilot.Pilot`` (the code that runs on the car) and drives each
evaluation world for ``eval_minutes`` of simulated time; the simulator's
noise-free expert drives the same worlds for the same time. The score is::

    laps = max(0, mean_w min(1, C_w / E_w) - DEPARTURE_PENALTY * D / T)

where ``C_w`` and ``E_w`` are the model's and the expert's clean laps on
world ``w``, ``D`` the model's departures over all worlds and ``T`` the
simulated minutes over all worlds (``DEPARTURE_PENALTY`` is 0.1 per
departure per minute). 1 means as many clean laps as the expert on every
world and no departure; a model that never leaves the start line scores 0.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

log = logging.getLogger(__name__)

#: The worlds a run drives unless told otherwise: track shapes and floors
#: the expert's default training drives need not contain.
DEFAULT_EVAL_TRACKS = "figure8:0,random:7"
#: Simulated minutes per world: two figure-eight laps of the expert.
DEFAULT_EVAL_MINUTES = 1.0
#: Score taken off per departure per simulated minute.
DEPARTURE_PENALTY = 0.1
#: One line for --help.
FORMULA = (
    "mean over the worlds of min(1, model clean laps / expert clean laps), "
    f"minus {DEPARTURE_PENALTY} per departure per simulated minute, floored at 0"
)


def check_eval_worlds(tracks: str, minutes: float) -> list[Any]:
    """The worlds named by ``tracks`` (``"figure8:0,random:7"``), each checked
    to be buildable and long enough for the expert to drive a clean lap.

    Returns:
        ``trainer.evaluate.TrackSpec`` of each world.

    Raises:
        ConfigError: a track is unknown or cannot be built, ``minutes`` is not
            positive, or the expert drives no clean lap in that time.
    """
    from shared.errors import SimulationError
    from trainer.evaluate import parse_tracks

    if not (isinstance(minutes, (int, float)) and minutes > 0):
        raise ConfigError(
            f"--eval-minutes {minutes!r} must be a positive number of simulated "
            "minutes per evaluation world, e.g. 1"
        )
    try:
        specs = parse_tracks(tracks, [0])
    except ConfigError as err:
        raise ConfigError(f"--eval-tracks: {err}") from err
    for spec in specs:
        try:
            expert = _expert_clean_laps(spec.shape, spec.seed, minutes * 60)
        except SimulationError as err:
            raise ConfigError(f"--eval-tracks {tracks!r}: {err}") from err
        if expert < 1:
            raise ConfigError(
                f"the expert drives no clean lap of {spec.name} in --eval-minutes "
                f"{minutes!r}, so a model cannot be compared with it there; give "
                "more minutes"
            )
    return specs


def laps_score(worlds: Sequence[dict[str, Any]]) -> float:
    """The objective from per-world figures (see the module's formula).

    Each world has ``clean_laps``, ``expert_clean_laps`` (at least 1),
    ``departures`` and ``duration_s``.
    """
    if not worlds:
        return float("nan")
    ratios = [min(1.0, w["clean_laps"] / w["expert_clean_laps"]) for w in worlds]
    minutes = sum(w["duration_s"] for w in worlds) / 60
    departures = sum(w["departures"] for w in worlds)
    penalty = DEPARTURE_PENALTY * departures / minutes
    return max(0.0, sum(ratios) / len(ratios) - penalty)


def drive_keras_model(keras_model: Any, tracks: str, minutes: float) -> dict[str, Any]:
    """Convert ``keras_model`` to float32 TFLite, drive it with the car's pilot
    on each world, and score it.

    Returns:
        ``{"score", "clean_laps", "expert_clean_laps", "departures",
        "minutes", "worlds": [...]}``, one entry per world with the model's
        laps, clean laps, departures and the expert's clean laps.

    Raises:
        ConfigError: the worlds are invalid (``check_eval_worlds``).
        ModelError: the model cannot be converted or loaded.
    """
    from robot.pilot import Pilot
    from robot.sim.evaluate import evaluate
    from shared.config import RobotConfig
    from shared.modelcard import (
        CARD_NAME,
        MODEL_NAME,
        ModelCard,
        sha256_file,
        write_atomic,
    )
    from trainer.export import convert_to_tflite

    specs = check_eval_worlds(tracks, minutes)
    rate_hz = RobotConfig().loop_rate_hz
    model_bytes = convert_to_tflite(keras_model, "float32")

    worlds = []
    with tempfile.TemporaryDirectory(prefix="malpi-laps-") as tmp:
        # The car's code path: model.tflite and its card, loaded by Pilot.
        folder = Path(tmp)
        write_atomic(folder / MODEL_NAME, model_bytes)
        ModelCard(
            model_sha256=sha256_file(folder / MODEL_NAME), quantization="float32"
        ).save(folder / CARD_NAME)
        pilot = Pilot.load(folder)

        def policy(frame: Any) -> Any:
            return pilot.predict(frame).action

        for spec in specs:
            driven = evaluate(
                policy, spec.shape, spec.seed, duration_s=minutes * 60, rate_hz=rate_hz
            )
            worlds.append(
                {
                    "track": spec.name,
                    "laps": driven.laps,
                    "clean_laps": driven.clean_laps,
                    "departures": driven.departures,
                    "duration_s": driven.duration_s,
                    "expert_clean_laps": _expert_clean_laps(
                        spec.shape, spec.seed, minutes * 60
                    ),
                }
            )
    return {
        "score": laps_score(worlds),
        "clean_laps": sum(w["clean_laps"] for w in worlds),
        "expert_clean_laps": sum(w["expert_clean_laps"] for w in worlds),
        "departures": sum(w["departures"] for w in worlds),
        "minutes": sum(w["duration_s"] for w in worlds) / 60,
        "worlds": worlds,
    }


def describe(record: dict[str, Any]) -> str:
    """``laps 0.50: 3 of 5 expert clean laps, 1 departure in 2.0 min``."""
    return (
        f"laps {record['score']:.2f}: {record['clean_laps']} of "
        f"{record['expert_clean_laps']} expert clean laps, {record['departures']} "
        f"departures in {record['minutes']:.1f} min"
    )


@functools.lru_cache(maxsize=64)
def _expert_clean_laps(shape: str, seed: int, duration_s: float) -> int:
    """The noise-free expert's clean laps on one world (the same every time)."""
    from robot.sim.config import SimConfig
    from robot.sim.evaluate import evaluate_expert
    from shared.config import RobotConfig
    from trainer.evaluate import clean_expert

    config = SimConfig()
    result = evaluate_expert(
        shape,
        seed,
        duration_s=duration_s,
        rate_hz=RobotConfig().loop_rate_hz,
        config=config,
        expert=clean_expert(config),
    )
    return result.clean_laps
