"""The drive loop: frames used once, stale frames, deadman, errors, recorder."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import numpy as np
import pytest

from robot.camera import Camera
from robot.drivetrains import RecordingDrivetrain
from robot.loop import DriveLoop
from robot.pilot import Pilot
from shared.actions import Action
from shared.config import RobotConfig
from shared.drives import Drive, DriveWriter
from shared.errors import ConfigError
from tests.fixtures.make_models import pattern_frame

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now_s: float = 100.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> float:
        self.now_s += seconds
        return self.now_s


class HandCamera(Camera):
    """A camera whose frames the test publishes (with the test's clock)."""

    name = "hand"

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass


def frame(index: int = 0) -> np.ndarray:
    return np.full((120, 120, 3), index % 256, np.uint8)


@pytest.fixture
def config(tmp_path) -> RobotConfig:
    config = RobotConfig(home=str(tmp_path / "home"))
    config.pilot.max_frame_age_ms = 100.0
    return config


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rig(config, clock):
    """A loop on a hand camera and a recording drivetrain, stepped by hand."""
    camera = HandCamera()
    motors = RecordingDrivetrain(speed=0.5, turn_speed=0.5)
    loop = DriveLoop(config, camera, motors, clock=clock)
    yield loop, camera, motors
    loop.stop()


def test_loop_acts_on_each_frame_once(rig, clock):
    loop, camera, motors = rig
    loop.set_skip_stopped(False)
    assert loop.set_recording(True)
    loop.command(Action.FORWARD)
    for index in range(3):
        camera.publish(frame(index), clock())
        assert loop.step() is Action.FORWARD
        # No new frame: the same one is not used again, and the car stops.
        assert loop.step() is Action.STOP
        assert motors.values == (0.0, 0.0)
        loop.command(Action.FORWARD)
    loop.set_recording(False)

    assert loop.frames_used == 3
    assert loop.missing_frames == 3
    drive = Drive.open(next(loop.config.drives_path.iterdir()))
    assert [r.index for r in drive.records] == [0, 1, 2]
    assert {r.action for r in drive.records} == {Action.FORWARD}


def test_loop_takes_the_newest_frame_and_skips_older_ones(rig, clock):
    loop, camera, motors = rig
    loop.command(Action.LEFT)
    for index in range(4):
        camera.publish(frame(index), clock())
    loop.step()
    assert loop.frames_used == 1
    assert loop._last_index == 3


def test_loop_never_acts_on_a_stale_frame(rig, clock):
    loop, camera, motors = rig
    pilot = Pilot.load(MODELS / "tiny-int8")
    loop.swap_pilot(MODELS / "tiny-int8").join()
    loop.set_mode("pilot")
    assert loop.set_recording(True)

    camera.publish(pattern_frame(Action.FORWARD), clock())
    clock.advance(0.101)  # older than max_frame_age_ms = 100
    assert loop.step() is Action.STOP
    assert motors.values == (0.0, 0.0)
    assert loop.stale_frames == 1
    status = loop.status()
    assert status["inference_ms"] is None  # the pilot never saw it
    assert status["frames"] == 0  # nor the recorder
    assert status["frame_age_ms"] == pytest.approx(101, abs=0.5)

    camera.publish(pattern_frame(Action.FORWARD), clock())
    assert loop.step() is Action.FORWARD
    assert motors.values == (0.5, 0.5)
    assert pilot.sha256 == loop.status()["model"]["sha256"]


def test_loop_deadman_stops_after_500_ms_without_commands(rig, clock):
    loop, camera, motors = rig
    assert loop.deadman_ms == 500
    loop.command("forward")
    for elapsed_ms, expected in ((0, Action.FORWARD), (250, Action.FORWARD)):
        camera.publish(frame(), clock())
        assert loop.step() is expected, elapsed_ms
        clock.advance(0.25)
    assert loop.status()["deadman"] is False
    clock.advance(0.001)  # 501 ms since the command
    camera.publish(frame(), clock())
    assert loop.step() is Action.STOP
    assert motors.values == (0.0, 0.0)
    assert loop.status()["deadman"] is True
    assert loop.status()["user_action"] == "forward"

    loop.command("forward")
    camera.publish(frame(), clock())
    assert loop.step() is Action.FORWARD


def _pilot_drives(loop, camera, clock, steps: int, step_s: float = 0.1) -> list:
    """Step the loop on frames the tiny pilot drives forward on."""
    actions = []
    for _ in range(steps):
        clock.advance(step_s)
        camera.publish(pattern_frame(Action.FORWARD), clock())
        actions.append(loop.step())
    return actions


def test_loop_pilot_stops_when_the_watching_browser_goes_quiet(rig, clock):
    loop, camera, motors = rig
    loop.swap_pilot(MODELS / "tiny-float32").join()
    loop.set_mode("pilot")
    loop.heartbeat()
    assert _pilot_drives(loop, camera, clock, 5) == [Action.FORWARD] * 5  # 500 ms
    assert loop.mode == "pilot"

    assert _pilot_drives(loop, camera, clock, 1, step_s=0.001) == [Action.STOP]
    assert motors.values == (0.0, 0.0)
    status = loop.status()
    assert status["mode"] == "user"
    assert status["message"] == (
        "pilot stopped: the controlling browser went quiet for 500 ms"
    )
    # Back in user mode it stays stopped, polls or not.
    loop.heartbeat()
    assert _pilot_drives(loop, camera, clock, 3) == [Action.STOP] * 3


def test_loop_pilot_keeps_driving_while_the_browser_polls(rig, clock):
    loop, camera, motors = rig
    loop.swap_pilot(MODELS / "tiny-float32").join()
    loop.set_mode("correction")
    for _ in range(4):
        loop.heartbeat()
        assert _pilot_drives(loop, camera, clock, 4) == [Action.FORWARD] * 4
    assert loop.mode == "correction"


def test_loop_pilot_started_without_a_browser_is_not_watched(rig, clock):
    loop, camera, motors = rig
    loop.heartbeat()  # a page seen in user mode does not arm the watch
    loop.swap_pilot(MODELS / "tiny-float32").join()
    loop.set_mode("pilot")
    assert _pilot_drives(loop, camera, clock, 20) == [Action.FORWARD] * 20
    assert loop.mode == "pilot"
    assert loop.status()["message"] is None


def test_loop_pilot_deadman_off_keeps_the_pilot_driving(config, clock):
    config.web.pilot_deadman = False
    camera = HandCamera()
    motors = RecordingDrivetrain(speed=0.5, turn_speed=0.5)
    loop = DriveLoop(config, camera, motors, clock=clock)
    try:
        loop.swap_pilot(MODELS / "tiny-float32").join()
        loop.set_mode("pilot")
        loop.heartbeat()
        assert _pilot_drives(loop, camera, clock, 20) == [Action.FORWARD] * 20
        assert loop.mode == "pilot"
    finally:
        loop.stop()


def test_loop_user_override_in_correction_mode_is_recorded_as_correction(rig, clock):
    loop, camera, motors = rig
    loop.swap_pilot(MODELS / "tiny-float32").join()
    loop.set_mode("correction")
    assert loop.set_recording(True)

    camera.publish(pattern_frame(Action.LEFT), clock())
    assert loop.step() is Action.LEFT  # the pilot
    loop.command(Action.RIGHT)
    camera.publish(pattern_frame(Action.LEFT), clock())
    assert loop.step() is Action.RIGHT  # the person overrides
    loop.command(Action.STOP)
    camera.publish(pattern_frame(Action.BACKWARD), clock())
    assert loop.step() is Action.BACKWARD  # stop hands back to the pilot
    loop.set_recording(False)

    drive = Drive.open(next(loop.config.drives_path.iterdir()))
    assert [(r.action, r.mode) for r in drive.records] == [
        (Action.LEFT, "pilot"),
        (Action.RIGHT, "correction"),
        (Action.BACKWARD, "pilot"),
    ]


def test_loop_in_pilot_mode_without_a_model_stays_stopped(rig, clock):
    loop, camera, motors = rig
    loop.set_mode("pilot")
    camera.publish(frame(), clock())
    assert loop.step() is Action.STOP
    assert "no model loaded" in loop.status()["message"]


def test_loop_skips_stopped_frames_when_asked(rig, clock):
    loop, camera, motors = rig
    assert loop.status()["skip_stopped"] is True
    assert loop.set_recording(True)
    for action in (Action.STOP, Action.FORWARD, Action.STOP, Action.RIGHT):
        loop.command(action)
        camera.publish(frame(), clock())
        loop.step()
    status = loop.status()
    assert status["frames"] == 2
    assert status["counts"] == {
        "stop": 0,
        "forward": 1,
        "left": 0,
        "right": 1,
        "backward": 0,
    }


@pytest.mark.parametrize("synced_first", [True, False])
def test_loop_full_disk_stops_recording_but_not_the_car(
    rig, clock, monkeypatch, synced_first
):
    loop, camera, motors = rig
    assert loop.set_recording(True)
    writer = loop._writer
    written_ok = []
    real_write = DriveWriter._write_frame

    def write_until_full(self, frames_dir, item):
        if len(written_ok) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, frames_dir, item)
        written_ok.append(item.index)

    monkeypatch.setattr(DriveWriter, "_write_frame", write_until_full)
    loop.command(Action.FORWARD)
    for index in range(3):
        camera.publish(frame(index), clock())
        loop.step()
    deadline = time.monotonic() + 5
    if synced_first:  # the three frames are labelled before the disk fills
        while writer.written < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.written == 3

    # The disk is full from the fourth frame on; the car drives on.
    camera.publish(frame(3), clock())
    loop.step()
    while writer.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for index in range(4, 7):
        loop.command(Action.FORWARD)
        camera.publish(frame(index), clock())
        assert loop.step() is Action.FORWARD
    assert motors.values == (0.5, 0.5)

    status = loop.status()
    assert status["recording"] is False
    assert "No space left on device" in status["message"]
    while "saved" not in loop.status()["message"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "3 frames" in loop.status()["message"]

    # Every frame written before the disk filled is labelled and readable.
    drive = Drive.open(writer.path)
    assert [r.index for r in drive.records] == [0, 1, 2]
    assert drive.verify().skipped == 0
    assert all(drive.load(r).shape == (120, 120, 3) for r in drive.records)


def test_loop_cannot_record_into_an_unwritable_home(config, clock, tmp_path):
    (tmp_path / "home").write_text("a file, not a folder")
    loop = DriveLoop(config, HandCamera(), RecordingDrivetrain(), clock=clock)
    assert loop.set_recording(True) is False
    assert "cannot start recording" in loop.status()["message"]


def test_loop_exception_in_step_stops_the_motors(rig, clock):
    loop, camera, motors = rig

    class BrokenPilot:
        name = "broken"

        def predict(self, image):
            raise RuntimeError("interpreter crashed")

    loop.command(Action.FORWARD)
    camera.publish(frame(), clock())
    loop.step()
    assert motors.values == (0.5, 0.5)
    loop._pilot = BrokenPilot()
    loop.set_mode("pilot")
    camera.publish(frame(), clock())
    with pytest.raises(RuntimeError, match="interpreter crashed"):
        loop.step()
    assert motors.values == (0.0, 0.0)


def test_loop_thread_stops_the_motors_and_reports_an_exception(config):
    from robot.cameras import PatternCamera

    config.pilot.max_frame_age_ms = 500.0
    motors = RecordingDrivetrain(speed=0.5, turn_speed=0.5)
    with PatternCamera(rate_hz=50) as camera:
        loop = DriveLoop(config, camera, motors)
        loop.start()
        deadline = time.monotonic() + 5
        while motors.values != (0.5, 0.5) and time.monotonic() < deadline:
            loop.command(Action.FORWARD)
            time.sleep(0.02)
        assert motors.values == (0.5, 0.5)

        def broken_read(*args, **kwargs):
            raise RuntimeError("camera driver crashed")

        camera.read = broken_read
        loop.wait(5.0)
        loop.stop()
    status = loop.status()
    assert status["running"] is False
    assert "camera driver crashed" in status["error"]
    assert motors.values == (0.0, 0.0)


def test_loop_swap_pilot_failure_keeps_the_old_pilot(rig, clock):
    loop, camera, motors = rig
    loop.swap_pilot(MODELS / "tiny-int8").join()
    before = loop.status()["model"]["sha256"]
    loop.swap_pilot(MODELS / "not-tflite").join()
    status = loop.status()
    assert status["model"]["sha256"] == before
    assert "is not a TFLite model" in status["model_error"]

    loop.swap_pilot(MODELS / "tiny-float32").join()
    assert loop.status()["model_error"] is None
    assert loop.status()["model"]["name"].startswith("tiny-float32@")


def test_loop_swaps_a_pilot_between_steps_while_running(config):
    from robot.cameras import PatternCamera

    config.pilot.max_frame_age_ms = 500.0
    with (
        PatternCamera(rate_hz=50) as camera,
        RecordingDrivetrain() as motors,
        DriveLoop(config, camera, motors) as loop,
    ):
        loop.set_mode("pilot")
        loop.swap_pilot(MODELS / "tiny-int8").join()
        deadline = time.monotonic() + 5
        while loop.status()["inference_ms"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        status = loop.status()
    assert status["model"]["name"].startswith("tiny-int8@")
    assert status["inference_ms"] > 0
    assert motors.values == (0.0, 0.0)


def test_loop_status_is_json(rig, clock):
    loop, camera, motors = rig
    loop.extra_status["map"] = lambda: {"x": 1}
    loop.extra_status["constant"] = 3
    camera.publish(frame(), clock())
    loop.step()
    status = json.loads(json.dumps(loop.status()))
    assert status["map"] == {"x": 1} and status["constant"] == 3
    for key in (
        "mode recording drive frames counts action fps frame_age_ms inference_ms "
        "loop_ms model model_error deadman free_disk_mb camera drivetrain message"
    ).split():
        assert key in status
    assert status["camera"] == "hand" and status["drivetrain"] == "recording"
    assert status["free_disk_mb"] > 0


def test_loop_rejects_an_unknown_mode(rig):
    loop, camera, motors = rig
    with pytest.raises(ConfigError, match="mode 'autopilot' is not one of"):
        loop.set_mode("autopilot")


def test_loop_mode_change_drops_the_last_command(rig, clock):
    loop, camera, motors = rig
    loop.command(Action.FORWARD)
    loop.set_mode("user")
    camera.publish(frame(), clock())
    assert loop.step() is Action.FORWARD
    loop.set_mode("pilot")
    loop.set_mode("user")
    camera.publish(frame(), clock())
    assert loop.step() is Action.STOP
