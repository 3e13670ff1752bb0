"""A running drive loop swaps to a model pushed over ssh, without stopping.

The loop runs on the simulated car in pilot mode with models/current watched
by ``CurrentWatcher``, as ``robot drive`` runs it. The test pushes another
model with ``deploy push`` through the real sshd and records, for every loop
step, when it finished and which model drove it. Timings are printed for the
report, never asserted (speed is measured in benchmarks): the assertions are
that the loop kept stepping through the swap and the new model took over.
"""

from __future__ import annotations

import statistics
import time

import pytest

from robot.loop import DriveLoop
from robot.modelstore import CurrentWatcher, ModelStore
from robot.pilot import Pilot
from robot.sim.backends import make_sim_backends
from shared.config import RobotConfig
from shared.modelcard import ModelCard
from tests.deploy.conftest import FIXTURE_MODELS


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
    during = [gap for gap, at in gaps if pushed_s <= at <= swapped_s + 0.5]
    assert normal and during  # the loop kept stepping while the model changed
    assert {sha for _, sha in steps} >= {new_sha}
    period_ms = 1000.0 / config.loop_rate_hz
    print(
        f"\nhot swap: loop period {period_ms:.0f} ms; normal steps median "
        f"{statistics.median(normal) * 1000:.1f} ms, max {max(normal) * 1000:.1f} "
        f"ms; during the swap ({len(during)} steps) max "
        f"{max(during) * 1000:.1f} ms; push took {(activated_s - pushed_s):.2f} s, "
        f"new model driving {(swapped_s - activated_s) * 1000:.0f} ms after it"
    )
