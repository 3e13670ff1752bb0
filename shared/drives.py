"""The drive format: a folder of frames and their labels that survives a crash.

A drive is one recording session::

    20261203-141502/
        drive.json      what recorded it: created, car, camera, version, config
        frames/000000.jpg ...
        labels.jsonl    one line per frame: index, t (monotonic s), action,
                        mode, file
        edits.jsonl     exclusions and relabels, undoable; never rewrites labels

``DriveWriter`` encodes and writes frames on a background thread. Every
``sync_interval_s`` it fsyncs the frames written since the last sync, and only
then appends and fsyncs their label lines, so a label never names a frame that
is not complete on disk; a crash or power cut loses at most the frames of the
last interval and never corrupts what came before.

``Drive`` reads a drive back. It skips a torn last line, a label whose frame
file is missing, a label with an unknown action and a line that is not JSON,
counts each kind in ``Drive.report``, and ignores files it does not know.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from shared import __version__
from shared.actions import ACTION_LABELS, Action
from shared.errors import DriveError, FrameError, NotADriveError, UnknownActionError
from shared.fileio import fsync_dir, write_atomic
from shared.frames import FRAME_SHAPE, decode_jpeg, encode_jpeg

log = logging.getLogger(__name__)

DRIVE_FORMAT = 1
META_NAME = "drive.json"
LABELS_NAME = "labels.jsonl"
EDITS_NAME = "edits.jsonl"
FRAMES_DIR = "frames"
#: Who chose a frame's action: the person, the pilot, or the person
#: correcting the pilot (DAgger).
MODES = ("user", "pilot", "correction")


def frame_file(index: int) -> str:
    """The path of frame ``index`` inside a drive folder."""
    return f"{FRAMES_DIR}/{index:06d}.jpg"


# --- writing -------------------------------------------------------------------


@dataclass
class _Pending:
    index: int
    image: np.ndarray
    action: Action
    mode: str
    t_mono_s: float


class DriveWriter:
    """Records frames and labels into a new drive folder.

    Example::

        with DriveWriter.create(home / "drives", car="malpi") as writer:
            writer.append(frame, Action.FORWARD, t_mono_s=time.monotonic())

    ``append`` never blocks the caller: it queues the frame for the writer
    thread, and drops it (counted in ``dropped``) when the queue is full. A
    write error such as a full disk stops the recording: ``error`` is set,
    later appends are refused, and everything written before stays readable.
    """

    def __init__(
        self,
        path: Path,
        *,
        sync_interval_s: float = 0.5,
        queue_frames: int = 256,
        jpeg_quality: int = 90,
    ) -> None:
        self.path = Path(path)
        self.sync_interval_s = sync_interval_s
        self.jpeg_quality = jpeg_quality
        self.error: BaseException | None = None
        #: Frames queued by ``append``.
        self.appended = 0
        #: Frames whose label line is durable on disk.
        self.written = 0
        #: Frames refused because the queue was full.
        self.dropped = 0
        self.counts: Counter[Action] = Counter()
        self._queue: queue.Queue[_Pending | None] = queue.Queue(queue_frames)
        self._closed = False
        self._lock = threading.Lock()
        self._labels = open(self.path / LABELS_NAME, "ab")  # noqa: SIM115
        self._thread = threading.Thread(
            target=self._run, name=f"drive-writer-{self.path.name}", daemon=True
        )
        self._thread.start()

    @classmethod
    def create(
        cls,
        drives_dir: str | Path,
        *,
        name: str | None = None,
        car: str = "",
        camera: str = "",
        config: dict[str, Any] | None = None,
        **options: Any,
    ) -> DriveWriter:
        """Make a new drive folder under ``drives_dir`` and start writing to it.

        Raises:
            DriveError: the folder exists already or cannot be created.
        """
        drives_dir = Path(drives_dir)
        try:
            drives_dir.mkdir(parents=True, exist_ok=True)
            path = _new_drive_folder(drives_dir, name)
            (path / FRAMES_DIR).mkdir()
            meta = {
                "format": DRIVE_FORMAT,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "car": car,
                "camera": camera,
                "software_version": __version__,
                "frame_shape": list(FRAME_SHAPE),
                "labels": list(ACTION_LABELS),
                "config": config or {},
            }
            write_atomic(path / META_NAME, _json_bytes(meta, indent=2))
        except OSError as err:
            raise DriveError(
                f"cannot create a drive under {str(drives_dir)!r}: {err}"
            ) from err
        log.info("recording drive %s", path)
        return cls(path, **options)

    def __enter__(self) -> DriveWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def append(
        self,
        image: np.ndarray,
        action: Action | int | str,
        *,
        mode: str = "user",
        t_mono_s: float | None = None,
    ) -> int | None:
        """Queue a frame and its label; returns its index, or None if dropped.

        Raises:
            DriveError: the recording stopped on a write error, or is closed.
            FrameError: ``image`` is not a 120x120x3 uint8 frame.
        """
        if self.error is not None:
            raise DriveError(
                f"recording to {str(self.path)!r} stopped: {self.error}"
            ) from self.error
        if self._closed:
            raise DriveError(f"drive {str(self.path)!r} is closed")
        if not isinstance(image, np.ndarray):
            raise FrameError(
                f"a drive frame must be a numpy array, not {type(image)!r}; "
                "pass it through shared.frames.to_model_frame"
            )
        if image.shape != FRAME_SHAPE or image.dtype != np.uint8:
            raise FrameError(
                f"a drive frame must be {FRAME_SHAPE} uint8, got "
                f"{image.shape} {image.dtype}"
            )
        if mode not in MODES:
            raise DriveError(f"mode {mode!r} is not one of {MODES}")
        action = Action.parse(action)
        t_mono_s = time.monotonic() if t_mono_s is None else t_mono_s
        with self._lock:
            index = self.appended
            try:
                self._queue.put_nowait(_Pending(index, image, action, mode, t_mono_s))
            except queue.Full:
                self.dropped += 1
                return None
            self.appended += 1
            self.counts[action] += 1
        return index

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, make it durable and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._labels.close()
        if self.error is None:
            log.info(
                "drive %s saved: %d frames%s",
                self.path,
                self.written,
                f", {self.dropped} dropped" if self.dropped else "",
            )

    # The writer thread: encode, write, and every interval fsync then label.
    def _run(self) -> None:
        frames_dir = self.path / FRAMES_DIR
        unsynced: list[_Pending] = []
        last_sync = time.monotonic()
        done = False
        while not done:
            try:
                item = self._queue.get(timeout=self.sync_interval_s)
                done = item is None
            except queue.Empty:
                item = None
            if item is not None and self.error is None:
                try:
                    self._write_frame(frames_dir, item)
                    unsynced.append(item)
                except OSError as err:
                    self._fail(err)
            due = time.monotonic() - last_sync >= self.sync_interval_s
            # After a write error, still label the frames already complete on
            # disk: a full disk must not lose what was recorded before it.
            if unsynced and (done or due or self.error is not None):
                try:
                    self._sync(frames_dir, unsynced)
                except OSError as err:
                    if self.error is None:
                        self._fail(err)
                unsynced = []
                last_sync = time.monotonic()

    def _write_frame(self, frames_dir: Path, item: _Pending) -> None:
        final = self.path / frame_file(item.index)
        tmp = frames_dir / f".{final.name}.tmp"
        tmp.write_bytes(encode_jpeg(item.image, self.jpeg_quality))
        os.replace(tmp, final)

    def _sync(self, frames_dir: Path, items: list[_Pending]) -> None:
        for item in items:
            fd = os.open(self.path / frame_file(item.index), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(frames_dir)
        lines = b"".join(
            _json_bytes(
                {
                    "index": item.index,
                    "t": round(item.t_mono_s, 6),
                    "action": item.action.label,
                    "mode": item.mode,
                    "file": frame_file(item.index),
                }
            )
            for item in items
        )
        self._labels.write(lines)
        self._labels.flush()
        os.fsync(self._labels.fileno())
        self.written += len(items)

    def _fail(self, err: OSError) -> None:
        self.error = err
        log.error(
            "recording to %s stopped after %d frames: %s", self.path, self.written, err
        )


def _new_drive_folder(drives_dir: Path, name: str | None) -> Path:
    if name is not None:
        if Path(name).name != name or name in ("", ".", ".."):
            raise DriveError(f"drive name {name!r} must be a plain folder name")
        path = drives_dir / name
        path.mkdir()
        return path
    stem = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1000):
        path = drives_dir / (stem if suffix == 0 else f"{stem}-{suffix}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise DriveError(f"too many drives named {stem} in {str(drives_dir)!r}")


# --- reading -------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One labelled frame of a drive, with its edits applied."""

    index: int
    t_mono_s: float
    action: Action
    mode: str
    file: str
    #: The action as recorded, before any relabel.
    recorded_action: Action


