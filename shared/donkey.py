"""Import DonkeyCar tub v2 folders into MaLPi drives.

A tub v2 folder holds::

    manifest.json           line 1 inputs, 2 types, 3 metadata, 4 manifest
                            metadata, 5 {"paths", "current_index", "max_len",
                            "deleted_indexes"}
    catalog_0.catalog ...   one JSON record per line: _index, _timestamp_ms,
                            cam/image_array, user/angle, user/throttle,
                            user/mode
    images/<i>_cam_image_array_.jpg

Each record becomes one drive frame: its image goes through
``shared.frames.to_model_frame`` (a 160x120 DonkeyCar image is centre-cropped
to 120x120, no scaling), and its steering and throttle become one of the five
actions by a stated ``DonkeyMapping``. Records listed in ``deleted_indexes``
are left out, and so are frames the pilot drove (``user/mode`` other than
``user``), because their ``user/angle`` is not the action that was sent.
A catalog line that is not JSON, a missing or undecodable image and a record
without numeric steering or throttle are skipped and counted in
``ImportReport``; files the format does not name (such as macOS ``._*``
files) are never read.

The time of a frame is the record's ``_timestamp_ms`` in seconds. It is only
as good as the recorder's clock: the DonkeyCar test tub's timestamps are
synthetic, 3 ms apart, so the duration and frame rate of a drive imported
from it mean nothing.

The import never writes into the tub. It builds the drive in a hidden
staging folder under the drives folder and renames it into place when every
frame and label is on disk, so a drive appears complete or not at all.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared import __version__
from shared.actions import ACTION_LABELS, Action
from shared.drives import DRIVE_FORMAT, FRAMES_DIR, LABELS_NAME, META_NAME, frame_file
from shared.errors import ConfigError, FrameError, ImportDataError
from shared.fileio import fsync_dir, write_atomic
from shared.frames import (
    FRAME_SHAPE,
    JPEG_QUALITY,
    decode_jpeg,
    encode_jpeg,
    to_model_frame,
)

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
IMAGES_DIR = "images"
IMAGE_KEY = "cam/image_array"
#: DonkeyCar's default drive loop rate, used for a record without a timestamp.
DEFAULT_RATE_HZ = 20.0


@dataclass(frozen=True)
class DonkeyMapping:
    """How a DonkeyCar record's steering and throttle become an action.

    In order: ``stop`` when ``|throttle| < throttle_stop``; ``backward`` when
    ``throttle <= -throttle_stop``; otherwise ``left`` when
    ``angle < -angle_threshold``, ``right`` when ``angle > angle_threshold``,
    and ``forward`` in between. DonkeyCar steers left with a negative angle.

    The defaults suit a tub driven at a steady speed: throttle 0.1 is well
    below any driving throttle (the test tub's lie in [0.42, 0.80]), so only a
    car at rest counts as stopped; angle 0.3, a third of full lock, separates
    clear turns from steering corrections (the test tub's angles lie in
    [-0.86, 1.0] and 47% of them within +-0.3).
    """

    #: Steering beyond +-this is a turn; within it, forward.
    angle_threshold: float = 0.3
    #: Throttle closer to zero than this is stop; below minus this, backward.
    throttle_stop: float = 0.1
    #: Catalog keys of the steering and throttle to map.
    angle_key: str = "user/angle"
    throttle_key: str = "user/throttle"

    def __post_init__(self) -> None:
        for name in ("angle_threshold", "throttle_stop"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value < 1.0
            ):
                raise ConfigError(
                    f"{name} {value!r} must be a number in [0, 1): DonkeyCar "
                    "steering and throttle lie in [-1, 1]"
                )

    def action(self, angle: float, throttle: float) -> Action:
        """The action for one record's steering ``angle`` and ``throttle``."""
        if abs(throttle) < self.throttle_stop:
            return Action.STOP
        if throttle < 0:
            return Action.BACKWARD
        if angle < -self.angle_threshold:
            return Action.LEFT
        if angle > self.angle_threshold:
            return Action.RIGHT
        return Action.FORWARD

    def describe(self) -> str:
        """The mapping as one sentence, for logs and command output."""
        stop, turn = self.throttle_stop, self.angle_threshold
        return (
            f"stop if |throttle| < {stop:g}, backward if throttle <= {-stop:g}, "
            f"else left if angle < {-turn:g}, right if angle > {turn:g}, "
            "else forward"
        )


@dataclass
class ImportReport:
    """What an import read, kept and left out, by reason."""

    catalog_lines: int = 0
    imported: int = 0
    deleted: int = 0
    pilot_frames: int = 0
    bad_lines: int = 0
    bad_values: int = 0
    missing_images: int = 0
    corrupt_images: int = 0
    missing_catalogs: int = 0

    @property
    def skipped(self) -> int:
        """Records lost to damage (deleted and pilot frames are left out)."""
        return (
            self.bad_lines + self.bad_values + self.missing_images + self.corrupt_images
        )

    def summary(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.deleted, "deleted in the tub"),
                (self.pilot_frames, "driven by the pilot"),
                (self.bad_lines, "catalog lines that are not JSON"),
                (self.bad_values, "records without steering, throttle or image"),
                (self.missing_images, "missing images"),
                (self.corrupt_images, "undecodable images"),
                (self.missing_catalogs, "missing catalog files"),
            )
            if n
        ]
        return ", ".join(parts) if parts else "nothing skipped"


