"""Training data: drives decoded once into a cache, split by time, fed by tf.data.

Loading a list of drives (or DonkeyCar tubs, imported on the fly) goes:

1. A tub folder (``manifest.json`` + ``catalog_*.catalog``) is imported into
   ``<cache>/tubs/<content digest>/`` once and read as drives from there.
2. Each drive's usable frames are decoded into a uint8 array saved as
   ``<cache>/frames/<drive digest>.npz``. The key is the drive's content
   (``Drive.digest``: labels, edits, frame bytes), so an edited drive is
   decoded again and an unchanged one never is.
3. The last ``val_fraction`` (20%) of each drive, in time, is validation;
   the rest is training. Never a random split: neighbouring frames are near
   copies and would leak into validation.

``make_train_dataset`` feeds training batches from memory: shuffled indices,
a batched gather, mirror augmentation (flip left-right, swap the ``left`` and
``right`` labels), optional class weights, prefetch. Validation is never
augmented.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.actions import ACTION_LABELS, MIRROR_IDS, NUM_ACTIONS
from shared.drives import Drive, find_drives
from shared.errors import ConfigError, DriveError, ImportDataError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
VAL_FRACTION = 0.2
#: The share of training batches' frames that mirror augmentation flips.
MIRROR_PROBABILITY = 0.5


@dataclass
class DriveData:
    """The decoded usable frames of one drive, in time order."""

    path: Path
    digest: str
    images: np.ndarray  # N x 120 x 120 x 3 uint8
    actions: np.ndarray  # N class ids
    indices: np.ndarray  # N frame indices within the drive

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class Dataset:
    """Training and validation frames in memory, and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    #: Per frame: (drive number in ``drives``, frame index in that drive).
    train_source: np.ndarray
    val_source: np.ndarray
    drives: list[Path]
    drive_digests: list[str]
    #: sha256 over the drives' digests and the split: the model card's data.
    digest: str
    val_fraction: float

    @property
    def train_frames(self) -> int:
        return len(self.y_train)

    @property
    def val_frames(self) -> int:
        return len(self.y_val)

    def counts(self) -> dict[str, dict[str, int]]:
        """Frames per action in training and validation."""
        return {
            "train": _label_counts(self.y_train),
            "val": _label_counts(self.y_val),
        }

    def summary(self) -> dict[str, Any]:
        """What a search folder and a model card keep about the data."""
        return {
            "drives": [str(path) for path in self.drives],
            "digest": self.digest,
            "train_frames": self.train_frames,
            "val_frames": self.val_frames,
            "val_fraction": self.val_fraction,
            "counts": self.counts(),
        }


# --- loading -----------------------------------------------------------------


def default_cache_dir(project: str | Path) -> Path:
    """The cache folder of a project: ``<project>/.cache``."""
    return Path(project).expanduser() / ".cache"


