"""Benchmark the car's pilot and drive loop.

Measures, each in a fresh process:

- inference time per frame (mean, p50, p99 ms) of every model on every
  installed TFLite runtime, float32 against int8;
- the drive loop's overhead beyond inference at 30 Hz: the loop's time per
  step (from the frame in hand to motors commanded and the frame queued for
  the recorder) minus the pilot's inference time, mean and p99, with
  recording off and on.

The models are the ones given with ``--model``, else the tiny test fixtures,
plus (when TensorFlow and the trainer are installed and ``--no-seed-cnn`` is
not given) the seed CNN itself, untrained, exported to float32 and int8: its
inference time is what a real pilot costs. Run with ``make bench-robot`` or::

    .venv/bin/python benchmarks/bench_robot.py [--model DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from robot.drive_cli import default_bench_models, run_bench, run_isolated
from shared.modelcard import MODEL_NAME, ModelCard, sha256_file

log = logging.getLogger("bench_robot")


def export_seed_cnn(out_dir: str) -> list[str]:
    """Export the untrained seed CNN to float32 and int8 folders under out_dir.

    Runs in its own process (TensorFlow stays out of the benchmark's).
    """
    from trainer.export import convert_to_tflite
    from trainer.model import ModelParams, build_model

    model = build_model(ModelParams(), compile_model=False)
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (32, 120, 120, 3), dtype=np.uint8)
    folders = []
    for quantization in ("float32", "int8"):
        folder = Path(out_dir) / f"seed-cnn-{quantization}"
        folder.mkdir(parents=True)
        data = convert_to_tflite(model, quantization, calibration)
        (folder / MODEL_NAME).write_bytes(data)
        ModelCard(
            model_sha256=sha256_file(folder / MODEL_NAME),
            quantization=quantization,
            hyperparameters={
                "benchmark": "untrained seed CNN",
                **ModelParams().to_dict(),
            },
        ).save(folder)
        folders.append(str(folder))
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", type=Path, default=[])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--no-seed-cnn", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    models = list(args.model) or default_bench_models()
    with tempfile.TemporaryDirectory(prefix="malpi-bench-models-") as scratch:
        if not args.no_seed_cnn:
            try:
                models += [Path(p) for p in run_isolated(export_seed_cnn, scratch)]
            except ImportError as err:
                print(f"(seed CNN skipped: {err})")
        if not models:
            print("no model to benchmark: give --model DIR", file=sys.stderr)
            return 2
        results = run_bench(
            models, frames=args.frames, seconds=args.seconds, rate_hz=args.rate
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
