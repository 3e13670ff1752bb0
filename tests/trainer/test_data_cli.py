"""``trainer data``: import-donkey, stats, verify and edit, run in-process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shared.drives import LABELS_NAME, Drive, frame_file
from tests.conftest import scripted_action
from tests.shared.test_donkey import _expected_counts, _small_tub
from trainer.cli import main


@pytest.fixture(autouse=True)
def _forget_log_handlers():
    """The CLI points logging at the captured stderr; undo that afterwards."""
    yield
    logging.getLogger().handlers.clear()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _damage(path: Path, kind: str) -> None:
    labels = path / LABELS_NAME
    lines = labels.read_text().splitlines(keepends=True)
    if kind == "torn":
        labels.write_text("".join(lines[:-1]) + lines[-1][:30])
    elif kind == "missing":
        (path / frame_file(2)).unlink()
    elif kind == "corrupt":
        (path / frame_file(4)).write_bytes(b"\xff\xd8\xff not really")
    elif kind == "unknown":
        lines[1] = json.dumps({**json.loads(lines[1]), "action": "jump"}) + "\n"
        labels.write_text("".join(lines))


# --- import-donkey ---------------------------------------------------------------


def test_data_import_donkey_prints_the_drive_and_its_counts(
    capsys, donkey_tub: Path, tmp_path: Path
) -> None:
    tub = _small_tub(donkey_tub, tmp_path / "tub", 100)
    drives = tmp_path / "drives"
    code, out, _ = _run(capsys, "data", "import-donkey", str(tub), str(drives))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == str(drives / "tub")
    assert "angle > 0.3" in lines[1]
    assert "read 100 records: nothing skipped" in out
    counts = _expected_counts(tub, 0.3, 0.1)
    row = lines[-1].split()
    assert row[:7] == ["tub", "100", *map(str, counts.values())]
    majority = max(counts, key=counts.__getitem__)
    assert row[7:9] == [f"{counts[majority] / 100:.1%}", majority]


def test_data_import_donkey_takes_thresholds(
    capsys, donkey_tub: Path, tmp_path: Path
) -> None:
    tub = _small_tub(donkey_tub, tmp_path / "tub", 50)
    code, out, _ = _run(
        capsys,
        "data",
        "import-donkey",
        str(tub),
        str(tmp_path / "drives"),
        "--name",
        "slow",
        "--throttle-stop",
        "0.9",
    )
    assert code == 0
    assert Drive.open(tmp_path / "drives" / "slow").stats().counts["stop"] == 50
    assert "|throttle| < 0.9" in out


def test_data_import_donkey_refuses_a_folder_that_is_not_a_tub(
    capsys, tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "data", "import-donkey", str(tmp_path), "drives")
    assert code == 2 and out == ""
    assert "is not a DonkeyCar tub v2" in _one_line_error(err)


def test_data_import_donkey_refuses_a_bad_threshold(capsys, tmp_path: Path) -> None:
    code, _, err = _run(
        capsys, "data", "import-donkey", str(tmp_path), "d", "--angle-threshold", "2"
    )
    assert code == 2
    assert "angle_threshold 2.0 must be a number in [0, 1)" in _one_line_error(err)


# --- stats -----------------------------------------------------------------------


def test_data_stats_table_with_total_row(capsys, make_drive, tmp_drives) -> None:
    make_drive(10, name="a")
    make_drive(30, name="b")
    code, out, err = _run(capsys, "data", "stats", str(tmp_drives))
    assert code == 0 and err == ""
    header, a, b, total = out.splitlines()
    assert header.split() == [
        "drive",
        "frames",
        "stop",
        "forward",
        "left",
        "right",
        "backward",
        "majority",
        "duration_s",
        "fps",
        "skipped",
    ]
    expected_b = [sum(scripted_action(i) == k for i in range(30)) for k in range(5)]
    assert b.split()[:7] == ["b", "30", *map(str, expected_b)]
    assert float(b.split()[9]) == pytest.approx(29 / 20, abs=0.051)
    assert b.split()[10:] == ["20.0", "0"]
    assert total.split()[:2] == ["total", "40"]
    assert total.split()[-2:] == ["20.0", "0"]


def test_data_stats_says_what_the_reader_skipped(capsys, make_drive) -> None:
    path = make_drive(10)
    _damage(path, "torn")
    _damage(path, "missing")
    code, out, _ = _run(capsys, "data", "stats", str(path))
    assert code == 0
    assert out.splitlines()[1].split()[1] == "8"
    assert out.splitlines()[1].split()[-1] == "2"
    assert "drive: 1 torn last line, 1 labels with a missing frame" in out


@pytest.mark.parametrize("kind", ["empty", "absent", "junk"])
def test_data_stats_refuses_what_is_not_a_drive(capsys, tmp_path, kind) -> None:
    path = tmp_path / "folder"
    if kind != "absent":
        path.mkdir()
    if kind == "junk":
        (path / ".DS_Store").write_bytes(b"\0\0")
        (path / "labels.jsonl").write_text("{}\n")
    code, out, err = _run(capsys, "data", "stats", str(path))
    assert code == 2 and out == ""
    assert "is not a " in _one_line_error(err)


# --- verify ----------------------------------------------------------------------


def test_data_verify_passes_a_good_drive_with_junk(capsys, make_drive) -> None:
    path = make_drive(10)
    (path / "._labels.jsonl").write_bytes(b"\0\5\26\7")
    (path / "frames" / ".DS_Store").write_bytes(b"\0")
    code, out, err = _run(capsys, "data", "verify", str(path))
    assert (code, err) == (0, "")
    assert out.startswith("ok") and "10 frames" in out


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("torn", "1 torn last line"),
        ("missing", "1 labels with a missing frame"),
        ("corrupt", "1 undecodable frames"),
        ("unknown", "1 unknown actions"),
    ],
)
def test_data_verify_reports_damage(capsys, make_drive, kind, reason) -> None:
    path = make_drive(10)
    _damage(path, kind)
    code, out, err = _run(capsys, "data", "verify", str(path))
    assert code == 1
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("trainer data verify:")]
    assert "is damaged" in line and reason in line
    assert out.startswith("DAMAGED") and "9 good frames" in out


def test_data_verify_checks_every_path(capsys, make_drive, tmp_path) -> None:
    good = make_drive(5)
    code, out, err = _run(
        capsys, "data", "verify", str(tmp_path / "nothing"), str(good)
    )
    assert code == 2
    assert "not a folder" in _one_line_error(err)
    assert out.startswith("ok") and "5 frames" in out


# --- edit ------------------------------------------------------------------------


def test_data_edit_exclude_relabel_list_and_undo(capsys, make_drive) -> None:
    path = make_drive(20)
    assert _run(capsys, "data", "edit", str(path), "--exclude", "3-10,15")[0] == 0
    code, out, _ = _run(capsys, "data", "edit", str(path), "--relabel", "0,1=left")
    assert code == 0 and out.startswith("relabelled 0-1 as left")
    drive = Drive.open(path)
    assert len(drive) == 11 and [r.action.label for r in drive][:2] == ["left"] * 2

    code, out, _ = _run(capsys, "data", "edit", str(path), "--list")
    assert out.splitlines() == ["exclude 3-10,15", "relabel 0-1 -> left"]
    code, out, _ = _run(capsys, "data", "edit", str(path), "--undo")
    assert out.startswith("undid relabel 0-1")
    _run(capsys, "data", "edit", str(path), "--undo")
    assert len(Drive.open(path)) == 20
    code, _, err = _run(capsys, "data", "edit", str(path), "--undo")
    assert code == 2 and "no edit to undo" in _one_line_error(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exclude", "3-x"], "'3-x' is not a frame index or range"),
        (["--exclude", "9-2"], "'9-2' is not a frame index or range"),
        (["--relabel", "1=jump"], "unknown action 'jump'"),
        (["--relabel", "1-2"], "has no '='"),
    ],
)
def test_data_edit_refuses_bad_arguments(capsys, make_drive, args, message) -> None:
    path = make_drive(3)
    with pytest.raises(SystemExit) as caught:
        main(["data", "edit", str(path), *args])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert Drive.open(path).edits() == []


def test_data_edit_refuses_an_unknown_frame(capsys, make_drive) -> None:
    path = make_drive(3)
    code, _, err = _run(capsys, "data", "edit", str(path), "--exclude", "7")
    assert code == 2 and "has no frame 7" in _one_line_error(err)


def test_data_without_a_command_shows_help(capsys) -> None:
    code, out, _ = _run(capsys, "data")
    assert code == 2 and "import-donkey" in out and "verify" in out


def test_data_commands_show_an_example(capsys) -> None:
    for command in ("import-donkey", "stats", "verify", "edit"):
        with pytest.raises(SystemExit):
            main(["data", command, "--help"])
        assert "example:\n  trainer data " + command in capsys.readouterr().out
