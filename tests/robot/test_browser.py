"""End to end in a real browser: headless Chromium against the served app.

The car is the real ``robot drive --sim`` command (the simulator's camera
and motors, a real ``DriveLoop``, the app served by waitress) on a free
loopback port; the tests open the URL and token it prints. The browser is
Debian's Chromium driven by Playwright. What the car does is read back over
HTTP from ``/api/status``. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from robot.loop import DriveLoop
from robot.pilot import Pilot
from robot.sim.backends import make_sim_backends
from robot.web.app import create_app, make_server, shutdown
from shared.actions import Action
from shared.drives import Drive, DriveWriter
from tests.conftest import smooth_frame
from tests.robot.test_web import make_config

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A tiny real TFLite model: the pilot in pilot and correction modes.
TINY_MODEL = (
    Path(__file__).resolve().parents[1] / "fixtures" / "models" / "tiny-float32"
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}


@dataclass
class ServedCar:
    url: str
    token: str
    drives_path: Path

    def status(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/status",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def control(self, message: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{self.url}/api/control",
            data=json.dumps(message).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 204

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
    ) -> dict[str, Any]:
        """Poll the status until ``check`` holds; fail with the last status."""
        deadline = time.monotonic() + timeout_s
        status = self.status()
        while not check(status):
            if time.monotonic() > deadline:
                pytest.fail(f"the car never reached the expected state: {status}")
            time.sleep(0.05)
            status = self.status()
        return status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def robot_drive_sim(folder: Path) -> Iterator[ServedCar]:
    """Run ``robot drive --sim`` and read its URL and token from its output."""
    home = folder / "malpi"
    config_path = folder / "robot.toml"
    config_path.write_text(
        f'home = "{home}"\n'
        'car_name = "testcar"\n'
        "skip_stopped = false\n"
        "[camera]\nrate_hz = 20.0\n"
        f'[web]\nhost = "127.0.0.1"\nport = {free_port()}\n'
    )
    log_path = folder / "robot-drive.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "robot.cli", "drive", "--sim"]
            + ["--config", str(config_path), "--model", str(TINY_MODEL)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    try:
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline and process.poll() is None:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if "drive at " in line:
                url = line.split("drive at ", 1)[1].strip()
        if not url:
            pytest.fail(f"robot drive --sim printed no URL: {log_path.read_text()}")
        parts = urllib.parse.urlsplit(url)
        token = urllib.parse.parse_qs(parts.query)["token"][0]
        car = ServedCar(f"{parts.scheme}://{parts.netloc}", token, home / "drives")
        car.wait_for(lambda s: s["fps"] is not None, timeout_s=30)
        yield car
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def served_in_process(folder: Path) -> Iterator[ServedCar]:
    """The same car as ``robot drive --sim``, served from this process."""
    config = make_config(folder / "malpi")
    config.camera.rate_hz = 20.0
    world, camera, drivetrain = make_sim_backends(camera_rate_hz=20.0)
    pilot = Pilot.load(TINY_MODEL)
    with camera, drivetrain, DriveLoop(config, camera, drivetrain, pilot) as loop:
        loop.extra_status["sim"] = world.status
        app = create_app(config, loop)
        server = make_server(app, "127.0.0.1", 0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            yield ServedCar(
                url=f"http://127.0.0.1:{server.effective_port}",
                token=app.config["MALPI_TOKEN"],
                drives_path=config.drives_path,
            )
        finally:
            shutdown(app, server)
            thread.join(5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCar]:
    """The simulated car and its web app, served by waitress on 127.0.0.1.

    The real ``robot drive --sim`` command when it is installed; otherwise
    the same loop, app and server built here.
    """
    folder = tmp_path_factory.mktemp("car")
    if importlib.util.find_spec("robot.drive_cli") is not None:
        with robot_drive_sim(folder) as car:
            yield car
    else:
        with served_in_process(folder) as car:
            yield car


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, served: ServedCar) -> Iterator[Any]:
    """A fresh browser context (no cookie yet) on the driving page.

    Fails the test if the page's scripts threw anything.
    """
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(f"{served.url}/?token={served.token}")
    page.wait_for_selector("#conn[data-state=ok]")
    yield page
    page.keyboard.press("Space")
    context.close()
    served.wait_for(lambda s: s["action"] == "stop")
    assert script_errors == []


SCROLLS_SIDEWAYS = "document.documentElement.scrollWidth > window.innerWidth"


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def video_pixels(page: Any) -> str:
    """The video <img>'s current picture, drawn on a canvas, as a data URL."""
    return page.evaluate(
        """() => {
            const img = document.getElementById("video");
            const canvas = document.createElement("canvas");
            canvas.width = img.naturalWidth;
            canvas.height = img.naturalHeight;
            canvas.getContext("2d").drawImage(img, 0, 0);
            return canvas.toDataURL();
        }"""
    )


