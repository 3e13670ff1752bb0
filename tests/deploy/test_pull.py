"""``deploy pull`` and the drive half of ``deploy status`` against a real sshd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared.actions import ACTION_LABELS
from shared.drives import LABELS_NAME, Drive, DriveWriter
from tests.conftest import scripted_action, smooth_frame


def _record(drives: Path, name: str, frames: int, start: int = 0) -> Path:
    with DriveWriter.create(drives, name=name, queue_frames=frames + 1) as writer:
        for index in range(start, start + frames):
            writer.append(
                smooth_frame(index), scripted_action(index), t_mono_s=index / 20
            )
    return writer.path


def _noisy_frame(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)


def _same_drive(a: Path, b: Path) -> bool:
    left, right = Drive.open(a), Drive.open(b)
    return [(r.index, r.action, r.file) for r in left] == [
        (r.index, r.action, r.file) for r in right
    ] and all((a / r.file).read_bytes() == (b / r.file).read_bytes() for r in left)


def test_pull_copies_new_drives_and_only_them(sshd, car_home, deploy, tmp_path):
    _record(car_home / "drives", "d1", 30)
    _record(car_home / "drives", "d2", 12)
    into = tmp_path / "home-drives"
    car = sshd.car_args(car_home)

    code, out, err = deploy("status", *car, "--into", into)
    assert code == 0, err
    assert "2 drives not yet pulled" in out and "d1 (new)" in out

    code, out, err = deploy("pull", *car, "--into", into)
    assert code == 0, err
    assert "42 new frames in 2 drives" in out
    header = out.splitlines()[0].split()
    assert header[:3] == ["drive", "frames", "new"] and header[3:] == list(
        ACTION_LABELS
    )
    row = next(line.split() for line in out.splitlines() if line.startswith("d1"))
    assert row[1:3] == ["30", "30"]
    assert sum(map(int, row[3:8])) == 30
    assert _same_drive(car_home / "drives" / "d1", into / "d1")
    assert _same_drive(car_home / "drives" / "d2", into / "d2")

    code, out, err = deploy("pull", *car, "--into", into)
    assert code == 0, err
    assert out.startswith("no new frames (2 drives up to date)")
    code, out, err = deploy("status", *car, "--into", into)
    assert "all 2 drives pulled" in out


def test_pull_drive_being_recorded_gets_completed_later(
    sshd, car_home, deploy, tmp_path
):
    into = tmp_path / "home-drives"
    car = sshd.car_args(car_home)
    writer = DriveWriter.create(car_home / "drives", name="live", sync_interval_s=0.05)
    try:
        for index in range(40):
            writer.append(smooth_frame(index), scripted_action(index))
        deadline = time.monotonic() + 10
        while writer.written < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The car is still recording: more frames arrive while we pull.
        for index in range(40, 80):
            writer.append(smooth_frame(index), scripted_action(index))
        code, out, err = deploy("pull", *car, "--into", into)
        assert code == 0, err
        partial = Drive.open(into / "live")
        assert len(partial) >= 40
        assert partial.report.missing_frames == 0
        assert partial.report.skipped == 0
    finally:
        writer.close()

    # A torn last line, as a power cut mid-append would leave.
    with open(car_home / "drives" / "live" / LABELS_NAME, "ab") as labels:
        labels.write(b'{"index": 80, "t": 1.0, "act')

    code, out, err = deploy("pull", *car, "--into", into)
    assert code == 0, err
    full = Drive.open(into / "live")
    assert len(full) == 80
    assert full.report.torn_lines == 1 and full.report.missing_frames == 0
    assert "1 torn last line" in out
    assert _same_drive(car_home / "drives" / "live", into / "live")


@pytest.mark.slow
def test_pull_killed_mid_transfer_resumes_to_complete_drives(
    sshd, car_home, tmp_path, deploy
):
    # Noise does not compress: 150 frames of about 43 kB make 6.5 MB.
    rng = np.random.default_rng(0)
    with DriveWriter.create(
        car_home / "drives", name="big", queue_frames=200
    ) as writer:
        for index in range(150):
            writer.append(_noisy_frame(rng), scripted_action(index), t_mono_s=index)
    into = tmp_path / "home-drives"
    car = sshd.car_args(car_home)

    # A pull throttled to 2 MiB/s, killed with its ssh and rsync mid-way.
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "pull", *car, "--into", str(into)]
        + ["--bwlimit", "2048"],
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its ssh socket dies here
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    frames = into / "big" / "frames"
    deadline = time.monotonic() + 30
    while len(list(frames.glob("*.jpg"))) < 20:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    copied = len(list(frames.glob("*.jpg")))
    assert 20 <= copied < 150
    interrupted = Drive.open(into / "big")
    assert interrupted.report.missing_frames == 0  # labels come in last

    code, out, err = deploy("pull", *car, "--into", into)
    assert code == 0, err
    assert "150 new frames in 1 drives" in out
    assert _same_drive(car_home / "drives" / "big", into / "big")
    assert Drive.open(into / "big").verify().skipped == 0
    assert not (into / ".pull").exists()


def test_pull_into_full_disk_says_so(sshd, car_home, small_disk, deploy):
    rng = np.random.default_rng(1)
    with DriveWriter.create(car_home / "drives", name="big", queue_frames=40) as w:
        for index in range(30):  # about 1.3 MB of noise
            w.append(_noisy_frame(rng), scripted_action(index), t_mono_s=index)

    code, out, err = deploy("pull", *sshd.car_args(car_home), "--into", small_disk)
    assert code == 2
    assert "ran out of disk space" in err and len(err.strip().splitlines()) == 1
