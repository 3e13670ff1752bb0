"""The five drive actions, their class ids and the left/right mirror map."""

from __future__ import annotations

import enum

import numpy as np


class Action(enum.IntEnum):
    """A drive command, valued by its class id in the model's softmax."""

    STOP = 0
    FORWARD = 1
    LEFT = 2
    RIGHT = 3
    BACKWARD = 4

    @property
    def label(self) -> str:
        """The lower-case name used in files, cards and the web app."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Action:
        """Return the action named or numbered by ``value``.

        Raises:
            UnknownActionError: ``value`` names no action.
        """
        from shared.errors import UnknownActionError

        if isinstance(value, Action):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            try:
                return cls(int(value))
            except ValueError:
                pass
        raise UnknownActionError(
            f"unknown action {value!r}; use one of {', '.join(ACTION_LABELS)} "
            f"or their ids 0-{len(cls) - 1}"
        )


#: Labels in class-id order: what the model card's ``labels`` must equal.
ACTION_LABELS: tuple[str, ...] = tuple(a.label for a in Action)
NUM_ACTIONS = len(Action)

#: What each action becomes when the frame is mirrored left to right.
MIRROR: dict[Action, Action] = {
    Action.STOP: Action.STOP,
    Action.FORWARD: Action.FORWARD,
    Action.LEFT: Action.RIGHT,
    Action.RIGHT: Action.LEFT,
    Action.BACKWARD: Action.BACKWARD,
}

#: ``MIRROR`` as an index array, for relabelling class ids in bulk.
MIRROR_IDS = np.array([MIRROR[a] for a in Action], dtype=np.int64)
