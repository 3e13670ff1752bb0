"""The drive format: round trip, crash safety and damaged or foreign folders."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared.actions import Action
from shared.drives import (
    LABELS_NAME,
    MODES,
    Drive,
    DriveWriter,
    find_drives,
    frame_file,
)
from shared.errors import DriveError, FrameError, NotADriveError
from shared.frames import FRAME_SHAPE, decode_jpeg, encode_jpeg
from tests.conftest import scripted_action, smooth_frame

REPO = Path(__file__).resolve().parents[2]


def test_drive_round_trip_500_frames(tmp_drives: Path) -> None:
    """Indices, actions, modes and times come back exactly; pixels within JPEG.

    Times are given to the microsecond, the precision the format stores, so
    they must compare equal. Pixels cannot: JPEG is lossy. Each frame must be
    bit-identical to the decoded JPEG of the same frame at the writer's
    quality (same encoder, same decoder), and within a small error of the
    smooth original.
    """
    frames = [smooth_frame(i) for i in range(500)]
    actions = [scripted_action(i) for i in range(500)]
    modes = [MODES[i % 3] for i in range(500)]
    times = [round(5000.123457 + i / 30, 6) for i in range(500)]

    with DriveWriter.create(tmp_drives, name="round", queue_frames=501) as writer:
        for frame, action, mode, t in zip(frames, actions, modes, times, strict=True):
            writer.append(frame, action, mode=mode, t_mono_s=t)
    assert (writer.written, writer.dropped) == (500, 0)

    drive = Drive.open(writer.path)
    images, ids, indices = drive.load_all()
    assert drive.report.skipped == 0
    assert indices.tolist() == list(range(500))
    assert [r.action for r in drive] == actions
    assert ids.tolist() == [int(a) for a in actions]
    assert [r.mode for r in drive] == modes
    assert [r.t_mono_s for r in drive] == times
    assert images.shape == (500, *FRAME_SHAPE) and images.dtype == np.uint8
    for index in (0, 1, 137, 499):
        expected = decode_jpeg(encode_jpeg(frames[index], writer.jpeg_quality))
        np.testing.assert_array_equal(images[index], expected)
    error = np.abs(images.astype(np.int16) - np.stack(frames).astype(np.int16))
    assert error.mean() < 1.5
    assert error.max() <= 24


def test_drive_writer_refuses_a_frame_of_the_wrong_shape(tmp_drives: Path) -> None:
    with DriveWriter.create(tmp_drives, name="shape") as writer:
        with pytest.raises(ValueError, match="120, 120, 3"):
            writer.append(np.zeros((120, 160, 3), np.uint8), Action.STOP)
        with pytest.raises(FrameError, match="numpy array"):
            writer.append([[0, 0, 0]], Action.STOP)  # type: ignore[arg-type]
    assert Drive.open(writer.path).records == []


# --- crash safety ----------------------------------------------------------------

CHILD = """
import sys, time
from shared.drives import DriveWriter
from tests.conftest import scripted_action, smooth_frame

drives, name, log_path = sys.argv[1:4]
writer = DriveWriter.create(drives, name=name)
with open(log_path, "w", buffering=1) as log:
    print("ready", flush=True)
    index = 0
    while True:
        t = round(time.monotonic(), 6)
        frame, action = smooth_frame(index), scripted_action(index)
        assert writer.append(frame, action, t_mono_s=t) == index
        log.write(f"{index} {t:.6f}\\n")
        index += 1
        time.sleep(1 / 60)
