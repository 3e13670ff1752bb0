"""Training data: the decoded-frame cache, the time split, mirroring, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.actions import Action
from shared.drives import Drive, DriveWriter
from shared.errors import ConfigError, DriveError, NotADriveError
from tests.trainer.trainer_drives import action_frame, cycle_actions, write_drive
from trainer.data import (
    class_weights,
    load_dataset,
    make_train_dataset,
    mirror_batch,
    split_point,
)


@pytest.fixture
def two_drives(tmp_path: Path) -> Path:
    drives = tmp_path / "drives"
    write_drive(drives, "a", cycle_actions(50, seed=1), seed=1)
    write_drive(drives, "b", cycle_actions(30, seed=2), seed=2)
    return drives


def test_load_dataset_keeps_the_last_fifth_of_each_drive_for_validation(
    two_drives: Path, tmp_path: Path
) -> None:
    dataset = load_dataset([two_drives], tmp_path / "cache")

    assert [p.name for p in dataset.drives] == ["a", "b"]
    for number, frames, n_val in ((0, 50, 10), (1, 30, 6)):
        train = dataset.train_source[dataset.train_source[:, 0] == number, 1]
        val = dataset.val_source[dataset.val_source[:, 0] == number, 1]
        assert sorted(val) == list(range(frames - n_val, frames))
        assert sorted(train) == list(range(frames - n_val))
        assert train.max() < val.min()
    assert dataset.train_frames == 64 and dataset.val_frames == 16


def test_load_dataset_validation_frames_are_the_drive_s_last_frames(
    two_drives: Path, tmp_path: Path
) -> None:
    dataset = load_dataset([two_drives / "a"], tmp_path / "cache")
    images, actions, _ = Drive.open(two_drives / "a").load_all()

    assert np.array_equal(dataset.x_val, images[40:])
    assert np.array_equal(dataset.y_val, actions[40:])
    assert np.array_equal(dataset.x_train, images[:40])
    # No training frame is a copy of a validation frame.
    train_bytes = {frame.tobytes() for frame in dataset.x_train}
    assert not any(frame.tobytes() in train_bytes for frame in dataset.x_val)


def test_load_dataset_reads_the_cache_and_rereads_an_edited_drive(
    two_drives: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = load_dataset([two_drives / "a"], cache)
    (cache_file,) = (cache / "frames").glob("*.npz")

    # Overwrite the cached pixels: an unchanged drive must come from the cache.
    with np.load(cache_file) as cached:
        arrays = dict(cached)
    np.savez(cache_file, **{**arrays, "images": np.zeros_like(arrays["images"])})
    cached_load = load_dataset([two_drives / "a"], cache)
    assert cached_load.x_train.max() == 0
    assert cached_load.digest == first.digest

    # An edit changes the drive's content: it is decoded again.
    Drive.open(two_drives / "a").exclude([0])
    edited = load_dataset([two_drives / "a"], cache)
    assert edited.x_train.max() > 0
    assert edited.train_frames + edited.val_frames == 49
    assert edited.digest != first.digest


def test_mirror_batch_flips_pixels_and_swaps_left_and_right() -> None:
    rng = np.random.default_rng(0)
    labels = np.array(
        [
            Action.LEFT,
            Action.RIGHT,
            Action.FORWARD,
            Action.STOP,
            Action.BACKWARD,
            Action.LEFT,
        ]
    )
    images = np.stack([action_frame(Action(a), rng) for a in labels])
    flip = np.array([True, True, True, True, True, False])

    out_images, out_labels = mirror_batch(images, labels, flip)

    assert list(np.asarray(out_labels)) == [
        Action.RIGHT,
        Action.LEFT,
        Action.FORWARD,
        Action.STOP,
        Action.BACKWARD,
        Action.LEFT,
    ]
    assert np.array_equal(np.asarray(out_images)[:5], images[:5, :, ::-1, :])
    assert np.array_equal(np.asarray(out_images)[5], images[5])


def _side(frame: np.ndarray) -> str:
    """Which third of a synthetic frame is bright."""
    third = frame.shape[1] // 3
    left, right = frame[:, :third].mean(), frame[:, -third:].mean()
    return "left" if left > right + 50 else "right" if right > left + 50 else "even"


def test_make_train_dataset_mirrors_frames_anew_each_epoch() -> None:
    rng = np.random.default_rng(1)
    labels = np.full(64, Action.LEFT)
    images = np.stack([action_frame(Action.LEFT, rng) for _ in labels])
    index_of = {frame.tobytes(): i for i, frame in enumerate(images)}

    dataset = make_train_dataset(images, labels, 16, mirror=True, seed=3)
    flipped_per_epoch = []
    for _ in range(2):
        flipped = set()
        for frames, ids in dataset:
            for frame, label in zip(frames.numpy(), ids.numpy(), strict=True):
                if label == Action.RIGHT:
                    # A mirrored frame: its pixels are the original's, reversed.
                    assert _side(frame) == "right"
                    flipped.add(index_of[frame[:, ::-1].tobytes()])
                else:
                    assert label == Action.LEFT and _side(frame) == "left"
                    assert frame.tobytes() in index_of
        flipped_per_epoch.append(flipped)

    assert all(0 < len(flipped) < 64 for flipped in flipped_per_epoch)
    assert flipped_per_epoch[0] != flipped_per_epoch[1]


def test_make_train_dataset_without_mirror_keeps_every_frame_as_recorded() -> None:
    rng = np.random.default_rng(2)
    labels = np.array([Action.LEFT] * 20 + [Action.FORWARD] * 12)
    images = np.stack([action_frame(Action(a), rng) for a in labels])

    batches = list(make_train_dataset(images, labels, 8, mirror=False, seed=0))

    ids = np.concatenate([b[1].numpy() for b in batches])
    frames = np.concatenate([b[0].numpy() for b in batches])
    assert sorted(ids) == sorted(labels)
    originals = {f.tobytes() for f in images}
    assert all(f.tobytes() in originals for f in frames)


def test_make_train_dataset_adds_class_weights_per_frame() -> None:
    labels = np.array([1, 1, 1, 2])
    images = np.zeros((4, 120, 120, 3), np.uint8)
    weights = class_weights(labels)

    ((frames, ids, sample_w),) = list(
        make_train_dataset(images, labels, 4, mirror=False, weights=weights)
    )

    assert weights[1] == pytest.approx(4 / 6) and weights[2] == pytest.approx(2.0)
    assert weights[0] == 0
    expected = np.where(ids.numpy() == 1, 4 / 6, 2.0)
    assert np.allclose(sample_w.numpy(), expected)


def test_make_train_dataset_batch_larger_than_training_set_raises() -> None:
    images = np.zeros((10, 120, 120, 3), np.uint8)

    with pytest.raises(
        ConfigError,
        match=r"batch_size 11 is larger than the "
        r"training set \(10 frames\)",
    ):
        make_train_dataset(images, np.zeros(10), 11)


def test_load_dataset_empty_drive_raises_a_clear_error(tmp_path: Path) -> None:
    with DriveWriter.create(tmp_path / "drives", name="empty"):
        pass

    with pytest.raises(DriveError, match="has no usable frames"):
        load_dataset([tmp_path / "drives" / "empty"], tmp_path / "cache")


def test_load_dataset_unreadable_drive_raises_a_clear_error(
    two_drives: Path, tmp_path: Path
) -> None:
    (two_drives / "b" / "drive.json").write_text("{not json")

    with pytest.raises(DriveError, match="cannot read .*drive.json"):
        load_dataset([two_drives / "b"], tmp_path / "cache")


def test_load_dataset_not_a_drive_raises(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()

    with pytest.raises(NotADriveError, match="is not a drive"):
        load_dataset([tmp_path / "photos"], tmp_path / "cache")


def test_split_point_refuses_a_drive_too_short_to_split() -> None:
    assert split_point(10, 0.2) == 8
    assert split_point(2, 0.2) == 1
    with pytest.raises(DriveError, match="needs at least 2"):
        split_point(1, 0.2, "short")


def test_dataset_summary_is_json_with_counts(two_drives: Path, tmp_path: Path) -> None:
    dataset = load_dataset([two_drives], tmp_path / "cache")

    summary = json.loads(json.dumps(dataset.summary()))

    assert summary["train_frames"] == 64 and summary["val_frames"] == 16
    assert sum(summary["counts"]["val"].values()) == 16
    assert len(summary["digest"]) == 64


def test_load_dataset_imports_a_donkey_tub_once(
    donkey_tub: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    first = load_dataset([donkey_tub], cache)
    second = load_dataset([donkey_tub], cache)

    assert len(list((cache / "tubs").iterdir())) == 1
    assert first.train_frames == 800 and first.val_frames == 200
    assert second.digest == first.digest
    assert np.array_equal(second.x_val, first.x_val)
