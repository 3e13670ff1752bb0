"""The web app through Flask's test client, around a real DriveLoop.

The loop runs on the robot's test-pattern camera and its recording
drivetrain (no motors); ``loop.step()`` is called by hand so that each test
sees exactly what one control message did to the motors.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from robot.cameras import PatternCamera
from robot.drivetrains import RecordingDrivetrain
from robot.loop import DriveLoop
from robot.web.app import (
    COOKIE_NAME,
    MJPEG_BOUNDARY,
    create_app,
    make_server,
    stop_streams,
)
from shared.actions import Action
from shared.config import RobotConfig
from shared.drives import Drive, DriveWriter
from shared.errors import ConfigError
from shared.frames import decode_jpeg
from tests.conftest import smooth_frame


@dataclass
class Car:
    config: RobotConfig
    camera: PatternCamera
    drivetrain: RecordingDrivetrain
    loop: DriveLoop
    app: Flask
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_config(home: Path, token: str = "") -> RobotConfig:
    config = RobotConfig(home=str(home), car_name="testcar", skip_stopped=False)
    config.web.token = token
    config.pilot.max_frame_age_ms = 1000.0
    return config


@pytest.fixture
def car(tmp_path: Path) -> Iterator[Car]:
    """A loop that is stepped by hand, and its web app."""
    config = make_config(tmp_path / "malpi")
    camera = PatternCamera(rate_hz=30.0)
    drivetrain = RecordingDrivetrain()
    with camera:
        camera.read(timeout_s=2.0)
        loop = DriveLoop(config, camera, drivetrain)
        app = create_app(config, loop)
        yield Car(config, camera, drivetrain, loop, app, app.config["MALPI_TOKEN"])
        stop_streams(app)
        loop.stop()


@pytest.fixture
def client(car: Car) -> FlaskClient:
    return car.app.test_client()


def all_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, url) of every route, with example values for its arguments."""
    examples = {"name": "somedrive", "index": "0", "filename": "malpi.css"}
    routes = []
    for rule in app.url_map.iter_rules():
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", examples[arg])
            url = url.replace(f"<path:{arg}>", examples[arg])
            url = url.replace(f"<{arg}>", examples[arg])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, url))
    return routes


# --- access ------------------------------------------------------------------


def test_app_refuses_every_route_without_token(car: Car, client: FlaskClient) -> None:
    routes = all_routes(car.app)
    assert ("GET", "/video.mjpg") in routes
    assert ("POST", "/api/control") in routes
    assert ("GET", "/static/malpi.css") in routes

    for method, url in routes:
        response = client.open(url, method=method, json={"action": "forward"})
        assert response.status_code == 401, (method, url)
        text = response.get_data(as_text=True)
        assert text.count("\n") == 1 and "token" in text, (method, url)
        assert "printed at start-up" in text
    assert car.loop.status()["user_action"] == "stop"


def test_app_refuses_wrong_token_in_query_header_and_cookie(
    car: Car, client: FlaskClient
) -> None:
    assert client.get("/?token=wrong").status_code == 401
    bad_header = {"Authorization": "Bearer wrong"}
    assert client.get("/api/status", headers=bad_header).status_code == 401
    client.set_cookie(COOKIE_NAME, "wrong")
    assert client.get("/api/status").status_code == 401
    assert client.get("/video.mjpg").status_code == 401


