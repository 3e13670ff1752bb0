"""The search: its space, its folder, and a killed search that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.errors import SearchError
from tests.trainer.trainer_drives import cycle_actions, write_drive
from trainer import searchdir
from trainer.cli import main
from trainer.data import load_dataset
from trainer.search import SearchOptions, run_search
from trainer.space import (
    default_space,
    largest_batch,
    load_space,
    to_params,
    validate_space,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def drives(tmp_path: Path) -> Path:
    folder = tmp_path / "drives"
    write_drive(folder, "a", cycle_actions(30, seed=1), seed=1)
    write_drive(folder, "b", cycle_actions(20, seed=2), seed=2)
    return folder


def _search_args(drives: Path, project: Path, trials: int = 3) -> list[str]:
    return [
        "search", str(drives), "--name", "s", "--project", str(project),
        "--trials", str(trials), "--epochs", "1", "--max-batch", "16",
        "--top-k", "1", "--rerun-runs", "1", "--threads", "1",
    ]  # fmt: skip


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("trainer: error:")]


# --- the space ---------------------------------------------------------------


def test_default_space_is_the_seed_s() -> None:
    space = default_space(max_batch=64)

    assert space["learning_rate"] == {"dist": "loguniform", "low": -9, "high": -4}
    assert space["l2_reg"] == {"dist": "loguniform", "low": -10, "high": -3}
    assert space["batch_size"] == {"dist": "quniform", "low": 5, "high": 64, "q": 1}
    assert space["dropouts"]["options"] == ["low", "mid", "high", "up", "down"]
    assert space["optimizer"]["options"] == ["rmsprop", "adagrad", "adadelta", "adam"]
    assert largest_batch(space) == 64


def test_load_space_reads_toml_with_fixed_values(tmp_path: Path) -> None:
    file = tmp_path / "space.toml"
    file.write_text(
        'head = "fc256"\n'
        '[learning_rate]\ndist = "loguniform"\nlow = -8\nhigh = -5\n'
        '[dropouts]\ndist = "choice"\noptions = ["low", [0, 0, 0.1, 0.1, 0.2]]\n'
    )

    space = load_space(file)

    assert space["head"] == "fc256"
    assert space["learning_rate"]["low"] == -8


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rte": 0.1}, "unknown parameter 'learning_rte' in space; known "
         "parameters: learning_rate, l2_reg, batch_size, dropouts, optimizer"),
        ({"learning_rate": {"dist": "uniform", "low": -1, "high": 0.1}},
         "draws values <= 0"),
        ({"l2_reg": {"dist": "loguniform", "low": -3, "high": -10}},
         "must be numbers with low < high"),
        ({"optimizer": {"dist": "choice", "options": ["adam", "sgd"]}},
         "unknown value 'sgd'; use one of rmsprop, adagrad, adadelta, adam"),
        ({"batch_size": {"dist": "uniform", "low": 5, "high": 20}},
         "quantised distribution"),
        ({"dropouts": {"dist": "uniform", "low": 0, "high": 1}}, "names things"),
        ({"learning_rate": {"dist": "normal", "low": 0, "high": 1}},
         "distribution 'normal'"),
        ({"batch_size": {"dist": "quniform", "low": 5, "high": 20}},
         "takes exactly low, high, q"),
    ],
)  # fmt: skip
def test_validate_space_bad_entries_raise_one_line(space: dict, message: str) -> None:
    with pytest.raises(SearchError) as info:
        validate_space(space)

    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_space_bad_json_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "space.json"
    file.write_text("{oops")

    with pytest.raises(SearchError, match="space.json' is not valid JSON"):
        load_space(file)


def test_to_params_makes_batch_sizes_integers() -> None:
    params = to_params({"batch_size": 17.0, "dropouts": "up"})

    assert params == {"batch_size": 17, "dropouts": "up"}
    assert isinstance(params["batch_size"], int)


def test_search_options_reject_bad_values() -> None:
    with pytest.raises(SearchError, match="unknown algorithm 'grid'"):
        SearchOptions(algo="grid")
    with pytest.raises(SearchError, match="unknown early-stopping rule 'soon'"):
        SearchOptions(early_stopping="soon")
    assert SearchOptions(trials=30).startup_trials == 10


# --- the search folder -----------------------------------------------------------


def test_search_folder_of_another_format_is_refused_in_one_line(
    drives: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "searches" / "s"
    folder.mkdir(parents=True)
    (folder / "search.json").write_text(json.dumps({"format": 99}))

    code = main(_search_args(drives, tmp_path))

    errors = _errors(capsys.readouterr().err)
    assert code == 2
    assert len(errors) == 1
    assert "has format 99, this MaLPi reads format 1" in errors[0]
    with pytest.raises(SearchError, match="format 99"):
        searchdir.load_search(folder)


def test_search_resumed_with_other_options_is_refused(
    drives: Path, tmp_path: Path
) -> None:
    dataset = load_dataset([drives], tmp_path / "cache")
    folder = tmp_path / "searches" / "s"
    first = SearchOptions(trials=2, epochs=1, max_batch=16)
    meta = searchdir.new_meta(default_space(16), first.to_dict(), dataset.summary())
    searchdir.write_meta(folder, meta)

    with pytest.raises(SearchError, match="was made with epochs 1, not 2"):
        run_search(
            folder,
            [drives],
            SearchOptions(trials=2, epochs=2, max_batch=16),
            cache_dir=tmp_path / "cache",
            dataset=dataset,
        )


def test_search_space_batches_larger_than_the_data_are_refused(
    drives: Path, tmp_path: Path
) -> None:
    with pytest.raises(SearchError, match="batches up to 128 frames but the "
                       "training set has 40"):  # fmt: skip
        run_search(
            tmp_path / "s",
            [drives],
            SearchOptions(trials=1, epochs=1),
            cache_dir=tmp_path / "cache",
        )


@pytest.mark.slow
def test_search_killed_after_two_trials_resumes_to_the_exact_count(
    drives: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _search_args(drives, tmp_path, trials=3)
    folder = tmp_path / "searches" / "s"
    trials_file = folder / "trials.jsonl"

    # Start the search in its own process and SIGKILL it after two trials.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if trials_file.is_file() and len(trials_file.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = searchdir.read_jsonl(trials_file)
    assert len(killed) == 2
    assert not (folder / "best.json").exists()

    # The same command again: it resumes and stops at exactly three trials.
    code = main(args)

    printed = capsys.readouterr().out
    assert code == 0
    assert "resuming s: 2 of 3 trials done" in printed
    record = searchdir.load_search(folder)
    assert [t["tid"] for t in record.trials] == [0, 1, 2]
    assert record.trials[:2] == killed  # the first two were not trained again
    trials = searchdir.read_trials_pickle(folder)
    assert len(trials.trials) == 3
    assert len(record.reruns) == 1
    assert record.best is not None
    assert record.model_path(record.best["run"]).is_file()
    assert "trial   2 (3/3)  score " in printed and "best " in printed
    assert "re-run ranking" in printed
