"""The hyperparameter search: hyperopt over the space, resumable, then re-runs.

``run_search`` reads top to bottom:

1. Load the drives once (``trainer.data``) for every trial.
2. Open the search folder: a new one gets search.json; an existing one must
   have been made with the same space, options and data, and resumes from
   its trials.pkl.
3. Ask hyperopt for one trial at a time (TPE or random), train it with
   ``trainer.train.run_trial`` and save trials.pkl and trials.jsonl after
   each, so a search killed at any moment resumes with the same command and
   ends with exactly the requested number of trials.
4. Re-run the top K configurations with more seeds, rank them by their mean,
   and write rerun.jsonl and best.json.

hyperopt minimises, so a trial's loss is minus its objective (the seed's
score, balanced accuracy, or closed-loop laps in the simulator of
``trainer.laps``; mean over the trial's runs).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import SearchError
from trainer import searchdir
from trainer.data import Dataset, load_dataset
from trainer.early_stopping import (
    RULES,
    PruningBoard,
    StoppingRule,
    describe_savings,
)
from trainer.laps import DEFAULT_EVAL_MINUTES, DEFAULT_EVAL_TRACKS, check_eval_worlds
from trainer.space import (
    DEFAULT_MAX_BATCH,
    default_space,
    largest_batch,
    to_hyperopt,
    to_params,
    validate_space,
)
from trainer.train import OBJECTIVES, TrainOptions, run_trial

log = logging.getLogger(__name__)

ALGOS = ("tpe", "random")
#: Run seeds: trial ``tid`` run ``k`` uses ``seed + TRIAL_SEED_STRIDE * tid + k``;
#: re-run ``i`` run ``k`` uses ``seed + RERUN_SEED_BASE + stride * i + k``.
TRIAL_SEED_STRIDE = 1000
RERUN_SEED_BASE = 1_000_000
#: Options a resumed search must share with the search it continues.
FIXED_OPTIONS = (
    "runs",
    "epochs",
    "objective",
    "algo",
    "seed",
    "max_batch",
    "early_stopping",
    "mirror",
    "class_weights",
    "startup_trials",
    "eval_tracks",
    "eval_minutes",
)


@dataclass
class SearchOptions:
    """How a search runs (saved in search.json)."""

    trials: int = 20
    runs: int = 1
    epochs: int = 40
    objective: str = "score"
    algo: str = "tpe"
    seed: int = 0
    max_batch: int = DEFAULT_MAX_BATCH
    top_k: int = 3
    rerun_runs: int = 5
    #: None, a patience in epochs, or a rule of ``trainer.early_stopping``.
    early_stopping: int | str | None = None
    mirror: bool = True
    class_weights: bool = False
    #: Random trials before TPE models the results; None: a third of the
    #: trials, at least 3 and at most hyperopt's own 20.
    startup_trials: int | None = None
    #: Keep every run's model.keras (re-runs always keep theirs).
    save_models: bool = True
    #: With objective ``laps``: the simulator worlds and minutes per world.
    eval_tracks: str = DEFAULT_EVAL_TRACKS
    eval_minutes: float = DEFAULT_EVAL_MINUTES

    def __post_init__(self) -> None:
        for name in ("trials", "runs", "epochs", "rerun_runs"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise SearchError(f"--{name.replace('_', '-')} {value!r} must be >= 1")
        if self.top_k < 0:
            raise SearchError(f"--top-k {self.top_k!r} must be 0 or more")
        if self.algo not in ALGOS:
            raise SearchError(
                f"unknown algorithm {self.algo!r}; use one of {', '.join(ALGOS)}"
            )
        if self.objective not in OBJECTIVES:
            raise SearchError(
                f"unknown objective {self.objective!r}; use one of "
                f"{', '.join(OBJECTIVES)}"
            )
        if isinstance(self.early_stopping, str):
            StoppingRule(self.early_stopping)
        if self.objective == "laps":
            check_eval_worlds(self.eval_tracks, self.eval_minutes)
        if self.startup_trials is None:
            self.startup_trials = max(3, min(20, self.trials // 3))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train_options(self, runs: int | None = None) -> TrainOptions:
        """How each run of a trial is trained."""
        patience = self.early_stopping if isinstance(self.early_stopping, int) else None
        return TrainOptions(
            epochs=self.epochs,
            runs=runs or self.runs,
            early_stopping=patience,
            objective=self.objective,
            mirror=self.mirror,
            class_weights=self.class_weights,
            seed=self.seed,
            save_models=self.save_models,
            eval_tracks=self.eval_tracks,
            eval_minutes=self.eval_minutes,
        )


def run_search(
    path: str | Path,
    drives: Sequence[str | Path],
    options: SearchOptions,
    *,
    cache_dir: str | Path,
    space: dict[str, Any] | None = None,
    dataset: Dataset | None = None,
    echo: Callable[[str], None] = log.info,
) -> searchdir.SearchRecord:
    """Run (or resume) the search kept in ``path``; its finished record.

    ``echo`` receives a line per finished trial and the final ranking.

    Raises:
        SearchError: the folder is of another format or another search, the
            space is invalid, or its batches do not fit the training set.
        DriveError: a drive cannot be loaded.
    """
    path = Path(path)
    logging.getLogger("hyperopt").setLevel(logging.WARNING)

    # The folder's format is checked before anything slow happens.
    meta = searchdir.read_meta(path)

    # Data, once for the whole search.
    if dataset is None:
        dataset = load_dataset(drives, cache_dir)
    space = space if space is not None else default_space(options.max_batch)
    validate_space(space)
    if largest_batch(space) > dataset.train_frames:
        raise SearchError(
            f"the space draws batches up to {largest_batch(space)} frames but the "
            f"training set has {dataset.train_frames}; lower --max-batch (or the "
            "space's batch_size) or add drives"
        )

    # A new search writes search.json; a resumed one must match it.
    if meta is None:
        meta = searchdir.new_meta(space, options.to_dict(), dataset.summary())
        searchdir.write_meta(path, meta)
        log.info("new search in %s", path)
    else:
        check_resumable(path, meta, space, options, dataset)
    trials = load_trials(path)
    records = trial_records(trials)
    searchdir.write_jsonl(path / searchdir.TRIALS_FILE, records)
    if records:
        echo(f"resuming {path.name}: {len(records)} of {options.trials} trials done")

    # Early stopping by a rule compares each run with the runs before it.
    board = None
    if isinstance(options.early_stopping, str):
        board = PruningBoard(StoppingRule(options.early_stopping))
        board.add_records(records)

    # One trial at a time, saved after each.
    train_options = options.train_options()
    hyperopt_space = to_hyperopt(space)
    algo = _algorithm(options)
    while len(trials.trials) < options.trials:
        tid = len(trials.trials)
        objective = partial(
            _objective,
            tid=tid,
            dataset=dataset,
            options=train_options,
            objective_name=options.objective,
            runs_dir=path / searchdir.RUNS_DIR,
            seed=options.seed + TRIAL_SEED_STRIDE * tid,
            board=board,
        )
        _fmin_one(objective, hyperopt_space, algo, trials, options.seed + tid)
        records = trial_records(trials)
        searchdir.write_trials(path, trials, records)
        echo(trial_line(records, options.trials))
    if options.early_stopping is not None:
        echo(describe_savings(records))

    # Re-run the best configurations with more seeds.
    reruns = _rerun_top(path, records, dataset, options, echo)
    record_best(path, records, reruns, options.objective, echo)
    return searchdir.load_search(path)


# --- trials ------------------------------------------------------------------


def _objective(
    sample: dict[str, Any],
    *,
    tid: int,
    dataset: Dataset,
    options: TrainOptions,
    objective_name: str,
    runs_dir: Path,
    seed: int,
    board: PruningBoard | None,
) -> dict[str, Any]:
    """hyperopt's objective: train one trial and report its loss and record."""
    from hyperopt import STATUS_FAIL, STATUS_OK

    params = to_params(sample)
    try:
        result = run_trial(
            params,
            dataset,
            options,
            runs_dir=runs_dir,
            run_prefix=str(tid),
            seed=seed,
            board=board,
        )
    except Exception as err:  # a trial's failure must not end the search
        log.exception("trial %d failed", tid)
        now = time.time()
        record = {
            "tid": tid,
            "params": params,
            "score": None,
            "score_std": None,
            "status": "fail",
            "error": f"{type(err).__name__}: {err}",
            "start": now,
            "end": now,
            "epochs_run": 0,
            "epochs_planned": options.epochs * options.runs,
            "worker": "",
            "runs": [],
        }
        return {"status": STATUS_FAIL, "record": record}
    result.tid = tid
    record = result.to_dict()
    if result.status != "ok":
        return {"status": STATUS_FAIL, "record": record}
    return {"status": STATUS_OK, "loss": -result.score, "record": record}


