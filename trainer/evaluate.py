"""Closed-loop evaluation of an exported model on the simulator.

Validation accuracy only hints at how a model drives; here the TFLite model
drives the simulated car through ``robot.pilot.Pilot``, the code that runs
on the car, round the tracks asked for, and the simulator's pure-pursuit
expert drives the same tracks for comparison. Each run counts laps,
departures from the track and the distance from the centre line
(``robot.sim.evaluate``). Nothing here needs TensorFlow.

A track is named ``shape`` or ``shape:seed`` (``oval``, ``figure8``,
``random:7``). A track without its own seed is driven once per seed of
``seeds``: the seed picks the random track's shape and every world's floor,
lighting and camera noise, so two seeds of the oval are two rooms.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot.pilot import Pilot
from robot.sim.config import TRACK_SHAPES, ExpertConfig, SimConfig
from robot.sim.evaluate import EvaluationResult, evaluate, evaluate_expert
from robot.sim.render import ground_offsets
from robot.sim.track import Track, make_track
from shared.config import RobotConfig
from shared.errors import ConfigError, ModelError, SimulationError
from shared.modelcard import CARD_NAME

log = logging.getLogger(__name__)

#: The expert may take this much longer than ``laps`` of its own lap time
#: before a ``--laps`` evaluation gives up on it.
_EXPERT_LAP_BUDGET = 4.0
#: A ``--laps N`` run lasts the expert's time for N laps times this.
LAPS_TIME_FACTOR = 1.25
#: Export folders of a search, in the order a search folder is evaluated.
EXPORT_PREFERENCE = ("int8", "float32")


@dataclass(frozen=True)
class TrackSpec:
    """One world to drive: a track shape and the seed of its world."""

    shape: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.shape}:{self.seed}"


@dataclass(frozen=True)
class TrackResult:
    """The model's and the expert's runs on one world."""

    spec: TrackSpec
    expert: EvaluationResult
    #: None with ``expert_only``.
    model: EvaluationResult | None = None
    gif_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "track": self.spec.shape,
            "seed": self.spec.seed,
            "model": None if self.model is None else self.model.to_dict(),
            "expert": self.expert.to_dict(),
            "gif": None if self.gif_path is None else str(self.gif_path),
        }


def parse_seeds(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``.

    Raises:
        ConfigError: an item is not an integer, or there is none.
    """
    seeds = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            seeds.append(int(item))
        except ValueError as err:
            raise ConfigError(
                f"seed {item!r} in --seeds {text!r} is not an integer; give a "
                "comma-separated list such as 1,2"
            ) from err
    if not seeds:
        raise ConfigError(f"--seeds {text!r} names no seed; give e.g. 0 or 1,2")
    return seeds


def parse_tracks(text: str, seeds: Sequence[int]) -> list[TrackSpec]:
    """``"oval,random:7"`` with seeds ``[1, 2]`` -> oval:1, oval:2, random:7.

    Raises:
        ConfigError: a shape is unknown, a seed is not an integer, or no track
            is named.
    """
    specs: list[TrackSpec] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        shape, _, seed_text = item.partition(":")
        shape = shape.strip().lower()
        if shape not in TRACK_SHAPES:
            raise ConfigError(
                f"track {item!r} has an unknown shape {shape!r}; use one of "
                f"{', '.join(TRACK_SHAPES)}, optionally with :SEED (random:7)"
            )
        if seed_text.strip():
            try:
                specs.append(TrackSpec(shape, int(seed_text)))
            except ValueError as err:
                raise ConfigError(
                    f"track {item!r} has seed {seed_text!r}, not an integer; "
                    "write it as shape:SEED, e.g. random:7"
                ) from err
        else:
            specs.extend(TrackSpec(shape, seed) for seed in seeds)
    if not specs:
        raise ConfigError(
            f"--tracks {text!r} names no track; give e.g. oval,figure8,random:7"
        )
    return list(dict.fromkeys(specs))


