"""``trainer report``: what a search learned, as plots and one HTML page.

Writes into ``SEARCH/report/``:

- ``scores.png``: every trial's score in order, with its spread over runs,
  the best so far, failed trials and the majority-class baseline.
- ``params.png``: each hyperparameter against the score (log axes for
  ``learning_rate`` and ``l2_reg``, categories for the rest that are names).
- ``curves.png``: validation accuracy per epoch of the top configurations,
  mean and standard deviation over their runs (the re-runs when there are).
- ``confusion.png``: the confusion matrix of the best run.
- ``index.html``: one self-contained page with the plots embedded (and
  linked), the search's settings and a table of the top trials with balanced
  accuracy and a flag for runs that collapsed onto one class.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.actions import ACTION_LABELS
from shared.errors import SearchError
from shared.modelcard import write_atomic

log = logging.getLogger(__name__)

REPORT_DIR = "report"
#: Hyperparameters drawn on a log axis.
LOG_PARAMS = ("learning_rate", "l2_reg")
#: How many configurations the learning-curve plot and the table show.
TOP_CURVES = 4
TOP_TABLE = 10

BEST_COLOR = "#d62728"
BASELINE_COLOR = "#7f7f7f"
POINT_CMAP = "viridis"


@dataclass
class SearchView:
    """What the report reads from a search folder, as plain records."""

    path: Path
    meta: dict[str, Any]
    trials: list[dict[str, Any]]
    reruns: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    @property
    def objective(self) -> str:
        return str(self.meta.get("options", {}).get("objective", "score"))

    @property
    def ok_trials(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("status") == "ok" and _finite(t)]

    def majority_baseline(self) -> float | None:
        """The validation set's majority-class share (the same for every run)."""
        for record in [*self.trials, *self.reruns]:
            for run in record.get("runs") or []:
                value = run.get("majority_baseline")
                if isinstance(value, (int, float)) and math.isfinite(value):
                    return float(value)
        return None

    def majority_balanced_accuracy(self) -> float | None:
        """Balanced accuracy of always answering one class: one over the
        number of classes present in validation."""
        for record in [*self.trials, *self.reruns]:
            for run in record.get("runs") or []:
                rows = run.get("confusion")
                if rows:
                    present = sum(1 for row in rows if sum(row) > 0)
                    return 1.0 / present if present else None
        return None

    def baseline(self, metric: str) -> float | None:
        """The majority-class baseline on ``metric`` (an objective name or
        ``accuracy``)."""
        if metric == "balanced_accuracy":
            return self.majority_balanced_accuracy()
        if metric == "laps":
            return None  # a majority-class guess has no laps to compare with
        return self.majority_baseline()

    def best_run(self) -> dict[str, Any] | None:
        """The run named by ``best.json``, else the best run of the best trial."""
        runs = [
            run
            for record in [*self.trials, *self.reruns]
            for run in record.get("runs") or []
        ]
        if self.best and self.best.get("run"):
            for run in runs:
                if run.get("run") == self.best["run"]:
                    return run
        ranked = sorted(self.ok_trials, key=lambda t: t["score"], reverse=True)
        if not ranked or not ranked[0].get("runs"):
            return None
        return max(ranked[0]["runs"], key=lambda r: r.get("score") or 0.0)


def load_view(search_dir: str | Path) -> SearchView:
    """Read a search folder (``trainer.searchdir.load_search``) for the report.

    Raises:
        SearchError: the folder is not a search, is of another format version
            or has no finished trial.
    """
    from trainer.searchdir import load_search

    record = load_search(search_dir)
    if not record.trials:
        raise SearchError(
            f"search {str(record.path)!r} has no finished trial yet; run or resume "
            "`trainer search` first"
        )
    trials = sorted(
        record.trials, key=lambda t: (t.get("tid") is None, t.get("tid") or 0)
    )
    return SearchView(
        path=record.path,
        meta=record.meta,
        trials=trials,
        reruns=record.reruns,
        best=record.best,
    )


