"""Actions: ids, labels, parsing and the left/right mirror."""

from __future__ import annotations

import numpy as np
import pytest

from shared.actions import ACTION_LABELS, MIRROR, MIRROR_IDS, NUM_ACTIONS, Action
from shared.errors import MalpiError, UnknownActionError


def test_action_ids_follow_the_original_order() -> None:
    assert ACTION_LABELS == ("stop", "forward", "left", "right", "backward")
    assert [int(a) for a in Action] == list(range(NUM_ACTIONS))
    assert Action.LEFT.label == "left"


def test_action_mirror_swaps_left_and_right_only() -> None:
    assert MIRROR[Action.LEFT] == Action.RIGHT and MIRROR[Action.RIGHT] == Action.LEFT
    for action in (Action.STOP, Action.FORWARD, Action.BACKWARD):
        assert MIRROR[action] == action
    assert all(MIRROR[MIRROR[a]] == a for a in Action)


def test_action_mirror_ids_relabel_in_bulk() -> None:
    ids = np.array([0, 1, 2, 3, 4, 2, 3])
    assert MIRROR_IDS[ids].tolist() == [0, 1, 3, 2, 4, 3, 2]
    assert MIRROR_IDS.dtype == np.int64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("left", Action.LEFT),
        (" Forward ", Action.FORWARD),
        ("STOP", Action.STOP),
        (3, Action.RIGHT),
        (np.int64(4), Action.BACKWARD),
        (Action.LEFT, Action.LEFT),
    ],
)
def test_action_parse_accepts_names_and_ids(value: object, expected: Action) -> None:
    assert Action.parse(value) is expected


@pytest.mark.parametrize("value", ["jump", "", 5, -1, True, 1.0, None, "2"])
def test_action_parse_refuses_unknown_values(value: object) -> None:
    with pytest.raises(UnknownActionError, match="use one of stop, forward") as caught:
        Action.parse(value)
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, MalpiError) and isinstance(caught.value, ValueError)
