"""Training: one run of one configuration, and a trial of several runs.

``train_run`` trains one model with one seed and measures it; ``run_trial``
trains a configuration ``runs`` times with different seeds and summarises
them. ``run_trial(params, dataset, options)`` is the search's objective: a
plain function of its arguments, so that hyperopt here and a distributed
engine elsewhere call it the same way.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import ConfigError
from trainer import metrics
from trainer.data import (
    Dataset,
    check_batch_size,
    class_weights,
    make_eval_dataset,
    make_train_dataset,
)
from trainer.early_stopping import PruningBoard
from trainer.laps import DEFAULT_EVAL_MINUTES, DEFAULT_EVAL_TRACKS, check_eval_worlds
from trainer.model import ModelParams

log = logging.getLogger(__name__)


def _not_retracing(record: logging.LogRecord) -> bool:
    # Every run builds a new model, so Keras traces its predict step anew;
    # TensorFlow's warning about retracing is expected here and only noise.
    return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_not_retracing)

#: What a search maximises: the seed's score, balanced accuracy, or closed-loop
#: driving in the simulator (``trainer.laps``).
OBJECTIVES = ("score", "balanced_accuracy", "laps")
MODEL_FILE = "model.keras"


@dataclass
class TrainOptions:
    """How each configuration is trained (the same for every trial)."""

    epochs: int = 40
    runs: int = 1
    #: Stop a run when val_accuracy has not improved for this many epochs.
    early_stopping: int | None = None
    objective: str = "score"
    mirror: bool = True
    class_weights: bool = False
    #: Seed of the first run; run k of a trial uses ``seed + k``.
    seed: int = 0
    #: Keep each run's model.keras (a search may keep only records).
    save_models: bool = True
    #: Keras progress output: 0 silent, 1 bar, 2 a line per epoch.
    verbose: int = 0
    #: With objective ``laps``: the simulator worlds each run drives, and
    #: the simulated minutes per world (``trainer.laps``).
    eval_tracks: str = DEFAULT_EVAL_TRACKS
    eval_minutes: float = DEFAULT_EVAL_MINUTES

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ConfigError(f"epochs {self.epochs!r} must be an integer >= 1")
        if not (isinstance(self.runs, int) and self.runs >= 1):
            raise ConfigError(f"runs {self.runs!r} must be an integer >= 1")
        if self.early_stopping is not None and self.early_stopping < 1:
            raise ConfigError(
                f"early stopping patience {self.early_stopping!r} must be >= 1 "
                "epoch, or left out to train every epoch"
            )
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"unknown objective {self.objective!r}; use one of "
                f"{', '.join(OBJECTIVES)}"
            )
        if self.objective == "laps":
            check_eval_worlds(self.eval_tracks, self.eval_minutes)


@dataclass
class RunResult:
    """One trained model and how it did (a run record of a search folder)."""

    run: str
    seed: int
    history: dict[str, list[float]]
    score: float
    balanced_accuracy: float
    per_class_recall: list[float | None]
    confusion: list[list[int]]
    majority_baseline: float
    collapsed: bool
    epochs: int
    train_time_s: float
    stopped_early: bool
    #: Seconds spent outside ``model.fit``: building, evaluating, saving.
    overhead_s: float = 0.0
    #: With objective ``laps``: the closed-loop score (``trainer.laps``) and
    #: the figures it was computed from (per world); None otherwise.
    laps: float | None = None
    closed_loop: dict[str, Any] | None = None

    def objective(self, name: str) -> float:
        """The value the search maximises: ``score``, ``balanced_accuracy`` or
        ``laps`` (nan when the run has none)."""
        value = getattr(self, name)
        return float("nan") if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """The run record; the laps fields only when the run was driven."""
        data = asdict(self)
        if self.closed_loop is None:
            del data["laps"], data["closed_loop"]
        return _json_safe(data)


@dataclass
class TrialResult:
    """A configuration trained ``runs`` times (a line of trials.jsonl)."""

    params: dict[str, Any]
    score: float
    score_std: float
    status: str
    error: str | None
    start: float
    end: float
    epochs_run: int
    epochs_planned: int
    worker: str
    runs: list[RunResult] = field(default_factory=list)
    tid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs"] = [run.to_dict() for run in self.runs]
        return _json_safe(data)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads inside TensorFlow ops (None: TF's choice).

    Must run before TensorFlow starts its runtime (as the command line
    does); once TensorFlow runs, the call is logged and changes nothing.
    """
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        log.info(
            "TensorFlow is running already: its threads stay as they are, not %d",
            threads,
        )


