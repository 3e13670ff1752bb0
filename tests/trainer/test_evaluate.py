"""``trainer evaluate``: the model and the expert on simulated tracks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from robot.sim.track import make_track
from shared.errors import ConfigError, SimulationError
from trainer.cli import main
from trainer.evaluate import (
    TrackSpec,
    evaluate_model,
    find_model,
    format_table,
    parse_seeds,
    parse_tracks,
)

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", "evaluate", "--sim", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _bad_random_seed() -> int:
    """The first seed whose random track the simulator refuses."""
    for seed in range(500):
        try:
            make_track("random", seed)
        except SimulationError:
            return seed
    pytest.skip("every random seed below 500 builds a track")


def test_parse_tracks_gives_unseeded_tracks_every_seed() -> None:
    specs = parse_tracks("oval, random:7 ,figure8", parse_seeds("1,2"))

    assert specs == [
        TrackSpec("oval", 1),
        TrackSpec("oval", 2),
        TrackSpec("random", 7),
        TrackSpec("figure8", 1),
        TrackSpec("figure8", 2),
    ]


@pytest.mark.parametrize(
    ("tracks", "seeds", "words"),
    [
        ("square", "0", "unknown shape 'square'"),
        ("random:x", "0", "seed 'x'"),
        (",", "0", "names no track"),
        ("oval", "1,two", "seed 'two'"),
    ],
)
def test_parse_tracks_refuses_bad_input(tracks: str, seeds: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_tracks(tracks, parse_seeds(seeds))


def test_evaluate_expert_only_prints_a_row_per_track(capsys, tmp_path: Path) -> None:
    out_json = tmp_path / "eval.json"

    code, out, _ = _run(
        capsys,
        "--expert-only",
        "--tracks",
        "oval,random:7",
        "--minutes",
        "0.5",
        "--json",
        str(out_json),
    )

    assert code == 0
    table = out[out.index("track ") :].splitlines()
    assert table[2].split()[:3] == ["oval", "0", "expert"]
    assert table[3].split()[:3] == ["random", "7", "expert"]
    data = json.loads(out_json.read_text())
    assert [r["track"] for r in data["results"]] == ["oval", "random"]
    assert data["results"][0]["model"] is None
    assert data["results"][0]["expert"]["laps"] >= 1
    assert data["results"][0]["expert"]["departures"] == 0


def test_evaluate_drives_a_tflite_model_beside_the_expert(
    capsys, tmp_path: Path
) -> None:
    gif = tmp_path / "run.gif"

    code, out, _ = _run(
        capsys,
        "--model",
        str(MODELS / "tiny-int8" / "model.tflite"),
        "--tracks",
        "figure8",
        "--minutes",
        "0.2",
        "--gif",
        str(gif),
    )

    assert code == 0
    rows = [line.split() for line in out.splitlines() if "model" in line.split()]
    assert rows and rows[-1][:3] == ["figure8", "0", "model"]
    assert any(line.split()[:1] == ["expert"] for line in out.splitlines()[-3:])
    with Image.open(gif) as image:
        assert image.n_frames > 10


def test_evaluate_laps_runs_as_long_as_the_expert_needs(tmp_path: Path) -> None:
    (result,) = evaluate_model(None, [TrackSpec("oval", 0)], laps=2)

    assert result.expert.laps == 2
    assert result.expert.duration_s < 2 * 1.25 * result.expert.mean_lap_time_s + 1.5


def test_evaluate_refuses_a_model_for_other_actions(capsys) -> None:
    code, _, err = _run(capsys, "--model", str(MODELS / "wrong-labels"))

    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "label" in err


def test_evaluate_refuses_a_random_seed_without_a_closed_track(capsys) -> None:
    seed = _bad_random_seed()

    code, out, err = _run(capsys, "--expert-only", "--tracks", f"random:{seed}")

    assert code == 2
    assert f"random track seed {seed}" in err
    assert len(err.strip().splitlines()) == 1
    assert "track " not in out


def test_evaluate_refuses_a_camera_that_sees_no_floor(capsys) -> None:
    code, _, err = _run(capsys, "--expert-only", "--camera-pitch", "-40")

    assert code == 2
    assert "sees no floor" in err
    assert len(err.strip().splitlines()) == 1


def test_find_model_refuses_a_search_without_export(tmp_path: Path) -> None:
    (tmp_path / "search.json").write_text("{}")

    with pytest.raises(Exception, match="no export yet"):
        find_model(tmp_path)


def test_format_table_totals_several_tracks() -> None:
    results = evaluate_model(
        MODELS / "tiny-float32",
        [TrackSpec("oval", 0), TrackSpec("oval", 1)],
        duration_s=3.0,
    )

    table = format_table(results).splitlines()

    assert table[-2].split()[:2] == ["all", "model"]
    assert table[-1].split()[0] == "expert"


def test_evaluate_does_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from trainer.cli import main\n"
        "main(['--quiet', 'evaluate', '--sim', '--expert-only', '--minutes', '0.1',"
        " '--tracks', 'oval'])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