def load_dataset(
    paths: Sequence[str | Path],
    cache_dir: str | Path,
    *,
    val_fraction: float = VAL_FRACTION,
) -> Dataset:
    """Load drives (or tubs, or folders of drives) and split each by time.

    Raises:
        NotADriveError: a path is neither a drive, a folder of drives nor a tub.
        DriveError: a drive is unreadable, empty or too short to split.
        ImportDataError: a tub cannot be imported.
        ConfigError: ``val_fraction`` is not in (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(
            f"val_fraction {val_fraction!r} must be between 0 and 1 (e.g. 0.2)"
        )
    if not paths:
        raise DriveError("no drives given; name at least one drive or folder")
    cache_dir = Path(cache_dir)
    drive_paths = resolve_drives(paths, cache_dir)

    # Decode (or read from the cache) every drive.
    started = time.perf_counter()
    drives = [load_drive(path, cache_dir) for path in drive_paths]
    log.info(
        "loaded %d frames from %d drives in %.2f s",
        sum(len(d) for d in drives),
        len(drives),
        time.perf_counter() - started,
    )

    # Split each drive by time: its last val_fraction is validation.
    train_parts, val_parts = [], []
    for number, drive in enumerate(drives):
        n_train = split_point(len(drive), val_fraction, drive.path)
        source = np.stack(
            [np.full(len(drive), number, dtype=np.int64), drive.indices], axis=1
        )
        train_parts.append(
            (drive.images[:n_train], drive.actions[:n_train], source[:n_train])
        )
        val_parts.append(
            (drive.images[n_train:], drive.actions[n_train:], source[n_train:])
        )

    digest = hashlib.sha256(f"split {val_fraction!r}\n".encode())
    for drive in drives:
        digest.update(f"{drive.digest}\n".encode())
    return Dataset(
        x_train=_concat([p[0] for p in train_parts]),
        y_train=_concat([p[1] for p in train_parts]),
        x_val=_concat([p[0] for p in val_parts]),
        y_val=_concat([p[1] for p in val_parts]),
        train_source=_concat([p[2] for p in train_parts]),
        val_source=_concat([p[2] for p in val_parts]),
        drives=[d.path for d in drives],
        drive_digests=[d.digest for d in drives],
        digest=digest.hexdigest(),
        val_fraction=val_fraction,
    )


def split_point(frames: int, val_fraction: float, path: Path | str = "") -> int:
    """How many of a drive's first frames are training (the rest validation).

    The validation part is ``round(frames * val_fraction)`` frames, at least
    one, and at least one frame stays for training.

    Raises:
        DriveError: the drive has fewer than two frames.
    """
    if frames < 2:
        raise DriveError(
            f"drive {str(path)!r} has {frames} usable frame(s); a drive needs at "
            f"least 2 to keep its last {val_fraction:.0%} for validation: record "
            "a longer drive or leave it out"
        )
    n_val = min(frames - 1, max(1, round(frames * val_fraction)))
    return frames - n_val


def resolve_drives(paths: Sequence[str | Path], cache_dir: Path) -> list[Path]:
    """Expand paths into drive folders, importing any DonkeyCar tub first."""
    found: list[Path] = []
    for path in map(Path, paths):
        if is_tub(path):
            found.extend(import_tub_cached(path, cache_dir))
        else:
            found.extend(find_drives([path]))
    return found


def load_drive(path: Path, cache_dir: Path) -> DriveData:
    """A drive's decoded frames, from the cache when its content is unchanged.

    Raises:
        DriveError: the drive is unreadable or has no usable frame.
    """
    drive = Drive.open(path)
    digest = drive.digest()
    cache_file = cache_dir / "frames" / f"{digest}.v{CACHE_FORMAT}.npz"

    # A cache hit: the same labels, edits and frame bytes were decoded before.
    if cache_file.is_file():
        try:
            with np.load(cache_file) as cached:
                images, actions, indices = (
                    cached["images"],
                    cached["actions"],
                    cached["indices"],
                )
            log.debug("drive %s read from cache %s", path, cache_file.name)
            return DriveData(path, digest, images, actions, indices)
        except (OSError, ValueError, KeyError) as err:
            log.warning("ignoring unreadable cache file %s: %s", cache_file, err)

    # A miss: decode every usable frame once and keep it.
    images, actions, indices = drive.load_all()
    if drive.report.skipped:
        log.warning("drive %s: skipped %s", path, drive.report.summary())
    if len(actions) == 0:
        raise DriveError(
            f"drive {str(path)!r} has no usable frames "
            f"({drive.report.summary()}); record frames or leave it out"
        )
    _save_npz(cache_file, images=images, actions=actions, indices=indices)
    log.info("drive %s decoded: %d frames, cached", path, len(actions))
    return DriveData(path, digest, images, actions, indices)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        log.warning("cannot write frame cache %s: %s", path, err)


# --- DonkeyCar tubs ----------------------------------------------------------


def is_tub(path: str | Path) -> bool:
    """True for a DonkeyCar tub v2 folder (manifest.json and a catalog)."""
    path = Path(path)
    return (path / "manifest.json").is_file() and any(path.glob("*.catalog"))


def tub_digest(path: Path) -> str:
    """sha256 of a tub's files (names and bytes), its import cache key."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def import_tub_cached(path: Path, cache_dir: Path) -> list[Path]:
    """Import a tub into the cache once (keyed by its content); its drives.

    Raises:
        ImportDataError: the tub cannot be read or converted.
    """
    from shared.donkey import DonkeyMapping, import_tub

    # The key covers the tub's bytes and the steering-to-action mapping.
    mapping = DonkeyMapping()
    key = hashlib.sha256(f"{tub_digest(path)} {mapping!r}".encode()).hexdigest()
    target = cache_dir / "tubs" / key[:32]
    if target.is_dir():
        return find_drives([target])

    # Import into a temporary folder and rename it, so a killed import
    # leaves no half-imported tub behind.
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        import_tub(path, tmp, mapping=mapping)
        os.replace(tmp, target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ImportDataError(f"cannot import tub {str(path)!r}: {err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("imported tub %s into %s", path, target)
    return find_drives([target])


# --- class weights -----------------------------------------------------------


def class_weights(labels: np.ndarray, num_classes: int = NUM_ACTIONS) -> np.ndarray:
    """Balanced weights ``n / (classes present * count)``; 0 for absent ones."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = np.count_nonzero(counts)
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, counts.sum() / (present * counts), 0.0)
    return weights.astype(np.float32)


# --- tf.data -----------------------------------------------------------------


def mirror_batch(images: Any, labels: Any, flip: Any) -> tuple[Any, Any]:
    """Flip the frames where ``flip`` is true left-right and swap their labels.

    ``images`` is B x H x W x 3, ``labels`` B class ids, ``flip`` B booleans
    (tensors or arrays).
    """
    import tensorflow as tf

    mirror_ids = tf.constant(MIRROR_IDS, dtype=tf.int64)
    labels = tf.cast(labels, tf.int64)
    flipped = tf.reverse(images, axis=[2])
    images = tf.where(flip[:, None, None, None], flipped, images)
    labels = tf.where(flip, tf.gather(mirror_ids, labels), labels)
    return images, labels


def make_train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    mirror: bool = True,
    weights: np.ndarray | None = None,
    shuffle: bool = True,
    seed: int | None = None,
) -> Any:
    """Training batches from memory: shuffle, gather, mirror, weight, prefetch.

    Yields ``(frames, labels)`` or, with per-class ``weights``,
    ``(frames, labels, sample_weights)``.

    Raises:
        ConfigError: ``batch_size`` is larger than the training set.
    """
    import tensorflow as tf

    check_batch_size(batch_size, len(labels))
    x = _tensor(images)
    y = _tensor(np.asarray(labels, dtype=np.int64))
    class_w = None if weights is None else tf.constant(weights, dtype=tf.float32)

    def gather(idx: tf.Tensor, coins: tf.Tensor) -> tuple[tf.Tensor, ...]:
        frames, ids = tf.gather(x, idx), tf.gather(y, idx)
        if mirror:
            flip = coins % 1000 < int(1000 * MIRROR_PROBABILITY)
            frames, ids = mirror_batch(frames, ids, flip)
        if class_w is None:
            return frames, ids
        return frames, ids, tf.gather(class_w, ids)

    # Frame indices paired with a fresh random number per frame and epoch
    # (which decides its mirroring), shuffled, batched, then gathered.
    coins = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip((tf.data.Dataset.range(len(labels)), coins))
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> Any:
    """Validation batches in order, never augmented."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(
        (images, np.asarray(labels, dtype=np.int64))
    )
    return dataset.batch(max(1, batch_size)).prefetch(tf.data.AUTOTUNE)


#: The tensors of the arrays fed most recently, so that the runs of a search
#: do not copy the same training frames into TensorFlow again and again.
_TENSORS: list[tuple[np.ndarray, Any]] = []
_TENSORS_KEPT = 4


def _tensor(array: np.ndarray) -> Any:
    import tensorflow as tf

    for kept, tensor in _TENSORS:
        if kept is array:
            return tensor
    tensor = tf.constant(array)
    _TENSORS.insert(0, (array, tensor))
    del _TENSORS[_TENSORS_KEPT:]
    return tensor


def check_batch_size(batch_size: int, train_frames: int) -> None:
    """Raise ConfigError when a batch is larger than the training set."""
    if batch_size > train_frames:
        raise ConfigError(
            f"batch_size {batch_size!r} is larger than the training set "
            f"({train_frames} frames); use a batch size <= {train_frames} "
            "or add drives"
        )


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_ACTIONS)
    return {label: int(counts[i]) for i, label in enumerate(ACTION_LABELS)}