def _fmin_one(
    objective: Callable[..., dict[str, Any]],
    space: dict[str, Any],
    algo: Callable[..., Any],
    trials: Any,
    seed: int,
) -> None:
    """Let hyperopt suggest and evaluate exactly one more trial."""
    from hyperopt import fmin

    fmin(
        objective,
        space,
        algo=algo,
        max_evals=len(trials.trials) + 1,
        trials=trials,
        # A fresh generator per trial, seeded by its number: the same search
        # suggests the same points whether or not it was resumed.
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
        return_argmin=False,
    )


def _algorithm(options: SearchOptions) -> Callable[..., Any]:
    from hyperopt import rand, tpe

    if options.algo == "random":
        return rand.suggest
    return partial(tpe.suggest, n_startup_jobs=options.startup_trials)


def load_trials(path: Path) -> Any:
    from hyperopt import Trials

    trials = searchdir.read_trials_pickle(path)
    # Only finished trials are ever saved: the pickle is written between trials.
    return Trials() if trials is None else trials


def trial_records(trials: Any) -> list[dict[str, Any]]:
    return [t["result"]["record"] for t in trials.trials if "record" in t["result"]]


def check_resumable(
    path: Path,
    meta: dict[str, Any],
    space: dict[str, Any],
    options: SearchOptions,
    dataset: Dataset,
) -> None:
    saved = meta.get("options", {})
    for name in FIXED_OPTIONS:
        if name in saved and saved[name] != getattr(options, name):
            flag = name.replace("_", "-")
            raise SearchError(
                f"search {path.name!r} was made with {flag} {saved[name]!r}, not "
                f"{getattr(options, name)!r}; resume it with the same options or "
                "start another with a new --name"
            )
    if meta.get("space") != space:
        raise SearchError(
            f"search {path.name!r} was made with another space; resume it with "
            "the same --space (or none) or start another with a new --name"
        )
    digest = meta.get("data", {}).get("digest")
    if digest != dataset.digest:
        raise SearchError(
            f"search {path.name!r} was made on other data (digest "
            f"{str(digest)[:12]}..., now {dataset.digest[:12]}...); resume it "
            "with the same drives or start another with a new --name"
        )


