"""``trainer data``: import, inspect, check and clean drives.

Nothing here imports TensorFlow, so these commands start at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.actions import ACTION_LABELS, Action
from shared.cli import EXIT_ERROR, add_command
from shared.donkey import DonkeyMapping, import_tub
from shared.drives import Drive, DriveStats, find_drives
from shared.errors import MalpiError, UnknownActionError

log = logging.getLogger(__name__)

#: Exit code of ``verify`` when it found damage; a path it cannot read at all
#: exits with ``EXIT_ERROR`` like every other error.
EXIT_DAMAGED = 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``trainer data`` and its subcommands."""
    data = subparsers.add_parser(
        "data",
        help="import, inspect, check and clean drives",
        description="Import, inspect, check and clean drives.",
    )
    data.set_defaults(handler=lambda _args: data.print_help() or EXIT_ERROR)
    commands = data.add_subparsers(title="data commands", metavar="COMMAND")

    sub = add_command(
        commands,
        "import-donkey",
        _import_donkey,
        "import a DonkeyCar tub v2 folder as a new drive",
        "trainer data import-donkey ../shared/data/donkeycar-tub drives/",
    )
    sub.add_argument("source", metavar="SRC", type=Path, help="the tub folder")
    sub.add_argument("dest", metavar="DEST", type=Path, help="the drives folder")
    sub.add_argument("--name", help="drive name (default: the tub's folder name)")
    defaults = DonkeyMapping()
    sub.add_argument(
        "--angle-threshold",
        type=float,
        default=defaults.angle_threshold,
        metavar="A",
        help="steering beyond +-A is left/right, within it forward "
        "(default %(default)s)",
    )
    sub.add_argument(
        "--throttle-stop",
        type=float,
        default=defaults.throttle_stop,
        metavar="T",
        help="|throttle| below T is stop, throttle <= -T backward "
        "(default %(default)s)",
    )

    sub = add_command(
        commands,
        "stats",
        _stats,
        "frames per action, majority share, duration and fps of drives "
        "(reads labels only; verify decodes every frame)",
        "trainer data stats drives/",
    )
    sub.add_argument("drives", metavar="DRIVE", nargs="+", type=Path, help=_DRIVES)

    sub = add_command(
        commands,
        "verify",
        _verify,
        "decode every frame and report damage; exit code 1 if any",
        "trainer data verify drives/",
    )
    sub.add_argument("drives", metavar="DRIVE", nargs="+", type=Path, help=_DRIVES)

    sub = add_command(
        commands,
        "edit",
        _edit,
        "exclude or relabel frames of a drive, undoably",
        "trainer data edit drives/20261203-141502 --exclude 3-10,42",
    )
    sub.add_argument("drive", metavar="DRIVE", type=Path, help="one drive folder")
    what = sub.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--exclude", type=parse_indices, metavar="RANGES", help="e.g. 3-10,42"
    )
    what.add_argument(
        "--include",
        type=parse_indices,
        metavar="RANGES",
        help="take excluded frames back",
    )
    what.add_argument(
        "--relabel",
        type=parse_relabel,
        metavar="RANGES=ACTION",
        help=f"e.g. 5,6=left; actions: {', '.join(ACTION_LABELS)}",
    )
    what.add_argument("--undo", action="store_true", help="undo the newest edit")
    what.add_argument("--list", action="store_true", help="show the edits in effect")


_DRIVES = "a drive folder, or a folder of drives"


# --- argument parsing ------------------------------------------------------------


def parse_indices(text: str) -> list[int]:
    """Parse frame ranges such as ``3-10,42`` into sorted indices."""
    indices: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            first, _, last = part.partition("-")
            start = int(first)
            stop = int(last) if last else start
        except ValueError:
            start = stop = -1
        if start < 0 or stop < start:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a frame index or range; write e.g. 3-10,42"
            )
        indices.update(range(start, stop + 1))
    return sorted(indices)


def parse_relabel(text: str) -> tuple[list[int], Action]:
    """Parse ``RANGES=ACTION`` such as ``5,6=left``."""
    ranges, equals, label = text.rpartition("=")
    if not equals:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no '='; write frames=action, e.g. 5,6=left"
        )
    try:
        action = Action.parse(label)
    except UnknownActionError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return parse_indices(ranges), action


# --- tables ----------------------------------------------------------------------