# --- access ------------------------------------------------------------------


def test_browser_refused_without_token(browser: Any, served: ServedCar) -> None:
    context = browser.new_context()
    page = context.new_page()

    response = page.goto(f"{served.url}/")
    video = page.request.get(f"{served.url}/video.mjpg")

    assert response.status == 401
    assert "token" in page.inner_text("body")
    assert video.status == 401
    context.close()


def test_browser_token_url_becomes_clean_url(page: Any, served: ServedCar) -> None:
    assert page.url == f"{served.url}/"
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("malpi_token", True, "Strict")
    ]


# --- video -------------------------------------------------------------------


def test_browser_shows_live_video(page: Any, served: ServedCar) -> None:
    page.wait_for_function("document.getElementById('video').naturalWidth > 0")
    page.keyboard.down("ArrowUp")  # a moving car sees a changing view
    served.wait_for(lambda s: s["action"] == "forward")
    first = video_pixels(page)

    page.wait_for_timeout(400)
    second = video_pixels(page)
    page.keyboard.up("ArrowUp")

    assert page.eval_on_selector("#video", "img => img.naturalWidth") == 120
    page.wait_for_function("document.getElementById('map').naturalWidth > 0")
    assert page.is_visible("#map")  # the simulator's top-down map
    assert page.eval_on_selector("#video", "img => img.clientWidth") > 300
    assert first != second


def test_browser_hidden_page_stops_car_and_closes_video(
    page: Any, served: ServedCar
) -> None:
    page.wait_for_function("document.getElementById('video').naturalWidth > 0")
    served.wait_for(lambda s: s["video_clients"] >= 1)
    page.keyboard.down("ArrowUp")
    served.wait_for(lambda s: s["action"] == "forward")

    page.evaluate(SET_HIDDEN.replace("HIDDEN", "true"))
    hidden = served.wait_for(
        lambda s: s["video_clients"] == 0 and s["user_action"] == "stop"
    )
    page.evaluate(SET_HIDDEN.replace("HIDDEN", "false"))
    shown = served.wait_for(lambda s: s["video_clients"] >= 1)
    page.keyboard.up("ArrowUp")

    assert hidden["action"] == "stop"
    assert shown["mode"] == "user"


