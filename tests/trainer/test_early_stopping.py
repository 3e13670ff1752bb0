"""The pruning rules on hand-made learning curves, and the Keras callback."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import SearchError
from trainer.early_stopping import (
    PruningBoard,
    StoppingRule,
    describe_savings,
    epochs_saved,
    running_scores,
    tune_scheduler,
)
from trainer.metrics import seed_score

GOOD = [0.50, 0.60, 0.70, 0.75, 0.80, 0.82, 0.84, 0.85]
FAIR = [0.45, 0.55, 0.60, 0.65, 0.68, 0.70, 0.71, 0.72]
POOR = [0.30, 0.32, 0.31, 0.33, 0.34, 0.33, 0.35, 0.34]


def test_running_scores_match_the_objective_on_every_prefix() -> None:
    accuracy = [0.2, 0.4, 0.6, 0.8, 1.0, 0.0, 0.0]
    scores = running_scores(accuracy, window=5)

    assert scores[0] == pytest.approx(0.2)
    assert scores[1] == pytest.approx(0.3)
    assert scores[4] == pytest.approx(0.6)
    # A drop in accuracy never lowers the score once the window is full.
    assert scores[-1] == pytest.approx(0.6)
    assert scores[-1] == pytest.approx(seed_score(accuracy))


def test_stopping_rule_rejects_unknown_name_and_bad_grace() -> None:
    with pytest.raises(SearchError, match="'hyperband'"):
        StoppingRule("hyperband")
    with pytest.raises(SearchError, match="grace period 0"):
        StoppingRule("median", grace_epochs=0)


def test_stopping_rule_asha_rungs_grow_by_reduction_factor() -> None:
    rule = StoppingRule("asha", grace_epochs=2, reduction_factor=3)

    assert rule.rungs(40) == [2, 6, 18]
    assert rule.rungs(2) == []


def test_median_rule_stops_poor_curve_after_grace_only() -> None:
    board = PruningBoard(StoppingRule("median", grace_epochs=3))
    for curve in (GOOD, FAIR, GOOD):
        board.add_run(curve, epochs_planned=8)

    # Within the grace period nothing stops, however poor.
    assert not board.should_stop(POOR[:2], max_epochs=8)
    assert board.should_stop(POOR[:3], max_epochs=8)
    # A run as good as the best is kept.
    assert not board.should_stop(GOOD[:5], max_epochs=8)


def test_median_rule_waits_for_enough_peers() -> None:
    board = PruningBoard(StoppingRule("median", grace_epochs=1))
    board.add_run(GOOD, epochs_planned=8)
    board.add_run(GOOD, epochs_planned=8)

    assert not board.should_stop(POOR[:4], max_epochs=8)
    board.add_run(FAIR, epochs_planned=8)
    assert board.should_stop(POOR[:4], max_epochs=8)


def test_asha_rule_decides_only_at_rungs_against_top_third() -> None:
    board = PruningBoard(StoppingRule("asha", grace_epochs=2, reduction_factor=3))
    for curve in (GOOD, FAIR, POOR):
        board.add_run(curve, epochs_planned=8)

    # Rungs are after 2 and 6 epochs; the fair curve is not in the top third.
    assert board.should_stop(FAIR[:2], max_epochs=8)
    assert not board.should_stop(FAIR[:3], max_epochs=8)
    assert not board.should_stop(GOOD[:2], max_epochs=8)
    assert board.should_stop(FAIR[:6], max_epochs=8)


def test_board_counts_stopped_curves_as_peers_where_they_reached() -> None:
    board = PruningBoard(StoppingRule("median", grace_epochs=2))
    board.add_run(GOOD[:2], epochs_planned=8)
    board.add_run(GOOD, epochs_planned=8)

    assert len(board.peers_at(2)) == 2
    assert len(board.peers_at(3)) == 1
    assert (board.epochs_run, board.epochs_planned) == (10, 16)


def test_board_add_records_reads_trial_histories() -> None:
    board = PruningBoard(StoppingRule("median"))
    records = [
        {"runs": [{"history": {"val_accuracy": GOOD}}, {"history": {}}]},
        {"runs": [{"history": {"val_accuracy": POOR[:3]}}]},
        {"status": "fail", "runs": []},
    ]
    board.add_records(records)

    assert [len(curve) for curve in board.curves] == [8, 3]


def test_epochs_saved_sums_records() -> None:
    records = [
        {"epochs_run": 8, "epochs_planned": 8},
        {"epochs_run": 3, "epochs_planned": 8},
    ]

    assert epochs_saved(records) == (11, 16)
    assert "11 of 16" in describe_savings(records)
    assert describe_savings([]) == "no epochs planned"


def test_tune_scheduler_builds_ray_schedulers() -> None:
    from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

    asha = tune_scheduler(StoppingRule("asha"), max_iterations=20)
    median = tune_scheduler(StoppingRule("median"), max_iterations=20)

    assert isinstance(asha, ASHAScheduler)
    assert isinstance(median, MedianStoppingRule)


def test_pruning_callback_stops_keras_fit_early() -> None:
    import keras

    board = PruningBoard(StoppingRule("median", grace_epochs=2, min_peers=1))
    board.add_run([1.0] * 10, epochs_planned=10)

    # Labels the model cannot learn: validation accuracy stays far below 1.0.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 2, size=64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callback = board.callback(max_epochs=10)
    history = model.fit(
        x, y, validation_data=(x, y), epochs=10, verbose=0, callbacks=[callback]
    )

    assert callback.stopped_early
    assert len(history.history["val_accuracy"]) == 2


def test_rules_stop_ties_at_the_cutoff_but_not_ties_with_the_best() -> None:
    plateau = [0.385] * 8
    board = PruningBoard(StoppingRule("median", grace_epochs=2))
    for curve in (plateau, plateau, [0.386] * 8):
        board.add_run(curve, epochs_planned=8)

    assert board.should_stop(plateau[:3], max_epochs=8)
    assert not board.should_stop([0.386] * 3, max_epochs=8)

    alone = PruningBoard(StoppingRule("asha", grace_epochs=2))
    alone.add_run(plateau, epochs_planned=8)
    assert not alone.should_stop(plateau[:2], max_epochs=8)
