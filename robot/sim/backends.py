"""The simulator as the robot's camera and motors, in real time.

``SimWorld`` holds one track, one car and one camera renderer. While a
``SimCamera`` or ``SimDrivetrain`` uses it, a thread moves the car at the
control rate with the motor values last set, and renders and publishes a
frame to each open ``SimCamera`` at that camera's rate. The robot's drive
loop, web app and recorder then run exactly as on the real car::

    world, camera, motors = make_sim_backends(SimConfig(shape="figure8"))
    with camera, motors:
        motors.drive(Action.FORWARD)
        frame = camera.read()

A car that stays off the track for ``SimConfig.reset_after_off_track_s`` is
put back on the nearest centre-line point, and the walls of the room keep it
on the floor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from robot.camera import Camera
from robot.drivetrain import Drivetrain
from robot.sim.car import Pose, SimCar
from robot.sim.config import SimConfig
from robot.sim.render import Renderer, TopDownMap
from robot.sim.track import ProgressTracker, Track, make_track
from shared.errors import SimulationError

log = logging.getLogger(__name__)

#: Fall this far behind the control clock and the world skips ahead instead of
#: catching up in a burst.
_MAX_LAG_S = 0.25


class SimWorld:
    """A simulated car on a track, shared by the sim camera and drivetrain.

    ``step`` and ``render`` work without the thread too, for code that steps
    the world itself. All methods are thread-safe.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        track: Track | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or SimConfig()
        self.track = track or make_track(
            self.config.shape, self.config.seed, self.config.track
        )
        self.car = SimCar(self.track.pose_at(0.0), self.config.car)
        self.renderer = Renderer(self.track, self.config.camera)
        self.tracker = ProgressTracker(self.track)
        self.tracker.update(self.car.pose.x_m, self.car.pose.y_m)
        self.clock = clock
        #: Simulated seconds since the world was made.
        self.time_s = 0.0
        #: Times the car left the track.
        self.departures = 0
        self._off_since_s: float | None = None
        self._lock = threading.RLock()
        self._render_lock = threading.Lock()
        self._maps: dict[int, TopDownMap] = {}
        self._cameras: dict[SimCamera, float] = {}
        self._users = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        floor = self.track.floor
        rows, cols = floor.shape_px
        self._room = (
            floor.origin_x_m,
            floor.origin_y_m,
            floor.origin_x_m + cols * floor.resolution_m,
            floor.origin_y_m + rows * floor.resolution_m,
        )

    # --- the car ---------------------------------------------------------------

    @property
    def pose(self) -> Pose:
        with self._lock:
            return self.car.pose

    def set_motors(self, left: float, right: float) -> None:
        """Hold motor values in [-1, 1] until the next call."""
        with self._lock:
            self.car.set_motors(left, right)

    def reset(self, pose: Pose | None = None) -> None:
        """Put the car at ``pose`` or back on the nearest centre-line point."""
        with self._lock:
            if pose is None:
                point = self.tracker.update(self.car.pose.x_m, self.car.pose.y_m)
                pose = self.track.pose_at(point.s_m)
            self.car.pose = pose
            self.tracker.update(pose.x_m, pose.y_m)
            self._off_since_s = None
        log.info("sim car put at x=%.2f m, y=%.2f m", pose.x_m, pose.y_m)

    def step(self, dt_s: float) -> Pose:
        """Move the car for ``dt_s`` simulated seconds and keep score."""
        with self._lock:
            pose = self.car.step(dt_s)
            self.time_s += dt_s
            x0, y0, x1, y1 = self._room
            x, y = min(max(pose.x_m, x0), x1), min(max(pose.y_m, y0), y1)
            if (x, y) != (pose.x_m, pose.y_m):
                pose = self.car.pose = Pose(x, y, pose.heading_rad)
            point = self.tracker.update(x, y)
            if point.distance_m <= self.track.half_width_m:
                self._off_since_s = None
            elif self._off_since_s is None:
                self._off_since_s = self.time_s
                self.departures += 1
                log.info("sim car left the track (%d so far)", self.departures)
            else:
                limit_s = self.config.reset_after_off_track_s
                if limit_s and self.time_s - self._off_since_s >= limit_s - 1e-9:
                    self.reset()
            return self.car.pose

    def render(self) -> np.ndarray:
        """The camera frame at the car's current pose."""
        pose = self.pose
        with self._render_lock:
            return self.renderer.render(pose)

    def map_image(self, size_px: int = 160) -> np.ndarray:
        """A (size_px, size_px, 3) RGB uint8 top-down map with the car on it."""
        with self._lock:
            top_down = self._maps.get(size_px)
            if top_down is None:
                top_down = self._maps[size_px] = TopDownMap(self.track, size_px)
            pose = self.car.pose
        return top_down.draw(pose)

    def status(self) -> dict[str, Any]:
        """JSON-able state for the web app: track, pose, laps, departures."""
        with self._lock:
            point = self.tracker.point
            pose = self.car.pose
            return {
                "track": self.track.shape,
                "seed": self.track.seed,
                "x_m": round(pose.x_m, 3),
                "y_m": round(pose.y_m, 3),
                "heading_deg": round(float(np.degrees(pose.heading_rad)), 1),
                "lateral_m": round(point.lateral_m, 3),
                "on_track": point.distance_m <= self.track.half_width_m,
                "laps": self.tracker.laps,
                "departures": self.departures,
                "time_s": round(self.time_s, 2),
            }

    # --- the real-time thread --------------------------------------------------

    def acquire(self) -> None:
        """Start the thread for a new user (camera or drivetrain)."""
        with self._lock:
            self._users += 1
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="sim-world", daemon=True
                )
                self._thread.start()
                log.info(
                    "simulator running: %s track, seed %d, %.0f Hz control",
                    self.track.shape,
                    self.track.seed,
                    self.config.control_rate_hz,
                )

    def release(self) -> None:
        """A user is done; the last one stops the thread."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self._thread is None:
                return
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout=2.0)
        log.info("simulator stopped after %.1f simulated s", self.time_s)

    def _attach(self, camera: SimCamera) -> None:
        with self._lock:
            self._cameras[camera] = self.clock()
        self.acquire()

    def _detach(self, camera: SimCamera) -> None:
        with self._lock:
            if self._cameras.pop(camera, None) is None:
                return
        self.release()

    def _run(self) -> None:
        period_s = 1.0 / self.config.control_rate_hz
        next_step = self.clock()
        while not self._stop.is_set():
            now = self.clock()
            if now - next_step > _MAX_LAG_S:
                log.warning(
                    "simulator fell %.0f ms behind real time; skipping ahead",
                    (now - next_step) * 1000,
                )
                next_step = now
            while next_step <= now:
                self.step(period_s)
                next_step += period_s

            # Frames for each open camera that is due one.
            with self._lock:
                due = [c for c, t in self._cameras.items() if t <= now]
            for camera in due:
                camera.publish(self.render(), self.clock())
                with self._lock:
                    if camera in self._cameras:
                        last = self._cameras[camera] + 1.0 / camera.rate_hz
                        self._cameras[camera] = last if last > now else now
            with self._lock:
                wake = min([next_step, *self._cameras.values()])
            self._stop.wait(max(0.0, wake - self.clock()))


class SimCamera(Camera):
    """Frames of the simulated camera, published at ``rate_hz`` in real time."""

    name = "sim"

    def __init__(self, world: SimWorld, rate_hz: float = 30.0) -> None:
        super().__init__()
        if not rate_hz > 0:
            raise SimulationError(f"camera rate {rate_hz!r} Hz must be positive")
        self.world = world
        self.rate_hz = rate_hz
        self._open = False

    def open(self) -> None:
        if self._open:
            return
        self._open = True
        self.publish(self.world.render())
        self.world._attach(self)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.world._detach(self)


class SimDrivetrain(Drivetrain):
    """Motors of the simulated car: motor values become speed and yaw rate."""

    name = "sim"

    def __init__(
        self, world: SimWorld, *, speed: float = 0.6, turn_speed: float = 0.6
    ) -> None:
        super().__init__(speed=speed, turn_speed=turn_speed)
        self.world = world
        self.world.acquire()
        self._held = True

    def set_motors(self, left: float, right: float) -> None:
        self.world.set_motors(left, right)

    def release(self) -> None:
        if self._held:
            self._held = False
            self.world.release()
        super().release()


def make_sim_backends(
    config: SimConfig | None = None,
    *,
    camera_rate_hz: float = 30.0,
    speed: float | None = None,
    turn_speed: float | None = None,
) -> tuple[SimWorld, SimCamera, SimDrivetrain]:
    """A world with its camera and drivetrain, ready for ``with camera, motors:``.

    ``speed`` and ``turn_speed`` are the drivetrain's motor duties; they
    default to the car's own (``config.car``), so that each action moves the
    simulated car as it does in ``evaluate``.
    """
    world = SimWorld(config)
    car = world.config.car
    camera = SimCamera(world, rate_hz=camera_rate_hz)
    motors = SimDrivetrain(
        world,
        speed=car.speed if speed is None else speed,
        turn_speed=car.turn_speed if turn_speed is None else turn_speed,
    )
    return world, camera, motors