def train_run(
    params: ModelParams,
    dataset: Dataset,
    options: TrainOptions,
    *,
    seed: int,
    name: str,
    run_dir: Path | None = None,
    board: PruningBoard | None = None,
    callbacks: Sequence[Any] = (),
) -> RunResult:
    """Train one model with one seed, measure it, and save it in ``run_dir``.

    With a ``board`` (a search's early-stopping rule), the run stops when it
    falls behind the runs before it, and posts its own curve when done.
    ``callbacks`` are more Keras callbacks (the Ray search reports each epoch
    to Tune through one).

    Raises:
        ConfigError: the batch size is larger than the training set.
    """
    import keras

    from trainer.model import build_model

    check_batch_size(params.batch_size, dataset.train_frames)
    started = time.perf_counter()

    # Model and data, seeded so that a run can be repeated.
    keras.utils.set_random_seed(seed)
    keras.backend.clear_session(free_memory=False)
    model = build_model(params)
    weights = class_weights(dataset.y_train) if options.class_weights else None
    train_data = make_train_dataset(
        dataset.x_train,
        dataset.y_train,
        params.batch_size,
        mirror=options.mirror,
        weights=weights,
        seed=seed,
    )
    val_data = make_eval_dataset(
        dataset.x_val, dataset.y_val, max(params.batch_size, 64)
    )
    callbacks = list(callbacks)
    if options.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=options.early_stopping
            )
        )
    if board is not None:
        callbacks.append(board.callback(options.epochs))

    # Train: one pass over the training frames per epoch, validated each epoch.
    fit_started = time.perf_counter()
    fit = model.fit(
        train_data,
        validation_data=val_data,
        epochs=options.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=options.verbose,
    )
    train_time_s = time.perf_counter() - fit_started

    # Evaluate on validation: predictions for the confusion matrix and recall.
    probabilities = model.predict(val_data, verbose=0)
    y_pred = np.argmax(probabilities, axis=1)
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    figures = metrics.evaluate_run(history, dataset.y_val, y_pred, name=f"run {name}")

    # Drive: with the laps objective, the model drives the simulator's worlds.
    closed_loop = None
    if options.objective == "laps":
        from trainer.laps import describe, drive_keras_model

        closed_loop = drive_keras_model(
            model, options.eval_tracks, options.eval_minutes
        )
        log.info("run %s: %s", name, describe(closed_loop))

    # Save the model where the search folder layout expects it.
    if run_dir is not None and options.save_models:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".tmp-{os.getpid()}-{MODEL_FILE}"
        model.save(tmp)
        os.replace(tmp, run_dir / MODEL_FILE)

    epochs = len(history.get("loss", []))
    if board is not None:
        board.add_run(history.get("val_accuracy", []), options.epochs)
    overhead_s = time.perf_counter() - started - train_time_s
    return RunResult(
        run=name,
        seed=seed,
        history=history,
        epochs=epochs,
        train_time_s=train_time_s,
        stopped_early=epochs < options.epochs,
        overhead_s=overhead_s,
        laps=None if closed_loop is None else closed_loop["score"],
        closed_loop=closed_loop,
        **figures,
    )


def run_trial(
    params: ModelParams | dict[str, Any],
    dataset: Dataset,
    options: TrainOptions,
    *,
    runs_dir: Path | None = None,
    run_prefix: str = "0",
    seed: int | None = None,
    board: PruningBoard | None = None,
) -> TrialResult:
    """Train one configuration ``options.runs`` times and summarise the runs.

    Run ``k`` is named ``<run_prefix>-<k>``, seeded ``seed + k`` (default
    ``options.seed``) and saved under ``runs_dir/<name>/``. A configuration
    that cannot be trained (a bad value, a batch larger than the data, a
    numerical failure) gives a result with status ``"fail"`` and its error,
    rather than stopping the search.
    """
    start = time.time()
    base_seed = options.seed if seed is None else seed
    raw = params.to_dict() if isinstance(params, ModelParams) else dict(params)
    results: list[RunResult] = []
    try:
        model_params = ModelParams.from_dict(raw)
        for k in range(options.runs):
            name = f"{run_prefix}-{k}"
            run_dir = None if runs_dir is None else Path(runs_dir) / name
            result = train_run(
                model_params,
                dataset,
                options,
                seed=base_seed + k,
                name=name,
                run_dir=run_dir,
                board=board,
            )
            results.append(result)
            log.info(
                "run %s: score %.4f, balanced accuracy %.4f, %d epochs in %.1f s",
                name,
                result.score,
                result.balanced_accuracy,
                result.epochs,
                result.train_time_s,
            )
        values = [r.objective(options.objective) for r in results]
        score, score_std = metrics.mean_std(values)
        status, error = "ok", None
        if not math.isfinite(score):
            status = "fail"
            error = f"every run's {options.objective} was nan (training diverged)"
    except ConfigError as err:
        score, score_std, status, error = float("nan"), float("nan"), "fail", str(err)
        log.warning("configuration %s failed: %s", raw, err)
    return TrialResult(
        params=raw,
        score=score,
        score_std=score_std,
        status=status,
        error=error,
        start=start,
        end=time.time(),
        epochs_run=sum(r.epochs for r in results),
        epochs_planned=options.epochs * options.runs,
        worker=f"{socket.gethostname()}/{os.getpid()}",
        runs=results,
    )


def run_from_dict(data: dict[str, Any]) -> RunResult:
    """A RunResult from its JSON record (nulls back to nan)."""
    values = dict(data)
    for key in ("score", "balanced_accuracy", "majority_baseline"):
        if values.get(key) is None:
            values[key] = float("nan")
    return RunResult(**values)


def _json_safe(value: Any) -> Any:
    """Nan and inf become None, numpy scalars plain numbers: strict JSON."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
