"""The drive loop: newest frame, action, motors, recorder, at a fixed rate.

One thread runs ``DriveLoop.step`` at ``config.loop_rate_hz`` on a monotonic
clock. Each step takes the newest camera frame it has not used yet, decides
the action (the user's, or the pilot's in the pilot modes, with the user's
command overriding the pilot while it is not stop), drives the motors and
hands the frame and its action to the recorder. Everything else (the web app,
a model deploy) talks to the loop through its thread-safe methods.

Safety, in the order the loop checks it:

- a frame older than ``config.pilot.max_frame_age_ms``, or no new frame at
  all, is never acted on: the car stops and the frame is counted as stale;
- in user mode the car stops when no command arrived for
  ``config.web.deadman_ms`` (the deadman);
- in the pilot modes, once a browser has shown life (``heartbeat``: the web
  app calls it on every status poll and control message of an authenticated
  page) since the mode was entered, the car stops when that browser then goes
  quiet for ``config.web.deadman_ms``: the loop switches to user mode and says
  why in ``status()["message"]`` (the browser watch, off when
  ``config.web.pilot_deadman`` is false). A pilot started without any browser
  (``robot drive --mode pilot`` before a page is open, ``--autodrive``) is not
  watched until a browser shows up;
- the motors stop when the loop exits, on any exception in it (logged), and
  on SIGTERM/SIGINT (the command line turns those into ``stop``).

Timings in ``status`` are means over the last steps: ``frame_age_ms`` from
capture to decision, ``inference_ms`` the pilot's interpreter time,
``loop_ms`` the work of a step once its frame is in hand (pilot, motors and
recorder included), and ``fps`` the frames acted on per second.
"""

from __future__ import annotations

import collections
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robot.camera import Camera, Frame
from robot.drivetrain import Drivetrain
from robot.pilot import Pilot
from shared.actions import ACTION_LABELS, Action
from shared.config import RobotConfig, to_dict
from shared.drives import DriveWriter
from shared.errors import ConfigError, HardwareError, MalpiError

log = logging.getLogger(__name__)

#: Who chooses the action: the person, the pilot, or the pilot with the
#: person's corrections recorded as labels.
LOOP_MODES = ("user", "pilot", "correction")
#: Steps averaged for the timings in ``status``.
WINDOW_STEPS = 30
#: How often the free disk space is measured.
DISK_CHECK_INTERVAL_S = 2.0
NO_PILOT_MESSAGE = "no model loaded: the car stays stopped until one is deployed"
#: The modes in which the pilot drives.
PILOT_MODES = ("pilot", "correction")


class _Rolling:
    """Mean of the last ``size`` values."""

    def __init__(self, size: int = WINDOW_STEPS) -> None:
        self.values: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None