def write_report(search_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Draw every plot and write ``index.html``; return the page's path.

    Raises:
        SearchError: the folder is not a search or has no finished trial.
    """
    import matplotlib

    matplotlib.use("Agg")

    view = load_view(search_dir)
    out = Path(out_dir) if out_dir else view.path / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)

    # Draw each plot that has something to show.
    plots: list[tuple[str, str, str]] = []
    for name, title, draw in (
        ("scores.png", "Score of every trial", plot_scores),
        ("params.png", "Hyperparameters against the score", plot_params),
        ("curves.png", "Learning curves of the top configurations", plot_curves),
        ("confusion.png", "Confusion matrix of the best run", plot_confusion),
    ):
        figure = draw(view)
        if figure is None:
            log.info("no data for %s", name)
            continue
        figure.savefig(out / name, dpi=110)
        _close(figure)
        plots.append((name, title, _caption(name, view)))

    # One page, plots embedded so the file can be mailed on its own.
    page = out / "index.html"
    write_atomic(page, render_html(view, out, plots).encode("utf-8"))
    log.info("wrote %s with %d plots", page, len(plots))
    return page


# --- plots -------------------------------------------------------------------


def plot_scores(view: SearchView) -> Any:
    """Score per trial in order, best so far, failures and the baseline."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.2), layout="constrained")
    ok = view.ok_trials
    order = [t.get("tid", i) for i, t in enumerate(view.trials)]
    position = {id(t): i for i, t in enumerate(view.trials)}
    xs = [position[id(t)] for t in ok]
    scores = np.array([t["score"] for t in ok])
    stds = np.array([t.get("score_std") or 0.0 for t in ok])
    axes.errorbar(
        xs,
        scores,
        yerr=stds,
        fmt="o",
        color="#1f77b4",
        ecolor="#9ecae1",
        markersize=5,
        capsize=2,
        label="trial (mean ± std over runs)",
    )
    if len(ok):
        best_so_far = np.maximum.accumulate(scores)
        axes.step(
            xs, best_so_far, where="post", color=BEST_COLOR, lw=2, label="best so far"
        )
        top = int(np.argmax(scores))
        axes.annotate(
            f"best {scores[top]:.3f}",
            (xs[top], scores[top]),
            textcoords="offset points",
            xytext=(6, 8),
            color=BEST_COLOR,
        )
    failed = [position[id(t)] for t in view.trials if t not in ok]
    if failed:
        low = float(scores.min()) if len(ok) else 0.0
        axes.plot(
            failed,
            [low] * len(failed),
            "x",
            color="black",
            label=f"failed ({len(failed)})",
        )
    collapsed = [position[id(t)] for t in ok if _collapsed_runs(t)[0]]
    if collapsed:
        axes.plot(
            collapsed,
            [t["score"] for t in ok if _collapsed_runs(t)[0]],
            "o",
            mfc="none",
            mec="#ff7f0e",
            markersize=11,
            mew=1.5,
            label="a run collapsed onto one class",
        )
    _baseline(axes, view)
    if len(order) <= 30:
        axes.set_xticks(range(len(order)), [str(t) for t in order])
    axes.set_xlabel("trial (in the order they ran)")
    axes.set_ylabel(_objective_label(view))
    axes.set_title(f"{view.path.name}: {len(ok)} trials ok of {len(view.trials)}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def plot_params(view: SearchView) -> Any:
    """One panel per hyperparameter: its value against the score."""
    import matplotlib.pyplot as plt

    ok = view.ok_trials
    names = _param_names(ok)
    if not ok or not names:
        return None
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(4.2 * columns, 3.3 * rows),
        squeeze=False,
        layout="constrained",
    )
    scores = np.array([t["score"] for t in ok])
    order = np.array([t.get("tid", i) for i, t in enumerate(ok)], dtype=float)
    best = int(np.argmax(scores))
    for number, (axes, name) in enumerate(zip(grid.flat, names, strict=False)):
        values = [t["params"].get(name) for t in ok]
        if all(_is_number(v) for v in values):
            xs = np.array(values, dtype=float)
            if name in LOG_PARAMS and np.all(xs > 0):
                axes.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            index = {label: i for i, label in enumerate(labels)}
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(values))
            xs = np.array([index[str(v)] for v in values]) + jitter
            axes.set_xticks(range(len(labels)), labels)
            axes.set_xlim(-0.5, len(labels) - 0.5)
        points = axes.scatter(
            xs, scores, c=order, cmap=POINT_CMAP, s=28, edgecolors="none"
        )
        axes.scatter(
            [xs[best]], [scores[best]], s=120, facecolors="none", edgecolors=BEST_COLOR
        )
        _baseline(axes, view, label=False)
        axes.set_xlabel(name)
        if number % columns == 0:
            axes.set_ylabel(_objective_label(view, short=True))
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(names) :]:
        axes.set_visible(False)
    bar = figure.colorbar(points, ax=grid, shrink=0.8)
    bar.set_label("trial number (when it ran)")
    figure.suptitle(
        "hyperparameters against the score (red ring: best trial, "
        "dashed: majority class)"
    )
    return figure


