"""Camera backends: picamera2 (through a stand-in module), replay, pattern."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from robot.camera import Camera
from robot.cameras import (
    PatternCamera,
    PiCamera2Camera,
    ReplayCamera,
    WebcamCamera,
    make_camera,
)
from shared.config import CameraConfig
from shared.drives import Drive
from shared.errors import HardwareError
from shared.frames import FRAME_SHAPE

#: The Camera Module 3's sensor (IMX708).
SENSOR = (4608, 2592)


class FakePicamera2:
    """Stands in for ``picamera2.Picamera2``; there is no camera here.

    It remembers what it was asked, and its capture gives an array of the
    configured size in the layout picamera2 gives for ``BGR888``: R, G, B.
    """

    instances: list[FakePicamera2] = []

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.camera_properties = {"PixelArraySize": SENSOR, "Model": "imx708"}
        self.sensor_resolution = SENSOR
        self.options: dict | None = None
        self.configured: dict | None = None
        self.started = False
        self.closed = False
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, **options):
        self.options = options
        return {"main": dict(options["main"]), "controls": options["controls"]}

    def configure(self, config) -> None:
        self.configured = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert name == "main"
        width, height = self.configured["main"]["size"]
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0] = 200  # red first: BGR888 arrays are R, G, B
        image[:, : (width - height) // 2] = 7  # cropped away
        return image

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch):
    FakePicamera2.instances = []
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return FakePicamera2


def test_picamera2_camera_asks_the_isp_for_a_small_rgb_main_stream(fake_picamera2):
    with PiCamera2Camera(rate_hz=25) as camera:
        frame = camera.read(timeout_s=2.0)
        (picam,) = fake_picamera2.instances
        options = picam.options
        # Short side 120, the sensor's aspect: the ISP scales, we only slice.
        assert options["main"] == {"size": (214, 120), "format": "BGR888"}
        assert "lores" not in options
        assert options["controls"] == {"FrameRate": 25.0}
        assert options["queue"] is False
        assert "transform" not in options
        assert picam.started
    assert frame.image.shape == FRAME_SHAPE
    assert frame.image[..., 0].min() == 200  # red stays red, the sides are cut
    assert frame.image[..., 1].max() == 0
    assert picam.closed


def test_picamera2_camera_flips_with_a_libcamera_transform(fake_picamera2, monkeypatch):
    libcamera = types.ModuleType("libcamera")
    libcamera.Transform = lambda hflip=0, vflip=0: ("transform", hflip, vflip)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    config = CameraConfig(backend="picamera2", hflip=True, vflip=True)
    with make_camera(config) as camera:
        camera.read(timeout_s=2.0)
    assert fake_picamera2.instances[0].options["transform"] == ("transform", 1, 1)


def test_picamera2_camera_missing_package_is_a_hardware_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(HardwareError, match="sudo apt install python3-picamera2"):
        with PiCamera2Camera():
            pass


def test_picamera2_camera_without_a_camera_is_a_hardware_error(monkeypatch):
    def no_camera(camera_num: int = 0):
        raise RuntimeError("Camera __init__ sequence did not complete.")

    module = types.ModuleType("picamera2")
    module.Picamera2 = no_camera
    monkeypatch.setitem(sys.modules, "picamera2", module)
    with pytest.raises(HardwareError, match="no Pi camera 0 found") as info:
        PiCamera2Camera().open()
    assert "\n" not in str(info.value)


def test_webcam_camera_without_opencv_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(HardwareError, match=r"malpi\[webcam\]"):
        WebcamCamera().open()


def test_replay_camera_plays_a_drive_in_order_and_loops(make_drive):
    path = make_drive(frames=5)
    drive = Drive.open(path)
    expected = [drive.load(record) for record in drive.records]
    with ReplayCamera(path, rate_hz=200) as camera:
        seen = []
        index = -1
        while len(seen) < 7:
            frame = camera.read(after_index=index, timeout_s=2.0)
            index = frame.index
            seen.append(frame.image)
    # Frames may be skipped by a slow reader, but each one is a drive frame.
    for image in seen:
        assert any(np.array_equal(image, e) for e in expected)
    assert frame.index >= 6


def test_replay_camera_keeps_the_drives_own_pace(make_drive):
    path = make_drive(frames=6)  # recorded at 20 fps
    with ReplayCamera(path) as camera:
        first = camera.read(timeout_s=2.0)
        second = camera.read(after_index=first.index, timeout_s=2.0)
    gap_ms = (second.t_mono_s - first.t_mono_s) * 1000
    assert gap_ms > 30  # not a burst: about 50 ms apart


def test_replay_camera_refuses_a_folder_that_is_not_a_drive(tmp_path):
    config = CameraConfig(backend="replay", replay_path=str(tmp_path))
    with pytest.raises(HardwareError, match="is not a drive"):
        make_camera(config).open()


def test_make_camera_replay_needs_a_path():
    with pytest.raises(HardwareError, match="replay_path is empty"):
        make_camera(CameraConfig(backend="replay"))


def test_make_camera_rejects_unknown_backend():
    with pytest.raises(HardwareError, match="unknown camera backend 'kinect'"):
        make_camera(CameraConfig(backend="kinect"))


def test_pattern_camera_moves_and_publishes_each_frame_once():
    with PatternCamera(rate_hz=100) as camera:
        first = camera.read(timeout_s=2.0)
        second = camera.read(after_index=first.index, timeout_s=2.0)
    assert second.index > first.index
    assert second.t_mono_s > first.t_mono_s
    assert not np.array_equal(first.image, second.image)
    assert isinstance(camera, Camera)


def test_camera_read_times_out_when_closed_camera_gives_nothing():
    camera = PatternCamera()
    with pytest.raises(HardwareError, match="no new frame"):
        camera.read(timeout_s=0.05)


def test_make_camera_sim_rides_the_car_the_sim_motors_drive():
    backends = pytest.importorskip("robot.sim.backends")
    from robot.drivetrains import make_drivetrain
    from shared.actions import Action
    from shared.config import MotorsConfig

    world = backends.SimWorld()
    camera = make_camera(CameraConfig(backend="sim", rate_hz=50), world=world)
    motors = make_drivetrain(MotorsConfig(backend="sim"), world=world)
    assert camera.name == "sim" and motors.name == "sim"
    with camera, motors:
        first = camera.read(timeout_s=2.0)
        start = world.pose
        motors.drive(Action.FORWARD)
        time.sleep(0.3)
        later = camera.read(after_index=first.index, timeout_s=2.0)
    moved_m = np.hypot(world.pose.x_m - start.x_m, world.pose.y_m - start.y_m)
    assert moved_m > 0.05
    assert later.image.shape == FRAME_SHAPE
    assert not np.array_equal(first.image, later.image)


def test_replay_camera_path_with_home(monkeypatch, make_drive):
    path = make_drive(frames=2)
    monkeypatch.setenv("HOME", str(path.parent))
    camera = ReplayCamera(Path("~") / path.name, rate_hz=50)
    with camera:
        assert camera.read(timeout_s=2.0).image.shape == FRAME_SHAPE
