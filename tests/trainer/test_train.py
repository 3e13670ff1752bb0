"""Training runs and trials: records in the search format, seeds, errors."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from shared.errors import ConfigError
from tests.trainer.trainer_drives import cycle_actions, write_drive
from trainer.cli import main
from trainer.data import Dataset, load_dataset
from trainer.metrics import seed_score
from trainer.model import ModelParams
from trainer.train import TrainOptions, run_trial, train_run

RUN_KEYS = {
    "run", "seed", "history", "score", "balanced_accuracy", "per_class_recall",
    "confusion", "majority_baseline", "collapsed", "epochs", "train_time_s",
    "stopped_early", "overhead_s",
}  # fmt: skip


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train") / "drives"
    write_drive(folder, "a", cycle_actions(40, seed=1), seed=1)
    write_drive(folder, "b", cycle_actions(20, seed=2), seed=2)
    return folder


@pytest.fixture(scope="module")
def dataset(drives: Path) -> Dataset:
    return load_dataset([drives], drives.parent / "cache")


@pytest.mark.slow
def test_run_trial_gives_search_format_records_and_saves_models(
    dataset: Dataset, tmp_path: Path
) -> None:
    options = TrainOptions(epochs=2, runs=2, seed=7)

    result = run_trial(
        ModelParams(batch_size=8), dataset, options, runs_dir=tmp_path, run_prefix="4"
    )

    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert record["status"] == "ok" and record["error"] is None
    assert [r["run"] for r in record["runs"]] == ["4-0", "4-1"]
    assert [r["seed"] for r in record["runs"]] == [7, 8]
    assert record["epochs_run"] == record["epochs_planned"] == 4
    for run in record["runs"]:
        assert set(run) == RUN_KEYS
        assert run["score"] == pytest.approx(seed_score(run["history"]["val_accuracy"]))
        assert sum(map(sum, run["confusion"])) == dataset.val_frames
        assert len(run["history"]["val_accuracy"]) == 2
        model = keras.models.load_model(tmp_path / run["run"] / "model.keras")
        assert model.input.dtype == "uint8"
    scores = [r["score"] for r in record["runs"]]
    assert record["score"] == pytest.approx(sum(scores) / 2)


@pytest.mark.slow
def test_train_run_objective_balanced_accuracy_is_the_trial_score(
    dataset: Dataset,
) -> None:
    options = TrainOptions(epochs=1, runs=1, objective="balanced_accuracy")

    result = run_trial(ModelParams(batch_size=16), dataset, options)

    assert result.score == pytest.approx(result.runs[0].balanced_accuracy)


def test_train_run_batch_larger_than_training_set_raises(dataset: Dataset) -> None:
    with pytest.raises(ConfigError, match="larger than the training set"):
        train_run(
            ModelParams(batch_size=dataset.train_frames + 1),
            dataset,
            TrainOptions(epochs=1),
            seed=0,
            name="x",
        )


def test_run_trial_with_an_impossible_batch_fails_without_raising(
    dataset: Dataset,
) -> None:
    result = run_trial({"batch_size": 10_000}, dataset, TrainOptions(epochs=1))

    assert result.status == "fail"
    assert "batch_size 10000" in result.error
    assert result.runs == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs 0"),
        ({"runs": 0}, "runs 0"),
        ({"early_stopping": 0}, "patience 0"),
        ({"objective": "loss"}, "unknown objective 'loss'"),
    ],
)
def test_train_options_reject_bad_values(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainOptions(**options)


@pytest.mark.slow
def test_cli_train_prints_a_table_and_saves_results(
    drives: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"

    code = main(
        ["train", str(drives), "--epochs", "1", "--runs", "2", "--output", str(out),
         "--cache-dir", str(drives.parent / "cache"), "--batch-size", "12",
         "--dropouts", "low", "--early-stopping", "3"]
    )  # fmt: skip

    printed = capsys.readouterr().out
    assert code == 0
    assert "train-0" in printed and "train-1" in printed
    assert "majority" in printed and "configuration: score" in printed
    saved = json.loads((out / "train.json").read_text())
    assert saved["params"]["dropouts"] == "low"
    assert saved["params"]["batch_size"] == 12
    assert len(saved["runs"]) == 2
    best = json.loads((out / "best.json").read_text())
    assert (out / "runs" / best["run"] / "model.keras").is_file()


def test_cli_train_unknown_parameter_is_a_one_line_error(
    drives: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", str(drives), "--params", '{"learning_rte": 0.1}',
                 "--project", str(tmp_path)])  # fmt: skip

    errors = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("trainer: error:")
    ]
    assert code == 2
    assert len(errors) == 1
    assert "unknown model parameter 'learning_rte'" in errors[0]
    assert "known parameters: learning_rate" in errors[0]
