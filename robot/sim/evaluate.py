"""Closed-loop evaluation: let a policy drive the simulated car and score it.

A policy is any callable that takes a 120x120x3 uint8 camera frame and
returns an action, so a TFLite pilot plugs in as it is. The car moves at a
fixed control rate, faster than real time, and the run is scored by what
matters on the floor:

- **laps**: net progress along the centre line in the direction of travel,
  in whole track lengths (driving backwards undoes progress; the
  figure-eight's crossing is never counted twice);
- **clean laps**: laps during which the car never left the track;
- **departures**: times the car's centre went from inside the edge lines to
  outside. By default the car is then put back on the nearest centre-line
  point, facing along the track, and the run goes on, so one mistake does
  not end the evaluation (and being put back gains no progress);
- **distance from the centre line**: mean and maximum, in metres.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from robot.sim.car import Pose, SimCar
from robot.sim.config import ExpertConfig, SimConfig
from robot.sim.expert import ExpertDriver
from robot.sim.render import Renderer, TopDownMap
from robot.sim.track import ProgressTracker, Track, make_track
from shared.actions import ACTION_LABELS, Action
from shared.errors import SimulationError

log = logging.getLogger(__name__)

#: A policy: camera frame in, action out.
Policy = Callable[[np.ndarray], Action]

#: At most this many frames go into a GIF; later ones are left out.
MAX_GIF_FRAMES = 900


@dataclass(frozen=True)
class EvaluationResult:
    """How a policy drove: laps, departures, distance from the centre line."""

    track: str
    seed: int
    #: Control steps run, one camera frame each.
    frames: int
    rate_hz: float
    duration_s: float
    laps: int
    #: Laps completed without leaving the track.
    clean_laps: int
    departures: int
    #: Whether the car was put back on the centre line after each departure.
    reset_on_departure: bool
    mean_distance_m: float
    max_distance_m: float
    #: Net distance driven along the centre line, in metres.
    progress_m: float
    track_length_m: float
    lap_times_s: tuple[float, ...]
    #: How often each action was taken, by label.
    actions: dict[str, int] = field(default_factory=dict)

    @property
    def mean_lap_time_s(self) -> float:
        """Mean time of the completed laps; NaN when there were none."""
        return float(np.mean(self.lap_times_s)) if self.lap_times_s else math.nan

    @property
    def departures_per_minute(self) -> float:
        return self.departures / (self.duration_s / 60) if self.duration_s else 0.0

    def summary(self) -> str:
        """One line for a log or a report."""
        lap_time = f", {self.mean_lap_time_s:.1f} s per lap" if self.lap_times_s else ""
        return (
            f"{self.track} seed {self.seed}: {self.laps} laps ({self.clean_laps} "
            f"clean){lap_time}, {self.departures} departures in "
            f"{self.duration_s:.0f} s, centre-line distance mean "
            f"{self.mean_distance_m * 100:.1f} cm, "
            f"max {self.max_distance_m * 100:.1f} cm"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, with the mean lap time (null without laps)."""
        data = asdict(self)
        data["lap_times_s"] = list(self.lap_times_s)
        data["mean_lap_time_s"] = (
            None if math.isnan(self.mean_lap_time_s) else self.mean_lap_time_s
        )
        return data


def evaluate(
    policy: Policy,
    track: str | Track = "oval",
    seed: int = 0,
    *,
    duration_s: float | None = 60.0,
    max_steps: int | None = None,
    rate_hz: float = 20.0,
    config: SimConfig | None = None,
    reset_on_departure: bool = True,
    gif_path: str | Path | None = None,
    gif_every: int = 2,
) -> EvaluationResult:
    """Drive ``policy`` round ``track`` and score it.

    Args:
        policy: called with each camera frame, returns an ``Action`` (or
            anything ``Action.parse`` takes).
        track: a shape name (oval, figure8, random) or a built ``Track``.
        seed: the world's seed when ``track`` is a name (shape of the random
            track, floor, lighting, camera noise).
        duration_s: simulated time to drive; ``max_steps`` wins when given.
        rate_hz: control rate: one frame and one action per step.
        config: track, car and camera settings (defaults when ``None``).
        reset_on_departure: put the car back on the centre line after it
            leaves the track (otherwise it drives on from where it is).
        gif_path: also write an animated GIF of the run there.
        gif_every: keep every n-th frame in the GIF.

    Raises:
        SimulationError: the world cannot be built or the run length is
            invalid.
        UnknownActionError: the policy returned something that is not an
            action.
    """

    def drive(frame: np.ndarray | None, pose: Pose) -> tuple[Action, Action]:
        action = Action.parse(policy(frame))
        return action, action

    return _run(
        drive,
        track,
        seed,
        duration_s=duration_s,
        max_steps=max_steps,
        rate_hz=rate_hz,
        config=config,
        reset_on_departure=reset_on_departure,
        needs_frames=True,
        gif_path=gif_path,
        gif_every=gif_every,
    )


def evaluate_expert(
    track: str | Track = "oval",
    seed: int = 0,
    *,
    duration_s: float | None = 60.0,
    max_steps: int | None = None,
    rate_hz: float = 20.0,
    config: SimConfig | None = None,
    expert: ExpertConfig | None = None,
    reset_on_departure: bool = True,
    gif_path: str | Path | None = None,
    gif_every: int = 2,
) -> EvaluationResult:
    """Score the pure-pursuit expert as ``evaluate`` scores a policy.

    The expert reads the car's pose, not the camera, so frames are rendered
    only for a GIF. ``expert`` defaults to ``config.expert`` (noise included).
    """
    config = config or SimConfig()
    built = _build_track(track, seed, config)
    driver = ExpertDriver(built, expert or config.expert, seed=seed)

    def drive(frame: np.ndarray | None, pose: Pose) -> tuple[Action, Action]:
        return driver.act(pose)

    return _run(
        drive,
        built,
        seed,
        duration_s=duration_s,
        max_steps=max_steps,
        rate_hz=rate_hz,
        config=config,
        reset_on_departure=reset_on_departure,
        needs_frames=False,
        gif_path=gif_path,
        gif_every=gif_every,
    )


