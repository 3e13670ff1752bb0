"""Benchmark the trainer: data cache, input pipeline, and per-trial overhead.

Three figures, on the real DonkeyCar tub (imported on the fly):

1. Data load: the first load (tub import, JPEG decode, cache write) and a
   decode of the imported drive against a load from the frame cache.
2. Input pipeline: training samples/s through the trainer's tf.data
   pipeline (shuffle, gather, mirror augmentation, prefetch) against plain
   ``model.fit`` on the same numpy arrays, same model and batch size, in one
   process, epochs interleaved. Target: ratio >= 0.9.
3. Per-trial overhead: the share of a search trial spent outside
   ``model.fit`` (building the model, evaluating, saving the model and the
   trial records, hyperopt's suggestion). Target: < 5%.

Run: ``python benchmarks/bench_trainer.py [--tub PATH] [--epochs 5]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TUB = REPO / ".." / "shared" / "data" / "donkeycar-tub"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tub", default=str(DEFAULT_TUB), help="DonkeyCar tub")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial")
    parser.add_argument("--pipeline-epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from trainer.train import set_threads

    set_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    try:
        figures = {
            **bench_load(Path(args.tub), work / "cache"),
            **bench_pipeline(
                work / "cache", Path(args.tub), args.batch_size, args.pipeline_epochs
            ),
            **bench_overhead(work, Path(args.tub), args.epochs),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def bench_load(tub: Path, cache: Path) -> dict[str, float]:
    """First load, decode of an imported drive, and cached load, in seconds."""
    from trainer.data import load_dataset

    started = time.perf_counter()
    dataset = load_dataset([tub], cache)
    first_s = time.perf_counter() - started

    # Decode again with the imported drive kept but the frame cache emptied.
    shutil.rmtree(cache / "frames")
    started = time.perf_counter()
    load_dataset([tub], cache)
    decode_s = time.perf_counter() - started

    cached_s = min(_timed(lambda: load_dataset([tub], cache)) for _ in range(3))
    frames = dataset.train_frames + dataset.val_frames
    print(
        f"data load ({frames} frames): first {first_s:.2f} s (import + decode), "
        f"decode {decode_s:.2f} s, cached {cached_s:.3f} s: "
        f"cached/first {cached_s / first_s:.3f}, "
        f"cached/decode {cached_s / decode_s:.3f}"
    )
    return {
        "frames": frames,
        "load_first_s": first_s,
        "load_decode_s": decode_s,
        "load_cached_s": cached_s,
        "load_cached_over_first": cached_s / first_s,
        "load_cached_over_decode": cached_s / decode_s,
    }


def bench_pipeline(
    cache: Path, tub: Path, batch_size: int, epochs: int
) -> dict[str, float]:
    """Samples/s of the trainer's tf.data pipeline against fit on numpy arrays."""
    import keras

    from trainer.data import load_dataset, make_train_dataset
    from trainer.model import ModelParams, build_model

    dataset = load_dataset([tub], cache)
    params = ModelParams(batch_size=batch_size)
    x, y = dataset.x_train, dataset.y_train
    pipeline = make_train_dataset(x, y, batch_size, mirror=True, seed=0)

    keras.utils.set_random_seed(0)
    model_pipeline = build_model(params)
    model_numpy = build_model(params)
    # Trace both training steps before timing.
    model_pipeline.fit(pipeline, epochs=1, shuffle=False, verbose=0)
    model_numpy.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)

    # Interleave the epochs so that both see the same load on the machine.
    pipeline_s, numpy_s = [], []
    for _ in range(epochs):
        pipeline_s.append(
            _timed(
                lambda: model_pipeline.fit(pipeline, epochs=1, shuffle=False, verbose=0)
            )
        )
        numpy_s.append(
            _timed(
                lambda: model_numpy.fit(
                    x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0
                )
            )
        )
    pipeline_rate = len(y) / statistics.median(pipeline_s)
    numpy_rate = len(y) / statistics.median(numpy_s)
    print(
        f"input pipeline (batch {batch_size}, {len(y)} frames, median of {epochs} "
        f"epochs): tf.data with mirroring {pipeline_rate:.0f} samples/s, "
        f"fit on numpy {numpy_rate:.0f} samples/s: ratio "
        f"{pipeline_rate / numpy_rate:.3f} (target >= 0.9)"
    )
    return {
        "pipeline_samples_per_s": pipeline_rate,
        "numpy_samples_per_s": numpy_rate,
        "pipeline_over_numpy": pipeline_rate / numpy_rate,
    }


def bench_overhead(work: Path, tub: Path, epochs: int) -> dict[str, float]:
    """Share of each search trial spent outside model.fit."""
    from trainer.search import SearchOptions, run_search

    stamps: list[float] = []
    options = SearchOptions(trials=3, epochs=epochs, top_k=0, algo="random")
    record = run_search(
        work / "searches" / "bench",
        [tub],
        options,
        cache_dir=work / "cache",
        echo=lambda line: stamps.append(time.perf_counter()),
    )
    # A trial's wall time runs from the previous trial's saved records to its
    # own (the first trial also carries the search's set-up, so it is left out).
    shares, walls = [], []
    for i in range(1, len(record.trials)):
        wall_s = stamps[i] - stamps[i - 1]
        fit_s = sum(run["train_time_s"] for run in record.trials[i]["runs"])
        walls.append(wall_s)
        shares.append((wall_s - fit_s) / wall_s)
    share = statistics.mean(shares)
    print(
        f"per-trial overhead ({epochs} epochs, 1 run): "
        f"{100 * share:.1f}% of {statistics.mean(walls):.1f} s outside model.fit "
        "(target < 5%)"
    )
    return {
        "trial_epochs": epochs,
        "trial_wall_s": statistics.mean(walls),
        "trial_overhead_share": share,
    }


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
