"""``trainer export`` and ``trainer report``: from a search folder to a model
the car can run, and to a page a person can read.

TensorFlow is imported inside the export handler only; matplotlib inside the
report.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from shared.cli import add_command
from shared.config import TrainerConfig, load_config
from shared.errors import ConfigError, ModelError, SearchError
from shared.modelcard import CARD_NAME, MODEL_NAME
from trainer.export import INT8_MIN_TOP1_AGREEMENT, TOLERANCES, Tolerance

log = logging.getLogger(__name__)

EXPORT_DIR = "export"
QUANTIZE_CHOICES = ("float32", "int8", "both")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export`` and ``report``."""
    export = add_command(
        subparsers,
        "export",
        _export,
        "Export a search's best model to TFLite (float32, int8), checked "
        "against Keras, with its model card.",
        "trainer export searches/tub-tpe --quantize both",
    )
    export.add_argument("search", help="a search folder, or a search name")
    export.add_argument(
        "--run", help="export this run (runs/<RUN>) instead of best.json's"
    )
    export.add_argument(
        "--out", help="output folder (default: SEARCH/export); one folder per kind"
    )
    export.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default="both",
        help="which exports to make (default: both)",
    )
    export.add_argument(
        "--int8-min-agreement",
        type=float,
        default=INT8_MIN_TOP1_AGREEMENT,
        metavar="SHARE",
        help="smallest share of validation frames where int8 and Keras pick the "
        f"same action (default {INT8_MIN_TOP1_AGREEMENT})",
    )
    _add_location(export)

    report = add_command(
        subparsers,
        "report",
        _report,
        "Plot a search's trials, hyperparameters, learning curves and best "
        "confusion matrix into one HTML page.",
        "trainer report searches/tub-tpe",
    )
    report.add_argument("search", help="a search folder, or a search name")
    report.add_argument("--out", help="output folder (default: SEARCH/report)")
    _add_location(report)


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="project folder (default: the config's)")
    parser.add_argument("--config", help="trainer.toml with project and cache_dir")
    parser.add_argument("--cache-dir", help="decoded-frame cache (<project>/.cache)")


# --- trainer report --------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    from trainer.report import write_report

    path = resolve_search(args.search, args.project, args.config)
    page = write_report(path, args.out)
    for plot in sorted(page.parent.glob("*.png")):
        print(plot)
    print(page)
    return 0


# --- trainer export --------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    from trainer import searchdir

    path = resolve_search(args.search, args.project, args.config)
    record = searchdir.load_search(path)

    # Which run: best.json's, or the one asked for.
    run_name = args.run or _best_run(record)
    model_path = record.model_path(run_name)
    if not model_path.is_file():
        known = sorted(p.name for p in (path / searchdir.RUNS_DIR).glob("*/"))
        raise SearchError(
            f"run {run_name!r} has no model at {str(model_path)!r}; runs with a "
            f"folder: {', '.join(known) or 'none'} (was the search run with "
            "models saved?)"
        )
    run, params = find_run(record, run_name)
    if not 0.0 <= args.int8_min_agreement <= 1.0:
        raise ConfigError(
            f"--int8-min-agreement {args.int8_min_agreement!r} is a share of "
            "frames: give a number from 0 to 1, e.g. 0.9"
        )

    # Frames: calibration from the training split, parity from validation.
    calibration, check, digest = load_frames(record, args.cache_dir, args.config)

    import keras

    from trainer.export import export_model

    try:
        model = keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"cannot load {str(model_path)!r}: {err}; the run's model is damaged, "
            "export another run with --run"
        ) from err

    out = Path(args.out) if args.out else path / EXPORT_DIR
    kinds = ("float32", "int8") if args.quantize == "both" else (args.quantize,)
    metrics = run_metrics(record, run_name, run)
    print(f"exporting run {run_name} of {record.name} ({model_path})")
    for kind in kinds:
        folder = out / kind
        tolerance = TOLERANCES[kind]
        if kind == "int8":
            tolerance = Tolerance(min_top1_agreement=args.int8_min_agreement)
        try:
            card = export_model(
                model,
                folder,
                quantization=kind,
                calibration_frames=calibration,
                check_frames=check,
                hyperparameters=params,
                metrics=metrics,
                data_digest=digest,
                tolerance=tolerance,
            )
        except ModelError:
            # A refused export must not leave an older model of that kind
            # beside the new ones, or `deploy push` would send the old one.
            if (folder / CARD_NAME).exists():
                (folder / CARD_NAME).unlink()
                (folder / MODEL_NAME).unlink(missing_ok=True)
                log.warning("removed the older %s export in %s", kind, folder)
            raise
        print(_export_line(folder, card))
    return 0