def plot_curves(view: SearchView) -> Any:
    """Validation accuracy per epoch of the top configurations, mean ± std."""
    import matplotlib.pyplot as plt

    configs = top_configurations(view, TOP_CURVES)
    configs = [c for c in configs if any(_val_curve(r) for r in c["runs"])]
    if not configs:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.5), layout="constrained")
    colors = plt.get_cmap("tab10").colors
    for number, config in enumerate(configs):
        curves = [_val_curve(r) for r in config["runs"] if _val_curve(r)]
        mean, std = mean_std_curves(curves)
        epochs = np.arange(1, len(mean) + 1)
        color = colors[number % len(colors)]
        axes.plot(
            epochs,
            mean,
            color=color,
            lw=2,
            label=f"{config['name']}: {config['score']:.3f} ({len(curves)} runs)",
        )
        axes.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.18)
    _baseline(axes, view, metric="accuracy")
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy")
    source = "re-runs" if view.reruns else "search trials"
    axes.set_title(f"top configurations ({source}): mean ± std over runs")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return figure


def plot_confusion(view: SearchView) -> Any:
    """The best run's confusion matrix: counts, coloured by recall per row."""
    import matplotlib.pyplot as plt

    run = view.best_run()
    if not run or not run.get("confusion"):
        return None
    counts = np.array(run["confusion"], dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    labels = list(ACTION_LABELS)[: len(counts)]
    figure, axes = plt.subplots(figsize=(5.6, 5), layout="constrained")
    image = axes.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(counts)):
        for col in range(len(counts)):
            share = f"\n{recall[row, col]:.0%}" if totals[row, 0] else ""
            axes.text(
                col,
                row,
                f"{int(counts[row, col])}{share}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if recall[row, col] > 0.55 else "black",
            )
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(
        range(len(labels)),
        [
            f"{label}\n({int(n)})"
            for label, n in zip(labels, totals[:, 0], strict=False)
        ],
    )
    axes.set_xlabel("predicted")
    axes.set_ylabel("true (validation frames)")
    balanced = run.get("balanced_accuracy")
    baseline = run.get("majority_baseline")
    accuracy = np.trace(counts) / counts.sum() if counts.sum() else float("nan")
    axes.set_title(
        f"run {run.get('run')}: accuracy {accuracy:.3f}, balanced "
        f"{_fmt(balanced)}\nmajority baseline {_fmt(baseline)}"
        + ("  COLLAPSED" if run.get("collapsed") else ""),
        fontsize=10,
    )
    figure.colorbar(image, ax=axes, shrink=0.8).set_label("share of the true class")
    return figure


# --- numbers the plots and the table share -------------------------------------


def top_configurations(view: SearchView, count: int) -> list[dict[str, Any]]:
    """The best configurations, each ``{name, score, std, params, runs}``.

    Re-runs are used when the search has them (they are the top-K trained
    again), else the search's own trials.
    """
    if view.reruns:
        records = [
            {
                "name": f"rerun of trial {r.get('source_tid')}",
                "score": r.get("mean"),
                "std": r.get("std"),
                "params": r.get("params", {}),
                "runs": r.get("runs") or [],
            }
            for r in view.reruns
            if _is_number(r.get("mean"))
        ]
    else:
        records = [
            {
                "name": f"trial {t.get('tid')}",
                "score": t["score"],
                "std": t.get("score_std"),
                "params": t.get("params", {}),
                "runs": t.get("runs") or [],
            }
            for t in view.ok_trials
        ]
    records.sort(key=lambda r: r["score"], reverse=True)
    return records[:count]