def trial_line(records: list[dict[str, Any]], total: int) -> str:
    record = records[-1]
    ok = [r for r in records if r["status"] == "ok" and r["score"] is not None]
    best = max(ok, key=lambda r: r["score"]) if ok else None
    seconds = record["end"] - record["start"]
    if record["status"] == "ok":
        score = f"score {record['score']:.4f}"
        if len(record["runs"]) > 1:
            score += f" ± {record['score_std']:.4f}"
    else:
        score = f"FAILED ({record['error']})"
    best_text = f"best {best['score']:.4f} (trial {best['tid']})" if best else "best -"
    return (
        f"trial {record['tid']:>3} ({len(records)}/{total})  {score}  {best_text}  "
        f"{seconds:6.1f} s  {format_params(record['params'])}"
    )


def format_params(params: dict[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        if isinstance(value, float):
            parts.append(f"{name}={value:.3g}")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


# --- re-runs and the best configuration -----------------------------------------


def _rerun_top(
    path: Path,
    records: list[dict[str, Any]],
    dataset: Dataset,
    options: SearchOptions,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Train the top-K configurations ``rerun_runs`` times each; best first."""
    if options.top_k == 0:
        return []
    ok = [r for r in records if r["status"] == "ok" and r["score"] is not None]
    ranked = sorted(ok, key=lambda r: r["score"], reverse=True)
    top: list[dict[str, Any]] = []
    for record in ranked:
        if all(record["params"] != other["params"] for other in top):
            top.append(record)
        if len(top) == options.top_k:
            break

    # Re-runs finished by an earlier, killed invocation are kept.
    existing = {
        r["source_tid"]: r for r in searchdir.read_jsonl(path / searchdir.RERUN_FILE)
    }
    rerun_options = options.train_options(runs=options.rerun_runs)
    rerun_options.save_models = True
    reruns: list[dict[str, Any]] = []
    for i, record in enumerate(top):
        if record["tid"] in existing:
            reruns.append(existing[record["tid"]])
            continue
        echo(
            f"re-running trial {record['tid']} ({i + 1}/{len(top)}) "
            f"with {options.rerun_runs} runs"
        )
        result = run_trial(
            record["params"],
            dataset,
            rerun_options,
            runs_dir=path / searchdir.RUNS_DIR,
            run_prefix=f"rerun{record['tid']}",
            seed=options.seed + RERUN_SEED_BASE + TRIAL_SEED_STRIDE * record["tid"],
        )
        data = result.to_dict()
        reruns.append(
            {
                "params": record["params"],
                "source_tid": record["tid"],
                "search_score": record["score"],
                "mean": data["score"],
                "std": data["score_std"],
                "status": data["status"],
                "error": data["error"],
                "runs": data["runs"],
            }
        )
        reruns.sort(key=rerun_rank_key, reverse=True)
        searchdir.write_reruns(path, reruns)
    reruns.sort(key=rerun_rank_key, reverse=True)
    searchdir.write_reruns(path, reruns)
    print_rerun_ranking(reruns, echo)
    return reruns


def record_best(
    path: Path,
    records: list[dict[str, Any]],
    reruns: list[dict[str, Any]],
    objective: str,
    echo: Callable[[str], None],
) -> None:
    """Choose the configuration to export, write best.json and say which."""
    best = choose_best(records, reruns, objective)
    if best is None:
        echo("no trial finished with a score: see the errors in trials.jsonl")
        return
    searchdir.write_best(path, best)
    echo(
        f"best: score {best['score']:.4f} ± {best['score_std']:.4f} "
        f"({best['source']}, run {best['run']}): {format_params(best['params'])}"
    )


def print_rerun_ranking(
    reruns: list[dict[str, Any]], echo: Callable[[str], None]
) -> None:
    """A line per re-run configuration, best mean first."""
    echo("re-run ranking (mean over runs):")
    for rank, rerun in enumerate(reruns, 1):
        mean = "failed" if rerun["mean"] is None else f"{rerun['mean']:.4f}"
        std = "" if rerun["std"] is None else f" ± {rerun['std']:.4f}"
        echo(
            f"  {rank}. trial {rerun['source_tid']}: {mean}{std} "
            f"(search {rerun['search_score']:.4f})  {format_params(rerun['params'])}"
        )


def rerun_rank_key(rerun: dict[str, Any]) -> float:
    mean = rerun.get("mean")
    return mean if isinstance(mean, (int, float)) and math.isfinite(mean) else -1.0


def choose_best(
    records: list[dict[str, Any]], reruns: list[dict[str, Any]], objective: str
) -> dict[str, Any] | None:
    """best.json: the top configuration and its best run (for export)."""
    if reruns and reruns[0]["mean"] is not None:
        source, top = "rerun", reruns[0]
        score, score_std = top["mean"], top["std"]
    else:
        ok = [r for r in records if r["status"] == "ok" and r["score"] is not None]
        if not ok:
            return None
        source, top = "search", max(ok, key=lambda r: r["score"])
        score, score_std = top["score"], top["score_std"]
    runs = [r for r in top["runs"] if r.get(objective) is not None]
    best_run = max(runs, key=lambda r: r[objective])
    return {
        "params": top["params"],
        "score": score,
        "score_std": score_std,
        "objective": objective,
        "run": best_run["run"],
        "run_score": best_run[objective],
        "source": source,
        "source_tid": top.get("source_tid", top.get("tid")),
    }


def describe_rules() -> str:
    """The early-stopping choices, for --help."""
    return f"a patience in epochs, or a rule: {', '.join(RULES)}"
