"""Small synthetic drives for the trainer's tests, written with DriveWriter.

Each frame's pattern says its action: a bright left third for ``left``, a
bright right third for ``right``, a bright centre for ``forward``, dark for
``stop`` and a bright bottom for ``backward``, so a model can learn them and
a mirrored frame matches its swapped label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.actions import Action
from shared.drives import DriveWriter
from shared.frames import FRAME_SHAPE

TUB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "donkeycar-tub"


def action_frame(action: Action, rng: np.random.Generator) -> np.ndarray:
    """A 120x120x3 frame whose pattern shows ``action``."""
    frame = rng.integers(0, 40, FRAME_SHAPE, dtype=np.uint8)
    third = FRAME_SHAPE[1] // 3
    if action == Action.LEFT:
        frame[:, :third] = 230
    elif action == Action.RIGHT:
        frame[:, -third:] = 230
    elif action == Action.FORWARD:
        frame[:, third:-third] = 230
    elif action == Action.BACKWARD:
        frame[-third:, :] = 230
    return frame


def write_drive(
    drives_dir: Path,
    name: str,
    actions: list[Action] | list[int],
    seed: int = 0,
) -> Path:
    """Write a drive with one frame per action in ``actions``; its folder."""
    rng = np.random.default_rng(seed)
    with DriveWriter.create(drives_dir, name=name, sync_interval_s=0.05) as writer:
        for i, action in enumerate(actions):
            writer.append(action_frame(Action(action), rng), action, t_mono_s=0.1 * i)
    return drives_dir / name


def cycle_actions(frames: int, seed: int = 0) -> list[Action]:
    """A varied sequence of actions, every class present."""
    rng = np.random.default_rng(seed)
    return [Action(int(a)) for a in rng.integers(0, len(Action), frames)]
