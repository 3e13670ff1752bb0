"""Benchmark ``deploy push`` and ``deploy pull`` over loopback SSH.

Starts Debian's sshd on a free loopback port (the deploy tests' server) and
measures, through it:

- push plus activation of a real model of about 1 MB: the untrained seed CNN
  exported to float32 and int8 when TensorFlow and the trainer are installed,
  else the tiny test fixtures. Each run pushes to a fresh car home, so the
  model is really copied; the time is split into the login and the car's
  status check, the copy, and the activation (rename, sha256, load, one
  inference, link flip);
- pull throughput in frames per second: a drive of the real DonkeyCar tub's
  1,000 frames (imported into the car's drives), or synthetic frames when the
  tub is absent, pulled and verified into an empty folder.

Run with ``make bench-deploy`` or::

    .venv/bin/python benchmarks/bench_deploy.py [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.car import Car  # noqa: E402
from deploy.pull import pull  # noqa: E402
from deploy.push import push  # noqa: E402
from shared.modelcard import ModelCard  # noqa: E402
from tests.deploy.sshd import ROBOT_CMD, start_sshd  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "models"
DONKEY_TUB = ROOT / ".." / "shared" / "data" / "donkeycar-tub"


def bench_models(scratch: Path) -> tuple[list[Path], str]:
    """The models to push and what they are."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_robot import export_seed_cnn

        from robot.drive_cli import run_isolated

        folders = [Path(p) for p in run_isolated(export_seed_cnn, str(scratch))]
        return folders, "untrained seed CNN exports"
    except ImportError as err:
        print(f"(seed CNN not available: {err}; pushing the tiny fixtures)")
        return [FIXTURES / "tiny-float32", FIXTURES / "tiny-int8"], "tiny fixtures"


def make_car_drive(drives: Path, frames: int) -> tuple[str, int]:
    """A drive on the car: the DonkeyCar tub imported, or synthetic frames."""
    if (DONKEY_TUB / "manifest.json").is_file():
        from shared.donkey import import_tub

        result = import_tub(DONKEY_TUB, drives, name="donkey")
        return "DonkeyCar tub (real frames)", sum(result.counts.values())
    import numpy as np

    from shared.drives import DriveWriter

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)
    with DriveWriter.create(drives, name="synthetic", queue_frames=frames + 1) as w:
        for index in range(frames):
            w.append(np.roll(base, index, axis=1), index % 5, t_mono_s=index / 20)
    return "synthetic frames", frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="pushes per model")
    parser.add_argument("--pulls", type=int, default=3, help="full pulls")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict = {"push": [], "pull": {}}

    with tempfile.TemporaryDirectory(prefix="malpi-bench-deploy-") as tmp:
        scratch = Path(tmp)
        models, what = bench_models(scratch / "models")
        results["models"] = what
        with start_sshd(scratch / "sshd") as server:

            def car(home: Path) -> Car:
                return Car(
                    destination="car",
                    home=str(home),
                    ssh_config=str(server.config),
                    robot_cmd=ROBOT_CMD,
                )

            # Push plus activation, each to a fresh car home.
            for folder in models:
                card = ModelCard.load(folder)
                totals, checks, uploads, activations = [], [], [], []
                for run in range(args.runs):
                    home = scratch / f"car-push-{folder.name}-{run}"
                    start = time.perf_counter()
                    result = push(car(home), folder)
                    totals.append(time.perf_counter() - start)
                    checks.append(result.check_s)
                    uploads.append(result.upload_s)
                    activations.append(result.activate_s)
                row = {
                    "model": folder.name,
                    "quantization": card.quantization,
                    "size_mb": result.model_bytes / 1e6,
                    "total_s_median": statistics.median(totals),
                    "total_s_min": min(totals),
                    "login_check_s_median": statistics.median(checks),
                    "copy_s_median": statistics.median(uploads),
                    "activate_s_median": statistics.median(activations),
                }
                results["push"].append(row)
                print(
                    f"push {row['model']:22} {row['size_mb']:6.2f} MB: push+activate "
                    f"median {row['total_s_median']:.2f} s (min "
                    f"{row['total_s_min']:.2f}); login+check "
                    f"{row['login_check_s_median']:.2f} s, copy "
                    f"{row['copy_s_median']:.2f} s, activation "
                    f"{row['activate_s_median']:.2f} s  [{args.runs} runs]"
                )

            # Pull throughput, each time into an empty folder.
            home = scratch / "car-pull"
            source, frames = make_car_drive(home / "drives", 1000)
            times = []
            for run in range(args.pulls):
                into = scratch / f"pulled-{run}"
                start = time.perf_counter()
                pulled = pull(car(home), into)
                times.append(time.perf_counter() - start)
                assert pulled.new_frames == frames, pulled
            median_s = statistics.median(times)
            results["pull"] = {
                "source": source,
                "frames": frames,
                "seconds_median": median_s,
                "frames_per_s": frames / median_s,
            }
            print(
                f"pull {frames} frames ({source}), copied and verified: median "
                f"{median_s:.2f} s = {frames / median_s:.0f} frames/s "
                f"[{args.pulls} runs]"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
