"""``deploy status``: the car's models, the active one, unpulled drives, free disk."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from deploy.car import Car, add_car_options, car_from_args
from shared.cli import add_command
from shared.drives import LABELS_NAME


def unpulled_drives(status: dict[str, Any], into: str | Path) -> list[dict[str, Any]]:
    """The car's drives that are missing here or grew since the last pull."""
    into = Path(into)
    waiting = []
    for drive in status["drives"]:
        local = into / drive["name"] / LABELS_NAME
        have = local.stat().st_size if local.is_file() else 0
        if drive["labels_bytes"] > have:
            waiting.append({**drive, "new": not local.parent.is_dir()})
    return waiting


def format_models(status: dict[str, Any]) -> str:
    """A table of the models in a ``ModelStore.status()`` dict."""
    lines = [f"{'':2}{'model':14}{'quant':8}{'size':>9}  {'created':22}metrics"]
    for model in status["models"]:
        mark = (
            "* "
            if model["sha256"] == status["current"]
            else "p "
            if model["sha256"] == status["previous"]
            else "  "
        )
        metrics = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in sorted((model["metrics"] or {}).items())
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        lines.append(
            f"{mark}{model['sha256'][:12]:14}{model['quantization'] or '?':8}"
            f"{model['size_bytes'] / 1e6:>7.2f}MB  {model['created'] or '?':22}"
            f"{metrics or model['error'] or ''}"
        )
    if not status["models"]:
        lines.append("  (no models)")
    lines.append("* active, p previous (for rollback)")
    return "\n".join(lines)


def format_status(car: Car, status: dict[str, Any], into: str | Path) -> str:
    """What ``deploy status`` prints."""
    lines = [f"car {car.name}, home {status['home']}", format_models(status)]
    waiting = unpulled_drives(status, into)
    if waiting:
        lines.append(f"{len(waiting)} drives not yet pulled into {str(into)!r}:")
        lines += [f"  {d['name']} ({'new' if d['new'] else 'grew'})" for d in waiting]
    else:
        lines.append(f"all {len(status['drives'])} drives pulled into {str(into)!r}")
    lines.append(f"free disk on the car: {status['free_bytes'] / 1e9:.2f} GB")
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    car = car_from_args(args)
    with car.session():
        status = car.status()
    print(format_status(car, status, args.into))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``deploy status``."""
    sub = add_command(
        subparsers,
        "status",
        _cmd_status,
        "show the car's models, the active one, unpulled drives and free disk",
        "deploy status --car pi@malpi.local",
    )
    sub.add_argument(
        "--into",
        default="drives",
        metavar="DRIVES_DIR",
        help="this machine's drives, to tell which are not pulled yet "
        "(default: ./drives)",
    )
    add_car_options(sub)
