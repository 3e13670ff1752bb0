"""Tests of recording expert drives in the simulator."""

from __future__ import annotations

from collections import Counter

import pytest

from robot.sim.record import record_expert_drives
from shared.actions import Action
from shared.drives import Drive
from shared.errors import SimulationError


def test_record_expert_drives_writes_readable_drives(tmp_path) -> None:
    paths = record_expert_drives(
        tmp_path, "oval", seed=3, minutes=0.2, noise=0.1, drive_minutes=0.1
    )

    assert len(paths) == 2
    drives = [Drive.open(path) for path in paths]
    assert [len(d.records) for d in drives] == [120, 120]
    assert drives[0].report.skipped == 0
    assert drives[0].meta["car"] == "sim"
    directions = [d.meta["config"]["sim"]["direction"] for d in drives]
    assert directions == ["forward", "reversed"]

    records = [r for d in drives for r in d.records]
    modes = Counter(r.mode for r in records)
    actions = Counter(r.action for r in records)
    assert modes["user"] > 0 and modes["correction"] > 0
    assert actions[Action.STOP] == 0 and actions[Action.BACKWARD] == 0
    assert actions[Action.FORWARD] > actions[Action.LEFT]
    assert records[1].t_mono_s - records[0].t_mono_s == pytest.approx(0.05)


def test_record_expert_drives_without_noise_records_only_user_frames(tmp_path) -> None:
    (path,) = record_expert_drives(tmp_path, "figure8", minutes=0.05, noise=0.0)

    modes = {r.mode for r in Drive.open(path).records}

    assert modes == {"user"}


def test_record_expert_drives_rejects_zero_minutes(tmp_path) -> None:
    with pytest.raises(SimulationError, match="recording of 0 min"):
        record_expert_drives(tmp_path, minutes=0)
