"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shared.actions import Action
from shared.drives import MODES, DriveWriter
from shared.frames import FRAME_SIZE_PX

#: The real DonkeyCar tub, kept beside the repository and never copied into it.
DONKEY_TUB = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "donkeycar-tub"
).resolve()


def smooth_frame(index: int) -> np.ndarray:
    """A 120x120x3 uint8 frame of smooth gradients that depend on ``index``.

    Smooth images survive JPEG with a small error, so tests can compare pixels
    with a tight tolerance.
    """
    axis = np.linspace(0.0, 1.0, FRAME_SIZE_PX)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    phase = index * 0.07
    red = 128 + 100 * np.sin(2 * np.pi * (x + phase))
    green = 128 + 100 * np.cos(2 * np.pi * (y - phase))
    blue = 40 + 180 * (x + y) / 2
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def scripted_action(index: int) -> Action:
    """A deterministic label per frame that uses every action."""
    return Action(index * 7 % len(Action))


@pytest.fixture
def donkey_tub() -> Path:
    """The real DonkeyCar tub (read-only); the test skips when it is absent."""
    if not (DONKEY_TUB / "manifest.json").is_file():
        pytest.skip(f"the DonkeyCar tub is not at {DONKEY_TUB}")
    return DONKEY_TUB


@pytest.fixture
def tmp_drives(tmp_path: Path) -> Path:
    """An empty drives folder."""
    path = tmp_path / "drives"
    path.mkdir()
    return path


@pytest.fixture
def make_drive(tmp_drives: Path) -> Callable[..., Path]:
    """Write a closed drive of ``frames`` scripted frames; returns its folder."""

    def make(frames: int = 20, name: str = "drive", start_t: float = 100.0) -> Path:
        with DriveWriter.create(
            tmp_drives, name=name, car="test", queue_frames=frames + 1
        ) as writer:
            for index in range(frames):
                writer.append(
                    smooth_frame(index),
                    scripted_action(index),
                    mode=MODES[index % len(MODES)],
                    t_mono_s=start_t + index / 20,
                )
        assert writer.written == frames
        return writer.path

    return make