"""


def _killed_recording(
    tmp_path: Path, name: str, delay_s: float
) -> tuple[Path, dict, float]:
    """Run a recording child, SIGKILL it after ``delay_s``; return what it logged."""
    log_path = tmp_path / f"{name}.log"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "drives"), name, str(log_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay_s)
        killed_t = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    appended = {}
    for line in log_path.read_text().splitlines():
        index, t = line.split()
        appended[int(index)] = float(t)
    return tmp_path / "drives" / name, appended, killed_t


@pytest.mark.slow
def test_drive_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    """A recorder killed 20 times at random leaves only intact, labelled frames.

    After every kill the reader opens the drive, and every label it returns
    is one the recorder appended, in order, with the same action and time,
    and has a decodable 120x120 frame showing the frame that was appended.
    Frames appended more than a second before the kill are all there.
    """
    rng = random.Random(20261203)
    kept_total = lost_total = 0
    for run in range(20):
        delay_s = rng.uniform(0.0, 1.6)
        path, appended, killed_t = _killed_recording(tmp_path, f"run{run}", delay_s)

        drive = Drive.open(path)
        report = drive.report
        assert (report.bad_lines, report.unknown_actions) == (0, 0), report
        assert report.missing_frames == 0 and report.torn_lines <= 1, report
        indices = [r.index for r in drive]
        assert indices == list(range(len(indices))), f"run {run}: not a prefix"
        for record in drive:
            assert record.index in appended, f"run {run}: {record} never appended"
            assert record.t_mono_s == appended[record.index]
            assert record.action == scripted_action(record.index)
            image = drive.load(record)
            assert image.shape == FRAME_SHAPE
            error = np.abs(image.astype(np.int16) - smooth_frame(record.index))
            assert error.mean() < 1.5, f"run {run}: frame {record.index} differs"
        old = [i for i, t in appended.items() if t < killed_t - 1.0]
        missing = sorted(set(old) - set(indices))
        assert not missing, f"run {run}: lost frames older than 1 s: {missing[:5]}"
        kept_total += len(indices)
        lost_total += len(appended) - len(indices)
    assert kept_total > 0 and lost_total > 0


# --- damaged and foreign folders -------------------------------------------------


def _label_lines(path: Path) -> list[str]:
    return (path / LABELS_NAME).read_text().splitlines(keepends=True)


def test_drive_skips_a_torn_last_line(make_drive) -> None:
    path = make_drive(10)
    lines = _label_lines(path)
    (path / LABELS_NAME).write_text("".join(lines[:-1]) + lines[-1][:25])
    drive = Drive.open(path)
    assert [r.index for r in drive] == list(range(9))
    assert drive.report.torn_lines == 1 and drive.report.skipped == 1
    assert "1 torn last line" in drive.report.summary()


def test_drive_skips_an_unreadable_line_in_the_middle(make_drive) -> None:
    path = make_drive(10)
    lines = _label_lines(path)
    lines[4] = '{"index": 4, "t": \n'
    (path / LABELS_NAME).write_text("".join(lines))
    drive = Drive.open(path)
    assert [r.index for r in drive] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert (drive.report.bad_lines, drive.report.torn_lines) == (1, 0)


def test_drive_skips_a_label_whose_frame_is_missing(make_drive) -> None:
    path = make_drive(10)
    (path / frame_file(3)).unlink()
    drive = Drive.open(path)
    assert 3 not in [r.index for r in drive] and len(drive) == 9
    assert drive.report.missing_frames == 1


@pytest.mark.parametrize(
    "damage", [b"not a jpeg at all", b"\xff\xd8\xff\xe0\x00\x10JFIF"], ids=str
)
def test_drive_skips_a_corrupt_jpeg(make_drive, damage: bytes) -> None:
    path = make_drive(10)
    (path / frame_file(5)).write_bytes(damage)
    drive = Drive.open(path)
    images, _, indices = drive.load_all()
    assert 5 not in indices.tolist() and images.shape[0] == 9
    assert drive.report.corrupt_frames == 1
    with pytest.raises(ValueError, match="000005.jpg"):
        drive.load(drive.records[5])


def test_drive_skips_a_truncated_jpeg(make_drive) -> None:
    path = make_drive(10)
    data = (path / frame_file(2)).read_bytes()
    (path / frame_file(2)).write_bytes(data[: len(data) // 2])
    assert Drive.open(path).verify().corrupt_frames == 1


def test_drive_skips_a_label_with_an_unknown_action(make_drive) -> None:
    path = make_drive(10)
    lines = _label_lines(path)
    item = json.loads(lines[6])
    lines[6] = json.dumps({**item, "action": "jump"}) + "\n"
    (path / LABELS_NAME).write_text("".join(lines))
    drive = Drive.open(path)
    assert 6 not in [r.index for r in drive] and len(drive) == 9
    assert drive.report.unknown_actions == 1


def test_drive_ignores_junk_files(make_drive) -> None:
    path = make_drive(10)
    for junk in ("._labels.jsonl", ".DS_Store", "Thumbs.db", "frames/._000001.jpg"):
        (path / junk).write_bytes(b"\x00\x05\x16\x07junk")
    (path / "notes").mkdir()
    drive = Drive.open(path)
    assert len(drive) == 10 and drive.verify().skipped == 0


def test_drive_open_refuses_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADriveError, match=r"is not a drive: .*drive\.json"):
        Drive.open(tmp_path)


def test_drive_open_refuses_a_folder_that_is_not_a_drive(tmp_path: Path) -> None:
    (tmp_path / "labels.jsonl").write_text("{}\n")
    (tmp_path / "manifest.json").write_text("[]\n")
    with pytest.raises(NotADriveError, match="import-donkey"):
        Drive.open(tmp_path)
    with pytest.raises(NotADriveError, match="not a folder"):
        Drive.open(tmp_path / "absent")


def test_drive_open_refuses_an_unknown_format(make_drive) -> None:
    path = make_drive(2)
    (path / "drive.json").write_text('{"format": 99}')
    with pytest.raises(DriveError, match="format 99"):
        Drive.open(path)


def test_find_drives_expands_a_folder_of_drives(make_drive, tmp_drives: Path) -> None:
    first, second = make_drive(2, name="a"), make_drive(2, name="b")
    (tmp_drives / "._a").mkdir()
    (tmp_drives / "README").write_text("junk")
    assert find_drives([tmp_drives]) == [first, second]
    assert find_drives([second]) == [second]
    with pytest.raises(NotADriveError):
        find_drives([tmp_drives / "._a"])


# --- edits ---------------------------------------------------------------------


def test_drive_edits_exclude_relabel_and_undo(make_drive) -> None:
    path = make_drive(10)
    drive = Drive.open(path)
    drive.exclude([3, 4])
    drive.relabel([5], "left")
    assert [r.index for r in drive][:4] == [0, 1, 2, 5]
    assert drive.records[3].action == Action.LEFT
    assert drive.records[3].recorded_action == scripted_action(5)

    reopened = Drive.open(path)
    assert len(reopened) == 8 and reopened.report.excluded == 2

    assert reopened.undo().op == "relabel"
    assert reopened.undo().op == "exclude"
    assert len(reopened) == 10 and reopened.records[5].action == scripted_action(5)
    with pytest.raises(DriveError, match="no edit to undo"):
        reopened.undo()
    with pytest.raises(DriveError, match="no frame 42"):
        reopened.exclude([42])