def mean_std_curves(curves: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch mean and std of curves of different lengths (early stops).

    Epoch ``e`` averages the runs that reached it.
    """
    length = max(len(c) for c in curves)
    table = np.full((len(curves), length), np.nan)
    for row, curve in enumerate(curves):
        table[row, : len(curve)] = np.asarray(curve, dtype=float)
    counts = np.sum(~np.isnan(table), axis=0)
    mean = np.nansum(table, axis=0) / counts
    deviation = np.sqrt(np.nansum((table - mean) ** 2, axis=0) / counts)
    return mean, deviation


def trial_rows(view: SearchView, count: int = TOP_TABLE) -> list[dict[str, Any]]:
    """The table's rows: the top trials by score with their run figures."""
    rows = []
    ranked = sorted(view.ok_trials, key=lambda t: t["score"], reverse=True)
    for rank, trial in enumerate(ranked[:count], start=1):
        runs = trial.get("runs") or []
        balanced = [
            r["balanced_accuracy"]
            for r in runs
            if _is_number(r.get("balanced_accuracy"))
        ]
        collapsed, total = _collapsed_runs(trial)
        rows.append(
            {
                "rank": rank,
                "tid": trial.get("tid"),
                "score": trial["score"],
                "score_std": trial.get("score_std"),
                "balanced_accuracy": float(np.mean(balanced)) if balanced else None,
                "collapsed": collapsed,
                "runs": total,
                "epochs": _epochs_text(runs),
                "params": trial.get("params", {}),
            }
        )
    return rows


# --- the page ------------------------------------------------------------------


def render_html(
    view: SearchView, out_dir: Path, plots: list[tuple[str, str, str]]
) -> str:
    """The report page: settings, best configuration, plots and the table."""
    options = view.meta.get("options", {})
    data = view.meta.get("data", {})
    baseline = view.baseline(view.objective)
    best = view.best
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>MaLPi search {_e(view.path.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Search <code>{_e(view.path.name)}</code></h1>",
        f"<p class=meta>Report written {_e(time.strftime('%Y-%m-%d %H:%M'))}; "
        f"search created {_e(view.meta.get('created', '?'))}, MaLPi "
        f"{_e(view.meta.get('software_version', '?'))}.</p>",
        "<h2>Summary</h2><table class=kv>",
        _kv("trials", f"{len(view.ok_trials)} ok of {len(view.trials)}"),
        _kv("objective", _objective_label(view)),
        _kv(
            "majority-class baseline",
            f"accuracy {_fmt(view.majority_baseline())}, balanced accuracy "
            f"{_fmt(view.majority_balanced_accuracy())}",
        ),
        _kv(
            "data",
            f"{len(data.get('drives', []))} drives, {data.get('train_frames', '?')} "
            f"training and {data.get('val_frames', '?')} validation frames",
        ),
        _kv("options", _e(", ".join(f"{k}={v}" for k, v in sorted(options.items())))),
    ]
    if best:
        parts.append(
            _kv(
                "best",
                f"{_fmt(best.get('score'))} ± {_fmt(best.get('score_std'))} "
                f"({_e(best.get('source', ''))}), run {_e(best.get('run', ''))}: "
                f"{_params(best.get('params', {}))}",
            )
        )
    else:
        parts.append(_kv("best", "not chosen yet: the search has not finished"))
    parts.append("</table>")
    if baseline is not None and view.ok_trials:
        top = max(t["score"] for t in view.ok_trials)
        if top <= baseline + 0.01:
            parts.append(
                f"<p class=warn>The best score {top:.3f} does not beat always "
                f"answering the majority class ({baseline:.3f}).</p>"
            )

    # The plots, embedded and linked.
    for name, title, caption in plots:
        encoded = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        parts.append(
            f"<h2>{_e(title)}</h2><p>{_e(caption)}</p>"
            f'<a href="{_e(name)}"><img alt="{_e(title)}" '
            f'src="data:image/png;base64,{encoded}"></a>'
        )

    # The top trials.
    parts.append(
        "<h2>Top trials</h2><table class=grid><tr><th>#</th><th>trial</th>"
        "<th>score ± std</th><th>balanced accuracy</th><th>collapsed runs</th>"
        "<th>epochs per run</th><th>parameters</th></tr>"
    )
    for row in trial_rows(view):
        flag = (
            f"<td class=bad>{row['collapsed']} of {row['runs']}</td>"
            if row["collapsed"]
            else f"<td>0 of {row['runs']}</td>"
        )
        parts.append(
            f"<tr><td>{row['rank']}</td><td>{_e(row['tid'])}</td>"
            f"<td>{_fmt(row['score'])} ± {_fmt(row['score_std'])}</td>"
            f"<td>{_fmt(row['balanced_accuracy'])}</td>{flag}"
            f"<td>{_e(row['epochs'])}</td><td>{_params(row['params'])}</td></tr>"
        )
    parts.append("</table>")
    if view.reruns:
        parts.append(
            "<h2>Re-runs of the top configurations</h2><table class=grid>"
            "<tr><th>source trial</th><th>mean ± std</th><th>runs</th>"
            "<th>collapsed runs</th><th>parameters</th></tr>"
        )
        for rerun in sorted(
            view.reruns, key=lambda r: r.get("mean") or 0.0, reverse=True
        ):
            collapsed, total = _collapsed_runs(rerun)
            parts.append(
                f"<tr><td>{_e(rerun.get('source_tid'))}</td>"
                f"<td>{_fmt(rerun.get('mean'))} ± {_fmt(rerun.get('std'))}</td>"
                f"<td>{total}</td><td{' class=bad' if collapsed else ''}>"
                f"{collapsed}</td><td>{_params(rerun.get('params', {}))}</td></tr>"
            )
        parts.append("</table>")
    failed = [t for t in view.trials if t.get("status") != "ok"]
    if failed:
        parts.append("<h2>Failed trials</h2><ul>")
        for trial in failed:
            error = trial.get("error") or "no error text"
            parts.append(f"<li>trial {_e(trial.get('tid'))}: {_e(error)}</li>")
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;
 padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd}
table{border-collapse:collapse;margin:0.5em 0}
.grid td,.grid th{border:1px solid #ccc;padding:3px 8px;font-size:0.9em}
.grid th{background:#f3f3f3}
.grid td:not(:last-child){white-space:nowrap}
.kv td{padding:2px 10px 2px 0;vertical-align:top}
.kv td:first-child{color:#666}
.bad{background:#fde0dc;font-weight:bold}
.warn{background:#fff3cd;padding:0.5em}
.meta{color:#666}
"""


# --- helpers -------------------------------------------------------------------


def _caption(name: str, view: SearchView) -> str:
    def note(metric: str) -> str:
        value = view.baseline(metric)
        if value is None:
            return ""
        return f" The grey dashed line is the majority-class baseline ({value:.3f})."

    return {
        "scores.png": "Each point is a trial's mean score over its runs (bars: "
        "std); the red line is the best so far." + note(view.objective),
        "params.png": "Colour shows when a trial ran: the sampler's choices "
        "should gather where the score is high." + note(view.objective),
        "curves.png": "Validation accuracy per epoch, mean (line) and standard "
        "deviation (band) over runs." + note("accuracy"),
        "confusion.png": "Rows are the true actions, columns the predicted ones; "
        "colour is the share of each true action.",
    }[name]


def _baseline(
    axes: Any, view: SearchView, label: bool = True, metric: str | None = None
) -> None:
    """Draw what always answering the majority class scores on ``metric``
    (the search's objective unless given)."""
    value = view.baseline(metric or view.objective)
    if value is None:
        return
    text = f"majority class ({value:.3f})" if label else None
    axes.axhline(value, ls="--", color=BASELINE_COLOR, label=text)


def _objective_label(view: SearchView, short: bool = False) -> str:
    if view.objective == "balanced_accuracy":
        return "balanced accuracy"
    if view.objective == "laps":
        return "laps" if short else "laps (closed-loop score in the simulator)"
    return "score" if short else "score (best 5-epoch mean val accuracy)"


def _param_names(trials: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for trial in trials:
        for name in trial.get("params", {}):
            if name not in names:
                names.append(name)
    varied = [n for n in names if len({repr(t["params"].get(n)) for t in trials}) > 1]
    return varied or names


def _val_curve(run: dict[str, Any]) -> list[float]:
    return [
        float(v)
        for v in (run.get("history") or {}).get("val_accuracy", [])
        if _is_number(v)
    ]


def _epochs_text(runs: list[dict[str, Any]]) -> str:
    """Epochs each run trained, e.g. ``6`` or ``4-6`` (early stops)."""
    epochs = [int(r["epochs"]) for r in runs if _is_number(r.get("epochs"))]
    if not epochs:
        return "–"
    low, high = min(epochs), max(epochs)
    return str(low) if low == high else f"{low}-{high}"


def _collapsed_runs(record: dict[str, Any]) -> tuple[int, int]:
    runs = record.get("runs") or []
    return sum(1 for r in runs if r.get("collapsed")), len(runs)


def _finite(trial: dict[str, Any]) -> bool:
    return _is_number(trial.get("score"))


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if _is_number(value) else "–"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _kv(key: str, value: str) -> str:
    return f"<tr><td>{_e(key)}</td><td>{value}</td></tr>"


def _params(params: dict[str, Any]) -> str:
    shown = []
    for key, value in params.items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        shown.append(f"{_e(key)}={_e(text)}")
    return ", ".join(shown)


def _close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
