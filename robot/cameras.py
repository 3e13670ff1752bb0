"""Camera backends: the Pi camera, a USB webcam, a recorded drive, a pattern.

Each backend is a ``robot.camera.Camera``: it captures on its own thread and
publishes timestamped 120x120 RGB model frames. ``make_camera`` picks one by
``CameraConfig.backend``:

- ``picamera2``: the Raspberry Pi camera through picamera2 (Raspberry Pi OS
  package ``python3-picamera2``), scaled by the ISP to a small output so that
  the crop to 120x120 is a free slice;
- ``opencv``: a USB webcam through OpenCV (``pip install "malpi[webcam]"``);
- ``replay``: the frames of a recorded drive, looping, at the drive's own
  rate or ``replay_rate_hz``;
- ``sim``: the simulator's camera (``robot.sim.backends.SimCamera``), or a
  moving test pattern when the simulator is not installed;
- ``pattern``: a moving test pattern, for demos and tests.

A camera that is not there (picamera2 not installed, no device, a replay path
that is not a drive) raises ``HardwareError`` with a one-line reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from robot.camera import Camera
from shared.config import CameraConfig
from shared.drives import Drive
from shared.errors import DriveError, FrameError, HardwareError
from shared.frames import FRAME_SIZE_PX, camera_output_size, to_model_frame

log = logging.getLogger(__name__)

CAMERA_BACKENDS = ("picamera2", "opencv", "replay", "sim", "pattern")


class ThreadedCamera(Camera):
    """A camera whose ``grab`` runs in a loop on a capture thread.

    Subclasses open the device in ``start_device``, return one RGB image per
    ``grab`` (blocking until the device has it) and release the device in
    ``stop_device``. A capture error is logged once and ends the thread; the
    drive loop then sees no new frames and stops the car.
    """

    def __init__(self) -> None:
        super().__init__()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        #: The error that ended the capture thread, if any.
        self.error: BaseException | None = None

    def open(self) -> None:
        if self._thread is not None:
            return
        self.start_device()
        self._running.set()
        self._thread = threading.Thread(
            target=self._capture, name=f"camera-{self.name}", daemon=True
        )
        self._thread.start()
        log.info("%s camera started", self.name)

    def close(self) -> None:
        if self._thread is None:
            return
        self._running.clear()
        self._thread.join(2.0)
        self._thread = None
        try:
            self.stop_device()
        finally:
            log.info("%s camera stopped", self.name)

    def _capture(self) -> None:
        while self._running.is_set():
            try:
                image = self.grab()
                if image is None:
                    continue
                t_mono_s = time.monotonic()
                self.publish(to_model_frame(image), t_mono_s)
            except Exception as err:
                self.error = err
                log.error("%s camera stopped capturing: %s", self.name, err)
                return

    @abstractmethod
    def start_device(self) -> None:
        """Open the device; raise HardwareError when it is not there."""

    @abstractmethod
    def grab(self) -> np.ndarray | None:
        """Wait for and return the next RGB image (None: nothing this time)."""

    def stop_device(self) -> None:
        """Release the device."""


class _Pacer:
    """Sleeps so that successive ``wait`` calls return ``rate_hz`` times a second."""

    def __init__(self, rate_hz: float) -> None:
        self.period_s = 1.0 / rate_hz
        self._next_s: float | None = None

    def wait(self, running: threading.Event, period_s: float | None = None) -> None:
        period_s = self.period_s if period_s is None else period_s
        now_s = time.monotonic()
        if self._next_s is None or self._next_s < now_s - period_s:
            self._next_s = now_s
        self._next_s += period_s
        delay_s = self._next_s - now_s
        if delay_s > 0 and running.is_set():
            time.sleep(delay_s)


# --- the Raspberry Pi camera -------------------------------------------------------


class PiCamera2Camera(ThreadedCamera):
    """The Pi camera through picamera2, scaled to a small size by the ISP.

    The main stream is asked for ``camera_output_size(sensor)``: the short
    side 120 px and the sensor's full aspect, so that the ISP does all the
    scaling and ``to_model_frame`` only slices the centre square. Why the
    main stream and not ``lores``: on a Pi 4 and earlier (VC4) the lores
    stream must be YUV420, which would need a YUV-to-RGB conversion on the
    CPU every frame, while the main stream can be RGB at any size, on every
    Pi. The format is picamera2's ``BGR888``, whose numpy array is in R, G, B
    order (its ``RGB888`` is B, G, R in memory, OpenCV's order), so frames
    need no channel swap. ``queue=False`` makes each capture wait for a fresh
    frame rather than hand back a queued, older one.
    """

    name = "picamera2"

    def __init__(
        self,
        *,
        camera_num: int = 0,
        rate_hz: float = 30.0,
        hflip: bool = False,
        vflip: bool = False,
    ) -> None:
        super().__init__()
        self.camera_num = camera_num
        self.rate_hz = rate_hz
        self.hflip = hflip
        self.vflip = vflip
        self.output_size: tuple[int, int] | None = None
        self._picam: Any = None

    def start_device(self) -> None:
        try:
            picamera2 = importlib.import_module("picamera2")
        except ImportError as err:
            raise HardwareError(
                "picamera2 is not installed; on Raspberry Pi OS run `sudo apt "
                "install python3-picamera2` and make the venv with "
                "--system-site-packages"
            ) from err
        try:
            picam = picamera2.Picamera2(self.camera_num)
        except Exception as err:
            raise HardwareError(
                f"no Pi camera {self.camera_num!r} found ({err}); check the "
                "ribbon cable and that `rpicam-hello --list-cameras` lists it"
            ) from err
        try:
            sensor = picam.camera_properties.get("PixelArraySize") or (
                picam.sensor_resolution
            )
            width_px, height_px = (int(n) for n in sensor)
            self.output_size = camera_output_size(width_px, height_px, FRAME_SIZE_PX)
            options: dict[str, Any] = {
                "main": {"size": self.output_size, "format": "BGR888"},
                "controls": {"FrameRate": float(self.rate_hz)},
                "buffer_count": 4,
                "queue": False,
            }
            if self.hflip or self.vflip:
                libcamera = importlib.import_module("libcamera")
                options["transform"] = libcamera.Transform(
                    hflip=int(self.hflip), vflip=int(self.vflip)
                )
            config = picam.create_video_configuration(**options)
            picam.configure(config)
            picam.start()
        except Exception as err:
            picam.close()
            raise HardwareError(
                f"Pi camera {self.camera_num!r} cannot start at "
                f"{self.output_size!r} BGR888: {err}"
            ) from err
        self._picam = picam
        log.info(
            "Pi camera sensor %dx%d, ISP output %dx%d at %.0f fps",
            width_px,
            height_px,
            *self.output_size,
            self.rate_hz,
        )

    def grab(self) -> np.ndarray:
        return self._picam.capture_array("main")

    def stop_device(self) -> None:
        picam, self._picam = self._picam, None
        if picam is not None:
            try:
                picam.stop()
            finally:
                picam.close()


# --- a USB webcam --------------------------------------------------------------


class WebcamCamera(ThreadedCamera):
    """A USB webcam through OpenCV (the ``webcam`` extra).

    The webcam is asked for 160x120; most honour it, and for those that do
    not, ``to_model_frame`` crops and scales on the CPU. OpenCV hands out
    B, G, R pixels, which are swapped to R, G, B.
    """

    name = "opencv"

    def __init__(self, *, device: int = 0, rate_hz: float = 30.0) -> None:
        super().__init__()
        self.device = device
        self.rate_hz = rate_hz
        self._capture_device: Any = None

    def start_device(self) -> None:
        try:
            cv2 = importlib.import_module("cv2")
        except ImportError as err:
            raise HardwareError(
                "OpenCV is not installed; install the webcam extra with "
                '`pip install "malpi[webcam]"`'
            ) from err
        capture = cv2.VideoCapture(self.device)
        if not capture.isOpened():
            capture.release()
            raise HardwareError(
                f"no webcam at device {self.device!r}; check `ls /dev/video*` "
                "and camera.device in robot.toml"
            )
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, 160)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, 120)
        capture.set(cv2.CAP_PROP_FPS, self.rate_hz)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture_device = capture

    def grab(self) -> np.ndarray:
        ok, image = self._capture_device.read()
        if not ok:
            raise HardwareError(f"webcam {self.device!r} stopped giving frames")
        return np.ascontiguousarray(image[:, :, ::-1])

    def stop_device(self) -> None:
        capture, self._capture_device = self._capture_device, None
        if capture is not None:
            capture.release()


# --- a recorded drive ------------------------------------------------------------


class ReplayCamera(ThreadedCamera):
    """The frames of a recorded drive, looping.

    With ``rate_hz`` 0 the frames come at the drive's own pace (the gaps
    between their recorded times); otherwise at ``rate_hz``.
    """

    name = "replay"

    def __init__(self, path: str | Path, *, rate_hz: float = 0.0) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.rate_hz = rate_hz
        self._drive: Drive | None = None
        self._position = 0
        self._pacer = _Pacer(rate_hz if rate_hz > 0 else 30.0)

    def start_device(self) -> None:
        try:
            drive = Drive.open(self.path)
        except DriveError as err:
            raise HardwareError(
                f"replay camera: {err}; set camera.replay_path to a drive folder"
            ) from err
        if not drive.records:
            raise HardwareError(
                f"replay camera: drive {str(self.path)!r} has no frames; "
                "record one with `robot drive --record`"
            )
        self._drive = drive
        self._position = 0
        log.info("replaying %d frames of %s", len(drive.records), self.path)

    def _gap_s(self) -> float | None:
        """The recorded time between the previous frame and this one."""
        records = self._drive.records
        if self.rate_hz > 0 or self._position == 0:
            return None
        gap_s = records[self._position].t_mono_s - records[self._position - 1].t_mono_s
        return gap_s if 0 < gap_s < 1.0 else None

    def grab(self) -> np.ndarray | None:
        records = self._drive.records
        self._pacer.wait(self._running, self._gap_s())
        record = records[self._position]
        self._position = (self._position + 1) % len(records)
        try:
            return self._drive.load(record)
        except FrameError as err:
            log.warning("replay skips %s", err)
            return None


# --- a test pattern -------------------------------------------------------------


def pattern_frame(step: int) -> np.ndarray:
    """A 120x120 RGB test image that moves with ``step``: bars and a square."""
    size = FRAME_SIZE_PX
    x = np.arange(size, dtype=np.int32)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[..., 0] = ((x[np.newaxis, :] + 2 * step) % size * 255 // size).astype(
        np.uint8
    )
    image[..., 1] = (x[:, np.newaxis] * 255 // size).astype(np.uint8)
    image[..., 2] = 96
    corner = (3 * step) % (size - 20)
    image[corner : corner + 20, corner : corner + 20] = 255
    return image


class PatternCamera(ThreadedCamera):
    """A moving test pattern at ``rate_hz``: needs no hardware."""

    name = "pattern"

    def __init__(self, *, rate_hz: float = 30.0) -> None:
        super().__init__()
        self.rate_hz = rate_hz
        self._step = 0
        self._pacer = _Pacer(rate_hz)

    def start_device(self) -> None:
        self._step = 0

    def grab(self) -> np.ndarray:
        self._pacer.wait(self._running)
        self._step += 1
        return pattern_frame(self._step)


# --- the factory -----------------------------------------------------------------


def make_camera(config: CameraConfig, *, world: Any = None) -> Camera:
    """Build the camera ``config.backend`` names (not yet opened).

    For the ``sim`` backend, ``world`` is the ``robot.sim.backends.SimWorld``
    whose car the camera rides on (shared with the sim drivetrain); without
    one the camera gets a world of its own.

    Raises:
        HardwareError: the backend name is unknown.
    """
    backend = config.backend
    if backend == "picamera2":
        return PiCamera2Camera(
            rate_hz=config.rate_hz, hflip=config.hflip, vflip=config.vflip
        )
    if backend == "opencv":
        return WebcamCamera(device=config.device, rate_hz=config.rate_hz)
    if backend == "replay":
        if not config.replay_path:
            raise HardwareError(
                "camera.backend is 'replay' but camera.replay_path is empty; "
                "set it to a drive folder"
            )
        return ReplayCamera(config.replay_path, rate_hz=config.replay_rate_hz)
    if backend == "pattern":
        return PatternCamera(rate_hz=config.rate_hz)
    if backend == "sim":
        sim = _sim_backends()
        if sim is None:
            log.warning("the simulator is not installed: showing a test pattern")
            return PatternCamera(rate_hz=config.rate_hz)
        return sim.SimCamera(world or sim.SimWorld(), rate_hz=config.rate_hz)
    raise HardwareError(
        f"unknown camera backend {backend!r}; use one of {', '.join(CAMERA_BACKENDS)}"
    )


def _sim_backends() -> Any:
    """``robot.sim.backends``, or None when the simulator is not installed."""
    if importlib.util.find_spec("robot.sim.backends") is None:
        return None
    return importlib.import_module("robot.sim.backends")
