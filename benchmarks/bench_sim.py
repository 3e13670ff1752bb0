"""Benchmark the simulator: camera frames per second, and what they buy.

Measures, on one core:

- the renderer (``robot.sim.render.Renderer``), bilinear and nearest, on
  the oval, figure-eight and a random track, along poses of a real expert
  lap so that every frame sees a different part of the floor;
- two plain per-frame baselines for the ratio: numpy that works out the
  rays again for every frame and draws fresh noise (``naive numpy``), and a
  pure-Python loop over the pixels (``python loop``, a few frames only);
- closed-loop evaluation of a policy (simulated seconds per wall second) and
  expert recording into drives (frames per second, JPEG writing included).

Target: at least 500 bilinear frames per second on every track; the exit
code is 1 when it is missed.

Run with ``make bench-sim`` or::

    .venv/bin/python benchmarks/bench_sim.py [--frames 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robot.sim.car import Pose, SimCar  # noqa: E402
from robot.sim.config import SimCameraConfig  # noqa: E402
from robot.sim.evaluate import evaluate  # noqa: E402
from robot.sim.expert import ExpertDriver  # noqa: E402
from robot.sim.record import record_expert_drives  # noqa: E402
from robot.sim.render import Renderer, ground_offsets  # noqa: E402
from robot.sim.track import Track, make_track  # noqa: E402
from shared.actions import Action  # noqa: E402
from shared.frames import FRAME_SHAPE  # noqa: E402

TARGET_FPS = 500.0
TRACKS = (("oval", 0), ("figure8", 0), ("random", 1))


def lap_poses(track: Track, count: int) -> list[Pose]:
    """``count`` poses of the expert driving the track at 20 Hz."""
    car = SimCar(track.pose_at(0.0))
    expert = ExpertDriver(track)
    poses = []
    for _ in range(count):
        poses.append(car.pose)
        car.drive(expert.act(car.pose)[0])
        car.step(0.05)
    return poses


def frames_per_second(render, poses: list[Pose], repeats: int = 3) -> float:
    """Best of ``repeats`` passes over ``poses``, in frames per second."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for pose in poses:
            render(pose)
        best = min(best, time.perf_counter() - started)
    return len(poses) / best


def naive_numpy(track: Track, config: SimCameraConfig):
    """A plain renderer: rays, nearest gather and noise worked out per frame."""
    floor = track.floor
    rows, cols = floor.shape_px
    wall = np.array(track.appearance.wall_top_rgb)
    rng = np.random.default_rng(0)

    def render(pose: Pose) -> np.ndarray:
        forward, left, _ = ground_offsets(config)
        c, s = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
        x = pose.x_m + c * forward - s * left
        y = pose.y_m + s * forward + c * left
        col = np.floor((x - floor.origin_x_m) / floor.resolution_m).astype(int)
        row = np.floor((y - floor.origin_y_m) / floor.resolution_m).astype(int)
        inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        image = np.where(
            inside[..., None],
            floor.rgb[np.clip(row, 0, rows - 1), np.clip(col, 0, cols - 1)],
            wall,
        ).astype(float)
        image += rng.normal(0, track.appearance.noise_sigma, image.shape)
        return np.clip(image, 0, 255).astype(np.uint8)

    return render


def python_loop(track: Track, config: SimCameraConfig):
    """The most direct renderer: one ray per pixel, in pure Python."""
    floor = track.floor
    rows, cols = floor.shape_px
    size = FRAME_SHAPE[0]
    focal = (size / 2) / math.tan(math.radians(config.fov_deg) / 2)
    pitch = config.pitch_rad
    wall = tuple(int(v) for v in track.appearance.wall_top_rgb)

    def render(pose: Pose) -> np.ndarray:
        image = np.empty(FRAME_SHAPE, dtype=np.uint8)
        c, s = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
        for v in range(size):
            yn = (v + 0.5 - size / 2) / focal
            for u in range(size):
                xn = (u + 0.5 - size / 2) / focal
                up = -math.sin(pitch) - yn * math.cos(pitch)
                colour = wall
                if up < 0:
                    t = config.height_m / -up
                    fwd = config.forward_offset_m + t * (
                        math.cos(pitch) - yn * math.sin(pitch)
                    )
                    lft = -t * xn
                    x = pose.x_m + c * fwd - s * lft
                    y = pose.y_m + s * fwd + c * lft
                    col = int((x - floor.origin_x_m) / floor.resolution_m)
                    row = int((y - floor.origin_y_m) / floor.resolution_m)
                    if 0 <= col < cols and 0 <= row < rows:
                        colour = floor.rgb[row, col]
                image[v, u] = colour
        return image

    return render


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="per measurement")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    figures: dict[str, object] = {"target_fps": TARGET_FPS}

    # Renderer speed on each track, and the baselines on the oval.
    print(f"{'track':<10} {'renderer':<14} {'frames/s':>10}")
    rendered = {}
    for shape, seed in TRACKS:
        track = make_track(shape, seed)
        poses = lap_poses(track, args.frames)
        for mode in ("bilinear", "nearest"):
            renderer = Renderer(track, SimCameraConfig(interpolation=mode))
            fps = frames_per_second(renderer.render, poses)
            rendered[f"{shape}/{mode}"] = fps
            print(f"{shape:<10} {mode:<14} {fps:>10.0f}")
    oval = make_track("oval", 0)
    poses = lap_poses(oval, args.frames)
    camera = SimCameraConfig()
    naive = frames_per_second(naive_numpy(oval, camera), poses[:200], repeats=1)
    loop = frames_per_second(python_loop(oval, camera), poses[:3], repeats=1)
    print(f"{'oval':<10} {'naive numpy':<14} {naive:>10.0f}")
    print(f"{'oval':<10} {'python loop':<14} {loop:>10.1f}")
    bilinear = rendered["oval/bilinear"]
    print(
        f"bilinear is {bilinear / naive:.1f}x the naive numpy renderer and "
        f"{bilinear / loop:.0f}x the Python loop"
    )
    figures["render_fps"] = rendered
    figures["naive_numpy_fps"] = naive
    figures["python_loop_fps"] = loop

    # Closed-loop evaluation of a trivial policy: the cost of the loop itself.
    started = time.perf_counter()
    result = evaluate(lambda frame: Action.FORWARD, oval, duration_s=60.0)
    wall_s = time.perf_counter() - started
    speedup = result.duration_s / wall_s
    print(
        f"evaluate: {result.duration_s:.0f} simulated s in {wall_s:.2f} s "
        f"({speedup:.0f}x real time at {result.rate_hz:.0f} Hz)"
    )
    figures["evaluate_realtime_factor"] = speedup

    # Recording expert drives, JPEG encoding and fsync included.
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as scratch:
        started = time.perf_counter()
        paths = record_expert_drives(scratch, oval, minutes=1.0, noise=0.03)
        wall_s = time.perf_counter() - started
    frames = 60 * 20
    print(
        f"record: {frames} frames into {len(paths)} drive in {wall_s:.2f} s "
        f"({frames / wall_s:.0f} frames/s)"
    )
    figures["record_fps"] = frames / wall_s

    worst = min(v for k, v in rendered.items() if k.endswith("/bilinear"))
    figures["target_met"] = worst >= TARGET_FPS
    print(
        f"slowest bilinear track: {worst:.0f} frames/s "
        f"(target {TARGET_FPS:.0f}): {'met' if worst >= TARGET_FPS else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if worst >= TARGET_FPS else 1


if __name__ == "__main__":
    sys.exit(main())
