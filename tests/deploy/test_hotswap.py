"""A running drive loop swaps to a model pushed over ssh, without stopping.

The loop runs on the simulated car in pilot mode with models/current watched
by ``CurrentWatcher``, as ``robot drive`` runs it. The test pushes another
model with ``deploy push`` through the real sshd and records, for every loop
step, when it finished and which model drove it. Timings are printed for the
report, never asserted (speed is measured in benchmarks): the assertions are
that the loop kept stepping through the swap and the new model took over.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

import pytest

from robot.loop import DriveLoop
from robot.modelstore import CurrentWatcher, ModelStore
from robot.pilot import Pilot
from robot.sim.backends import make_sim_backends
from shared.config import RobotConfig
from shared.drives import Drive
from shared.modelcard import ModelCard
from tests.deploy.conftest import FIXTURE_MODELS
from tests.deploy.sshd import free_port


@pytest.mark.slow
def test_hotswap_running_loop_takes_pushed_model_between_frames(sshd, car_home, deploy):
    car = sshd.car_args(car_home)
    assert deploy("push", FIXTURE_MODELS / "tiny-float32", *car)[0] == 0
    new_sha = ModelCard.load(FIXTURE_MODELS / "tiny-int8").model_sha256

    config = RobotConfig(home=str(car_home), loop_rate_hz=20.0)
    store = ModelStore(car_home)
    steps: list[tuple[float, str | None]] = []
    world, camera, motors = make_sim_backends(camera_rate_hz=30.0)
    with camera:
        loop = DriveLoop(
            config, camera, motors, pilot=Pilot.load(store.path / "current")
        )
        loop.on_step = lambda info: steps.append(
            (time.monotonic(), loop.pilot.sha256 if loop.pilot else None)
        )
        loop.set_mode("pilot")
        with loop, CurrentWatcher(store, loop.swap_pilot):
            time.sleep(1.0)
            pushed_s = time.monotonic()
            code, out, err = deploy("push", FIXTURE_MODELS / "tiny-int8", *car)
            assert code == 0, err
            activated_s = time.monotonic()
            deadline = time.monotonic() + 10
            while loop.pilot.sha256 != new_sha and time.monotonic() < deadline:
                time.sleep(0.01)
            swapped_s = time.monotonic()
            time.sleep(1.0)
        motors.close()

    assert loop.pilot.sha256 == new_sha
    assert loop.status()["error"] is None
    gaps = [(b[0] - a[0], b[0]) for a, b in zip(steps, steps[1:], strict=False)]
    normal = [gap for gap, at in gaps if at < pushed_s]
    pushing = [gap for gap, at in gaps if pushed_s <= at <= swapped_s + 0.5]
    during = [gap for gap, at in gaps if activated_s - 0.1 <= at <= swapped_s + 0.5]
    assert normal and during  # the loop kept stepping while the model changed
    assert {sha for _, sha in steps} >= {new_sha}
    period_ms = 1000.0 / config.loop_rate_hz
    print(
        f"\nhot swap: loop period {period_ms:.0f} ms; normal steps median "
        f"{statistics.median(normal) * 1000:.1f} ms, max {max(normal) * 1000:.1f} "
        f"ms; during the in-process push ({len(pushing)} steps) max "
        f"{max(pushing) * 1000:.1f} ms; around the swap ({len(during)} steps) max "
        f"{max(during) * 1000:.1f} ms; push took {(activated_s - pushed_s):.2f} s, "
        f"new model driving {(swapped_s - activated_s) * 1000:.0f} ms after it"
    )


def _get_status(port: int, token: str) -> dict | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/status",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def _wait_for_model(port: int, token: str, sha: str, process, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "robot drive stopped"
        status = _get_status(port, token)
        if status and status["model"] and status["model"]["sha256"] == sha:
            return status
        time.sleep(0.02)
    raise AssertionError(f"robot drive did not show model {sha[:12]}: {status}")


@pytest.mark.slow
def test_hotswap_robot_drive_sim_swaps_pushed_model_without_stopping(
    sshd, car_home, deploy, tmp_path
):
    car = sshd.car_args(car_home)
    assert deploy("push", FIXTURE_MODELS / "tiny-float32", *car)[0] == 0
    old_sha = ModelCard.load(FIXTURE_MODELS / "tiny-float32").model_sha256
    new_sha = ModelCard.load(FIXTURE_MODELS / "tiny-int8").model_sha256
    port, token = free_port(), "hotswap-test-token"
    config = tmp_path / "robot.toml"
    config.write_text(
        f'home = "{car_home}"\nloop_rate_hz = 20.0\nskip_stopped = false\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\ntoken = "{token}"\n'
    )

    # robot drive --sim, recording, so every step leaves a timestamped frame.
    process = subprocess.Popen(
        [sys.executable, "-m", "robot.cli", "drive", "--sim", "--config", config]
        + ["--mode", "pilot", "--record"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_for_model(port, token, old_sha, process, timeout_s=60)
        time.sleep(1.0)
        pushed_s = time.monotonic()
        code, out, err = deploy("push", FIXTURE_MODELS / "tiny-int8", *car)
        assert code == 0, err
        activated_s = time.monotonic()
        status = _wait_for_model(port, token, new_sha, process, timeout_s=10)
        shown_s = time.monotonic()
        assert status["model_error"] is None and status["running"]
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-2000:]

    (drive_path,) = (car_home / "drives").iterdir()
    times = [r.t_mono_s for r in Drive.open(drive_path)]
    gaps = [(b - a, b) for a, b in zip(times, times[1:], strict=False)]
    normal = [gap for gap, at in gaps if at < pushed_s]
    during = [gap for gap, at in gaps if activated_s - 0.1 <= at <= shown_s + 0.5]
    assert normal and during  # frames kept coming while the model changed
    print(
        f"\nrobot drive --sim hot swap: {len(times)} frames; normal frame gap "
        f"median {statistics.median(normal) * 1000:.1f} ms, max "
        f"{max(normal) * 1000:.1f} ms; around the swap ({len(during)} frames) "
        f"max {max(during) * 1000:.1f} ms; push+activate "
        f"{activated_s - pushed_s:.2f} s; web app showed the new model "
        f"{(shown_s - activated_s) * 1000:.0f} ms after activation"
    )
