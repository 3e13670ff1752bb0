"""``trainer report``: plots and one HTML page from a search folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from shared.errors import SearchError
from trainer.report import load_view, mean_std_curves, trial_rows, write_report

OPTIMIZERS = ("rmsprop", "adagrad", "adadelta", "adam")
DROPOUTS = ("low", "mid", "high", "up", "down")


def _run(
    name: str,
    rng: np.random.Generator,
    level: float,
    epochs: int,
    collapsed: bool = False,
) -> dict:
    """A RunResult record whose val accuracy climbs towards ``level``."""
    val = [
        float(
            min(
                0.99, 0.43 + (level - 0.43) * (1 - np.exp(-e / 3)) + rng.normal(0, 0.01)
            )
        )
        for e in range(epochs)
    ]
    confusion = rng.integers(0, 30, (5, 5))
    confusion[np.diag_indices(5)] += int(level * 200)
    if collapsed:
        confusion[:, 1:] = 0
        confusion[:, 0] = 40
    return {
        "run": name,
        "seed": int(rng.integers(1 << 30)),
        "history": {
            "loss": [1.5 - 0.1 * e for e in range(epochs)],
            "accuracy": [min(0.99, v + 0.05) for v in val],
            "val_loss": [1.4 - 0.08 * e for e in range(epochs)],
            "val_accuracy": val,
        },
        "score": float(np.max(np.convolve(val, np.ones(5) / 5, mode="valid"))),
        "balanced_accuracy": 0.2 if collapsed else level - 0.1,
        "per_class_recall": [0.5, 0.6, None, 0.4, 0.3],
        "confusion": confusion.tolist(),
        "majority_baseline": 0.4312,
        "collapsed": collapsed,
        "epochs": epochs,
        "train_time_s": 12.5,
        "stopped_early": epochs < 12,
    }


def make_fake_search(path: Path, trials: int = 14, runs: int = 3) -> Path:
    """A search folder in the agreed layout, with made-up but plausible figures."""
    rng = np.random.default_rng(7)
    path.mkdir(parents=True)
    meta = {
        "format": 1,
        "software_version": "0.1.0",
        "created": "2026-12-03T12:00:00Z",
        "space": {"learning_rate": ["loguniform", -9, -4]},
        "options": {
            "trials": trials,
            "runs": runs,
            "epochs": 12,
            "seed": 1,
            "objective": "score",
            "algo": "tpe",
        },
        "data": {
            "drives": ["drives/a", "drives/b"],
            "digest": "b" * 64,
            "train_frames": 800,
            "val_frames": 200,
            "counts": {},
        },
    }
    (path / "search.json").write_text(json.dumps(meta))
    lines = []
    for tid in range(trials):
        params = {
            "learning_rate": float(np.exp(rng.uniform(-9, -4))),
            "l2_reg": float(np.exp(rng.uniform(-10, -3))),
            "batch_size": int(rng.integers(5, 64)),
            "dropouts": DROPOUTS[tid % 5],
            "optimizer": OPTIMIZERS[tid % 4],
        }
        if tid == 5:
            lines.append(
                {
                    "tid": tid,
                    "params": params,
                    "score": None,
                    "score_std": None,
                    "status": "fail",
                    "error": "ResourceExhaustedError: out of memory",
                    "runs": [],
                }
            )
            continue
        level = 0.5 + 0.03 * tid * rng.uniform(0.5, 1)
        run_records = [
            _run(
                f"{tid}-{k}", rng, level, int(rng.integers(8, 13)), tid == 12 and k == 0
            )
            for k in range(runs)
        ]
        scores = [r["score"] for r in run_records]
        lines.append(
            {
                "tid": tid,
                "params": params,
                "score": float(np.mean(scores)),
                "score_std": float(np.std(scores)),
                "status": "ok",
                "error": None,
                "start": 0,
                "end": 1,
                "epochs_run": 12,
                "epochs_planned": 12,
                "worker": "test/1",
                "runs": run_records,
            }
        )
    (path / "trials.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ok = sorted((x for x in lines if x["status"] == "ok"), key=lambda x: -x["score"])
    reruns = []
    for i, trial in enumerate(ok[:2]):
        level = float(trial["score"])
        run_records = [_run(f"rerun{i}-{k}", rng, level, 12) for k in range(runs)]
        scores = [r["score"] for r in run_records]
        reruns.append(
            {
                "params": trial["params"],
                "source_tid": trial["tid"],
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores)),
                "runs": run_records,
            }
        )
    (path / "rerun.jsonl").write_text("".join(json.dumps(x) + "\n" for x in reruns))
    top = max(reruns, key=lambda r: r["mean"])
    best_run = max(top["runs"], key=lambda r: r["score"])
    (path / "best.json").write_text(
        json.dumps(
            {
                "params": top["params"],
                "score": top["mean"],
                "score_std": top["std"],
                "run": best_run["run"],
                "source": "rerun",
            }
        )
    )
    return path


def test_write_report_writes_every_plot_and_html_references_them(tmp_path):
    search = make_fake_search(tmp_path / "search")

    page = write_report(search)

    assert page == search / "report" / "index.html"
    pngs = sorted(p.name for p in (search / "report").glob("*.png"))
    assert pngs == ["confusion.png", "curves.png", "params.png", "scores.png"]
    text = page.read_text()
    for name in pngs:
        assert f'href="{name}"' in text
        assert (search / "report" / name).stat().st_size > 10_000
    assert text.count("data:image/png;base64,") == len(pngs)
    assert "ResourceExhaustedError" in text
    assert re.search(r"class=bad>1 of 3<", text), "collapsed trial 12 is flagged"


def test_write_report_without_reruns_or_best(tmp_path):
    search = make_fake_search(tmp_path / "search", trials=4, runs=2)
    (search / "rerun.jsonl").unlink()
    (search / "best.json").unlink()

    page = write_report(search, tmp_path / "out")

    text = page.read_text()
    assert "not chosen yet" in text
    assert (tmp_path / "out" / "confusion.png").is_file()
    assert "top configurations (search trials)" not in text  # titles live in PNGs
    assert load_view(search).best_run()["run"].split("-")[0] in {"0", "1", "3"}


def test_trial_rows_rank_by_score_and_count_collapsed(tmp_path):
    view = load_view(make_fake_search(tmp_path / "search"))
    rows = trial_rows(view, count=20)

    scores = [row["score"] for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert len(rows) == 13  # 14 trials, one failed
    collapsed = {row["tid"]: row["collapsed"] for row in rows}
    assert collapsed[12] == 1 and collapsed[0] == 0


def test_mean_std_curves_average_the_runs_that_reached_each_epoch():
    mean, std = mean_std_curves([[0.5, 0.6, 0.7], [0.7, 0.8]])
    assert np.allclose(mean, [0.6, 0.7, 0.7])
    assert np.allclose(std, [0.1, 0.1, 0.0])


def test_load_view_refuses_a_folder_that_is_no_search(tmp_path):
    with pytest.raises(SearchError, match="not a search folder"):
        load_view(tmp_path)
    (tmp_path / "search.json").write_text('{"format": 99}')
    with pytest.raises(SearchError, match="format 99"):
        load_view(tmp_path)
    (tmp_path / "search.json").write_text('{"format": 1}')
    with pytest.raises(SearchError, match="no finished trial"):
        load_view(tmp_path)


def test_report_baseline_follows_the_objective(tmp_path):
    search = make_fake_search(tmp_path / "search", trials=3, runs=1)
    meta = json.loads((search / "search.json").read_text())
    meta["options"]["objective"] = "balanced_accuracy"
    (search / "search.json").write_text(json.dumps(meta))
    view = load_view(search)

    assert view.baseline("balanced_accuracy") == pytest.approx(0.2)
    assert view.baseline("accuracy") == pytest.approx(0.4312)
    text = write_report(search).read_text()
    assert "majority-class baseline (0.200)" in text  # scores and params
    assert "majority-class baseline (0.431)" in text  # learning curves