@dataclass(frozen=True)
class TubRecord:
    """One usable record of a tub: where its image is and what it says."""

    index: int
    t_s: float
    angle: float
    throttle: float
    image: Path


@dataclass
class Tub:
    """A DonkeyCar tub v2 folder, read but never written."""

    path: Path
    inputs: list[str]
    types: list[str]
    catalogs: list[Path]
    deleted_indexes: set[int] = field(default_factory=set)

    @classmethod
    def open(cls, path: str | Path) -> Tub:
        """Read a tub's manifest.

        Raises:
            ImportDataError: the folder is missing, not a tub v2, or its
                manifest is damaged.
        """
        path = Path(path)
        if not path.is_dir():
            raise ImportDataError(f"tub {str(path)!r} is not a folder")
        manifest = path / MANIFEST_NAME
        if not manifest.is_file():
            raise ImportDataError(
                f"{str(path)!r} is not a DonkeyCar tub v2: {_hint(path)}"
            )
        try:
            lines = [
                json.loads(line)
                for line in manifest.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise ImportDataError(
                f"cannot read {str(manifest)!r}: {err}; the tub's manifest is "
                "damaged, restore it from a copy"
            ) from err
        if len(lines) < 2 or not all(isinstance(x, list) for x in lines[:2]):
            raise ImportDataError(
                f"{str(manifest)!r} does not start with the inputs and types lists "
                "of a DonkeyCar tub v2 manifest"
            )
        inputs, types = [str(x) for x in lines[0]], [str(x) for x in lines[1]]
        catalog_meta = lines[4] if len(lines) > 4 and isinstance(lines[4], dict) else {}
        names = catalog_meta.get("paths") or _glob_catalogs(path)
        try:
            deleted = {int(i) for i in catalog_meta.get("deleted_indexes", [])}
        except (TypeError, ValueError) as err:
            raise ImportDataError(
                f"deleted_indexes in {str(manifest)!r} are not whole numbers: {err}"
            ) from err
        catalogs = []
        for name in names:
            if not isinstance(name, str) or Path(name).name != name:
                raise ImportDataError(
                    f"{str(manifest)!r} names catalog {name!r}, which is not a "
                    "file name inside the tub"
                )
            catalogs.append(path / name)
        return cls(path, inputs, types, catalogs, deleted)

    @property
    def image_key(self) -> str:
        """The catalog key of the camera image: the first image input."""
        for name, kind in zip(self.inputs, self.types, strict=False):
            if kind == "image_array":
                return name
        return IMAGE_KEY

    def records(self, mapping: DonkeyMapping, report: ImportReport) -> list[TubRecord]:
        """The records to import, in catalog order; skips are counted in ``report``.

        Images are only checked to exist here; decoding happens on import.
        """
        found: list[TubRecord] = []
        position = 0
        for catalog in self.catalogs:
            try:
                data = catalog.read_bytes()
            except FileNotFoundError:
                report.missing_catalogs += 1
                log.warning("catalog %s is missing; its records are lost", catalog)
                continue
            except OSError as err:
                raise ImportDataError(f"cannot read {str(catalog)!r}: {err}") from err
            for line in data.split(b"\n"):
                if not line.strip():
                    continue
                report.catalog_lines += 1
                record = self._parse(line, position, mapping, report)
                position += 1
                if record is not None:
                    found.append(record)
        return found

    def _parse(
        self, line: bytes, position: int, mapping: DonkeyMapping, report: ImportReport
    ) -> TubRecord | None:
        try:
            item = json.loads(line)
        except ValueError:
            report.bad_lines += 1
            return None
        if not isinstance(item, dict):
            report.bad_lines += 1
            return None
        index = item.get("_index", position)
        if not isinstance(index, int) or isinstance(index, bool):
            index = position
        if index in self.deleted_indexes:
            report.deleted += 1
            return None
        if item.get("user/mode", "user") != "user":
            report.pilot_frames += 1
            return None
        angle = item.get(mapping.angle_key)
        throttle = item.get(mapping.throttle_key)
        image = item.get(self.image_key)
        if not (_is_number(angle) and _is_number(throttle) and isinstance(image, str)):
            report.bad_values += 1
            return None
        if Path(image).name != image:
            report.bad_values += 1
            return None
        image_path = self.path / IMAGES_DIR / image
        if not image_path.is_file():
            report.missing_images += 1
            return None
        stamp_ms = item.get("_timestamp_ms")
        t_s = stamp_ms / 1000.0 if _is_number(stamp_ms) else position / DEFAULT_RATE_HZ
        return TubRecord(index, t_s, float(angle), float(throttle), image_path)


@dataclass
class ImportResult:
    """The drive an import made and what it left out."""

    path: Path
    report: ImportReport
    counts: dict[str, int]


def import_tub(
    source: str | Path,
    drives_dir: str | Path,
    *,
    mapping: DonkeyMapping | None = None,
    name: str | None = None,
    jpeg_quality: int = JPEG_QUALITY,
) -> ImportResult:
    """Import the tub at ``source`` as a new drive under ``drives_dir``.

    The drive is named ``name``, or after the tub's folder. Writing goes
    straight to disk rather than through ``DriveWriter``'s thread: an import
    has no drive loop to keep responsive, and must keep every frame (the
    writer drops frames when its queue is full) and appear all at once.

    Raises:
        ImportDataError: the source is not a tub, no record of it can be
            imported, the drive exists already, or the drives folder is inside
            the tub.
    """
    mapping = mapping or DonkeyMapping()
    tub = Tub.open(source)
    source_path = tub.path.resolve()
    drives_dir = Path(drives_dir)
    name = name or source_path.name
    if Path(name).name != name or name in ("", ".", ".."):
        raise ImportDataError(f"drive name {name!r} must be a plain folder name")
    if drives_dir.resolve().is_relative_to(source_path):
        raise ImportDataError(
            f"drives folder {str(drives_dir)!r} is inside the tub {str(source)!r}; "
            "an import never writes into its source, give a folder outside it"
        )
    final = drives_dir / name
    if final.exists():
        raise ImportDataError(
            f"drive {str(final)!r} exists already; remove it or pass another name"
        )

    # Read the catalogs: which records to import and what each says.
    report = ImportReport()
    records = tub.records(mapping, report)

    # Build the drive in a staging folder beside its final place.
    try:
        drives_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=drives_dir))
    except OSError as err:
        raise ImportDataError(
            f"cannot write drives under {str(drives_dir)!r}: {err}"
        ) from err
    try:
        counts = _write_drive(
            staging / name, tub, records, mapping, report, jpeg_quality
        )
        if report.imported == 0:
            raise ImportDataError(
                f"no frame of tub {str(source)!r} could be imported: {report.summary()}"
            )
        # Everything on disk before the drive appears: one sync of the whole
        # system costs a fraction of an fsync per frame.
        os.sync()
        try:
            os.rename(staging / name, final)
        except OSError as err:
            raise ImportDataError(
                f"cannot move the imported drive to {str(final)!r}: {err}"
            ) from err
        fsync_dir(drives_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "imported %d frames of %s into %s (%s)",
        report.imported,
        source,
        final,
        report.summary(),
    )
    return ImportResult(final, report, counts)