def stats_table(rows: Sequence[tuple[str, DriveStats, int]]) -> str:
    """A table of drives' counts per action, with a total row when several."""
    header = ["drive", "frames", *ACTION_LABELS, "majority", "duration_s", "fps"]
    header.append("skipped")
    lines = [_stats_row(name, stats, skipped) for name, stats, skipped in rows]
    if len(rows) > 1:
        total = _total([stats for _, stats, _ in rows])
        lines.append(_stats_row("total", total, sum(s for _, _, s in rows)))
    return _format_table(header, lines)


def _stats_row(name: str, stats: DriveStats, skipped: int) -> list[str]:
    majority = "-"
    if stats.frames:
        label = max(ACTION_LABELS, key=lambda a: stats.counts[a])
        majority = f"{stats.majority_share:.1%} {label}"
    return [
        name,
        str(stats.frames),
        *(str(stats.counts[a]) for a in ACTION_LABELS),
        majority,
        f"{stats.duration_s:.1f}",
        f"{stats.fps:.1f}",
        str(skipped),
    ]


def _total(all_stats: Sequence[DriveStats]) -> DriveStats:
    frames = sum(s.frames for s in all_stats)
    duration_s = sum(s.duration_s for s in all_stats)
    intervals = sum(max(s.frames - 1, 0) for s in all_stats if s.duration_s > 0)
    return DriveStats(
        frames=frames,
        counts={a: sum(s.counts[a] for s in all_stats) for a in ACTION_LABELS},
        duration_s=duration_s,
        fps=intervals / duration_s if duration_s > 0 else 0.0,
    )


def _format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


# --- commands --------------------------------------------------------------------


def _import_donkey(args: argparse.Namespace) -> int:
    mapping = DonkeyMapping(
        angle_threshold=args.angle_threshold, throttle_stop=args.throttle_stop
    )
    result = import_tub(args.source, args.dest, mapping=mapping, name=args.name)
    drive = Drive.open(result.path)
    print(result.path)
    print(f"mapping: {mapping.describe()}")
    print(f"read {result.report.catalog_lines} records: {result.report.summary()}")
    print(stats_table([(drive.name, drive.stats(), drive.report.skipped)]))
    return 0


def _stats(args: argparse.Namespace) -> int:
    rows = []
    notes = []
    for path in find_drives(args.drives):
        drive = Drive.open(path)
        rows.append((drive.name, drive.stats(), drive.report.skipped))
        if drive.report.skipped or drive.report.excluded:
            notes.append(f"{drive.name}: {drive.report.summary()}")
    print(stats_table(rows))
    for note in notes:
        print(note)
    return 0


def _verify(args: argparse.Namespace) -> int:
    errors = damaged = 0
    for given in args.drives:
        try:
            paths = find_drives([given])
        except MalpiError as err:
            print(f"trainer data verify: error: {err}", file=sys.stderr)
            errors += 1
            continue
        for path in paths:
            try:
                drive = Drive.open(path)
                report = drive.verify()
            except MalpiError as err:
                print(f"trainer data verify: error: {err}", file=sys.stderr)
                errors += 1
                continue
            good = len(drive) - report.corrupt_frames
            if report.skipped:
                damaged += 1
                print(f"DAMAGED  {path}: {good} good frames; {report.summary()}")
                print(
                    f"trainer data verify: {str(path)!r} is damaged: "
                    f"{report.summary()}",
                    file=sys.stderr,
                )
            else:
                print(f"ok       {path}: {good} frames")
    return EXIT_ERROR if errors else EXIT_DAMAGED if damaged else 0


def _edit(args: argparse.Namespace) -> int:
    drive = Drive.open(args.drive)
    if args.list:
        edits = drive.edits()
        for edit in edits:
            target = f" -> {edit.action}" if edit.action else ""
            print(f"{edit.op} {_ranges(edit.indices)}{target}")
        if not edits:
            print(f"{drive.name} has no edits")
        return 0
    if args.undo:
        edit = drive.undo()
        print(f"undid {edit.op} {_ranges(edit.indices)}")
    elif args.exclude is not None:
        drive.exclude(args.exclude)
        print(f"excluded {_ranges(args.exclude)}")
    elif args.include is not None:
        drive.include(args.include)
        print(f"included {_ranges(args.include)}")
    else:
        indices, action = args.relabel
        drive.relabel(indices, action)
        print(f"relabelled {_ranges(indices)} as {action.label}")
    print(stats_table([(drive.name, drive.stats(), drive.report.skipped)]))
    return 0


def _ranges(indices: Sequence[int]) -> str:
    """Indices as compact ranges: [3, 4, 5, 9] -> '3-5,9'."""
    parts: list[str] = []
    run: list[int] = []
    for index in sorted(indices):
        if run and index == run[-1] + 1:
            run.append(index)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [index]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)