def resolve_search(
    search: str, project: str | None = None, config: str | None = None
) -> Path:
    """A search folder from a path or from a name under ``<project>/searches``.

    Raises:
        SearchError: neither exists.
    """
    path = Path(search).expanduser()
    if path.is_dir():
        return path
    if Path(search).name == search:
        root = Path(project or load_config(TrainerConfig, config).project)
        named = root.expanduser() / "searches" / search
        if named.is_dir():
            return named
    raise SearchError(
        f"no search folder {search!r}; give the folder `trainer search` wrote "
        "(e.g. searches/<name>) or its name with --project"
    )


def _best_run(record: Any) -> str:
    if record.best is None:
        done = len(record.ok_trials())
        raise SearchError(
            f"search {str(record.path)!r} has no best.json: it has not finished "
            f"({done} trials done); resume it with `trainer search`, or export one "
            "run with --run <tid>-<k>"
        )
    run = record.best.get("run")
    if not run:
        raise SearchError(
            f"best.json of {str(record.path)!r} names no run; export one with --run"
        )
    return str(run)


def find_run(record: Any, run_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run record named ``run_name`` and its configuration's parameters.

    A run with a model but no record (a search killed mid-trial) gives an
    empty record.
    """
    for group in [*record.trials, *record.reruns]:
        for run in group.get("runs") or []:
            if run.get("run") == run_name:
                return run, dict(group.get("params") or {})
    log.warning("run %s has no record in the search; its card has no metrics", run_name)
    return {}, {}


def run_metrics(record: Any, run_name: str, run: dict[str, Any]) -> dict[str, Any]:
    """What the card says about how good the run is."""
    metrics: dict[str, Any] = {"search": record.name, "run": run_name}
    for key in (
        "score",
        "balanced_accuracy",
        "per_class_recall",
        "majority_baseline",
        "collapsed",
        "epochs",
        "laps",
    ):
        if key in run:
            metrics[key] = run[key]
    history = run.get("history") or {}
    if history.get("val_accuracy"):
        metrics["final_val_accuracy"] = history["val_accuracy"][-1]
    if record.best and record.best.get("run") == run_name:
        metrics["config_score"] = record.best.get("score")
        metrics["config_score_std"] = record.best.get("score_std")
    metrics["objective"] = record.options.get("objective", "score")
    return metrics


def load_frames(
    record: Any, cache_dir: str | None, config: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Calibration (training split) and check (validation split) frames of the
    search's drives, and the training data digest for the card.

    Raises:
        SearchError: the search names no drives or they are gone.
    """
    from trainer.data import VAL_FRACTION, load_dataset

    data = record.data
    drives = [str(d) for d in data.get("drives") or []]
    if not drives:
        raise SearchError(
            f"search.json of {str(record.path)!r} lists no drives; the export needs "
            "its training frames for calibration and its validation frames"
        )
    missing = [d for d in drives if not Path(d).expanduser().exists()]
    if missing:
        raise SearchError(
            f"drive {missing[0]!r} of search {record.name!r} is gone; run the "
            "export from the folder the search ran in, or restore the drive"
        )
    if cache_dir is None:
        cache_dir = load_config(TrainerConfig, config).cache_dir or None
    if cache_dir is None:
        parent = record.path.parent
        project = parent.parent if parent.name == "searches" else Path(".")
        cache_dir = str(project / ".cache")
    dataset = load_dataset(
        drives, cache_dir, val_fraction=data.get("val_fraction", VAL_FRACTION)
    )
    digest = data.get("digest") or dataset.digest
    if data.get("digest") and dataset.digest != data["digest"]:
        log.warning(
            "the drives changed since search %s ran (digest %s..., now %s...); "
            "calibration and the parity check use them as they are now",
            record.name,
            data["digest"][:12],
            dataset.digest[:12],
        )
    return dataset.x_train, dataset.x_val, digest


def _export_line(folder: Path, card: Any) -> str:
    parity = card.parity
    size_kb = (folder / MODEL_NAME).stat().st_size / 1024
    figures = (
        f"top-1 agreement {parity['top1_agreement']:.1%}, max |dp| "
        f"{parity['max_abs_prob_diff']:.2e} on {parity['frames']} validation frames"
    )
    limits = json.dumps({k: v for k, v in parity["tolerance"].items() if v is not None})
    return (
        f"{card.quantization}: {folder / MODEL_NAME} ({size_kb:.0f} KB, sha256 "
        f"{card.model_sha256[:12]}...), {figures}, limit {limits}"
    )