@dataclass
class ReadReport:
    """What a reader skipped, by reason."""

    torn_lines: int = 0
    bad_lines: int = 0
    unknown_actions: int = 0
    missing_frames: int = 0
    corrupt_frames: int = 0
    excluded: int = 0

    @property
    def skipped(self) -> int:
        """Labels dropped for damage (exclusions are the user's choice)."""
        return (
            self.torn_lines
            + self.bad_lines
            + self.unknown_actions
            + self.missing_frames
            + self.corrupt_frames
        )

    def summary(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.torn_lines, "torn last line"),
                (self.bad_lines, "unreadable label lines"),
                (self.unknown_actions, "unknown actions"),
                (self.missing_frames, "labels with a missing frame"),
                (self.corrupt_frames, "undecodable frames"),
                (self.excluded, "excluded by edits"),
            )
            if n
        ]
        return ", ".join(parts) if parts else "nothing skipped"


@dataclass
class DriveStats:
    """Counts and timing of a drive's usable frames."""

    frames: int
    counts: dict[str, int]
    duration_s: float
    fps: float

    @property
    def majority_share(self) -> float:
        """Share of the most common action: the accuracy of always guessing it."""
        return max(self.counts.values()) / self.frames if self.frames else 0.0


@dataclass
class Edit:
    """One line of ``edits.jsonl``."""

    op: str
    indices: list[int] = field(default_factory=list)
    action: str | None = None


