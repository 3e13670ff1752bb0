"""``trainer train`` and ``trainer search``: the command lines of training.

TensorFlow and hyperopt are imported inside the handlers, so that building
the ``trainer`` parser (and ``trainer data``) stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shared.actions import ACTION_LABELS
from shared.cli import add_command
from shared.config import TrainerConfig, load_config
from shared.errors import ConfigError, SearchError
from shared.modelcard import write_atomic

log = logging.getLogger(__name__)

PARAM_FLAGS = {
    "learning_rate": float,
    "l2_reg": float,
    "batch_size": int,
    "dropouts": str,
    "optimizer": str,
    "head": str,
    "padding": str,
    "pixel_scale": str,
}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``search``."""
    train = add_command(
        subparsers,
        "train",
        _train,
        "Train one configuration N times and report the seed's score and more.",
        "trainer train drives/ --runs 3 --epochs 20 --params "
        '\'{"learning_rate": 0.001, "dropouts": "mid", "optimizer": "adam"}\'',
    )
    train.add_argument("drives", nargs="+", help="drives, folders of drives or tubs")
    train.add_argument("--runs", type=int, default=1, help="runs with different seeds")
    train.add_argument("--epochs", type=int, default=40, help="epochs per run")
    train.add_argument(
        "--early-stopping",
        type=int,
        metavar="PATIENCE",
        help="stop a run after PATIENCE epochs without a better val_accuracy",
    )
    train.add_argument(
        "--params",
        help="model parameters as JSON, or a JSON file (a search's best.json works)",
    )
    for name, kind in PARAM_FLAGS.items():
        train.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name)
    train.add_argument("--output", help="results folder (default models/train-TIME)")
    _add_objective(train)
    _add_common(train)

    search = add_command(
        subparsers,
        "search",
        _search,
        "Search the CNN's hyperparameters with hyperopt; resumable.",
        "trainer search drives/ --name first --trials 30 --epochs 10",
    )
    search.add_argument("drives", nargs="+", help="drives, folders of drives or tubs")
    search.add_argument("--name", required=True, help="the search's folder name")
    search.add_argument("--trials", type=int, default=20, help="trials to run")
    search.add_argument("--runs", type=int, default=1, help="runs per trial")
    search.add_argument("--epochs", type=int, default=40, help="epochs per run")
    search.add_argument("--algo", choices=("tpe", "random"), default="tpe")
    search.add_argument("--space", help="a space file (JSON or TOML)")
    search.add_argument("--seed", type=int, default=0, help="search and run seeds")
    search.add_argument(
        "--max-batch", type=int, default=128, help="largest batch of the seed's space"
    )
    search.add_argument("--top-k", type=int, default=3, help="configurations re-run")
    search.add_argument("--rerun-runs", type=int, default=5, help="runs per re-run")
    search.add_argument(
        "--early-stopping",
        type=_early_stopping,
        metavar="PATIENCE|RULE",
        help="a patience in epochs, or median or asha (stop runs behind their peers)",
    )
    search.add_argument(
        "--startup-trials",
        type=int,
        help="random trials before TPE starts modelling (default: trials/3, 3-20)",
    )
    # Distributed search on a Ray cluster (trainer.distributed).
    search.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on a Ray cluster: auto, local, HOST:6379 or ray://HOST:10001",
    )
    search.add_argument(
        "--concurrency", type=int, default=2, help="with --ray: trials at a time"
    )
    search.add_argument(
        "--trial-cpus",
        type=int,
        help="with --ray: CPUs and TensorFlow threads per trial "
        "(default: the cluster's CPUs / --concurrency)",
    )
    _add_objective(search)
    _add_common(search)


