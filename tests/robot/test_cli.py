"""``robot drive``, ``robot check`` and ``robot bench`` end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from robot.cli import main
from shared.drives import Drive

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, camera: str = "pattern") -> Path:
    path = tmp_path / "robot.toml"
    path.write_text(
        f'home = "{tmp_path / "home"}"\n'
        "[camera]\n"
        f'backend = "{camera}"\n'
        "[motors]\n"
        'backend = "recording"\n'
    )
    return path


def test_cli_check_passes_on_the_simulated_car(tmp_path, capsys):
    code = main(
        [
            "check",
            "--sim",
            "--home",
            str(tmp_path),
            "--model",
            str(MODELS / "tiny-int8"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["OK", "camera"],
        ["OK", "motors"],
        ["OK", "runtime"],
        ["OK", "model"],
        ["OK", "disk"],
    ]
    assert "tiny-int8@" in lines[3] and "ai_edge_litert" in lines[3]


def test_cli_check_fails_on_a_bad_model_and_a_missing_camera(tmp_path, capsys):
    config = write_config(tmp_path, camera="picamera2")
    code = main(
        ["check", "--config", str(config), "--model", str(MODELS / "not-tflite")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("FAIL") == 2
    camera_line = next(line for line in out.splitlines() if " camera " in line)
    assert camera_line.startswith("FAIL") and "python3-picamera2" in camera_line
    model_line = next(line for line in out.splitlines() if " model " in line)
    assert model_line.startswith("FAIL") and "not a TFLite model" in model_line
    motors_line = next(line for line in out.splitlines() if " motors " in line)
    assert motors_line.startswith("OK")


def test_cli_check_without_a_model_skips_it(tmp_path, capsys):
    code = main(["check", "--config", str(write_config(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert any(line.startswith("--") and " model " in line for line in out.splitlines())


def test_cli_drive_autodrive_records_an_expert_drive(tmp_path, capsys):
    pytest.importorskip("robot.sim.expert", reason="the simulator is not installed")
    code = main(
        [
            "drive",
            "--sim",
            "--autodrive",
            "expert",
            "--record",
            "--minutes",
            "0.05",
            "--home",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (folder,) = (tmp_path / "drives").iterdir()
    drive = Drive.open(folder)
    assert len(drive) > 20  # 3 s at 20 Hz
    assert {record.mode for record in drive.records} == {"user"}
    assert drive.stats().counts["forward"] > 0
    assert f"recorded {len(drive)} frames" in out


def test_cli_drive_autodrive_needs_the_simulator(tmp_path, capsys):
    code = main(["drive", "--autodrive", "expert", "--home", str(tmp_path)])
    assert code == 2
    assert "add --sim" in capsys.readouterr().err


def test_cli_drive_refuses_a_model_that_does_not_fit(tmp_path, capsys):
    code = main(
        [
            "drive",
            "--sim",
            "--home",
            str(tmp_path),
            "--model",
            str(MODELS / "wrong-shape"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("robot: error: model input is [96, 96, 3]")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_drive_serves_the_web_app_and_stops_on_sigterm(tmp_path):
    pytest.importorskip("robot.web.app", reason="the web app is not installed")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "robot.cli",
            "drive",
            "--sim",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--home",
            str(tmp_path),
            "--model",
            str(MODELS / "tiny-int8"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = ""
        deadline = time.monotonic() + 60
        while "token=" not in url and time.monotonic() < deadline:
            url = process.stdout.readline()
        assert "token=" in url, process.stderr.read()
        url = url.split("drive at ", 1)[1].strip()
        base, token = url.split("/?token=")
        request = urllib.request.Request(
            f"{base}/api/status", headers={"Authorization": f"Bearer {token}"}
        )
        status = {}
        while not status.get("fps") and time.monotonic() < deadline:
            with urllib.request.urlopen(request, timeout=5) as response:
                status = json.loads(response.read())
            time.sleep(0.2)
        assert status["camera"] == "sim" and status["drivetrain"] == "sim"
        assert status["model"]["name"].startswith("tiny-int8@")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "SIGTERM: stopping" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_bench_measures_inference_and_loop(monkeypatch, capsys):
    import robot.drive_cli as drive_cli

    # In this process and on LiteRT only, to stay quick; the benchmark itself
    # runs each measurement in a fresh process on every runtime.
    monkeypatch.setattr(drive_cli, "run_isolated", lambda function, *a: function(*a))
    monkeypatch.setattr(drive_cli, "installed_runtimes", lambda: ["ai_edge_litert"])
    code = main(
        [
            "bench",
            "--model",
            str(MODELS / "tiny-int8"),
            "--frames",
            "20",
            "--seconds",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in out.splitlines() if "tiny-int8" in line]
    assert rows[0][:3] == ["tiny-int8", "int8", "ai_edge_litert"]
    assert float(rows[0][3]) > 0  # mean inference ms
    assert [row[1] for row in rows[1:]] == ["False", "True"]  # recording off, on
    for row in rows[1:]:
        hz, loop_ms, infer_ms, over_ms = map(float, row[2:6])
        assert hz > 10 and infer_ms > 0
        assert over_ms == pytest.approx(loop_ms - infer_ms, abs=0.002)
