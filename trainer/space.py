"""The search space: the seed's by default, or the user's from a file.

A space is plain data, one entry per parameter of ``trainer.model.ModelParams``:
either a fixed value or a distribution::

    {
      "learning_rate": {"dist": "loguniform", "low": -9, "high": -4},
      "batch_size": {"dist": "quniform", "low": 5, "high": 128, "q": 1},
      "dropouts": {"dist": "choice", "options": ["low", "mid", "high"]},
      "head": "dk"
    }

``loguniform`` and ``qloguniform`` take natural-log bounds, as hyperopt does:
``loguniform(-9, -4)`` draws from e^-9 (1.2e-4) to e^-4 (1.8e-2). A space file
is JSON or TOML (the same keys as tables). Parameters a space leaves out keep
``ModelParams``' defaults. ``load_space`` checks every entry and refuses an
unknown parameter, distribution or option, and a bad range, in one line that
lists what is known.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from shared.errors import ConfigError, SearchError
from trainer.model import (
    DROPOUT_SCHEDULES,
    HEADS,
    OPTIMIZERS,
    PADDINGS,
    PIXEL_SCALES,
    ModelParams,
)

#: The default largest batch size of the seed's space.
DEFAULT_MAX_BATCH = 128

DISTRIBUTIONS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "qloguniform": ("low", "high", "q"),
    "choice": ("options",),
}

#: What each parameter may take: "number" (positive), "rate" (>= 0),
#: "integer" (>= 1) or a tuple of the names it accepts.
PARAMETERS: dict[str, str | tuple[str, ...]] = {
    "learning_rate": "number",
    "l2_reg": "rate",
    "batch_size": "integer",
    "dropouts": tuple(DROPOUT_SCHEDULES),
    "optimizer": tuple(OPTIMIZERS),
    "head": HEADS,
    "padding": PADDINGS,
    "pixel_scale": PIXEL_SCALES,
}


def default_space(max_batch: int = DEFAULT_MAX_BATCH) -> dict[str, Any]:
    """The seed's space, with batches of 5 to ``max_batch`` frames."""
    if max_batch < 5:
        raise SearchError(
            f"max_batch {max_batch!r} is below the space's smallest batch (5); "
            "give --max-batch 5 or more"
        )
    return {
        "learning_rate": {"dist": "loguniform", "low": -9, "high": -4},
        "l2_reg": {"dist": "loguniform", "low": -10, "high": -3},
        "batch_size": {"dist": "quniform", "low": 5, "high": max_batch, "q": 1},
        "dropouts": {"dist": "choice", "options": list(DROPOUT_SCHEDULES)},
        "optimizer": {"dist": "choice", "options": list(OPTIMIZERS)},
    }


