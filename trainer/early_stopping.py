"""Stop hopeless trials early: median stopping and successive halving per epoch.

A run's *running score* at epoch ``e`` is the score its first ``e + 1``
epochs would get under the search objective: the maximum over those epochs of
the window-5 running mean of validation accuracy. Every finished run leaves
its curve of running scores on a ``PruningBoard``; a new run is compared,
epoch by epoch, with the curves that reached the same epoch:

- ``median``: after the grace period, stop when the run's running score is
  not above the median of its peers' at that epoch (as Ray Tune's
  ``MedianStoppingRule``, but on epochs rather than seconds).
- ``asha``: at the rungs ``grace, grace*rf, grace*rf**2, ...`` epochs, stop
  when the run is not above the top ``1/rf`` cutoff of its peers at that
  rung (asynchronous successive halving, as Ray Tune's ``ASHAScheduler``).

Unlike Tune's schedulers, a run that only ties the cutoff stops too (unless
it ties the best peer), so that runs stuck on one plateau are ended.

The same two names pick Tune's own schedulers on a Ray cluster
(``tune_scheduler``), so ``--early-stopping`` means the same rule in both
places. The local rule runs inside Keras through ``PruningBoard.callback()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.errors import SearchError
from trainer.metrics import SCORE_WINDOW, seed_score

log = logging.getLogger(__name__)

#: The rules ``--early-stopping`` accepts.
RULES = ("asha", "median")
#: Epochs every run trains before any rule may stop it.
DEFAULT_GRACE_EPOCHS = 3
#: ASHA keeps the top 1/rf of the runs at each rung.
DEFAULT_REDUCTION_FACTOR = 3
#: The metric a trial reports per epoch on Ray, which Tune's schedulers read.
RUNNING_METRIC = "running_score"


def running_scores(
    val_accuracy: Sequence[float], window: int = SCORE_WINDOW
) -> list[float]:
    """The running score after each epoch of one run.

    Element ``e`` is the search objective's score of the first ``e + 1``
    epochs (``trainer.metrics.seed_score``), so the last element is the
    run's score.
    """
    return [
        seed_score(val_accuracy[: epoch + 1], window)
        for epoch in range(len(val_accuracy))
    ]


@dataclass(frozen=True)
class StoppingRule:
    """When a run whose running score is ``score`` after ``epochs`` stops.

    Attributes:
        name: ``"median"`` or ``"asha"``.
        grace_epochs: epochs every run trains before it may be stopped.
        reduction_factor: ASHA's ``rf``: rungs every ``rf``-fold more epochs,
            and only the top ``1/rf`` of the peers at a rung go on.
        min_peers: peers that must have reached an epoch before a run can be
            stopped there (median: 3, ASHA: 1, as Tune's defaults).
    """

    name: str
    grace_epochs: int = DEFAULT_GRACE_EPOCHS
    reduction_factor: int = DEFAULT_REDUCTION_FACTOR
    min_peers: int = 0

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise SearchError(
                f"unknown early-stopping rule {self.name!r}; use one of "
                f"{', '.join(RULES)}"
            )
        if self.grace_epochs < 1:
            raise SearchError(
                f"early-stopping grace period {self.grace_epochs!r} epochs is "
                "too short; give at least 1"
            )
        if self.reduction_factor < 2:
            raise SearchError(
                f"ASHA reduction factor {self.reduction_factor!r} must be 2 or more"
            )
        if self.min_peers <= 0:
            object.__setattr__(self, "min_peers", 3 if self.name == "median" else 1)

    def rungs(self, max_epochs: int) -> list[int]:
        """The epoch counts at which ASHA decides, below ``max_epochs``."""
        rungs = []
        epochs = self.grace_epochs
        while epochs < max_epochs:
            rungs.append(epochs)
            epochs *= self.reduction_factor
        return rungs

    def should_stop(
        self, score: float, epochs: int, peers: Sequence[float], max_epochs: int
    ) -> bool:
        """Whether a run should stop after ``epochs`` epochs.

        Args:
            score: the run's running score after ``epochs`` epochs.
            epochs: epochs the run has trained (1 after the first).
            peers: the running scores of earlier runs after the same epochs.
            max_epochs: the epochs the run was planned for.
        """
        if epochs < self.grace_epochs or epochs >= max_epochs:
            return False
        if len(peers) < self.min_peers:
            return False
        if self.name == "median":
            cutoff = float(np.median(peers))
        elif epochs in self.rungs(max_epochs):
            cutoff = float(np.percentile(peers, (1 - 1 / self.reduction_factor) * 100))
        else:
            return False
        # A tie at the cutoff stops too, unless the run ties the best peer:
        # runs stuck at the same plateau (a collapse onto the majority class
        # gives many equal scores) are what early stopping should end.
        return score <= cutoff and score < max(peers)


@dataclass
class PruningBoard:
    """The running-score curves of finished runs, and the per-epoch verdicts.

    One board lives for a whole local search. ``callback()`` gives a Keras
    callback for one run; when the run ends, ``add_run`` posts its curve.
    Runs that were stopped early post their (shorter) curves too: they
    count as peers at the epochs they reached, as in ASHA.
    """

    rule: StoppingRule
    window: int = SCORE_WINDOW
    curves: list[list[float]] = field(default_factory=list)
    epochs_run: int = 0
    epochs_planned: int = 0

    def peers_at(self, epochs: int) -> list[float]:
        """Running scores after ``epochs`` epochs of the curves that got there."""
        return [curve[epochs - 1] for curve in self.curves if len(curve) >= epochs]

    def should_stop(self, val_accuracy: Sequence[float], max_epochs: int) -> bool:
        """Whether a run with this validation-accuracy history should stop now."""
        if not val_accuracy:
            return False
        epochs = len(val_accuracy)
        score = running_scores(val_accuracy, self.window)[-1]
        return self.rule.should_stop(score, epochs, self.peers_at(epochs), max_epochs)

    def add_run(self, val_accuracy: Sequence[float], epochs_planned: int) -> None:
        """Post a finished (or stopped) run's validation accuracies."""
        self.curves.append(running_scores(val_accuracy, self.window))
        self.epochs_run += len(val_accuracy)
        self.epochs_planned += epochs_planned

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Post the runs of trials already in ``trials.jsonl`` (a resumed search)."""
        for record in records:
            runs = record.get("runs") or []
            for run in runs:
                history = run.get("history") or {}
                accuracy = history.get("val_accuracy") or []
                if accuracy:
                    self.curves.append(running_scores(accuracy, self.window))

    def callback(self, max_epochs: int) -> Any:
        """A Keras callback that stops its run when the rule says so."""
        import keras

        board = self

        class PruningCallback(keras.callbacks.Callback):
            """Stops training when the run falls behind its peers."""

            def __init__(self) -> None:
                super().__init__()
                self.val_accuracy: list[float] = []
                self.stopped_early = False

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                value = (logs or {}).get("val_accuracy")
                if value is None:
                    return
                self.val_accuracy.append(float(value))
                if board.should_stop(self.val_accuracy, max_epochs):
                    log.info(
                        "%s stopping: running score %.4f after %d of %d epochs "
                        "is behind its peers",
                        board.rule.name,
                        running_scores(self.val_accuracy, board.window)[-1],
                        len(self.val_accuracy),
                        max_epochs,
                    )
                    self.stopped_early = True
                    self.model.stop_training = True

        return PruningCallback()


def epochs_saved(records: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """Sum ``epochs_run`` and ``epochs_planned`` over trial records."""
    run = planned = 0
    for record in records:
        run += int(record.get("epochs_run") or 0)
        planned += int(record.get("epochs_planned") or 0)
    return run, planned


def describe_savings(records: Iterable[Mapping[str, Any]]) -> str:
    """One line: the epochs trained against the epochs planned."""
    run, planned = epochs_saved(records)
    if planned == 0:
        return "no epochs planned"
    return (
        f"trained {run} of {planned} planned epochs "
        f"({run / planned:.0%}; early stopping saved {planned - run})"
    )


def tune_scheduler(rule: StoppingRule, max_iterations: int) -> Any:
    """Ray Tune's scheduler for ``rule``, on the per-epoch ``running_score``.

    A trial reports once per epoch of each of its runs, so Tune's
    ``training_iteration`` counts epochs across runs and two trials at the
    same iteration are at the same epoch of the same run.
    """
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    if rule.name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            metric=RUNNING_METRIC,
            mode="max",
            max_t=max(max_iterations, rule.grace_epochs),
            grace_period=rule.grace_epochs,
            reduction_factor=rule.reduction_factor,
        )
    return MedianStoppingRule(
        time_attr="training_iteration",
        metric=RUNNING_METRIC,
        mode="max",
        grace_period=rule.grace_epochs,
        min_samples_required=rule.min_peers,
    )