def find_model(path: str | Path) -> Path:
    """The model to evaluate: a ``.tflite`` file, its folder, or a search
    folder (its int8 export, else its float32 export).

    Raises:
        ModelError: ``path`` is none of these.
    """
    path = Path(path).expanduser()
    if path.is_file() or (path / CARD_NAME).is_file():
        return path
    for kind in EXPORT_PREFERENCE:
        candidate = path / "export" / kind
        if (candidate / CARD_NAME).is_file():
            return candidate
    if (path / "search.json").is_file():
        raise ModelError(
            f"search {str(path)!r} has no export yet; run `trainer export {path}` first"
        )
    raise ModelError(
        f"{str(path)!r} is neither a model (model.tflite, or a folder with it and "
        f"{CARD_NAME}) nor a search folder with an export; give one of them"
    )


def build_worlds(
    specs: Sequence[TrackSpec], config: SimConfig
) -> list[tuple[TrackSpec, Track]]:
    """Build every track and check the camera first, so that a bad track or
    camera fails before anything slow runs.

    Raises:
        SimulationError: a track cannot be built for its seed, or the camera
            sees no floor.
    """
    ground_offsets(config.camera)
    return [(spec, make_track(spec.shape, spec.seed, config.track)) for spec in specs]


def duration_for_laps(
    track: Track, laps: int, config: SimConfig, rate_hz: float
) -> float:
    """Seconds a ``laps``-lap evaluation lasts on ``track``: the expert's own
    time for that many laps, times ``LAPS_TIME_FACTOR``.

    Raises:
        SimulationError: ``laps`` is not positive, or the expert cannot drive
            that many laps on this track.
    """
    if laps < 1:
        raise SimulationError(f"--laps {laps!r} must be 1 or more")
    fastest_lap_s = track.length_m / config.car.speed_m_s
    budget_s = _EXPERT_LAP_BUDGET * laps * fastest_lap_s
    expert = evaluate_expert(
        track,
        track.seed,
        duration_s=budget_s,
        rate_hz=rate_hz,
        config=config,
        expert=clean_expert(config),
    )
    if expert.laps < laps:
        raise SimulationError(
            f"the expert drove only {expert.laps} of {laps} laps of the "
            f"{track.shape} track (seed {track.seed}) in {budget_s:.0f} s; check "
            "the car and expert settings of the simulator config"
        )
    return math.ceil(LAPS_TIME_FACTOR * sum(expert.lap_times_s[:laps]))


def clean_expert(config: SimConfig) -> ExpertConfig:
    """The expert of ``config`` without noise: the baseline to compare with."""
    return dataclasses.replace(config.expert, noise=0.0)


def gif_path_for(gif: Path, spec: TrackSpec, runs: int) -> Path:
    """``OUT.gif`` for a single run, ``OUT-<shape>-<seed>.gif`` for several."""
    if runs == 1:
        return gif
    return gif.with_name(f"{gif.stem}-{spec.shape}-{spec.seed}{gif.suffix or '.gif'}")