# The tab going to the background, as the page sees it.
SET_HIDDEN = """() => {
    Object.defineProperty(document, "hidden", {value: HIDDEN, configurable: true});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


# --- driving -----------------------------------------------------------------


def test_browser_held_button_drives_and_release_stops(
    page: Any, served: ServedCar
) -> None:
    button = page.locator(".pad-btn[data-action=forward]")
    box = button.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    page.mouse.down()
    served.wait_for(lambda s: s["action"] == "forward")
    page.wait_for_timeout(1200)  # well past the 500 ms deadman
    held = served.status()
    page.mouse.up()
    released = served.wait_for(lambda s: s["action"] == "stop", timeout_s=2.0)

    assert held["action"] == "forward" and held["deadman"] is False
    assert released["user_action"] == "stop"


def test_browser_keyboard_drives(page: Any, served: ServedCar) -> None:
    page.keyboard.down("ArrowLeft")
    served.wait_for(lambda s: s["action"] == "left")
    page.keyboard.up("ArrowLeft")
    served.wait_for(lambda s: s["action"] == "stop")

    page.keyboard.down("d")
    served.wait_for(lambda s: s["action"] == "right")
    page.keyboard.press("Space")
    status = served.wait_for(lambda s: s["action"] == "stop")
    page.keyboard.up("d")

    assert status["user_action"] == "stop"


def test_browser_touch_hold_drives_on_a_phone(browser: Any, served: ServedCar) -> None:
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(f"{served.url}/?token={served.token}")
    page.wait_for_selector("#conn[data-state=ok]")
    box = page.locator(".pad-btn[data-action=right]").bounding_box()
    point = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    touch = context.new_cdp_session(page)

    touch.send(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point]}
    )
    served.wait_for(lambda s: s["action"] == "right")
    page.wait_for_timeout(800)  # held past the deadman
    held = served.status()
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    released = served.wait_for(lambda s: s["action"] == "stop")
    context.close()

    assert held["action"] == "right"
    assert released["user_action"] == "stop"


# A stand-in for a gamepad: Playwright cannot plug one in, so the page's
# navigator.getGamepads() returns this object, in the standard mapping.
FAKE_GAMEPAD = """
window.testPad = {
    id: "Test pad (STANDARD GAMEPAD)", index: 0, connected: true,
    mapping: "standard", timestamp: 0, axes: [0, 0, 0, 0],
    buttons: Array.from({length: 17}, () => ({pressed: false, value: 0})),
};
navigator.getGamepads = () => [window.testPad];
"""


def test_browser_gamepad_stick_and_dpad_drive(page: Any, served: ServedCar) -> None:
    page.add_init_script(FAKE_GAMEPAD)
    page.reload()
    page.wait_for_selector("#conn[data-state=ok]")
    page.evaluate("window.dispatchEvent(new Event('gamepadconnected'))")
    page.wait_for_selector("#gamepad:text('Test pad')")

    page.evaluate("window.testPad.axes[0] = -0.9")  # left stick to the left
    served.wait_for(lambda s: s["action"] == "left")
    page.evaluate("window.testPad.axes[0] = 0.1")  # back inside the dead zone
    served.wait_for(lambda s: s["action"] == "stop")
    page.evaluate("window.testPad.buttons[12].pressed = true")  # d-pad up
    served.wait_for(lambda s: s["action"] == "forward")
    page.evaluate("window.testPad.buttons[12].pressed = false")
    status = served.wait_for(lambda s: s["action"] == "stop")

    assert status["user_action"] == "stop"


def test_browser_deadman_stops_silent_page(page: Any, served: ServedCar) -> None:
    # One control message, then silence: the loop must stop the car by itself.
    page.evaluate(
        """() => fetch("/api/control", {method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({action: "backward"})})"""
    )
    moving = served.wait_for(lambda s: s["action"] == "backward")
    stopped = served.wait_for(lambda s: s["action"] == "stop", timeout_s=3.0)

    assert moving["deadman"] is False
    assert stopped["deadman"] is True
    assert stopped["user_action"] == "backward"


def test_browser_records_held_forward_as_forward_labels(
    page: Any, served: ServedCar
) -> None:
    page.click("label.switch")  # do not record while stopped
    served.wait_for(lambda s: s["skip_stopped"] is True)
    page.click("#record")
    recording = served.wait_for(lambda s: s["recording"] is True)
    page.wait_for_selector("#record[aria-pressed=true]")

    button = page.locator(".pad-btn[data-action=forward]")
    box = button.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    served.wait_for(lambda s: s["action"] == "forward")
    page.wait_for_timeout(2000)
    page.wait_for_function(
        "document.getElementById('st-frames').textContent !== '0 frames'"
    )
    screenshot(page, "drive-laptop-recording")
    page.mouse.up()
    served.wait_for(lambda s: s["action"] == "stop")
    page.wait_for_timeout(300)
    page.click("#record")
    served.wait_for(lambda s: s["recording"] is False)
    page.click("label.switch")
    served.wait_for(lambda s: s["skip_stopped"] is False)

    drive = Drive.open(served.drives_path / recording["drive"])
    labels = [record.action for record in drive]
    assert len(labels) >= 10
    assert set(labels) == {Action.FORWARD}
    assert {record.mode for record in drive} == {"user"}


def test_browser_correction_mode_records_the_persons_corrections(
    page: Any, served: ServedCar
) -> None:
    page.click("[data-mode=correction]")
    served.wait_for(lambda s: s["mode"] == "correction")
    page.wait_for_selector("#st-model:text('tiny')")
    page.click("#record")
    recording = served.wait_for(lambda s: s["recording"] is True)

    # The pilot drives; holding left overrides it and is recorded as a fix.
    page.wait_for_timeout(500)
    page.keyboard.down("ArrowLeft")
    served.wait_for(lambda s: s["action"] == "left")
    page.wait_for_timeout(1000)
    page.keyboard.up("ArrowLeft")
    page.wait_for_timeout(500)
    page.click("#record")
    served.wait_for(lambda s: s["recording"] is False)
    page.click("[data-mode=user]")
    served.wait_for(lambda s: s["mode"] == "user")

    drive = Drive.open(served.drives_path / recording["drive"])
    fixes = [r.action for r in drive if r.mode == "correction"]
    assert len(fixes) >= 5 and set(fixes) == {Action.LEFT}
    assert {r.mode for r in drive} == {"pilot", "correction"}


def test_browser_mode_buttons_switch_mode(page: Any, served: ServedCar) -> None:
    page.click("[data-mode=pilot]")
    served.wait_for(lambda s: s["mode"] == "pilot")
    page.wait_for_selector("[data-mode=pilot][aria-pressed=true]")
    piloting = served.wait_for(lambda s: s["inference_ms"] is not None)
    page.click("[data-mode=user]")
    # Back in user mode with nothing held, the car stops.
    status = served.wait_for(lambda s: s["mode"] == "user" and s["action"] == "stop")
    page.wait_for_selector("[data-mode=user][aria-pressed=true]")

    assert piloting["model"]["name"]
    assert status["user_action"] == "stop"


def test_browser_closing_the_page_stops_the_pilot(
    browser: Any, served: ServedCar
) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{served.url}/?token={served.token}")
    page.wait_for_selector("#conn[data-state=ok]")
    page.click("[data-mode=pilot]")
    page.wait_for_selector("[data-mode=pilot][aria-pressed=true]")
    served.wait_for(lambda s: s["mode"] == "pilot")
    context.close()

    # Polled more slowly than the deadman, so these polls cannot keep it alive.
    deadline = time.monotonic() + 5.0
    status = served.status()
    while status["mode"] != "user" and time.monotonic() < deadline:
        time.sleep(0.7)
        status = served.status()
    assert status["mode"] == "user", status
    assert status["message"] == (
        "pilot stopped: the controlling browser went quiet for 500 ms"
    )
    assert served.wait_for(lambda s: s["action"] == "stop")["mode"] == "user"


# --- drives page -------------------------------------------------------------

REVIEW_ACTIONS = [Action.FORWARD, Action.LEFT, Action.RIGHT, Action.STOP] * 10


@pytest.fixture(scope="module")
def review_drive(served: ServedCar) -> Path:
    """A recorded drive of every action but backward."""
    with DriveWriter.create(served.drives_path, name="review", car="t") as writer:
        for index, action in enumerate(REVIEW_ACTIONS):
            writer.append(smooth_frame(index), action, t_mono_s=index / 20)
    return writer.path


def test_browser_drives_page_steps_relabels_and_undoes(
    page: Any, served: ServedCar, review_drive: Path
) -> None:
    actions = REVIEW_ACTIONS

    page.goto(f"{served.url}/drives#review/0")
    page.wait_for_selector("#v-name:text('review')")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#v-index:text-is('1')")
    page.keyboard.press("Digit4")  # relabel frame 1 as backward
    page.wait_for_selector("#v-action:text-is('backward')")
    assert Drive.open(review_drive).records[1].action is Action.BACKWARD
    page.keyboard.press("KeyX")
    page.wait_for_selector("#v-excluded", state="visible")
    assert len(Drive.open(review_drive)) == len(actions) - 1
    screenshot(page, "drives-laptop")

    page.keyboard.press("KeyU")
    page.wait_for_selector("#v-excluded", state="hidden")
    page.keyboard.press("KeyU")
    page.wait_for_selector("#v-action:text-is('left')")
    restored = Drive.open(review_drive)
    assert [r.action for r in restored] == actions


# --- screenshots -------------------------------------------------------------


def test_browser_screenshots_phone_and_laptop(
    browser: Any, served: ServedCar, review_drive: Path
) -> None:
    # A short recorded drive to show, driven over the API as a script would.
    served.control({"recording": True})
    for _ in range(15):
        served.control({"action": "forward"})
        time.sleep(0.1)
    served.control({"action": "stop"})
    served.control({"recording": False})

    for name, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
        context = browser.new_context(
            viewport=viewport, device_scale_factor=2 if name == "phone" else 1
        )
        page = context.new_page()
        page.goto(f"{served.url}/?token={served.token}")
        page.wait_for_function("document.getElementById('video').naturalWidth > 0")
        page.wait_for_selector("#conn[data-state=ok]")
        page.wait_for_timeout(600)
        shots = [screenshot(page, f"drive-{name}")]
        if name == "phone":
            shots.append(screenshot(page, "drive-phone-full", full_page=True))
        overflows = [page.evaluate(SCROLLS_SIDEWAYS)]
        page.goto(f"{served.url}/drives")
        page.click(".drive-item:not([data-drive=review])")  # one recorded here
        page.wait_for_selector("#v-name:not(:text-is('review'))")
        page.keyboard.press("End")
        page.wait_for_timeout(300)
        shots.append(screenshot(page, f"drives-{name}"))
        if name == "phone":
            shots.append(screenshot(page, "drives-phone-full", full_page=True))
        overflows.append(page.evaluate(SCROLLS_SIDEWAYS))
        context.close()

        assert all(shot.stat().st_size > 10_000 for shot in shots)
        assert overflows == [False, False], f"a {name} page scrolls sideways"
