"""``robot drive``, ``robot check`` and ``robot bench``.

``drive`` opens the camera and the motors, starts the drive loop and serves
the web app with waitress until Ctrl-C or SIGTERM; with ``--sim`` the car and
its camera are simulated, and ``--autodrive expert`` lets the simulator's
expert drive and record for a few minutes without a person. ``check`` is a
one-screen self-test of camera, motors and model. ``bench`` measures the
pilot's inference time per runtime and the loop's own overhead.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from robot.camera import Camera
from robot.cameras import PatternCamera, make_camera
from robot.drivetrain import Drivetrain
from robot.drivetrains import RecordingDrivetrain, make_drivetrain
from robot.loop import LOOP_MODES, DriveLoop
from robot.pilot import Pilot, Prediction, installed_runtimes, resolve_model_path
from shared.actions import NUM_ACTIONS, Action
from shared.cli import add_command
from shared.config import RobotConfig, load_config
from shared.errors import HardwareError, MalpiError
from shared.frames import FRAME_SHAPE
from shared.modelcard import MODEL_NAME

log = logging.getLogger(__name__)

#: The tiny models the tests use; ``bench`` falls back to them in a checkout.
FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "models"
TRACK_SHAPES = ("oval", "figure8", "random")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``drive``, ``check`` and ``bench``."""
    drive = add_command(
        subparsers,
        "drive",
        _drive,
        "drive the car from a browser (or let a model drive it)",
        "robot drive --sim   (then open the printed URL)",
    )
    _add_car_options(drive)
    drive.add_argument("--host", help="address to listen on (default [web] host)")
    drive.add_argument("--port", type=int, help="port (default [web] port, 8887)")
    drive.add_argument(
        "--mode", choices=LOOP_MODES, default="user", help="start in this mode"
    )
    drive.add_argument("--record", action="store_true", help="start recording at once")
    drive.add_argument(
        "--autodrive",
        choices=["expert"],
        help="with --sim: the simulator's expert drives (no web app)",
    )
    drive.add_argument(
        "--minutes",
        type=float,
        default=5.0,
        help="with --autodrive: how long to drive (default 5)",
    )
    drive.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="with --autodrive: chance per step that the expert starts a burst "
        "of wrong actions and records its corrections (e.g. 0.03; default 0)",
    )

    check = add_command(
        subparsers,
        "check",
        _check,
        "self-test: open the camera, pulse stop to the motors, run the model",
        "robot check --config robot.toml",
    )
    _add_car_options(check)

    bench = add_command(
        subparsers,
        "bench",
        _bench,
        "measure pilot inference per runtime and the drive loop's overhead",
        "robot bench --model ~/malpi/models/current",
    )
    bench.add_argument(
        "--model",
        action="append",
        type=Path,
        help="a model folder (repeatable; default: the test fixtures)",
    )
    bench.add_argument(
        "--frames", type=int, default=300, help="inferences per model and runtime"
    )
    bench.add_argument(
        "--seconds", type=float, default=5.0, help="loop run per measurement"
    )
    bench.add_argument(
        "--rate", type=float, default=30.0, help="loop rate in Hz (default 30)"
    )


def _add_car_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="robot.toml (default: defaults)")
    parser.add_argument("--home", help="folder of drives/ and models/")
    parser.add_argument("--model", help="model.tflite or its folder")
    parser.add_argument(
        "--sim", action="store_true", help="simulated camera and motors"
    )
    parser.add_argument(
        "--track", choices=TRACK_SHAPES, default="oval", help="with --sim"
    )
    parser.add_argument("--seed", type=int, default=0, help="with --sim")


def _load_config(args: argparse.Namespace) -> RobotConfig:
    config = load_config(RobotConfig, args.config)
    if args.home:
        config.home = args.home
    if args.model:
        config.pilot.model_path = args.model
    if getattr(args, "host", None):
        config.web.host = args.host
    if getattr(args, "port", None) is not None:
        config.web.port = args.port
    if args.sim:
        config.camera.backend = "sim"
        config.motors.backend = "sim"
    return config


