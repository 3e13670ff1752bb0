"""How good a run is: the seed's score and the figures that keep it honest.

Pure numpy, no I/O. Class ids are the ``shared.actions.Action`` values.

The seed's score is the maximum over epochs of the running mean (window 5)
of validation accuracy: a run must stay good for several epochs, not spike
once. A run of fewer epochs than the window scores the mean of all its
epochs. The score alone can flatter a model that always predicts the most
common action, so every run also reports the majority-class baseline,
balanced accuracy, per-class recall and the confusion matrix, and is flagged
as collapsed when it predicts one class for nearly every validation frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.actions import ACTION_LABELS, NUM_ACTIONS

log = logging.getLogger(__name__)

SCORE_WINDOW = 5
#: A run that predicts one class for more than this share of frames collapsed.
COLLAPSE_SHARE = 0.95


def seed_score(val_accuracy: Sequence[float], window: int = SCORE_WINDOW) -> float:
    """Max over epochs of the window-``window`` running mean of ``val_accuracy``.

    With fewer epochs than ``window``, the mean of all of them. An empty
    history scores nan.
    """
    values = np.asarray(val_accuracy, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    if values.size < window:
        return float(values.mean())
    means = np.convolve(values, np.ones(window) / window, mode="valid")
    return float(means.max())


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_ACTIONS
) -> np.ndarray:
    """``num_classes`` x ``num_classes`` counts: rows true, columns predicted."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class; nan for a class absent from the true labels."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / support, np.nan)


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes present in the true labels."""
    recall = per_class_recall(confusion)
    present = recall[~np.isnan(recall)]
    return float(present.mean()) if present.size else float("nan")


def majority_baseline(y_true: np.ndarray, num_classes: int = NUM_ACTIONS) -> float:
    """Share of the most common true class: the accuracy of always guessing it."""
    y_true = np.asarray(y_true, dtype=np.int64)
    if y_true.size == 0:
        return float("nan")
    return float(np.bincount(y_true, minlength=num_classes).max() / y_true.size)


def predicted_share(y_pred: np.ndarray, num_classes: int = NUM_ACTIONS) -> float:
    """Share of frames given the most often predicted class."""
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_pred.size == 0:
        return 0.0
    return float(np.bincount(y_pred, minlength=num_classes).max() / y_pred.size)


def is_collapsed(
    y_pred: np.ndarray,
    threshold: float = COLLAPSE_SHARE,
    num_classes: int = NUM_ACTIONS,
) -> bool:
    """True when more than ``threshold`` of the predictions are one class."""
    return predicted_share(y_pred, num_classes) > threshold


def evaluate_run(
    history: dict[str, Sequence[float]],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    name: str = "run",
) -> dict[str, Any]:
    """The metrics of one run as plain data (nan recall becomes None).

    Logs a WARNING when the run collapsed onto one class.
    """
    confusion = confusion_matrix(y_true, y_pred)
    recall = per_class_recall(confusion)
    collapsed = is_collapsed(y_pred)
    if collapsed:
        top = int(np.bincount(np.asarray(y_pred), minlength=NUM_ACTIONS).argmax())
        log.warning(
            "%s collapsed: it predicts %r for %.0f%% of validation frames "
            "(limit %.0f%%); its accuracy is the class share, not driving",
            name,
            ACTION_LABELS[top],
            100 * predicted_share(y_pred),
            100 * COLLAPSE_SHARE,
        )
    return {
        "score": seed_score(history.get("val_accuracy", [])),
        "balanced_accuracy": balanced_accuracy(confusion),
        "per_class_recall": [None if np.isnan(r) else float(r) for r in recall],
        "confusion": confusion.tolist(),
        "majority_baseline": majority_baseline(y_true),
        "collapsed": collapsed,
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std of the finite values (nan, nan if none)."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std())