def test_app_token_in_url_sets_cookie_and_redirects_to_clean_url(
    car: Car, client: FlaskClient
) -> None:
    response = client.get(f"/drives?token={car.token}&x=1")

    assert response.status_code == 303
    assert response.headers["Location"] == "/drives?x=1"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}={car.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert b"/video.mjpg" in page.data
    assert client.get("/api/status").status_code == 200


def test_app_status_poll_with_the_token_is_a_heartbeat(
    car: Car, client: FlaskClient
) -> None:
    car.loop.set_mode("pilot")
    assert client.get("/api/status").status_code == 401
    assert car.loop._last_heartbeat_s is None
    assert car.loop._browser_watching is False

    assert client.get("/api/status", headers=car.auth).status_code == 200
    assert car.loop._last_heartbeat_s is not None
    assert car.loop._browser_watching is True


def test_app_mode_set_from_the_page_arms_the_browser_watch(
    car: Car, client: FlaskClient
) -> None:
    response = client.post("/api/control", json={"mode": "pilot"}, headers=car.auth)
    assert response.status_code == 204
    assert car.loop.mode == "pilot"
    assert car.loop._browser_watching is True


def test_app_accepts_bearer_header(car: Car, client: FlaskClient) -> None:
    response = client.get("/api/status", headers=car.auth)

    assert response.status_code == 200
    status = response.get_json()
    assert status["mode"] == "user"
    assert status["camera"] == "pattern"
    assert response.headers["Cache-Control"] == "no-store"


def test_create_app_token_from_config_or_random(car: Car, tmp_path: Path) -> None:
    fixed = create_app(make_config(tmp_path, token="s3cret-token"), car.loop)
    other = create_app(make_config(tmp_path), car.loop)

    assert fixed.config["MALPI_TOKEN"] == "s3cret-token"
    assert len(car.token) >= 20
    assert other.config["MALPI_TOKEN"] != car.token


# --- control -----------------------------------------------------------------

MALFORMED = [
    b"not json",
    b"",
    b"[]",
    b'"forward"',
    b"{}",
    b'{"action": "fly"}',
    b'{"action": "FORWARD "}',
    b'{"action": 1}',
    b'{"action": null}',
    b'{"action": ["forward"]}',
    b'{"mode": "autopilot"}',
    b'{"mode": 2}',
    b'{"recording": "yes"}',
    b'{"recording": 1}',
    b'{"skip_stopped": null}',
    b'{"action": "forward", "speed": 2}',
    b'{"action": "forward", "mode": "bogus"}',
    b'{"action": "forward", "recording": "on"}',
]


@pytest.mark.parametrize("body", MALFORMED)
def test_control_refuses_malformed_message_without_moving(
    car: Car, client: FlaskClient, body: bytes
) -> None:
    response = client.post(
        "/api/control",
        data=body,
        headers={**car.auth, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert isinstance(error, str) and error and "\n" not in error
    assert car.loop.step() is Action.STOP
    assert car.drivetrain.action is Action.STOP
    assert car.drivetrain.values == (0.0, 0.0)
    status = car.loop.status()
    assert status["user_action"] == "stop"
    assert status["mode"] == "user" and status["recording"] is False


def test_control_action_drives_until_stop(car: Car, client: FlaskClient) -> None:
    response = client.post("/api/control", json={"action": "forward"}, headers=car.auth)

    assert response.status_code == 204
    assert car.loop.step() is Action.FORWARD
    assert car.drivetrain.values[0] > 0 and car.drivetrain.values[1] > 0
    client.post("/api/control", json={"action": "stop"}, headers=car.auth)
    assert car.loop.step() is Action.STOP


def test_control_sets_mode_recording_and_skip_stopped(
    car: Car, client: FlaskClient
) -> None:
    for message in (
        {"mode": "correction"},
        {"recording": True},
        {"skip_stopped": True},
    ):
        response = client.post("/api/control", json=message, headers=car.auth)
        assert response.status_code == 204

    status = client.get("/api/status", headers=car.auth).get_json()
    assert status["mode"] == "correction"
    assert status["recording"] is True and status["drive"]
    assert status["skip_stopped"] is True
    client.post("/api/control", json={"recording": False}, headers=car.auth)
    assert car.loop.status()["recording"] is False
    assert (car.config.drives_path / status["drive"] / "drive.json").is_file()


def test_control_refuses_oversized_body(car: Car, client: FlaskClient) -> None:
    body = json.dumps({"action": "forward", "pad": "x" * 20000})
    response = client.post(
        "/api/control",
        data=body,
        headers={**car.auth, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert car.loop.status()["user_action"] == "stop"


# --- video -------------------------------------------------------------------


def test_video_sends_each_new_frame_once(car: Car, client: FlaskClient) -> None:
    response = client.get("/video.mjpg", headers=car.auth)
    assert response.status_code == 200
    assert response.mimetype == "multipart/x-mixed-replace"
    assert response.mimetype_params["boundary"] == MJPEG_BOUNDARY

    parts = response.iter_encoded()
    indices = []
    for _ in range(5):
        part = next(parts)
        head, _, body = part.partition(b"\r\n\r\n")
        headers = dict(
            line.split(": ", 1) for line in head.decode().splitlines()[1:] if line
        )
        jpeg = body[: int(headers["Content-Length"])]
        assert decode_jpeg(jpeg).shape == (120, 120, 3)
        indices.append(int(headers["X-Frame-Index"]))
    response.close()

    assert indices == sorted(set(indices)), indices


def test_video_stream_ends_when_streams_are_stopped(
    car: Car, client: FlaskClient
) -> None:
    response = client.get("/video.mjpg", headers=car.auth)
    parts = response.iter_encoded()
    next(parts)
    stop_streams(car.app)

    rest = list(parts)

    assert len(rest) <= 2
    assert (
        car.app.test_client()
        .get("/api/status", headers=car.auth)
        .get_json()["video_clients"]
        == 0
    )


def test_still_frame_is_the_newest_camera_frame(car: Car, client: FlaskClient) -> None:
    response = client.get("/frame.jpg", headers=car.auth)

    assert response.mimetype == "image/jpeg"
    assert decode_jpeg(response.data).shape == (120, 120, 3)
    assert int(response.headers["X-Frame-Index"]) <= car.camera.latest().index


def test_map_is_absent_without_a_simulator(car: Car, client: FlaskClient) -> None:
    assert client.get("/map.png", headers=car.auth).status_code == 404
    assert client.get("/api/status", headers=car.auth).get_json()["map_url"] is None


# --- drives ------------------------------------------------------------------


def write_drive(drives_path: Path, name: str, actions: list[Action]) -> Path:
    with DriveWriter.create(drives_path, name=name, car="testcar") as writer:
        for index, action in enumerate(actions):
            writer.append(smooth_frame(index), action, t_mono_s=10.0 + index / 20)
    return writer.path


def test_drives_api_lists_steps_relabels_excludes_and_undoes(
    car: Car, client: FlaskClient
) -> None:
    path = write_drive(car.config.drives_path, "d1", [Action.FORWARD] * 6)
    auth = car.auth

    listing = client.get("/api/drives", headers=auth).get_json()["drives"]
    assert [d["name"] for d in listing] == ["d1"]
    assert listing[0]["frames"] == 6 and listing[0]["counts"]["forward"] == 6
    frame = client.get("/api/drives/d1/frames/3.jpg", headers=auth)
    assert decode_jpeg(frame.data).shape == (120, 120, 3)

    def edit(message: dict) -> dict:
        response = client.post("/api/drives/d1/edit", json=message, headers=auth)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    edit({"op": "relabel", "indices": [1, 2], "action": "left"})
    detail = edit({"op": "exclude", "indices": [0]})
    assert detail["counts"] == {
        "stop": 0,
        "forward": 3,
        "left": 2,
        "right": 0,
        "backward": 0,
    }
    assert detail["frames"][0]["excluded"] is True
    assert detail["frames"][1] == {
        "index": 1,
        "action": "left",
        "recorded": "forward",
        "mode": "user",
        "excluded": False,
    }
    listing = client.get("/api/drives", headers=auth).get_json()["drives"]
    assert listing[0]["counts"]["left"] == 2 and listing[0]["excluded"] == 1
    edit({"op": "undo"})
    drive = Drive.open(path)
    assert len(drive) == 6
    assert [r.action for r in drive][:3] == [Action.FORWARD, Action.LEFT, Action.LEFT]


@pytest.mark.parametrize(
    "message",
    [
        {"op": "delete", "indices": [0]},
        {"op": "exclude", "indices": []},
        {"op": "exclude", "indices": ["0"]},
        {"op": "exclude", "indices": [99]},
        {"op": "relabel", "indices": [0], "action": "jump"},
        {"op": "undo", "extra": "ignored but no edit to undo"},
    ],
)
def test_drives_api_refuses_bad_edit(
    car: Car, client: FlaskClient, message: dict
) -> None:
    path = write_drive(car.config.drives_path, "d2", [Action.LEFT] * 3)

    response = client.post("/api/drives/d2/edit", json=message, headers=car.auth)

    assert response.status_code == 400
    assert "\n" not in response.get_json()["error"]
    assert [r.action for r in Drive.open(path)] == [Action.LEFT] * 3


@pytest.mark.parametrize("name", ["nosuch", "..", ".hidden", "d3%2F..%2F.."])
def test_drives_api_answers_404_for_unknown_drive(
    car: Car, client: FlaskClient, name: str
) -> None:
    write_drive(car.config.drives_path, "d3", [Action.STOP])

    response = client.get(f"/api/drives/{name}", headers=car.auth)

    assert response.status_code == 404


def test_make_server_port_in_use_is_a_one_line_error(car: Car) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}.*--port") as err:
            make_server(car.app, "127.0.0.1", port)
    assert "\n" not in str(err.value)