def evaluate_model(
    model: str | Path | None,
    specs: Sequence[TrackSpec],
    *,
    duration_s: float | None = 60.0,
    laps: int | None = None,
    rate_hz: float | None = None,
    config: SimConfig | None = None,
    gif: str | Path | None = None,
    gif_every: int = 4,
    on_result: Callable[[TrackResult], None] | None = None,
) -> list[TrackResult]:
    """Drive ``model`` (None: the expert alone) and the expert on each world.

    Args:
        model: a ``.tflite`` file, its folder or a search folder; None for an
            expert-only evaluation.
        specs: the worlds (``parse_tracks``).
        duration_s: simulated seconds per run, unless ``laps`` is given.
        laps: run as long as the expert needs for this many laps (times
            ``LAPS_TIME_FACTOR``), on each world.
        rate_hz: control rate, one frame and one action per step (default:
            the robot's drive loop rate).
        config: track, car and camera settings (defaults when None).
        gif: write an animated GIF of each model run (of the expert's with
            no model) there.
        gif_every: keep every n-th frame in the GIF.
        on_result: called with each world's result as it finishes.

    Raises:
        ModelError, ModelCardError: the model cannot be loaded or does not fit
            this car.
        SimulationError: a track cannot be built, the camera sees no floor, or
            the run length is invalid.
    """
    config = config or SimConfig()
    rate_hz = rate_hz or RobotConfig().loop_rate_hz
    if laps is None and (duration_s is None or not duration_s > 0):
        raise SimulationError(
            f"run length {duration_s!r} s is invalid; give positive minutes or laps"
        )
    if laps is not None and laps < 1:
        raise SimulationError(f"--laps {laps!r} must be 1 or more")

    # Everything that can be refused is checked before the first run.
    worlds = build_worlds(specs, config)
    pilot = None if model is None else Pilot.load(find_model(model))
    if pilot is not None:
        log.info(
            "evaluating %s (%s, %s)", pilot.name, pilot.card.quantization, pilot.runtime
        )

    def policy(frame: np.ndarray) -> Any:
        return pilot.predict(frame).action

    results = []
    for spec, track in worlds:
        seconds = (
            duration_for_laps(track, laps, config, rate_hz) if laps else duration_s
        )
        gif_path = None if gif is None else gif_path_for(Path(gif), spec, len(worlds))
        expert = evaluate_expert(
            track,
            spec.seed,
            duration_s=seconds,
            rate_hz=rate_hz,
            config=config,
            expert=clean_expert(config),
            gif_path=gif_path if pilot is None else None,
            gif_every=gif_every,
        )
        driven = None
        if pilot is not None:
            driven = evaluate(
                policy,
                track,
                spec.seed,
                duration_s=seconds,
                rate_hz=rate_hz,
                config=config,
                gif_path=gif_path,
                gif_every=gif_every,
            )
        result = TrackResult(spec, expert, driven, gif_path)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def sim_config(
    path: str | Path | None = None,
    *,
    camera_pitch_deg: float | None = None,
    camera_height_m: float | None = None,
) -> SimConfig:
    """The simulator's settings: a TOML file's (or the defaults), with the
    camera pose overridden when given.

    Raises:
        ConfigError: the file is missing or has bad keys.
        SimulationError: a value is out of range.
    """
    from shared.config import load_config

    config = load_config(SimConfig, path)
    camera = config.camera
    if camera_pitch_deg is not None:
        camera = dataclasses.replace(camera, pitch_deg=camera_pitch_deg)
    if camera_height_m is not None:
        camera = dataclasses.replace(camera, height_m=camera_height_m)
    return dataclasses.replace(config, camera=camera)


# --- the table -----------------------------------------------------------------


def format_table(results: Sequence[TrackResult]) -> str:
    """Per world: the model's row and the expert's beneath it."""
    header = (
        f"{'track':<10}{'seed':>5}  {'driver':<7}{'laps':>5}{'clean':>6}"
        f"{'departures':>11}{'mean cm':>9}{'max cm':>8}{'lap s':>7}{'time s':>8}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        rows = [("model", result.model)] if result.model is not None else []
        rows.append(("expert", result.expert))
        for number, (driver, run) in enumerate(rows):
            where = (
                f"{result.spec.shape:<10}{result.spec.seed:>5}"
                if number == 0
                else " " * 15
            )
            lap_s = (
                "-" if math.isnan(run.mean_lap_time_s) else f"{run.mean_lap_time_s:.1f}"
            )
            lines.append(
                f"{where}  {driver:<7}{run.laps:>5}{run.clean_laps:>6}"
                f"{run.departures:>11}{run.mean_distance_m * 100:>9.1f}"
                f"{run.max_distance_m * 100:>8.1f}{lap_s:>7}{run.duration_s:>8.0f}"
            )
    if any(r.model is not None for r in results) and len(results) > 1:
        models = [r.model for r in results if r.model is not None]
        experts = [r.expert for r in results]
        lines.append("-" * len(header))
        lines.append(_total_row("all", "model", models))
        lines.append(_total_row("", "expert", experts))
    return "\n".join(lines)


def _total_row(label: str, driver: str, runs: Sequence[EvaluationResult]) -> str:
    laps = sum(r.laps for r in runs)
    clean = sum(r.clean_laps for r in runs)
    departures = sum(r.departures for r in runs)
    frames = sum(r.frames for r in runs)
    mean_cm = sum(r.mean_distance_m * r.frames for r in runs) / frames * 100
    max_cm = max(r.max_distance_m for r in runs) * 100
    lap_times = [t for r in runs for t in r.lap_times_s]
    lap_s = f"{np.mean(lap_times):.1f}" if lap_times else "-"
    seconds = sum(r.duration_s for r in runs)
    return (
        f"{label:<15}  {driver:<7}{laps:>5}{clean:>6}{departures:>11}"
        f"{mean_cm:>9.1f}{max_cm:>8.1f}{lap_s:>7}{seconds:>8.0f}"
    )