def model_path_of(config: RobotConfig) -> Path | None:
    """The model to drive with: the configured one, else models/current."""
    if config.pilot.model_path:
        return Path(config.pilot.model_path).expanduser()
    current = config.models_path / "current"
    return current if (current / MODEL_NAME).exists() else None


# --- the car's parts ---------------------------------------------------------------


class _Car:
    """Camera, drivetrain and (with --sim) the simulated world."""

    def __init__(
        self, camera: Camera, drivetrain: Drivetrain, world: Any = None
    ) -> None:
        self.camera = camera
        self.drivetrain = drivetrain
        self.world = world


def _make_car(config: RobotConfig, args: argparse.Namespace) -> _Car:
    """Build the camera and drivetrain; sim ones share one simulated world."""
    world = None
    uses_sim = "sim" in (config.camera.backend, config.motors.backend)
    if uses_sim:
        from robot.sim import backends
        from robot.sim import config as sim

        sim_config = sim.SimConfig(
            shape=args.track,
            seed=args.seed,
            expert=sim.ExpertConfig(noise=getattr(args, "noise", 0.0)),
        )
        world = backends.SimWorld(sim_config)
    camera = make_camera(config.camera, world=world)
    return _Car(camera, make_drivetrain(config.motors, world=world), world)


@contextmanager
def _stop_on_signals(loop: DriveLoop) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a clean stop of the loop (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        loop.request_stop()

    previous = {
        sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --- robot drive -------------------------------------------------------------------


def _drive(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if args.autodrive and not args.sim:
        raise HardwareError("--autodrive expert drives the simulated car; add --sim")

    # The pilot: an explicit model must load; models/current may load later.
    pilot = None
    model_path = model_path_of(config)
    if args.model and not args.autodrive:
        pilot = Pilot.load(model_path, runtime=config.pilot.runtime)

    car = _make_car(config, args)
    with ExitStack() as stack:
        stack.callback(car.drivetrain.close)
        stack.enter_context(car.camera)
        if args.autodrive:
            if car.world is None:
                raise HardwareError("--autodrive needs the simulator (robot.sim)")
            pilot = ExpertPilot(car.world, seed=args.seed)
        loop = DriveLoop(config, car.camera, car.drivetrain, pilot=pilot)
        if car.world is not None:
            loop.extra_status["sim"] = car.world.status
        stack.enter_context(_stop_on_signals(loop))
        if pilot is None and model_path is not None:
            loop.swap_pilot(model_path)
        if not config.pilot.model_path and not args.autodrive:
            # Driving models/current: a `deploy push` flips it, and the new
            # model is loaded off the loop and swapped in between frames.
            from robot import modelstore

            store = modelstore.ModelStore(config.home_path)
            stack.enter_context(modelstore.CurrentWatcher(store, loop.swap_pilot))
        loop.set_mode("pilot" if args.autodrive else args.mode)
        stack.enter_context(loop)
        if args.record:
            loop.set_recording(True)
        if args.autodrive:
            return _autodrive(args, loop)
        return _serve(config, loop)


def _wait_for_stop(loop: DriveLoop, timeout_s: float | None = None) -> bool:
    """Wait in short slices, so that signal handlers run promptly."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        remaining = 0.5 if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return False
        if loop.wait(min(0.5, remaining)):
            return True


def _serve(config: RobotConfig, loop: DriveLoop) -> int:
    """Serve the web app until the loop is asked to stop."""
    from robot.web import app as web

    app = web.create_app(config, loop)
    # The web app's server: waitress, with enough threads for video streams
    # and controls, and small send buffers so that video never lags.
    server = web.make_server(app, config.web.host, config.web.port)
    port = getattr(server, "effective_port", config.web.port)
    token = app.config["MALPI_TOKEN"]
    for url in _urls(config.web.host, port):
        print(f"robot: drive at {url}/?token={token}", flush=True)
    print("robot: Ctrl-C stops the car and the server", flush=True)

    thread = threading.Thread(target=server.run, name="web-server", daemon=True)
    thread.start()
    try:
        _wait_for_stop(loop)
    finally:
        loop.stop()
        web.shutdown(app, server)
        thread.join(5.0)
    return _loop_exit_code(loop)


def _loop_exit_code(loop: DriveLoop) -> int:
    error = loop.status()["error"]
    if error:
        print(f"robot: error: drive loop stopped: {error}", file=sys.stderr)
        return 1
    return 0


def _urls(host: str, port: int) -> list[str]:
    if host not in ("0.0.0.0", "::", ""):
        return [f"http://{host}:{port}"]
    return [f"http://{socket.gethostname()}.local:{port}", f"http://127.0.0.1:{port}"]


class ExpertPilot:
    """The simulator's expert, as a pilot: it drives by the car's true pose.

    Its frames are recorded as the person's (mode ``user``): they are
    demonstrations, labelled with the expert's own action even while injected
    noise drives the car off the line.
    """

    record_mode = "user"
    name = "expert"

    def __init__(self, world: Any, seed: int = 0) -> None:
        from robot.sim import expert

        self.world = world
        self.driver = expert.ExpertDriver(world.track, world.config.expert, seed=seed)

    def predict(self, image: np.ndarray) -> Prediction:
        start = time.perf_counter()
        executed, label = self.driver.act(self.world.pose)
        probabilities = np.zeros(NUM_ACTIONS, np.float32)
        probabilities[label] = 1.0
        inference_ms = (time.perf_counter() - start) * 1000.0
        return Prediction(executed, probabilities, inference_ms, label=label)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": None, "runtime": "simulator"}


def _autodrive(args: argparse.Namespace, loop: DriveLoop) -> int:
    """Let the expert drive the simulated car (and record), then exit."""
    duration_s = args.minutes * 60.0
    print(
        f"robot: the expert drives the {args.track} track for {args.minutes:g} "
        f"min{' and records' if args.record else ''}; Ctrl-C stops",
        flush=True,
    )
    start_s = time.monotonic()
    while True:
        left_s = start_s + duration_s - time.monotonic()
        if left_s <= 0 or _wait_for_stop(loop, min(10.0, left_s)):
            break
        status = loop.status()
        sim = status.get("sim") or {}
        print(
            f"robot: {time.monotonic() - start_s:5.0f} s, {status['frames']} frames, "
            f"{sim.get('laps', 0)} laps, {sim.get('departures', 0)} departures",
            flush=True,
        )
    loop.stop()
    status = loop.status()
    if status["drive"]:
        print(
            f"robot: recorded {status['frames']} frames into "
            f"{loop.config.drives_path / status['drive']}"
        )
    return _loop_exit_code(loop)


# --- robot check -------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    config = _load_config(args)
    results: list[tuple[str, str, str]] = []

    def line(ok: bool | None, what: str, detail: str) -> None:
        word = "OK" if ok else "--" if ok is None else "FAIL"
        results.append((word, what, detail))
        print(f"{word:4}  {what:8} {detail}", flush=True)

    # The camera and motors (simulated with --sim).
    image = None
    if args.sim:
        car = _make_car(config, args)
        image = _check_camera(lambda: car.camera, line)
        _check_motors(lambda: car.drivetrain, config, line)
    else:
        image = _check_camera(lambda: make_camera(config.camera), line)
        _check_motors(lambda: make_drivetrain(config.motors), config, line)

    # The model.
    model_path = model_path_of(config)
    runtimes = installed_runtimes()
    line(bool(runtimes), "runtime", ", ".join(runtimes) or "no TFLite runtime")
    if model_path is None:
        line(None, "model", "none: give --model, set pilot.model_path or deploy one")
    else:
        _check_model(model_path, config, image, line)

    # The disk.
    path = config.drives_path
    while not path.exists() and path != path.parent:
        path = path.parent
    free_mb = shutil.disk_usage(path).free / 2**20
    line(free_mb > 500, "disk", f"{free_mb:,.0f} MB free for drives in {path}")
    return 1 if any(word == "FAIL" for word, _, _ in results) else 0


def _check_camera(
    make: Callable[[], Camera], line: Callable[[bool | None, str, str], None]
) -> np.ndarray | None:
    start = time.monotonic()
    try:
        camera = make()
        with camera:
            frame = camera.read(timeout_s=5.0)
    except MalpiError as err:
        line(False, "camera", str(err))
        return None
    elapsed_ms = (time.monotonic() - start) * 1000
    line(
        True,
        "camera",
        f"{camera.name}: {frame.image.shape[1]}x{frame.image.shape[0]} frame in "
        f"{elapsed_ms:.0f} ms",
    )
    return frame.image


def _check_motors(
    make: Callable[[], Drivetrain],
    config: RobotConfig,
    line: Callable[[bool | None, str, str], None],
) -> None:
    try:
        drivetrain = make()
        with drivetrain:
            drivetrain.drive(Action.STOP)
    except MalpiError as err:
        line(False, "motors", str(err))
        return
    where = {
        "gpiozero": f"BCM pins left={config.motors.left_pins} "
        f"right={config.motors.right_pins}",
        "motorhat": f"Motor HAT M{config.motors.hat_left_channel}/"
        f"M{config.motors.hat_right_channel}",
    }.get(drivetrain.name, "")
    line(True, "motors", f"{drivetrain.name}: stop sent {where}".rstrip())


def _check_model(
    model_path: Path,
    config: RobotConfig,
    image: np.ndarray | None,
    line: Callable[[bool | None, str, str], None],
) -> None:
    try:
        pilot = Pilot.load(model_path, runtime=config.pilot.runtime)
        frame = image if image is not None else np.zeros(FRAME_SHAPE, np.uint8)
        pilot.predict(frame)
        prediction = pilot.predict(frame)
    except MalpiError as err:
        line(False, "model", str(err))
        return
    line(
        True,
        "model",
        f"{pilot.name} ({pilot.card.quantization}, {pilot.runtime}): "
        f"{prediction.inference_ms:.2f} ms, says {prediction.action.label}",
    )


# --- robot bench -------------------------------------------------------------------


def bench_inference(
    model_dir: str, runtime: str, frames: int, num_threads: int | None = None
) -> dict[str, Any]:
    """Inference time of one model on one runtime: mean, p50, p99 in ms.

    Run it in a fresh process per runtime (``run_isolated``) so that one
    runtime's libraries do not share a process with another's.
    """
    if runtime == "tensorflow":
        # Quiet TensorFlow's start-up logs and its interpreter's deprecation.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow")
    pilot = Pilot.load(model_dir, runtime=runtime, num_threads=num_threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, *FRAME_SHAPE), dtype=np.uint8)
    for image in images[:5]:
        pilot.predict(image)
    times = [pilot.predict(images[i % len(images)]).inference_ms for i in range(frames)]
    return {
        "model": Path(model_dir).name,
        "quantization": pilot.card.quantization,
        "runtime": pilot.runtime,
        **_summary(times),
    }


def bench_loop(
    model_dir: str | None,
    rate_hz: float = 30.0,
    seconds: float = 5.0,
    record: bool = False,
    home: str | None = None,
) -> dict[str, Any]:
    """Run the real drive loop at ``rate_hz`` in pilot mode on a pattern camera.

    Returns the loop's time per step, the inference time, and their
    difference (the loop's own overhead: frame hand-over, motors, recorder),
    each as mean/p50/p99 ms, with the achieved rate.
    """
    config = RobotConfig(loop_rate_hz=rate_hz, skip_stopped=False)
    config.pilot.max_frame_age_ms = 1000.0
    if home is not None:
        config.home = home
    pilot = Pilot.load(model_dir) if model_dir else None
    samples: list[dict[str, Any]] = []
    with (
        PatternCamera(rate_hz=rate_hz) as camera,
        RecordingDrivetrain() as motors,
        DriveLoop(config, camera, motors, pilot=pilot) as loop,
    ):
        loop.set_mode("pilot" if pilot else "user")
        if record:
            loop.set_recording(True)
        time.sleep(0.5)
        loop.on_step = samples.append
        start_s = time.monotonic()
        while time.monotonic() - start_s < seconds:
            if pilot is None:
                loop.command(Action.FORWARD)  # feeds the deadman
            time.sleep(0.05)
        loop.on_step = None
        elapsed_s = time.monotonic() - start_s
    loop_ms = [s["loop_ms"] for s in samples]
    inference_ms = [s["inference_ms"] or 0.0 for s in samples]
    overhead_ms = [a - b for a, b in zip(loop_ms, inference_ms, strict=True)]
    return {
        "model": Path(model_dir).name if model_dir else None,
        "record": record,
        "rate_hz": rate_hz,
        "achieved_hz": round(len(samples) / elapsed_s, 1),
        "loop_ms": _summary(loop_ms),
        "inference_ms": _summary(inference_ms),
        "overhead_ms": _summary(overhead_ms),
        "frame_age_ms": _summary([s["frame_age_ms"] for s in samples]),
    }


def run_isolated(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in a fresh (spawned) Python process."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 3),
        "p50": round(statistics.median(values), 3),
        "p99": round(p99, 3),
    }


def default_bench_models() -> list[Path]:
    """The tiny float32 and int8 test models, when this is a checkout."""
    return [
        FIXTURE_MODELS / name
        for name in ("tiny-float32", "tiny-int8")
        if (FIXTURE_MODELS / name / MODEL_NAME).is_file()
    ]


def _bench(args: argparse.Namespace) -> int:
    models = [resolve_model_path(m).parent for m in args.model or []]
    models = models or default_bench_models()
    if not models:
        raise HardwareError("no model to benchmark; give --model FOLDER")
    run_bench(models, frames=args.frames, seconds=args.seconds, rate_hz=args.rate)
    return 0


def run_bench(
    models: list[Path],
    *,
    frames: int = 300,
    seconds: float = 5.0,
    rate_hz: float = 30.0,
    print_fn: Callable[[str], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Benchmark inference per runtime and model, then the loop; print tables.

    Each measurement runs in a fresh process. Returns the raw results.
    """
    print_fn = print_fn or _print_now
    results: dict[str, list[dict[str, Any]]] = {"inference": [], "loop": []}
    print_fn(f"inference, {frames} frames per model and runtime (ms per frame):")
    print_fn(
        f"  {'model':<18} {'quant':<8} {'runtime':<15} {'mean':>7} {'p50':>7} "
        f"{'p99':>7}"
    )
    for runtime in installed_runtimes():
        for model in models:
            try:
                result = run_isolated(bench_inference, str(model), runtime, frames)
            except MalpiError as err:
                print_fn(f"  {model.name:<18} {'':8} {runtime:<15} failed: {err}")
                continue
            results["inference"].append(result)
            print_fn(
                f"  {result['model']:<18} {result['quantization']:<8} "
                f"{runtime:<15} {result['mean']:7.2f} {result['p50']:7.2f} "
                f"{result['p99']:7.2f}"
            )

    print_fn(
        f"\ndrive loop in pilot mode at {rate_hz:g} Hz for {seconds:g} s "
        "(ms per step; overhead = loop - inference):"
    )
    print_fn(
        f"  {'model':<18} {'record':<7} {'Hz':>5} {'loop':>7} {'infer':>7} "
        f"{'over':>7} {'over p99':>9}"
    )
    for model in models:
        for record in (False, True):
            with _scratch_home() as home:
                result = run_isolated(
                    bench_loop, str(model), rate_hz, seconds, record, home
                )
            results["loop"].append(result)
            print_fn(
                f"  {result['model']:<18} {str(record):<7} "
                f"{result['achieved_hz']:5.1f} {result['loop_ms']['mean']:7.3f} "
                f"{result['inference_ms']['mean']:7.3f} "
                f"{result['overhead_ms']['mean']:7.3f} "
                f"{result['overhead_ms']['p99']:9.3f}"
            )
    return results


def _print_now(text: str) -> None:
    print(text, flush=True)


@contextmanager
def _scratch_home() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="malpi-bench-") as home:
        yield home