def _build_track(track: str | Track, seed: int, config: SimConfig) -> Track:
    if isinstance(track, Track):
        return track
    return make_track(track, seed, config.track)


def _run(
    drive: Callable[[np.ndarray | None, Pose], tuple[Action, Action]],
    track: str | Track,
    seed: int,
    *,
    duration_s: float | None,
    max_steps: int | None,
    rate_hz: float,
    config: SimConfig | None,
    reset_on_departure: bool,
    needs_frames: bool,
    gif_path: str | Path | None,
    gif_every: int,
) -> EvaluationResult:
    """The evaluation loop shared by policies and the expert."""
    config = config or SimConfig()
    if not rate_hz > 0:
        raise SimulationError(f"control rate {rate_hz!r} Hz must be positive")
    if max_steps is None:
        if duration_s is None or not duration_s > 0:
            raise SimulationError(
                f"run length {duration_s!r} s is invalid; give a positive "
                "duration_s or max_steps"
            )
        max_steps = round(duration_s * rate_hz)
    if max_steps < 1:
        raise SimulationError(f"max_steps {max_steps!r} must be at least 1")
    track = _build_track(track, seed, config)
    dt_s = 1.0 / rate_hz

    # The world: car on the start line, a camera, and a tracker for progress.
    car = SimCar(track.pose_at(0.0), config.car)
    tracker = ProgressTracker(track)
    tracker.update(car.pose.x_m, car.pose.y_m)
    recording = gif_path is not None
    renderer = Renderer(track, config.camera) if needs_frames or recording else None
    gif = _GifFrames(track, gif_every) if recording else None

    laps = clean_laps = departures = 0
    lap_clean = True
    last_lap_step = 0
    lap_times: list[float] = []
    distances = np.empty(max_steps)
    actions: Counter[Action] = Counter()
    on_track = True

    for step in range(max_steps):
        # See, act, move.
        frame = renderer.render(car.pose) if renderer is not None else None
        executed, label = drive(frame if needs_frames else None, car.pose)
        actions[executed] += 1
        if gif is not None and frame is not None:
            gif.add(step, frame, car.pose, executed)
        car.drive(executed)
        car.step(dt_s)

        # Score: distance from the line, departures, laps.
        point = tracker.update(car.pose.x_m, car.pose.y_m)
        distances[step] = point.distance_m
        now_on_track = point.distance_m <= track.half_width_m
        if on_track and not now_on_track:
            departures += 1
            lap_clean = False
            log.debug("departure %d at step %d, s=%.2f m", departures, step, point.s_m)
            if reset_on_departure:
                car.pose = track.pose_at(point.s_m)
                point = tracker.update(car.pose.x_m, car.pose.y_m)
                now_on_track = True
        on_track = now_on_track
        while tracker.progress_m >= (laps + 1) * track.length_m:
            laps += 1
            clean_laps += lap_clean
            lap_clean = True
            lap_times.append((step + 1 - last_lap_step) * dt_s)
            last_lap_step = step + 1

    if gif is not None:
        gif.write(Path(gif_path), rate_hz)
    result = EvaluationResult(
        track=track.shape,
        seed=track.seed,
        frames=max_steps,
        rate_hz=rate_hz,
        duration_s=max_steps * dt_s,
        laps=laps,
        clean_laps=clean_laps,
        departures=departures,
        reset_on_departure=reset_on_departure,
        mean_distance_m=float(distances.mean()),
        max_distance_m=float(distances.max()),
        progress_m=float(tracker.progress_m),
        track_length_m=track.length_m,
        lap_times_s=tuple(lap_times),
        actions={label: actions[Action[label.upper()]] for label in ACTION_LABELS},
    )
    log.info("evaluation: %s", result.summary())
    return result


class _GifFrames:
    """Collects camera frames with a map inset and the action, for a GIF."""

    def __init__(self, track: Track, every: int) -> None:
        if every < 1:
            raise SimulationError(f"gif_every {every!r} must be at least 1")
        self.every = every
        self.map = TopDownMap(track, 80)
        self.images: list[Image.Image] = []

    def add(self, step: int, frame: np.ndarray, pose: Pose, action: Action) -> None:
        if step % self.every or len(self.images) >= MAX_GIF_FRAMES:
            return
        image = Image.fromarray(frame).resize((240, 240), Image.Resampling.NEAREST)
        image.paste(Image.fromarray(self.map.draw(pose)), (240 - 84, 4))
        ImageDraw.Draw(image).text((6, 224), action.label, fill=(255, 255, 255))
        self.images.append(image)

    def write(self, path: Path, rate_hz: float) -> None:
        write_gif(path, self.images, rate_hz / self.every)


def write_gif(path: str | Path, images: list[Image.Image], fps: float) -> Path:
    """Save ``images`` as a looping animated GIF at ``fps`` frames per second."""
    if not images:
        raise SimulationError(f"no frames to write to {str(path)!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
    )
    log.info("wrote %d frames to %s", len(images), path)
    return path
