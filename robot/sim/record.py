"""Recording training drives with the expert at the wheel, no person needed.

The simulator runs stepped, as fast as frames can be rendered and written,
and each frame is saved with the expert's label in the ordinary drive
format, so the trainer reads simulated drives like real ones. With noise on,
frames taken while a noise burst pushes the car off the line are recorded
with mode ``correction`` and the expert's corrective action as their label.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robot.sim.car import SimCar
from robot.sim.config import ExpertConfig, SimConfig
from robot.sim.expert import ExpertDriver
from robot.sim.render import Renderer
from robot.sim.track import Track, make_track
from shared.config import to_dict
from shared.drives import DriveWriter
from shared.errors import SimulationError

log = logging.getLogger(__name__)

#: Frames queued for the writer at most; recording waits above this.
_QUEUE_FRAMES = 1024
_MAX_BACKLOG = 768


def record_expert_drives(
    out_dir: str | Path,
    track: str | Track = "oval",
    seed: int = 0,
    minutes: float = 5.0,
    noise: float = 0.03,
    *,
    config: SimConfig | None = None,
    rate_hz: float = 20.0,
    drive_minutes: float = 5.0,
    both_directions: bool = True,
    on_drive: Callable[[Path, int], None] | None = None,
) -> list[Path]:
    """Record ``minutes`` of expert driving into new drives under ``out_dir``.

    Args:
        out_dir: the drives folder; each drive is a new folder in it.
        track: a shape name (oval, figure8, random) or a built ``Track``.
        seed: the world's seed: random track shape, floor, lighting, noise,
            start points and noise bursts.
        minutes: simulated driving time in all.
        noise: chance per control step that the expert starts a burst of
            wrong actions (0 records clean driving only).
        config: car, camera and expert settings (``config.expert.noise`` is
            replaced by ``noise``).
        rate_hz: control and frame rate, as the robot's drive loop.
        drive_minutes: longest single drive; longer recordings are split.
        both_directions: drive every other drive the other way round, so
            that left and right turns come out balanced.
        on_drive: called with each finished drive's folder and frame count.

    Returns:
        The folders of the drives written, in order.

    Raises:
        SimulationError: an argument is out of range or the world cannot be
            built.
        DriveError: a drive cannot be written (e.g. the disk is full).
    """
    if not minutes > 0 or not drive_minutes > 0 or not rate_hz > 0:
        raise SimulationError(
            f"recording of {minutes!r} min in drives of {drive_minutes!r} min at "
            f"{rate_hz!r} Hz is invalid; all three must be positive"
        )
    config = config or SimConfig()
    expert_config = dataclasses.replace(config.expert, noise=noise)
    base = track if isinstance(track, Track) else make_track(track, seed, config.track)
    rng = np.random.default_rng([seed, 4])

    drives = math.ceil(minutes / drive_minutes - 1e-9)
    total_steps = round(minutes * 60 * rate_hz)
    steps_per_drive = math.ceil(total_steps / drives)
    paths = []
    for number in range(drives):
        steps = min(steps_per_drive, total_steps - number * steps_per_drive)
        reverse = both_directions and number % 2 == 1
        world = base.reversed() if reverse else base
        start_s = float(rng.uniform(0, world.length_m))
        meta = {
            "sim": {
                "shape": base.shape,
                "seed": base.seed,
                "direction": "reversed" if reverse else "forward",
                "start_s": round(start_s, 3),
                "rate_hz": rate_hz,
                "noise": noise,
                "camera": to_dict(config.camera),
                "car": to_dict(config.car),
                "track": to_dict(config.track),
                "expert": to_dict(expert_config),
            }
        }
        path = _record_drive(
            Path(out_dir),
            world,
            config,
            expert_config,
            start_s,
            steps,
            rate_hz,
            render_seed=int(rng.integers(0, 2**31)),
            expert_seed=int(rng.integers(0, 2**31)),
            meta=meta,
        )
        paths.append(path)
        if on_drive is not None:
            on_drive(path, steps)
    return paths


def _record_drive(
    out_dir: Path,
    track: Track,
    config: SimConfig,
    expert_config: ExpertConfig,
    start_s: float,
    steps: int,
    rate_hz: float,
    *,
    render_seed: int,
    expert_seed: int,
    meta: dict,
) -> Path:
    """One drive: the expert drives ``steps`` control steps from ``start_s``."""
    dt_s = 1.0 / rate_hz
    car = SimCar(track.pose_at(start_s), config.car)
    expert = ExpertDriver(track, expert_config, seed=expert_seed)
    renderer = Renderer(track, config.camera, seed=render_seed)
    corrections = 0
    started = time.perf_counter()

    with DriveWriter.create(
        out_dir, car="sim", camera="sim", config=meta, queue_frames=_QUEUE_FRAMES
    ) as writer:
        for step in range(steps):
            # Frame first, then the action taken on it, as on the car.
            frame = renderer.render(car.pose)
            executed, label = expert.act(car.pose)
            mode = "correction" if expert.noisy else "user"
            corrections += expert.noisy
            while writer.appended - writer.written > _MAX_BACKLOG and not writer.error:
                time.sleep(0.005)
            writer.append(frame, label, mode=mode, t_mono_s=step * dt_s)
            car.drive(executed)
            car.step(dt_s)
            hint = expert.tracker.point.index
            point = track.nearest(car.pose.x_m, car.pose.y_m, hint=hint)
            if point.distance_m > track.half_width_m:
                log.warning(
                    "expert left the track at s=%.2f m; putting the car back",
                    point.s_m,
                )
                car.pose = track.pose_at(point.s_m)
    if writer.dropped:
        log.warning("%d frames of %s were dropped", writer.dropped, writer.path)
    log.info(
        "recorded %s: %d frames (%d corrections) in %.1f s",
        writer.path,
        writer.written,
        corrections,
        time.perf_counter() - started,
    )
    return writer.path