def _add_objective(parser: argparse.ArgumentParser) -> None:
    from trainer.laps import DEFAULT_EVAL_MINUTES, DEFAULT_EVAL_TRACKS, FORMULA

    parser.add_argument(
        "--objective",
        choices=("score", "balanced_accuracy", "laps"),
        default="score",
        help="what a run is scored by: score (best 5-epoch mean val accuracy), "
        "balanced_accuracy, or laps: the run's float32 TFLite model drives the "
        f"simulator on --eval-tracks and scores {FORMULA}",
    )
    parser.add_argument(
        "--eval-tracks",
        default=DEFAULT_EVAL_TRACKS,
        metavar="TRACKS",
        help="with --objective laps: the worlds each run drives, shape:SEED "
        f"separated by commas (default {DEFAULT_EVAL_TRACKS})",
    )
    parser.add_argument(
        "--eval-minutes",
        type=float,
        default=DEFAULT_EVAL_MINUTES,
        metavar="MINUTES",
        help="with --objective laps: simulated minutes per world "
        f"(default {DEFAULT_EVAL_MINUTES:g})",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="project folder (default: the config's)")
    parser.add_argument("--config", help="trainer.toml with project and cache_dir")
    parser.add_argument("--cache-dir", help="decoded-frame cache (<project>/.cache)")
    parser.add_argument(
        "--no-mirror",
        dest="mirror",
        action="store_false",
        help="no left-right mirror augmentation",
    )
    parser.add_argument(
        "--class-weights", action="store_true", help="weight classes by 1/frequency"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="TensorFlow threads (default: the CPU count)",
    )


