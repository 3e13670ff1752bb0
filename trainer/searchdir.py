"""The search folder: how a search is kept on disk, read by every tool.

::

    searches/<name>/
        search.json    format, version, space, options and data of the search
        trials.pkl     hyperopt's Trials, for resuming
        trials.jsonl   one line per finished trial (its runs inside)
        runs/<tid>-<k>/model.keras
        rerun.jsonl    the top configurations trained again
        best.json      the configuration to export and its best run

Every file is written atomically (a temporary file renamed over the old one),
so a search killed at any moment leaves a folder that resumes. Readers
(``trainer report``, ``trainer export``, the distributed search) use
``load_search`` and the small functions here, never the files' layout.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import __version__
from shared.errors import SearchError
from shared.modelcard import write_atomic

SEARCH_FORMAT = 1
SEARCH_FILE = "search.json"
TRIALS_PICKLE = "trials.pkl"
TRIALS_FILE = "trials.jsonl"
RERUN_FILE = "rerun.jsonl"
BEST_FILE = "best.json"
RUNS_DIR = "runs"
MODEL_FILE = "model.keras"


@dataclass
class SearchRecord:
    """Everything a search folder holds, as plain data."""

    path: Path
    meta: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    reruns: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def options(self) -> dict[str, Any]:
        return self.meta.get("options", {})

    @property
    def space(self) -> dict[str, Any]:
        return self.meta.get("space", {})

    @property
    def data(self) -> dict[str, Any]:
        return self.meta.get("data", {})

    def ok_trials(self) -> list[dict[str, Any]]:
        """Finished trials with a score, best first."""
        done = [t for t in self.trials if t.get("status") == "ok" and _finite(t)]
        return sorted(done, key=lambda t: t["score"], reverse=True)

    def model_path(self, run: str) -> Path:
        """Where run ``run``'s Keras model is (``runs/<run>/model.keras``)."""
        return run_model_path(self.path, run)


def search_path(project: str | Path, name: str) -> Path:
    """``<project>/searches/<name>``, refusing a name that is not a plain folder.

    Raises:
        SearchError: ``name`` is empty or holds a path separator.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise SearchError(
            f"search name {name!r} must be a plain folder name, like 'tub-tpe'"
        )
    return Path(project).expanduser() / "searches" / name


def run_model_path(search: str | Path, run: str) -> Path:
    """The model file of run ``run`` in a search folder."""
    return Path(search) / RUNS_DIR / run / MODEL_FILE


def new_meta(
    space: dict[str, Any], options: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """The content of a new search.json."""
    return {
        "format": SEARCH_FORMAT,
        "software_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "space": space,
        "options": options,
        "data": data,
    }


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """A search folder's search.json, or None when it has none yet.

    Raises:
        SearchError: the file is unreadable or of another format version.
    """
    file = Path(path) / SEARCH_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise SearchError(f"cannot read {str(file)!r}: {err}") from err
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != SEARCH_FORMAT:
        raise SearchError(
            f"search folder {str(path)!r} has format {found!r}, this MaLPi reads "
            f"format {SEARCH_FORMAT}; run the search again under a new --name"
        )
    return meta


def write_meta(path: str | Path, meta: dict[str, Any]) -> None:
    """Write search.json atomically (creating the folder)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_atomic(path / SEARCH_FILE, _json(meta, indent=2).encode())


def load_search(path: str | Path) -> SearchRecord:
    """Read a whole search folder.

    Raises:
        SearchError: the folder is not a search, or of another format version.
    """
    path = Path(path)
    meta = read_meta(path)
    if meta is None:
        raise SearchError(
            f"{str(path)!r} is not a search folder (no {SEARCH_FILE}); give a "
            "folder made by `trainer search`, e.g. searches/<name>"
        )
    return SearchRecord(
        path=path,
        meta=meta,
        trials=read_jsonl(path / TRIALS_FILE),
        reruns=read_jsonl(path / RERUN_FILE),
        best=read_best(path),
    )


def read_jsonl(file: Path) -> list[dict[str, Any]]:
    """The JSON lines of a file (none when it does not exist)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as err:
        raise SearchError(f"cannot read {str(file)!r}: {err}") from err
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise SearchError(
                f"line {number} of {str(file)!r} is not JSON: {err}"
            ) from err
    return records


def write_jsonl(file: Path, records: list[dict[str, Any]]) -> None:
    """Replace a JSON-lines file atomically with ``records``."""
    write_atomic(file, "".join(_json(r) + "\n" for r in records).encode())


def write_trials(path: str | Path, trials: Any, records: list[dict[str, Any]]) -> None:
    """Save hyperopt's ``trials`` (pickle) and their records (JSON lines).

    The pickle comes first: on resume, the records are rewritten from the
    pickle, so a kill between the two writes loses nothing.
    """
    path = Path(path)
    write_atomic(path / TRIALS_PICKLE, pickle.dumps(trials))
    write_jsonl(path / TRIALS_FILE, records)


def read_trials_pickle(path: str | Path) -> Any | None:
    """hyperopt Trials saved by ``write_trials``, or None when there are none.

    Raises:
        SearchError: the pickle is damaged.
    """
    file = Path(path) / TRIALS_PICKLE
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return pickle.loads(data)
    except Exception as err:
        raise SearchError(
            f"cannot read {str(file)!r} ({err}); the search cannot resume: "
            "delete the folder or use a new --name"
        ) from err


def write_reruns(path: str | Path, reruns: list[dict[str, Any]]) -> None:
    """Replace rerun.jsonl with ``reruns`` (best first)."""
    write_jsonl(Path(path) / RERUN_FILE, reruns)


def read_best(path: str | Path) -> dict[str, Any] | None:
    """best.json of a search folder, or None before the search has ended."""
    file = Path(path) / BEST_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise SearchError(f"cannot read {str(file)!r}: {err}") from err


def write_best(path: str | Path, best: dict[str, Any]) -> None:
    """Write best.json atomically."""
    write_atomic(Path(path) / BEST_FILE, _json(best, indent=2).encode())


def _json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, allow_nan=False)


def _finite(trial: dict[str, Any]) -> bool:
    score = trial.get("score")
    return isinstance(score, (int, float)) and math.isfinite(score)