class DriveLoop:
    """Runs the car: camera to action to motors (and to the recorder).

    Example::

        with make_camera(config.camera) as camera, \\
                make_drivetrain(config.motors) as motors, \\
                DriveLoop(config, camera, motors) as loop:
            loop.command(Action.FORWARD)

    ``start`` runs the loop on its own thread; ``step`` runs one iteration
    and is what tests call with a hand-driven ``clock``. The frames' own
    timestamps (``Frame.t_mono_s``) must come from the same clock.
    """

    def __init__(
        self,
        config: RobotConfig,
        camera: Camera,
        drivetrain: Drivetrain,
        pilot: Pilot | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.camera = camera
        self.drivetrain = drivetrain
        self.deadman_ms = config.web.deadman_ms
        self.max_frame_age_ms = config.pilot.max_frame_age_ms
        self.period_s = 1.0 / config.loop_rate_hz
        #: Extra entries for ``status``: a value, or a function called each time.
        self.extra_status: dict[str, Any] = {}
        #: Called after each step that had a frame with its action and
        #: timings (``frame_age_ms``, ``inference_ms``, ``loop_ms``);
        #: benchmarks use it. Runs on the loop thread: keep it short.
        self.on_step: Callable[[dict[str, Any]], None] | None = None
        self._clock = clock
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

        # What the user and the web app set.
        self._mode = "user"
        self._user_action = Action.STOP
        self._user_source = ""
        self._last_command_s: float | None = None
        self._skip_stopped = config.skip_stopped
        # The browser watch: the last sign of life from a browser, and whether
        # one has shown life since the current pilot mode was entered.
        self._pilot_deadman = config.web.pilot_deadman
        self._last_heartbeat_s: float | None = None
        self._browser_watching = False

        # The pilot, and the one waiting to be swapped in.
        self._pilot = pilot
        self._pending_pilot: Pilot | None = None
        self._model_error: str | None = None
        self._loading: str | None = None

        # The recorder.
        self._writer: DriveWriter | None = None
        self._last_drive: dict[str, Any] | None = None

        # What the loop did, for ``status``.
        self._action = Action.STOP
        self._last_index = -1
        self._message: str | None = None
        self._error: str | None = None
        self.steps = 0
        self.frames_used = 0
        self.stale_frames = 0
        self.missing_frames = 0
        self._frame_age_ms = _Rolling()
        self._inference_ms = _Rolling()
        self._loop_ms = _Rolling()
        self._step_times: collections.deque[float] = collections.deque(
            maxlen=WINDOW_STEPS
        )
        self._free_disk_mb: float | None = None
        self._disk_checked_s = float("-inf")

    # --- lifecycle -------------------------------------------------------------

    def __enter__(self) -> DriveLoop:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Run the loop on its own thread."""
        if self.running:
            return
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="drive-loop")
        self._thread.start()
        log.info(
            "drive loop started at %.0f Hz (camera %s, drivetrain %s)",
            self.config.loop_rate_hz,
            self.camera.name,
            self.drivetrain.name,
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop, stop the motors and close the recording."""
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._safe_stop_motors()
        self.set_recording(False)

    def request_stop(self) -> None:
        """Ask the loop to end; safe to call from a signal handler."""
        self._stop_event.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the loop was asked to stop; True if it was."""
        return self._stop_event.wait(timeout_s)

    def _run(self) -> None:
        next_s = self._clock()
        try:
            while not self._stop_event.is_set():
                self.step()
                next_s += self.period_s
                delay_s = next_s - self._clock()
                if delay_s > 0:
                    self._stop_event.wait(delay_s)
                elif delay_s < -self.period_s:
                    # Far behind (a slow model, a stalled camera): start afresh
                    # rather than running a burst of steps to catch up.
                    next_s = self._clock()
        except Exception as err:
            log.exception("drive loop stopped by an error; motors stopped")
            with self._lock:
                self._error = f"{type(err).__name__}: {err}"
                self._message = f"drive loop stopped: {err}"
        finally:
            self._safe_stop_motors()
            self._stop_event.set()

    def _safe_stop_motors(self) -> None:
        try:
            self.drivetrain.stop()
        except Exception:
            log.exception("cannot stop the %s motors", self.drivetrain.name)
        self._action = Action.STOP

    # --- one iteration -----------------------------------------------------------

    def step(self) -> Action:
        """Run one iteration and return the action sent to the motors.

        Any exception stops the motors before it propagates.
        """
        try:
            return self._step()
        except BaseException:
            self._safe_stop_motors()
            raise

    def _step(self) -> Action:
        self._swap_pending_pilot()
        self._check_browser(self._clock())

        # The newest frame not used yet; a missing or stale frame stops the car.
        frame = self._next_frame()
        now_s = started_s = self._clock()
        if frame is None:
            self.missing_frames += 1
            self.drivetrain.drive(Action.STOP)
            self._action = Action.STOP
            self.steps += 1
            return Action.STOP
        age_ms = frame.age_ms(now_s)
        self._frame_age_ms.add(age_ms)
        if age_ms > self.max_frame_age_ms:
            self.stale_frames += 1
            log.debug(
                "frame %d is %.0f ms old, limit %.0f ms: stopping",
                frame.index,
                age_ms,
                self.max_frame_age_ms,
            )
            self.drivetrain.drive(Action.STOP)
            return self._finish(Action.STOP, started_s, age_ms)
        self.frames_used += 1

        # The action: the user's (deadman-checked), or the pilot's.
        with self._lock:
            mode = self._mode
            user_action = self._user_action
            quiet = (
                self._last_command_s is None
                or (now_s - self._last_command_s) * 1000.0 > self.deadman_ms
            )
            pilot = self._pilot
        if quiet:
            user_action = Action.STOP
        inference_ms = None
        if mode == "user":
            action = label = user_action
            label_mode = "user"
        elif user_action is not Action.STOP:
            action = label = user_action
            label_mode = "correction" if mode == "correction" else "user"
        elif pilot is None:
            action = label = Action.STOP
            label_mode = "pilot"
            with self._lock:
                self._message = NO_PILOT_MESSAGE
        else:
            prediction = pilot.predict(frame.image)
            inference_ms = prediction.inference_ms
            self._inference_ms.add(inference_ms)
            action = prediction.action
            label = action if prediction.label is None else prediction.label
            label_mode = getattr(pilot, "record_mode", "pilot")

        # The motors, then the recorder.
        self.drivetrain.drive(action)
        self._record(frame, label, label_mode)
        return self._finish(action, started_s, age_ms, inference_ms)

    def _check_browser(self, now_s: float) -> None:
        """Leave the pilot modes when the watching browser went quiet."""
        with self._lock:
            if (
                not self._pilot_deadman
                or not self._browser_watching
                or self._mode not in PILOT_MODES
                or self._last_heartbeat_s is None
                or (now_s - self._last_heartbeat_s) * 1000.0 <= self.deadman_ms
            ):
                return
            message = (
                "pilot stopped: the controlling browser went quiet for "
                f"{self.deadman_ms:.0f} ms"
            )
            log.warning("%s; mode %s -> user", message, self._mode)
            self._mode = "user"
            self._user_action = Action.STOP
            self._browser_watching = False
            self._message = message

    def _finish(
        self,
        action: Action,
        started_s: float,
        age_ms: float,
        inference_ms: float | None = None,
    ) -> Action:
        """Book-keeping of a step that had a frame: timings and counters."""
        self._action = action
        end_s = self._clock()
        loop_ms = (end_s - started_s) * 1000.0
        self._loop_ms.add(loop_ms)
        self._step_times.append(end_s)
        self.steps += 1
        if self.on_step is not None:
            self.on_step(
                {
                    "action": action,
                    "frame_age_ms": age_ms,
                    "inference_ms": inference_ms,
                    "loop_ms": loop_ms,
                }
            )
        return action

    def _next_frame(self) -> Frame | None:
        try:
            frame = self.camera.read(
                after_index=self._last_index,
                timeout_s=self.max_frame_age_ms / 1000.0,
            )
        except HardwareError as err:
            log.debug("no frame: %s", err)
            return None
        self._last_index = frame.index
        return frame

    def _record(self, frame: Frame, action: Action, label_mode: str) -> None:
        with self._lock:
            writer = self._writer
            skip = self._skip_stopped and action is Action.STOP
        if writer is None or skip:
            return
        if writer.error is None:
            try:
                writer.append(
                    frame.image, action, mode=label_mode, t_mono_s=frame.t_mono_s
                )
                return
            except MalpiError as err:
                log.debug("append refused: %s", err)
        self._recording_failed(writer)

    def _recording_failed(self, writer: DriveWriter) -> None:
        """Stop recording after a write error; the car keeps driving."""
        reason = writer.error or "the writer refused the frame"
        with self._lock:
            if self._writer is not writer:
                return
            self._writer = None
            self._message = f"recording stopped: {reason}"
            self._last_drive = self._drive_summary(writer)
        log.warning("recording stopped: %s", reason)

        # Closing joins the writer thread, which labels the frames already on
        # disk: keep that off the loop, then say how many were saved.
        def close() -> None:
            writer.close()
            with self._lock:
                self._last_drive = self._drive_summary(writer)
                if self._message == f"recording stopped: {reason}":
                    self._message = (
                        f"recording stopped: {reason}; {writer.written} frames "
                        f"of drive {writer.path.name!r} are saved"
                    )

        threading.Thread(target=close, name="drive-writer-close", daemon=True).start()

    # --- what the web app calls --------------------------------------------------

    def command(self, action: Action | str | int, source: str = "web") -> None:
        """Set the user's action; each call also feeds the deadman."""
        action = Action.parse(action)
        with self._lock:
            self._user_action = action
            self._user_source = source
            self._last_command_s = self._clock()

    def heartbeat(self, source: str = "web") -> None:
        """A sign of life from a browser; in a pilot mode it arms the watch.

        From then on, a browser quiet for ``deadman_ms`` stops the pilot.
        """
        with self._lock:
            self._last_heartbeat_s = self._clock()
            if self._mode in PILOT_MODES and not self._browser_watching:
                log.info("browser watch armed by %s in %s mode", source, self._mode)
                self._browser_watching = True

    def set_mode(self, mode: str) -> None:
        """Switch between ``user``, ``pilot`` and ``correction``.

        Raises:
            ConfigError: ``mode`` is not one of ``LOOP_MODES``.
        """
        if mode not in LOOP_MODES:
            raise ConfigError(f"mode {mode!r} is not one of {', '.join(LOOP_MODES)}")
        with self._lock:
            if mode == self._mode:
                return
            log.info("mode %s -> %s", self._mode, mode)
            self._mode = mode
            # A command given in one mode must not carry into the next.
            self._user_action = Action.STOP
            # Only a browser seen in this mode arms the watch.
            self._browser_watching = False

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def pilot(self) -> Pilot | None:
        return self._pilot

    @property
    def recording(self) -> bool:
        return self._writer is not None

    def set_recording(self, on: bool) -> bool:
        """Start or stop recording a drive; returns whether it is recording.

        A drive that cannot be created leaves recording off with the reason
        in ``status()["message"]``.
        """
        with self._lock:
            writer = self._writer
            if on and writer is not None:
                return True
            if not on:
                self._writer = None
                if writer is not None:
                    self._last_drive = self._drive_summary(writer)
        if not on:
            if writer is not None:
                writer.close()
                with self._lock:
                    self._last_drive = self._drive_summary(writer)
            return False
        try:
            new_writer = DriveWriter.create(
                self.config.drives_path,
                car=self.config.car_name,
                camera=self.camera.name,
                config=to_dict(self.config),
            )
        except MalpiError as err:
            log.warning("cannot start recording: %s", err)
            with self._lock:
                self._message = f"cannot start recording: {err}"
            return False
        with self._lock:
            self._writer = new_writer
            self._last_drive = None
            self._message = None
        return True

    def set_skip_stopped(self, on: bool) -> None:
        """Do not record frames whose action is stop."""
        with self._lock:
            self._skip_stopped = bool(on)

    def swap_pilot(self, path: str | Path) -> threading.Thread:
        """Load the model at ``path`` off the loop; it drives from the next step.

        A model that fails to load leaves the current pilot in place and sets
        ``status()["model_error"]``. Returns the loading thread (join it to
        wait).
        """

        def load() -> None:
            try:
                pilot = Pilot.load(path, runtime=self.config.pilot.runtime)
            except MalpiError as err:
                log.warning("model %s not loaded: %s", path, err)
                with self._lock:
                    self._model_error = str(err)
                    self._loading = None
                return
            with self._lock:
                self._pending_pilot = pilot
                self._model_error = None
                self._loading = None
                if not self.running:
                    self._swap_pending_pilot()

        with self._lock:
            self._loading = str(path)
        thread = threading.Thread(target=load, name="pilot-load", daemon=True)
        thread.start()
        return thread

    def _swap_pending_pilot(self) -> None:
        with self._lock:
            pilot = self._pending_pilot
            if pilot is None:
                return
            self._pending_pilot = None
            old = self._pilot
            self._pilot = pilot
            if self._message == NO_PILOT_MESSAGE:
                self._message = None
        log.info("pilot swapped: %s -> %s", old.name if old else "none", pilot.name)

    # --- status ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the loop is doing, as JSON-able data."""
        now_s = self._clock()
        with self._lock:
            writer = self._writer
            drive = self._drive_summary(writer) if writer else self._last_drive
            pilot = self._pilot
            mode = self._mode
            deadman = (
                self._last_command_s is None
                or (now_s - self._last_command_s) * 1000.0 > self.deadman_ms
            )
            status: dict[str, Any] = {
                "mode": mode,
                "running": self.running,
                "recording": writer is not None,
                "skip_stopped": self._skip_stopped,
                "drive": drive["name"] if drive else None,
                "frames": drive["frames"] if drive else 0,
                "counts": drive["counts"] if drive else dict.fromkeys(ACTION_LABELS, 0),
                "dropped": drive["dropped"] if drive else 0,
                "action": self._action.label,
                "user_action": self._user_action.label,
                "command_source": self._user_source or None,
                "deadman": deadman,
                "fps": self._fps(),
                "frame_age_ms": _round(self._frame_age_ms.mean),
                "inference_ms": _round(self._inference_ms.mean),
                "loop_ms": _round(self._loop_ms.mean),
                "stale_frames": self.stale_frames,
                "missing_frames": self.missing_frames,
                "model": pilot.describe() if pilot else None,
                "model_error": self._model_error,
                "model_loading": self._loading,
                "free_disk_mb": self._free_disk(now_s),
                "camera": self.camera.name,
                "drivetrain": self.drivetrain.name,
                "message": self._message,
                "error": self._error,
            }
        for key, value in self.extra_status.items():
            try:
                status[key] = value() if callable(value) else value
            except Exception as err:
                log.warning("status entry %r failed: %s", key, err)
                status[key] = None
        return status

    def _fps(self) -> float | None:
        times = list(self._step_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return round((len(times) - 1) / (times[-1] - times[0]), 1)

    def _free_disk(self, now_s: float) -> float | None:
        if now_s - self._disk_checked_s >= DISK_CHECK_INTERVAL_S:
            self._disk_checked_s = now_s
            path = self.config.drives_path
            while not path.exists() and path != path.parent:
                path = path.parent
            try:
                self._free_disk_mb = round(shutil.disk_usage(path).free / 2**20, 1)
            except OSError:
                self._free_disk_mb = None
        return self._free_disk_mb

    @staticmethod
    def _drive_summary(writer: DriveWriter) -> dict[str, Any]:
        return {
            "name": writer.path.name,
            "frames": writer.appended,
            "written": writer.written,
            "dropped": writer.dropped,
            "counts": {a.label: writer.counts.get(a, 0) for a in Action},
        }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
