"""``deploy pull``: bring the car's new drives home, resumable and verified.

A pull copies in two passes. The first takes a snapshot of every drive's
``labels.jsonl`` and ``edits.jsonl`` into ``<into>/.pull/labels/``; the
second copies frames and ``drive.json`` into the drives themselves. Only
then are the snapshots moved over the drives' own files. A label line names a
frame only once that frame is complete on the car, so every frame the
snapshot names is in the second pass: a pulled drive never names a frame it
does not have, even while the car is still recording it, and a pull killed
at any point leaves every drive as consistent as before.

rsync only sends what is new or grew. Its partial files go to
``.rsync-partial`` folders and its temporary files to ``<into>/.pull/tmp``, so
an interrupted file is never taken for a complete one and the next pull
resumes it. Each drive that changed is read back with ``shared.drives.Drive``
and every frame decoded.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.car import Car, add_car_options, car_from_args, show_progress
from shared.actions import ACTION_LABELS
from shared.cli import add_command
from shared.drives import EDITS_NAME, LABELS_NAME, META_NAME, Drive, ReadReport
from shared.errors import DriveError

log = logging.getLogger(__name__)

PULL_DIR = ".pull"
PARTIAL_DIR = ".rsync-partial"
#: Files the car's writer is still making: never copied.
WRITER_TEMP = ".*.tmp"


@dataclass
class PulledDrive:
    """One drive that arrived or grew."""

    name: str
    frames: int
    new_frames: int
    counts: dict[str, int]
    report: ReadReport
    warnings: list[str] = field(default_factory=list)


@dataclass
class PullResult:
    """What a pull brought home."""

    drives: list[PulledDrive]
    unchanged: int
    seconds: float

    @property
    def new_frames(self) -> int:
        return sum(d.new_frames for d in self.drives)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _frame_count(drive: Path) -> int:
    if not (drive / META_NAME).is_file():
        return 0
    try:
        return len(Drive.open(drive))
    except DriveError:
        return 0


def _merge_log(staged: Path, local: Path, what: str) -> str | None:
    """Move the car's append-only log ``staged`` over ``local``.

    Returns a warning instead when ``local`` holds lines the car's copy does
    not start with (edited here since the last pull), keeping ``local``.
    """
    if not staged.is_file():
        return None
    new = staged.read_bytes()
    old = local.read_bytes() if local.is_file() else b""
    if new == old:
        staged.unlink()
        return None
    if not new.startswith(old):
        staged.unlink()
        return (
            f"{what} of {local.parent.name!r} changed both here and on the car; "
            "kept this machine's copy"
        )
    os.replace(staged, local)
    return None


def pull(car: Car, into: str | Path, *, progress: bool = False) -> PullResult:
    """Copy drives that are new or grew from the car into ``into``.

    Raises:
        DeployError: the transfer failed (run it again: it resumes).
    """
    with car.session():
        return _pull(car, Path(into), progress=progress)


def _pull(car: Car, into: Path, *, progress: bool) -> PullResult:
    start = time.monotonic()
    into.mkdir(parents=True, exist_ok=True)
    staging = into / PULL_DIR / "labels"
    tmp = into / PULL_DIR / "tmp"
    shutil.rmtree(into / PULL_DIR, ignore_errors=True)
    staging.mkdir(parents=True)
    tmp.mkdir()

    # What the car has, and what we had before.
    remote = car.status()["drives"]
    if not remote:
        shutil.rmtree(into / PULL_DIR, ignore_errors=True)
        return PullResult([], 0, time.monotonic() - start)
    before = {
        d["name"]: (
            _size(into / d["name"] / LABELS_NAME),
            _frame_count(into / d["name"]),
        )
        for d in remote
    }

    # Pass 1: a snapshot of every drive's labels and edits.
    car.rsync(
        [
            "-rt",
            "--include=/*/",
            f"--include=/*/{LABELS_NAME}",
            f"--include=/*/{EDITS_NAME}",
            "--exclude=*",
            car.path("drives/"),
            f"{staging}/",
        ],
        what="pull",
    )

    # Pass 2: frames and drive.json, resumable.
    car.rsync(
        [
            "-rt",
            f"--partial-dir={PARTIAL_DIR}",
            f"--temp-dir={tmp.resolve()}",
            f"--exclude=/*/{LABELS_NAME}",
            f"--exclude=/*/{EDITS_NAME}",
            f"--exclude={WRITER_TEMP}",
            f"--exclude={PARTIAL_DIR}/",
            *(["--no-inc-recursive"] if progress else []),
            car.path("drives/"),
            f"{into}/",
        ],
        progress=progress,
        what="pull",
    )

    # The labels go in last, then each drive that changed is read back.
    pulled = []
    unchanged = 0
    for item in remote:
        name = item["name"]
        drive_path = into / name
        if not (drive_path / META_NAME).is_file():
            continue
        warnings = [
            warning
            for staged_name in (LABELS_NAME, EDITS_NAME)
            if (
                warning := _merge_log(
                    staging / name / staged_name, drive_path / staged_name, staged_name
                )
            )
        ]
        old_bytes, old_frames = before[name]
        if _size(drive_path / LABELS_NAME) == old_bytes and not warnings:
            unchanged += 1
            continue
        drive = Drive.open(drive_path)
        report = drive.verify()
        stats = drive.stats()
        pulled.append(
            PulledDrive(
                name=name,
                frames=len(drive),
                new_frames=len(drive) - old_frames,
                counts=stats.counts,
                report=report,
                warnings=warnings,
            )
        )
        for warning in warnings:
            log.warning(warning)
    shutil.rmtree(into / PULL_DIR, ignore_errors=True)
    return PullResult(pulled, unchanged, time.monotonic() - start)


def format_pull(result: PullResult) -> str:
    """A table of the drives that arrived: frames per action and what was skipped."""
    if not result.drives:
        return f"no new frames ({result.unchanged} drives up to date)"
    header = f"{'drive':22}{'frames':>7}{'new':>7}" + "".join(
        f"{label:>9}" for label in ACTION_LABELS
    )
    lines = [header]
    for drive in result.drives:
        lines.append(
            f"{drive.name:22}{drive.frames:>7}{drive.new_frames:>7}"
            + "".join(f"{drive.counts.get(label, 0):>9}" for label in ACTION_LABELS)
            + (
                f"  ({drive.report.summary()})"
                if drive.report.skipped or drive.report.excluded
                else ""
            )
        )
    lines.append(
        f"{result.new_frames} new frames in {len(result.drives)} drives, "
        f"{result.unchanged} up to date, {result.seconds:.1f} s; all frames verified"
    )
    return "\n".join(lines)


def _cmd_pull(args: argparse.Namespace) -> int:
    car = car_from_args(args)
    result = pull(car, args.into, progress=show_progress(args))
    print(format_pull(result))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``deploy pull``."""
    sub = add_command(
        subparsers,
        "pull",
        _cmd_pull,
        "copy the car's new drives home (resumable, verified)",
        "deploy pull --car pi@malpi.local --into drives",
    )
    sub.add_argument(
        "--into",
        default="drives",
        metavar="DRIVES_DIR",
        help="where drives go on this machine (default: ./drives)",
    )
    add_car_options(sub)