def _early_stopping(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text.strip().lower()


def _project_and_cache(args: argparse.Namespace) -> tuple[Path, Path]:
    config = load_config(TrainerConfig, args.config)
    project = Path(args.project or config.project).expanduser()
    cache = args.cache_dir or config.cache_dir
    return project, Path(cache).expanduser() if cache else project / ".cache"


# --- trainer train ---------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from trainer.train import set_threads

    set_threads(args.threads)

    from trainer import metrics
    from trainer.data import load_dataset
    from trainer.laps import describe as describe_laps
    from trainer.model import ModelParams
    from trainer.train import TrainOptions, run_trial

    project, cache_dir = _project_and_cache(args)
    params = ModelParams.from_dict(_params_from_args(args))
    options = TrainOptions(
        epochs=args.epochs,
        runs=args.runs,
        early_stopping=args.early_stopping,
        mirror=args.mirror,
        class_weights=args.class_weights,
        seed=0,
        objective=args.objective,
        eval_tracks=args.eval_tracks,
        eval_minutes=args.eval_minutes,
    )
    output = Path(
        args.output or project / "models" / time.strftime("train-%Y%m%d-%H%M%S")
    )

    # Data, then the runs.
    dataset = load_dataset(args.drives, cache_dir)
    print(_data_line(dataset))
    result = run_trial(
        params, dataset, options, runs_dir=output / "runs", run_prefix="train"
    )

    # Results: a table, and the same records a search keeps.
    runs = [run.to_dict() for run in result.runs]
    print(format_runs_table(runs))
    for run in result.runs:
        if run.closed_loop is not None:
            print(f"run {run.run}: {describe_laps(run.closed_loop)}")
    balanced = metrics.mean_std([r.balanced_accuracy for r in result.runs])
    objective = options.objective
    print(
        f"configuration: {objective} {result.score:.4f} ± {result.score_std:.4f}, "
        f"balanced accuracy {balanced[0]:.4f} ± {balanced[1]:.4f}, "
        f"majority baseline {result.runs[0].majority_baseline:.4f}"
        if result.runs
        else f"configuration failed: {result.error}"
    )
    summary = {
        "params": params.to_dict(),
        "options": asdict(options),
        "data": dataset.summary(),
        **result.to_dict(),
    }
    output.mkdir(parents=True, exist_ok=True)
    write_atomic(output / "train.json", (json.dumps(summary, indent=2) + "\n").encode())
    if result.runs:
        best_run = max(
            runs, key=lambda r: r[objective] if r[objective] is not None else -1
        )
        best = {
            "params": params.to_dict(),
            "score": summary["score"],
            "score_std": summary["score_std"],
            "objective": objective,
            "run": best_run["run"],
            "run_score": best_run[objective],
            "source": "train",
        }
        write_atomic(output / "best.json", (json.dumps(best, indent=2) + "\n").encode())
    print(f"saved {output}")
    return 0 if result.status == "ok" else 2


def _params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.params:
        text = args.params
        candidate = Path(text)
        if not text.lstrip().startswith("{") and candidate.is_file():
            text = candidate.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ConfigError(
                f"--params {args.params!r} is neither JSON nor a JSON file: {err}"
            ) from err
        if isinstance(data, dict) and isinstance(data.get("params"), dict):
            data = data["params"]
        if not isinstance(data, dict):
            raise ConfigError(f"--params {args.params!r} must be a JSON object")
        params.update(data)
    for name in PARAM_FLAGS:
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    return params


def format_runs_table(runs: list[dict[str, Any]]) -> str:
    """A table of run records: score, balanced accuracy, baseline, recall."""
    recall_head = "/".join(label[:4] for label in ACTION_LABELS)
    lines = [
        f"{'run':<12}{'seed':>8}{'epochs':>7}{'score':>8}{'bal.acc':>8}"
        f"{'majority':>9}  {'collapsed':<10}recall {recall_head}"
    ]
    for run in runs:
        recall = " ".join(
            "  - " if r is None else f"{r:.2f}" for r in run["per_class_recall"]
        )
        lines.append(
            f"{run['run']:<12}{run['seed']:>8}{run['epochs']:>7}"
            f"{_num(run['score']):>8}{_num(run['balanced_accuracy']):>8}"
            f"{_num(run['majority_baseline']):>9}  "
            f"{'YES' if run['collapsed'] else 'no':<10}{recall}"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4f}"


def _data_line(dataset: Any) -> str:
    counts = dataset.counts()
    train = ", ".join(f"{k} {v}" for k, v in counts["train"].items())
    return (
        f"data: {len(dataset.drives)} drives, {dataset.train_frames} training "
        f"frames ({train}), {dataset.val_frames} validation frames (last "
        f"{dataset.val_fraction:.0%} of each drive), digest {dataset.digest[:12]}"
    )


# --- trainer search ------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    from trainer.train import set_threads

    set_threads(args.threads)

    from trainer.data import load_dataset
    from trainer.search import SearchOptions, run_search
    from trainer.searchdir import read_meta, search_path
    from trainer.space import load_space

    project, cache_dir = _project_and_cache(args)
    path = search_path(project, args.name)
    options = SearchOptions(
        trials=args.trials,
        runs=args.runs,
        epochs=args.epochs,
        objective=args.objective,
        algo=args.algo,
        seed=args.seed,
        max_batch=args.max_batch,
        top_k=args.top_k,
        rerun_runs=args.rerun_runs,
        early_stopping=args.early_stopping,
        mirror=args.mirror,
        class_weights=args.class_weights,
        startup_trials=args.startup_trials,
        eval_tracks=args.eval_tracks,
        eval_minutes=args.eval_minutes,
    )
    space = load_space(args.space) if args.space else None

    # Refuse a folder of another format, or an unreachable cluster, before
    # loading any data.
    read_meta(path)
    if args.ray and options.objective == "laps":
        raise SearchError(
            "--objective laps drives each run in the simulator after training, "
            "which the Ray search does not do (it scores runs epoch by epoch); "
            "drop --ray or pick another objective"
        )
    if args.ray:
        from trainer.distributed import RayOptions, connect

        ray_options = RayOptions(args.ray, args.concurrency, args.trial_cpus)
        connect(ray_options.address)
    dataset = load_dataset(args.drives, cache_dir)
    print(_data_line(dataset), flush=True)
    if args.ray:
        from trainer.distributed import run_ray_search

        record = run_ray_search(
            path,
            options,
            ray_options,
            dataset=dataset,
            space=space,
            echo=lambda line: print(line, flush=True),
        )
    else:
        record = run_search(
            path,
            args.drives,
            options,
            cache_dir=cache_dir,
            space=space,
            dataset=dataset,
            echo=lambda line: print(line, flush=True),
        )
    print(f"saved {record.path}")
    return 0
