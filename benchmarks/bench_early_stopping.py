"""Benchmark early stopping: the same seeded search with and without a rule.

On the real DonkeyCar tub (imported on the fly), ``trainer search`` runs
twice with the same seed, space, trials and epochs: once training every
epoch, once with ``--early-stopping RULE``. The two searches run at the same
time in two processes, each with its own project folder and frame cache.

Figures: each search's best trial score, the difference, and the epochs
each trained. Targets: the best score with early stopping within 0.02 of
the one without, using at most 60% of its epochs.

Run: ``python benchmarks/bench_early_stopping.py [--trials 10] [--epochs 10]
[--rule asha] [--json figures.json]``; exit code 1 when a target is missed.
``--baseline PROJECT`` reuses a finished search without early stopping (the
same seed makes it the same search) and runs only the one with the rule.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TUB = REPO / ".." / "shared" / "data" / "donkeycar-tub"
MAX_SCORE_GAP = 0.02
MAX_EPOCH_SHARE = 0.60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tub", default=str(DEFAULT_TUB), help="DonkeyCar tub")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rule", choices=("asha", "median"), default="asha")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="per search")
    parser.add_argument("--work", help="folder for both searches (default: a temp)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--baseline",
        help="a finished search without early stopping, same options (its "
        "project folder), to compare with instead of running it again",
    )
    args = parser.parse_args()

    tub = Path(args.tub).resolve()
    if not (tub / "manifest.json").is_file():
        print(f"no DonkeyCar tub at {tub}; give --tub", file=sys.stderr)
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-early-stopping-"))

    # Both searches at once, same seed and options, one with the rule.
    started = time.monotonic()
    variants = {"full": [], args.rule: ["--early-stopping", args.rule]}
    projects = {name: work / name for name in variants}
    if args.baseline:
        projects["full"] = Path(args.baseline)
    running = {}
    for name, extra in variants.items():
        if name == "full" and args.baseline:
            continue
        project = work / name
        project.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "trainer.cli",
            "--quiet",
            "search",
            str(tub),
            "--name",
            "bench",
            "--project",
            str(project),
            "--trials",
            str(args.trials),
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "--top-k",
            "0",
            "--threads",
            str(args.threads),
            *extra,
        ]
        log = (work / f"{name}.log").open("w")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        running[name] = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    for name, process in running.items():
        if process.wait() != 0:
            print(f"the {name} search failed; see {work / name}.log", file=sys.stderr)
            return 2
    elapsed_s = time.monotonic() - started

    # The figures, from each search folder's trials.jsonl.
    figures: dict[str, object] = {
        "tub": str(tub),
        "trials": args.trials,
        "epochs": args.epochs,
        "seed": args.seed,
        "rule": args.rule,
        "wall_time_s": round(elapsed_s, 1),
    }
    for name in variants:
        summary = _summary(projects[name] / "searches" / "bench" / "trials.jsonl")
        figures.update({f"{name}_{key}": value for key, value in summary.items()})
    full, pruned = figures["full_best_score"], figures[f"{args.rule}_best_score"]
    gap = full - pruned
    share = figures[f"{args.rule}_epochs_run"] / figures["full_epochs_run"]
    figures["score_gap"] = round(gap, 4)
    figures["epoch_share"] = round(share, 3)
    figures["score_target_met"] = gap <= MAX_SCORE_GAP
    figures["epoch_target_met"] = share <= MAX_EPOCH_SHARE
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["score_target_met"] and figures["epoch_target_met"] else 1


def _summary(trials_file: Path) -> dict[str, object]:
    records = [json.loads(line) for line in trials_file.read_text().splitlines()]
    ok = [r for r in records if r["status"] == "ok" and r["score"] is not None]
    best = max(ok, key=lambda r: r["score"])
    return {
        "best_score": round(best["score"], 4),
        "best_tid": best["tid"],
        "best_stopped_early": any(run["stopped_early"] for run in best["runs"]),
        "epochs_run": sum(r["epochs_run"] for r in records),
        "epochs_planned": sum(r["epochs_planned"] for r in records),
        "trials_stopped_early": sum(
            any(run["stopped_early"] for run in r["runs"]) for r in records
        ),
        "failed_trials": len(records) - len(ok),
    }


if __name__ == "__main__":
    raise SystemExit(main())