def load_space(path: str | Path) -> dict[str, Any]:
    """Read and validate a space file (``.json`` or ``.toml``).

    Raises:
        SearchError: the file is missing, unparsable or not a valid space.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SearchError(f"cannot read space file {str(path)!r}: {err}") from err
    try:
        if path.suffix.lower() == ".toml":
            space = tomllib.loads(text)
        else:
            space = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise SearchError(
            f"space file {str(path)!r} is not valid {kind}: {err}"
        ) from err
    validate_space(space, where=path.name)
    return space


def validate_space(space: Any, where: str = "space") -> None:
    """Check a space's parameters, distributions and ranges.

    Raises:
        SearchError: an entry is unknown or out of range.
    """
    if not isinstance(space, dict) or not space:
        raise SearchError(
            f"{where} must map parameters to values or distributions; "
            f"known parameters: {', '.join(PARAMETERS)}"
        )
    for name, entry in space.items():
        if name not in PARAMETERS:
            raise SearchError(
                f"unknown parameter {name!r} in {where}; "
                f"known parameters: {', '.join(PARAMETERS)}"
            )
        _validate_entry(name, entry, f"{where}: {name}")


def _validate_entry(name: str, entry: Any, where: str) -> None:
    kind = PARAMETERS[name]
    if not isinstance(entry, dict):
        _check_value(name, entry, where)
        return
    dist = entry.get("dist")
    if dist not in DISTRIBUTIONS:
        raise SearchError(
            f"{where} has distribution {dist!r}; use one of "
            f"{', '.join(DISTRIBUTIONS)} (or a fixed value)"
        )
    expected = set(DISTRIBUTIONS[dist]) | {"dist"}
    if set(entry) != expected:
        raise SearchError(
            f"{where}: {dist} takes exactly {', '.join(DISTRIBUTIONS[dist])}, "
            f"got {', '.join(k for k in entry if k != 'dist') or 'nothing'}"
        )
    if dist == "choice":
        options = entry["options"]
        if not isinstance(options, list) or not options:
            raise SearchError(f"{where}: choice options must be a non-empty list")
        for option in options:
            _check_value(name, option, where)
        return
    if isinstance(kind, tuple):
        raise SearchError(
            f"{where} names things, so it takes a fixed value or a choice of "
            f"{', '.join(kind)}, not {dist}"
        )
    low, high = entry["low"], entry["high"]
    if not all(_is_number(v) for v in (low, high)) or not low < high:
        raise SearchError(
            f"{where}: range low={low!r}, high={high!r} must be numbers with low < high"
        )
    if dist.startswith("q") and not (_is_number(entry["q"]) and entry["q"] > 0):
        raise SearchError(f"{where}: step q={entry['q']!r} must be a positive number")

    # The values drawn must be valid for the parameter.
    smallest = math.exp(low) if "log" in dist else low
    if kind == "number" and smallest <= 0:
        raise SearchError(
            f"{where}: uniform low={low!r} draws values <= 0; {name} must be "
            "positive (use loguniform, whose bounds are natural logs)"
        )
    if kind == "rate" and smallest < 0:
        raise SearchError(f"{where}: low={low!r} draws negative values of {name}")
    if kind == "integer" and (round(smallest) < 1 or not dist.startswith("q")):
        raise SearchError(
            f"{where}: {name} must be a quantised distribution (quniform or "
            f"qloguniform) of integers >= 1, got {dist} from {low!r}"
        )


def _check_value(name: str, value: Any, where: str) -> None:
    kind = PARAMETERS[name]
    if name == "dropouts" and isinstance(value, list):
        try:
            ModelParams(dropouts=tuple(value))
        except ConfigError as err:
            raise SearchError(f"{where}: {err}") from err
        return
    if isinstance(kind, tuple):
        if value not in kind:
            raise SearchError(
                f"{where}: unknown value {value!r}; use one of {', '.join(kind)}"
            )
        return
    try:
        ModelParams.from_dict({name: value})
    except ConfigError as err:
        raise SearchError(f"{where}: {err}") from err


def largest_batch(space: dict[str, Any]) -> int:
    """The largest batch size a space can draw (the default's if it has none)."""
    entry = space.get("batch_size", ModelParams().batch_size)
    if not isinstance(entry, dict):
        return int(entry)
    if entry["dist"] == "choice":
        return int(max(entry["options"]))
    high = entry["high"]
    return int(math.floor(math.exp(high) if "log" in entry["dist"] else high))


def to_hyperopt(space: dict[str, Any]) -> dict[str, Any]:
    """The space as hyperopt expressions (fixed values stay as they are)."""
    from hyperopt import hp

    exprs: dict[str, Any] = {}
    for name, entry in space.items():
        if not isinstance(entry, dict):
            exprs[name] = entry
            continue
        dist = entry["dist"]
        if dist == "choice":
            exprs[name] = hp.choice(name, entry["options"])
        elif dist == "uniform":
            exprs[name] = hp.uniform(name, entry["low"], entry["high"])
        elif dist == "loguniform":
            exprs[name] = hp.loguniform(name, entry["low"], entry["high"])
        elif dist == "quniform":
            exprs[name] = hp.quniform(name, entry["low"], entry["high"], entry["q"])
        else:
            exprs[name] = hp.qloguniform(name, entry["low"], entry["high"], entry["q"])
    return exprs


def to_params(sample: dict[str, Any]) -> dict[str, Any]:
    """A hyperopt sample as plain model parameters (integers where due)."""
    params: dict[str, Any] = {}
    for name, value in sample.items():
        if hasattr(value, "item"):
            value = value.item()
        if name == "batch_size":
            value = int(round(value))
        elif isinstance(value, tuple):
            value = list(value)
        params[name] = value
    return params


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