class Drive:
    """A drive folder opened for reading (and for non-destructive edits)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        self.report = ReadReport()
        #: Every readable label, before edits.
        self.raw_records: list[Record] = []
        #: Usable records: edits applied, exclusions removed.
        self.records: list[Record] = []
        self._load_labels()
        self._apply_edits()

    @classmethod
    def open(cls, path: str | Path) -> Drive:
        """Open a drive folder.

        Raises:
            NotADriveError: the folder is missing or is not a drive.
            DriveError: ``drive.json`` is unreadable or from a newer MaLPi.
        """
        path = Path(path)
        if not path.is_dir():
            raise NotADriveError(f"drive {str(path)!r} is not a folder")
        meta_path = path / META_NAME
        if not meta_path.is_file():
            hint = (
                "it looks like a DonkeyCar tub: import it with "
                "`trainer data import-donkey`"
                if (path / "manifest.json").is_file()
                else "give a folder recorded by `robot drive` (it has drive.json)"
            )
            raise NotADriveError(f"{str(path)!r} is not a drive: {hint}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DriveError(f"cannot read {str(meta_path)!r}: {err}") from err
        if not isinstance(meta, dict) or meta.get("format") != DRIVE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise DriveError(
                f"{str(meta_path)!r} has drive format {found!r}; this MaLPi reads "
                f"format {DRIVE_FORMAT}"
            )
        return cls(path, meta)

    def __repr__(self) -> str:
        return f"Drive({str(self.path)!r}, {len(self.records)} frames)"

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    @property
    def name(self) -> str:
        return self.path.name

    def _load_labels(self) -> None:
        try:
            data = (self.path / LABELS_NAME).read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as err:
            raise DriveError(
                f"cannot read labels of {str(self.path)!r}: {err}"
            ) from err
        lines = data.split(b"\n")
        last_complete = len(lines) - 1  # the part after the final newline
        seen: set[int] = set()
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                index = int(item["index"])
                record = Record(
                    index=index,
                    t_mono_s=float(item["t"]),
                    action=Action.parse(item["action"]),
                    mode=str(item.get("mode", "user")),
                    file=str(item["file"]),
                    recorded_action=Action.parse(item["action"]),
                )
            except UnknownActionError:
                self.report.unknown_actions += 1
                continue
            except (ValueError, KeyError, TypeError):
                if number == last_complete:
                    self.report.torn_lines += 1
                else:
                    self.report.bad_lines += 1
                continue
            if index in seen or not _is_frame_name(record.file):
                self.report.bad_lines += 1
                continue
            if not (self.path / record.file).is_file():
                self.report.missing_frames += 1
                continue
            seen.add(index)
            self.raw_records.append(record)
        self.raw_records.sort(key=lambda r: r.index)

    # --- edits ---------------------------------------------------------------

    def edits(self) -> list[Edit]:
        """The edits in effect, oldest first (undone ones removed)."""
        try:
            data = (self.path / EDITS_NAME).read_bytes()
        except FileNotFoundError:
            return []
        stack: list[Edit] = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                edit = Edit(
                    op=str(item["op"]),
                    indices=[int(i) for i in item.get("indices", [])],
                    action=item.get("action"),
                )
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable line in %s", self.path / EDITS_NAME)
                continue
            if edit.op == "undo":
                if stack:
                    stack.pop()
            elif edit.op in ("exclude", "include", "relabel"):
                stack.append(edit)
        return stack

    def _apply_edits(self) -> None:
        excluded: set[int] = set()
        relabel: dict[int, Action] = {}
        for edit in self.edits():
            if edit.op == "exclude":
                excluded.update(edit.indices)
            elif edit.op == "include":
                excluded.difference_update(edit.indices)
            elif edit.op == "relabel" and edit.action is not None:
                try:
                    action = Action.parse(edit.action)
                except UnknownActionError:
                    continue
                relabel.update(dict.fromkeys(edit.indices, action))
        self.records = []
        self.report.excluded = 0
        for record in self.raw_records:
            if record.index in excluded:
                self.report.excluded += 1
                continue
            if record.index in relabel:
                record = replace(record, action=relabel[record.index])
            self.records.append(record)

    def _append_edit(self, edit: dict[str, Any]) -> None:
        with open(self.path / EDITS_NAME, "ab") as stream:
            stream.write(_json_bytes(edit))
            stream.flush()
            os.fsync(stream.fileno())
        self._apply_edits()

    def _known(self, indices: Iterable[int]) -> list[int]:
        indices = sorted({int(i) for i in indices})
        known = {r.index for r in self.raw_records}
        unknown = [i for i in indices if i not in known]
        if unknown:
            raise DriveError(
                f"drive {self.name!r} has no frame {unknown[0]!r}; "
                f"its frames are numbered {min(known, default=0)}-"
                f"{max(known, default=0)}"
            )
        return indices

    def exclude(self, indices: Iterable[int]) -> None:
        """Leave these frames out of training (undoable)."""
        self._append_edit({"op": "exclude", "indices": self._known(indices)})

    def include(self, indices: Iterable[int]) -> None:
        """Take excluded frames back in (undoable)."""
        self._append_edit({"op": "include", "indices": self._known(indices)})

    def relabel(self, indices: Iterable[int], action: Action | str | int) -> None:
        """Give these frames another action (undoable)."""
        label = Action.parse(action).label
        self._append_edit(
            {"op": "relabel", "indices": self._known(indices), "action": label}
        )

    def undo(self) -> Edit:
        """Undo the newest edit in effect and return it.

        Raises:
            DriveError: there is no edit to undo.
        """
        edits = self.edits()
        if not edits:
            raise DriveError(f"drive {self.name!r} has no edit to undo")
        self._append_edit({"op": "undo"})
        return edits[-1]

    # --- frames ----------------------------------------------------------------

    def load(self, record: Record) -> np.ndarray:
        """Decode one frame to 120x120x3 uint8.

        Raises:
            FrameError: the file is not a decodable image of that shape.
        """
        image = decode_jpeg(self.path / record.file)
        if image.shape != FRAME_SHAPE:
            raise FrameError(
                f"frame {record.file!r} of drive {self.name!r} is {image.shape}, "
                f"expected {FRAME_SHAPE}"
            )
        return image

    def load_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode every usable frame.

        Returns ``(images, actions, indices)``: N x 120 x 120 x 3 uint8, N class
        ids and N frame indices, in time order. Undecodable frames are skipped
        and counted in ``report.corrupt_frames``.
        """
        images = np.empty((len(self.records), *FRAME_SHAPE), dtype=np.uint8)
        keep: list[Record] = []
        self.report.corrupt_frames = 0
        for record in self.records:
            try:
                images[len(keep)] = self.load(record)
            except FrameError as err:
                self.report.corrupt_frames += 1
                log.warning("skipping %s", err)
                continue
            keep.append(record)
        actions = np.array([int(r.action) for r in keep], dtype=np.int64)
        indices = np.array([r.index for r in keep], dtype=np.int64)
        return images[: len(keep)], actions, indices

    def verify(self) -> ReadReport:
        """Decode every frame and return the full report of what is damaged."""
        self.load_all()
        return self.report

    def stats(self) -> DriveStats:
        """Frames per action, duration and frame rate of the usable frames."""
        counts = Counter(r.action.label for r in self.records)
        times = [r.t_mono_s for r in self.records]
        duration_s = max(times) - min(times) if len(times) > 1 else 0.0
        fps = (len(times) - 1) / duration_s if duration_s > 0 else 0.0
        return DriveStats(
            frames=len(self.records),
            counts={label: counts.get(label, 0) for label in ACTION_LABELS},
            duration_s=duration_s,
            fps=fps,
        )

    def digest(self) -> str:
        """sha256 of the drive's content: labels, edits and every frame's bytes.

        Changes whenever a frame, a label or an edit changes, so that caches
        keyed by it are never stale.
        """
        digest = hashlib.sha256()
        for name in (LABELS_NAME, EDITS_NAME):
            try:
                digest.update((self.path / name).read_bytes())
            except FileNotFoundError:
                pass
            digest.update(b"\0")
        for record in self.raw_records:
            digest.update(record.file.encode())
            try:
                digest.update((self.path / record.file).read_bytes())
            except OSError:
                digest.update(b"missing")
        return digest.hexdigest()


def _is_frame_name(name: str) -> bool:
    parts = Path(name).parts
    return len(parts) == 2 and parts[0] == FRAMES_DIR and not name.startswith("/")


def find_drives(paths: Sequence[str | Path]) -> list[Path]:
    """Expand each path into drive folders: a drive, or a folder of drives.

    Raises:
        NotADriveError: a path is neither a drive nor holds any drive.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / META_NAME).is_file():
            found.append(path)
            continue
        children = (
            sorted(p for p in path.iterdir() if (p / META_NAME).is_file())
            if path.is_dir()
            else []
        )
        if not children:
            Drive.open(path)  # raises the specific NotADriveError
        found.extend(children)
    return found


def _json_bytes(item: dict[str, Any], indent: int | None = None) -> bytes:
    return (json.dumps(item, indent=indent) + "\n").encode("utf-8")
