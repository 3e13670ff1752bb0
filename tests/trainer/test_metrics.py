"""The seed's score and the metrics that keep it honest, on hand-made data."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from shared.actions import Action
from trainer.metrics import (
    balanced_accuracy,
    confusion_matrix,
    evaluate_run,
    is_collapsed,
    majority_baseline,
    mean_std,
    per_class_recall,
    seed_score,
)


def test_seed_score_is_the_best_window_of_five_by_hand() -> None:
    history = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 0.2]
    # Windows: (0.1..0.5) = 1.5/5 = 0.30; (0.2..0.9) = 2.3/5 = 0.46;
    # (0.3, 0.4, 0.5, 0.9, 0.2) = 2.3/5 = 0.46. The best is 0.46.

    assert seed_score(history) == pytest.approx(0.46)


def test_seed_score_ignores_a_single_spike() -> None:
    history = [0.2, 0.2, 0.2, 0.2, 1.0, 0.2, 0.2, 0.2, 0.2]

    # Every window holds the spike once at most: (4 * 0.2 + 1.0) / 5 = 0.36.
    assert seed_score(history) == pytest.approx(0.36)


def test_seed_score_with_fewer_than_five_epochs_is_their_mean() -> None:
    assert seed_score([0.2, 0.4]) == pytest.approx(0.3)
    assert seed_score([0.7]) == pytest.approx(0.7)
    assert math.isnan(seed_score([]))


def test_confusion_matrix_rows_are_true_columns_predicted() -> None:
    y_true = np.array([0, 1, 1, 2, 3, 3, 3])
    y_pred = np.array([0, 1, 2, 2, 3, 2, 3])

    matrix = confusion_matrix(y_true, y_pred)

    assert matrix.shape == (5, 5)
    assert matrix[1, 2] == 1 and matrix[3, 2] == 1 and matrix[3, 3] == 2
    assert matrix.sum() == 7


def test_recall_and_balanced_accuracy_by_hand() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 0, 0])
    matrix = confusion_matrix(y_true, y_pred)

    recall = per_class_recall(matrix)

    assert recall[:3] == pytest.approx([0.75, 0.5, 0.0])
    assert np.isnan(recall[3]) and np.isnan(recall[4])
    assert balanced_accuracy(matrix) == pytest.approx((0.75 + 0.5 + 0.0) / 3)


def test_majority_baseline_is_the_share_of_the_commonest_class() -> None:
    y_true = np.array([1, 1, 1, 2, 3, 1, 0, 1])

    assert majority_baseline(y_true) == pytest.approx(5 / 8)


def test_is_collapsed_above_ninety_five_percent_of_one_class() -> None:
    assert is_collapsed(np.array([Action.FORWARD] * 96 + [Action.LEFT] * 4))
    assert not is_collapsed(np.array([Action.FORWARD] * 95 + [Action.LEFT] * 5))


def test_evaluate_run_flags_and_warns_a_collapsed_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    y_true = np.array([1] * 52 + [2] * 24 + [3] * 24)
    y_pred = np.full(100, 1)

    with caplog.at_level(logging.WARNING, logger="trainer.metrics"):
        figures = evaluate_run({"val_accuracy": [0.52] * 6}, y_true, y_pred, name="x")

    assert figures["collapsed"] is True
    assert figures["score"] == pytest.approx(0.52)
    assert figures["majority_baseline"] == pytest.approx(0.52)
    assert figures["balanced_accuracy"] == pytest.approx(1 / 3)
    assert figures["per_class_recall"] == [None, 1.0, 0.0, 0.0, None]
    assert any(
        "collapsed" in r.getMessage() and "forward" in r.getMessage()
        for r in caplog.records
    )


def test_evaluate_run_of_a_good_run_does_not_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    y = np.array([0, 1, 2, 3, 4] * 4)

    with caplog.at_level(logging.WARNING, logger="trainer.metrics"):
        figures = evaluate_run({"val_accuracy": [1.0]}, y, y)

    assert figures["collapsed"] is False
    assert figures["balanced_accuracy"] == pytest.approx(1.0)
    assert not caplog.records


def test_mean_std_skips_nan() -> None:
    mean, std = mean_std([0.5, float("nan"), 0.7])

    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(0.1)
