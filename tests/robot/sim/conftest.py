"""Fixtures of the simulator tests: tracks are painted once per session."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from robot.sim.track import Track, make_track


@functools.cache
def _track(shape: str, seed: int = 0) -> Track:
    return make_track(shape, seed)


@pytest.fixture(scope="session")
def track_of() -> Callable[..., Track]:
    """``track_of(shape, seed=0)``: a default-settings track, built once."""
    return _track
