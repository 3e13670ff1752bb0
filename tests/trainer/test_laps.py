"""The closed-loop objective: runs scored by driving the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigError, SearchError
from tests.trainer.trainer_drives import cycle_actions, write_drive
from trainer import searchdir
from trainer.cli import main
from trainer.data import load_dataset
from trainer.laps import check_eval_worlds, laps_score
from trainer.search import SearchOptions, run_search
from trainer.space import default_space

#: Two worlds where the expert drives one clean lap in EVAL_MINUTES.
EVAL_TRACKS = "oval:0,random:7"
EVAL_MINUTES = "0.35"
SPACE = {"learning_rate": 0.001, "batch_size": 16, "dropouts": "low"}


@pytest.fixture
def drives(tmp_path: Path) -> Path:
    folder = tmp_path / "drives"
    write_drive(folder, "a", cycle_actions(30, seed=1), seed=1)
    write_drive(folder, "b", cycle_actions(20, seed=2), seed=2)
    return folder


def _world(clean: int, expert: int, departures: int, seconds: float) -> dict:
    return {
        "clean_laps": clean,
        "expert_clean_laps": expert,
        "departures": departures,
        "duration_s": seconds,
    }


def test_laps_score_is_the_capped_lap_ratio_minus_departures_per_minute() -> None:
    worlds = [_world(1, 2, 1, 60.0), _world(3, 2, 0, 60.0)]

    # Ratios 0.5 and 1 (capped), mean 0.75, minus 0.1 x 1 departure / 2 min.
    assert laps_score(worlds) == pytest.approx(0.7)
    assert laps_score([_world(1, 1, 30, 60.0)]) == 0.0


def test_check_eval_worlds_refuses_too_few_minutes_for_an_expert_lap() -> None:
    with pytest.raises(ConfigError, match="expert drives no clean lap of figure8:0"):
        check_eval_worlds("figure8:0", 0.2)
    with pytest.raises(ConfigError, match="--eval-minutes 0 must be a positive"):
        check_eval_worlds("oval:0", 0)


@pytest.mark.slow
def test_search_objective_laps_scores_trials_by_driving_the_simulator(
    drives: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))

    code = main(
        [
            "--quiet", "search", str(drives), "--name", "s",
            "--project", str(tmp_path), "--space", str(space),
            "--trials", "1", "--epochs", "1", "--top-k", "0", "--threads", "1",
            "--objective", "laps", "--eval-tracks", EVAL_TRACKS,
            "--eval-minutes", EVAL_MINUTES,
        ]
    )  # fmt: skip

    assert code == 0, capsys.readouterr().err
    record = searchdir.load_search(tmp_path / "searches" / "s")
    assert record.options["objective"] == "laps"
    assert record.options["eval_tracks"] == EVAL_TRACKS
    assert record.options["eval_minutes"] == float(EVAL_MINUTES)
    (trial,) = record.trials
    (run,) = trial["runs"]
    worlds = run["closed_loop"]["worlds"]
    assert [w["track"] for w in worlds] == ["oval:0", "random:7"]
    assert all(w["expert_clean_laps"] >= 1 for w in worlds)
    assert all(w["duration_s"] == pytest.approx(21.0) for w in worlds)
    assert run["laps"] == pytest.approx(laps_score(worlds))
    assert trial["score"] == pytest.approx(run["laps"])
    assert record.best is not None
    assert record.best["objective"] == "laps"
    assert record.best["run_score"] == pytest.approx(run["laps"])


def test_search_objective_laps_unknown_eval_track_is_a_one_line_error(
    drives: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--quiet", "search", str(drives), "--name", "s",
            "--project", str(tmp_path), "--trials", "1",
            "--objective", "laps", "--eval-tracks", "oval,square",
        ]
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "--eval-tracks: track 'square' has an unknown shape 'square'" in err
    assert not (tmp_path / "searches" / "s").exists()


def test_search_objective_laps_resumed_with_other_eval_tracks_is_refused(
    drives: Path, tmp_path: Path
) -> None:
    dataset = load_dataset([drives], tmp_path / "cache")
    folder = tmp_path / "searches" / "s"
    first = SearchOptions(
        trials=1, epochs=1, max_batch=16, objective="laps", eval_tracks="oval:0"
    )
    meta = searchdir.new_meta(default_space(16), first.to_dict(), dataset.summary())
    searchdir.write_meta(folder, meta)
    again = SearchOptions(
        trials=1, epochs=1, max_batch=16, objective="laps", eval_tracks="random:7"
    )

    with pytest.raises(SearchError, match="eval-tracks 'oval:0', not 'random:7'"):
        run_search(
            folder,
            [drives],
            again,
            cache_dir=tmp_path / "cache",
            dataset=dataset,
        )


@pytest.mark.slow
def test_train_objective_laps_prints_and_records_each_run_s_laps(
    drives: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"

    code = main(
        [
            "--quiet", "train", str(drives), "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--project", str(tmp_path), "--output", str(output),
            "--objective", "laps", "--eval-tracks", "oval:0",
            "--eval-minutes", EVAL_MINUTES,
        ]
    )  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0
    assert "run train-0: laps " in out
    assert "configuration: laps " in out
    summary = json.loads((output / "train.json").read_text())
    (run,) = summary["runs"]
    assert run["laps"] == pytest.approx(laps_score(run["closed_loop"]["worlds"]))
    assert summary["score"] == pytest.approx(run["laps"])
    best = json.loads((output / "best.json").read_text())
    assert best["objective"] == "laps"