def _write_drive(
    path: Path,
    tub: Tub,
    records: list[TubRecord],
    mapping: DonkeyMapping,
    report: ImportReport,
    jpeg_quality: int,
) -> dict[str, int]:
    frames_dir = path / FRAMES_DIR
    frames_dir.mkdir(parents=True)
    counts: Counter[str] = Counter()
    lines: list[bytes] = []

    # Frames: decode, crop to the model frame, re-encode.
    for record in records:
        try:
            frame = to_model_frame(decode_jpeg(record.image))
        except FrameError as err:
            report.corrupt_images += 1
            log.warning("skipping record %d: %s", record.index, err)
            continue
        index = report.imported
        action = mapping.action(record.angle, record.throttle)
        (path / frame_file(index)).write_bytes(encode_jpeg(frame, jpeg_quality))
        label = {
            "index": index,
            "t": round(record.t_s, 6),
            "action": action.label,
            "mode": "user",
            "file": frame_file(index),
        }
        lines.append((json.dumps(label) + "\n").encode("utf-8"))
        counts[action.label] += 1
        report.imported += 1

    # Labels after their frames, then the drive's description.
    (path / LABELS_NAME).write_bytes(b"".join(lines))
    meta: dict[str, Any] = {
        "format": DRIVE_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "car": "donkeycar",
        "camera": "donkeycar tub",
        "software_version": __version__,
        "frame_shape": list(FRAME_SHAPE),
        "labels": list(ACTION_LABELS),
        "config": {"donkey_mapping": asdict(mapping)},
        "source": {
            "kind": "donkeycar-tub-v2",
            "path": str(tub.path.resolve()),
            "mapping": mapping.describe(),
            "read": asdict(report),
        },
    }
    write_atomic(path / META_NAME, (json.dumps(meta, indent=2) + "\n").encode())
    return {label: counts.get(label, 0) for label in ACTION_LABELS}


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _glob_catalogs(path: Path) -> list[str]:
    """Catalog files in number order, for a manifest that does not list them."""
    found = []
    for child in path.iterdir():
        match = re.fullmatch(r"catalog_(\d+)\.catalog", child.name)
        if match and child.is_file():
            found.append((int(match.group(1)), child.name))
    return [name for _, name in sorted(found)]


def _hint(path: Path) -> str:
    if (path / "drive.json").is_file():
        return "it is a MaLPi drive already, use it as it is"
    if (path / "meta.json").is_file() or any(path.glob("record_*.json")):
        return (
            "it looks like a tub v1 (meta.json, record_*.json); convert it to "
            "tub v2 with DonkeyCar's own tools first"
        )
    return f"it has no {MANIFEST_NAME}; give the tub folder that holds it"
