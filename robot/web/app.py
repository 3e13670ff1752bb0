"""The Flask app that drives the car from a browser.

``create_app(config, loop)`` wraps a running ``DriveLoop``:

- ``GET /`` the driving page, ``GET /drives`` the drive review page;
- ``GET /video.mjpg`` live MJPEG, each new camera frame once (a slow client
  skips frames rather than queueing them); each part carries its camera frame
  index in an ``X-Frame-Index`` header;
- ``POST /api/control`` a small JSON object with any of ``action``, ``mode``,
  ``recording`` and ``skip_stopped``; every ``action`` also feeds the loop's
  deadman, so a page keeps sending while a control is held, and every message
  is a browser heartbeat (see below);
- ``GET /frame.jpg`` the newest frame alone, ``GET /map.png`` the simulator's
  top-down map (404 on a real car);
- ``GET /api/status`` the loop's status; each call is a browser heartbeat,
  so the driving page's polling keeps a pilot driving and its silence stops
  it (``DriveLoop.heartbeat``; the token check runs first, so only an
  authenticated page counts);
- ``GET /api/drives``, ``GET /api/drives/<name>``,
  ``GET /api/drives/<name>/frames/<index>.jpg`` and
  ``POST /api/drives/<name>/edit`` to review and clean recorded drives.

Every route, static files and video included, needs the access token: a
``?token=...`` in the URL sets an HttpOnly cookie and redirects to the clean
URL, and scripts may send ``Authorization: Bearer <token>`` instead.

``make_server``/``serve`` run the app under waitress, the production WSGI
server. Waitress flushes every chunk an app yields (its deprecated
``send_bytes`` option already defaults to one byte), so MJPEG parts leave as
soon as they are made; its output buffer and each socket's send buffer are
kept to a few frames, so that a client on a slow link gets fresh frames
rather than a growing backlog.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import waitress
from flask import Flask, Response, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from PIL import Image
from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer

from shared import __version__
from shared.actions import ACTION_LABELS, Action
from shared.config import RobotConfig
from shared.drives import EDITS_NAME, LABELS_NAME, META_NAME, MODES, Drive
from shared.errors import ConfigError, DriveError, HardwareError, MalpiError
from shared.frames import encode_jpeg

log = logging.getLogger(__name__)

COOKIE_NAME = "malpi_token"
#: Control and edit messages are tiny; anything bigger is refused unread.
MAX_BODY_BYTES = 16 * 1024
MJPEG_BOUNDARY = "malpiframe"
#: How long a video stream waits for a frame before checking for shutdown.
FRAME_WAIT_S = 1.0
#: Bytes a connection may buffer on the server side: about two video frames.
SEND_BUFFER_BYTES = 8 * 1024
#: Waitress worker threads: each open video stream holds one.
SERVER_THREADS = 8
UNAUTHORIZED_TEXT = (
    "401 Unauthorized: this car needs its access token; open the URL that "
    "`robot drive` printed at start-up (it ends in ?token=...).\n"
)
WRONG_TOKEN_TEXT = (
    "401 Unauthorized: that token is wrong; open the URL that `robot drive` "
    "printed at start-up (a new token is made at each start unless "
    "[web] token is set in robot.toml).\n"
)
CONTROL_KEYS = ("action", "mode", "recording", "skip_stopped")
EDIT_OPS = ("exclude", "include", "relabel", "undo")


class BadRequest(MalpiError, ValueError):
    """A request body the app refuses; its message goes back as the error."""


class _JpegCache:
    """The newest camera frame as JPEG, encoded once for every video client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index = -1
        self._jpeg = b""

    def get(self, index: int, image: Any) -> bytes:
        with self._lock:
            if index != self._index:
                self._jpeg = encode_jpeg(image)
                self._index = index
            return self._jpeg


class _SummaryCache:
    """Each drive's listing entry, re-read only when its labels or edits change.

    Reading a drive checks every frame file, so the drives page, which polls
    the list, would otherwise stat every frame of every drive each time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple[int, ...], dict[str, Any]]] = {}

    def get(self, path: Path) -> dict[str, Any]:
        key = _change_key(path)
        with self._lock:
            cached = self._entries.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        summary = _drive_summary(path)
        with self._lock:
            self._entries[path] = (key, summary)
        return summary


def _change_key(path: Path) -> tuple[int, ...]:
    key: list[int] = []
    for name in (LABELS_NAME, EDITS_NAME):
        try:
            stat = (path / name).stat()
            key += [stat.st_size, stat.st_mtime_ns]
        except OSError:
            key += [-1, -1]
    return tuple(key)


def _drive_summary(path: Path) -> dict[str, Any]:
    try:
        drive = Drive.open(path)
    except DriveError as err:
        return {"name": path.name, "error": str(err)}
    stats = drive.stats()
    return {
        "name": drive.name,
        "created": drive.meta.get("created", ""),
        "frames": stats.frames,
        "excluded": drive.report.excluded,
        "counts": stats.counts,
        "duration_s": round(stats.duration_s, 2),
        "fps": round(stats.fps, 2),
    }


def create_app(config: RobotConfig, loop: Any) -> Flask:
    """Build the web app around a started ``DriveLoop``.

    The token is ``config.web.token`` or, when that is empty, a new random one;
    either way it is in ``app.config["MALPI_TOKEN"]`` for ``robot drive`` to
    print. ``stop_streams(app)`` ends open video streams at shutdown.
    """
    app = Flask(__name__)
    token = config.web.token or secrets.token_urlsafe(18)
    app.config["MALPI_TOKEN"] = token
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 0
    streams_stop = threading.Event()
    app.extensions["malpi"] = {"loop": loop, "streams_stop": streams_stop}
    jpeg_cache = _JpegCache()
    streams = {"open": 0}
    streams_lock = threading.Lock()
    drives_path = config.drives_path
    summaries = _SummaryCache()

    # --- access ---------------------------------------------------------------

    @app.before_request
    def check_token() -> ResponseReturnValue | None:
        given = request.args.get("token")
        if given is not None:
            if not secrets.compare_digest(given.encode(), token.encode()):
                return _text(WRONG_TOKEN_TEXT, 401)
            if request.method in ("GET", "HEAD"):
                return _set_cookie_and_redirect(token)
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            if secrets.compare_digest(header[7:].strip().encode(), token.encode()):
                return None
            return _text(WRONG_TOKEN_TEXT, 401)
        cookie = request.cookies.get(COOKIE_NAME, "")
        if cookie and secrets.compare_digest(cookie.encode(), token.encode()):
            return None
        return _text(UNAUTHORIZED_TEXT, 401)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        )
        if request.path.startswith("/api/") or request.path.endswith(".mjpg"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(413)
    def too_large(_: Exception) -> ResponseReturnValue:
        return _error(f"request body is over {MAX_BODY_BYTES} bytes", 413)

    @app.errorhandler(404)
    def not_found(_: Exception) -> ResponseReturnValue:
        if request.path.startswith("/api/"):
            return _error(f"no such resource {request.path!r}", 404)
        return _text(f"404 Not Found: {request.path}\n", 404)

    @app.errorhandler(405)
    def wrong_method(_: Exception) -> ResponseReturnValue:
        return _error(f"{request.method} is not allowed on {request.path!r}", 405)

    # --- pages ----------------------------------------------------------------

    @app.get("/")
    def drive_page() -> ResponseReturnValue:
        return render_template(
            "drive.html",
            car=config.car_name,
            actions=ACTION_LABELS,
            version=__version__,
            deadman_ms=loop.deadman_ms,
        )

    @app.get("/drives")
    def drives_page() -> ResponseReturnValue:
        return render_template(
            "drives.html",
            car=config.car_name,
            actions=ACTION_LABELS,
            version=__version__,
        )

    # --- video ----------------------------------------------------------------

    @app.get("/video.mjpg")
    def video() -> ResponseReturnValue:
        def parts() -> Iterator[bytes]:
            last_index = -1
            with streams_lock:
                streams["open"] += 1
            try:
                while not streams_stop.is_set():
                    try:
                        frame = loop.camera.read(
                            after_index=last_index, timeout_s=FRAME_WAIT_S
                        )
                    except HardwareError:
                        continue
                    last_index = frame.index
                    jpeg = jpeg_cache.get(frame.index, frame.image)
                    head = (
                        f"--{MJPEG_BOUNDARY}\r\n"
                        "Content-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n"
                        f"X-Frame-Index: {frame.index}\r\n\r\n"
                    )
                    yield head.encode("ascii") + jpeg + b"\r\n"
            finally:
                with streams_lock:
                    streams["open"] -= 1

        return Response(
            parts(),
            mimetype=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            headers={"X-Accel-Buffering": "no"},
        )

    @app.get("/frame.jpg")
    def still_frame() -> ResponseReturnValue:
        try:
            frame = loop.camera.read(after_index=-1, timeout_s=FRAME_WAIT_S)
        except HardwareError as err:
            return _error(str(err), 503)
        jpeg = jpeg_cache.get(frame.index, frame.image)
        return Response(
            jpeg,
            mimetype="image/jpeg",
            headers={"X-Frame-Index": str(frame.index)},
        )

    @app.get("/map.png")
    def track_map() -> ResponseReturnValue:
        render = _map_renderer(loop)
        if render is None:
            return _text("404 Not Found: this car has no map\n", 404)
        return Response(render(), mimetype="image/png")

    # --- control and status ---------------------------------------------------

    @app.post("/api/control")
    def control() -> ResponseReturnValue:
        try:
            message = _parse_control(request.get_data(cache=False))
        except BadRequest as err:
            return _error(str(err), 400)
        if "mode" in message:
            loop.set_mode(message["mode"])
        if "recording" in message:
            loop.set_recording(message["recording"])
        if "skip_stopped" in message:
            loop.set_skip_stopped(message["skip_stopped"])
        if "action" in message:
            loop.command(message["action"], source="web")
        _heartbeat(loop)
        return Response(status=204)

    @app.get("/api/status")
    def status() -> ResponseReturnValue:
        _heartbeat(loop)
        data = dict(loop.status())
        with streams_lock:
            data["video_clients"] = streams["open"]
        data["map_url"] = "/map.png" if _map_renderer(loop) is not None else None
        data.setdefault("deadman_ms", loop.deadman_ms)
        if data.get("free_disk_mb") is None:
            data["free_disk_mb"] = _free_disk_mb(drives_path)
        return jsonify(data)

    # --- drives ---------------------------------------------------------------

    @app.get("/api/drives")
    def list_drives() -> ResponseReturnValue:
        status = loop.status()
        recording = status.get("drive") if status.get("recording") else None
        items = []
        for path in _drive_folders(drives_path):
            item = dict(summaries.get(path))
            item["recording"] = item["name"] == recording
            items.append(item)
        return jsonify({"drives": items, "labels": list(ACTION_LABELS)})

    @app.get("/api/drives/<name>")
    def drive_records(name: str) -> ResponseReturnValue:
        drive = _open_drive(drives_path, name)
        return jsonify(_drive_detail(drive))

    @app.get("/api/drives/<name>/frames/<int:index>.jpg")
    def drive_frame(name: str, index: int) -> ResponseReturnValue:
        drive = _open_drive(drives_path, name)
        record = next((r for r in drive.raw_records if r.index == index), None)
        if record is None:
            return _error(f"drive {name!r} has no frame {index}", 404)
        return Response(
            (drive.path / record.file).read_bytes(),
            mimetype="image/jpeg",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.post("/api/drives/<name>/edit")
    def edit_drive(name: str) -> ResponseReturnValue:
        drive = _open_drive(drives_path, name)
        try:
            edit = _parse_edit(request.get_data(cache=False))
            if edit["op"] == "undo":
                drive.undo()
            elif edit["op"] == "relabel":
                drive.relabel(edit["indices"], edit["action"])
            elif edit["op"] == "exclude":
                drive.exclude(edit["indices"])
            else:
                drive.include(edit["indices"])
        except (BadRequest, DriveError) as err:
            return _error(str(err), 400)
        log.info("drive %s: %s", name, edit)
        return jsonify(_drive_detail(drive))

    return app


def stop_streams(app: Flask) -> None:
    """End the app's open video streams (each checks about once a second)."""
    app.extensions["malpi"]["streams_stop"].set()


def make_server(
    app: Flask, host: str, port: int, *, threads: int = SERVER_THREADS
) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for ``app``, bound but not yet running.

    ``port=0`` picks a free port: read it back from ``server.effective_port``.
    """
    try:
        server = waitress.create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="malpi",
            # Video streams and held controls come and go; drop idle sockets soon.
            channel_timeout=30,
            clear_untrusted_proxy_headers=True,
            # A client that cannot keep up must skip frames, not queue them: a
            # small output buffer blocks the video generator (which then takes the
            # newest frame) instead of piling up old frames in waitress.
            outbuf_high_watermark=SEND_BUFFER_BYTES,
        )
    except OSError as err:
        raise ConfigError(
            f"cannot serve the web app on {host}:{port}: {err.strerror or err}; "
            "stop the program using that port or choose another with --port"
        ) from err
    # The same in the kernel: a fixed, small send buffer on every accepted
    # connection (waitress applies these options at accept; they cannot be
    # passed to create_server). Every response is small, so nothing else
    # notices.
    server.adj.socket_options = [
        (socket.SOL_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES),
    ]
    return server


def serve(app: Flask, host: str, port: int, *, threads: int = SERVER_THREADS) -> None:
    """Serve ``app`` with waitress until interrupted, then end video streams."""
    server = make_server(app, host, port, threads=threads)
    try:
        server.run()
    finally:
        shutdown(app, server)


def shutdown(app: Flask, server: BaseWSGIServer | MultiSocketServer) -> None:
    """Stop a server made by ``make_server`` from any thread.

    Open video streams end first, then the worker threads are joined, then
    every socket is closed on the server's own thread, which makes
    ``server.run()`` return.
    """
    stop_streams(app)
    server.task_dispatcher.shutdown(timeout=2 * FRAME_WAIT_S + 1)
    socket_map = getattr(server, "map", None) or getattr(server, "_map", None)
    trigger = getattr(server, "trigger", None)
    if socket_map is None:
        return
    closed = threading.Event()

    def close_all() -> None:
        wasyncore.close_all(socket_map)
        closed.set()

    if trigger is not None and socket_map:
        trigger.pull_trigger(close_all)
        if closed.wait(2 * FRAME_WAIT_S):
            return
    close_all()


# --- helpers -------------------------------------------------------------------


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _error(message: str, status: int) -> ResponseReturnValue:
    return jsonify({"error": message}), status


def _set_cookie_and_redirect(token: str) -> Response:
    query = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
    location = request.path + (f"?{urlencode(query)}" if query else "")
    response = Response(status=303, headers={"Location": location})
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=30 * 24 * 3600,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"the body is not JSON: {err}") from err
    if not isinstance(message, dict):
        raise BadRequest(f"the body must be a JSON object, got {message!r:.60}")
    return message


def _parse_control(body: bytes) -> dict[str, Any]:
    """Check a whole control message before any of it is applied.

    Raises:
        BadRequest: the message is not JSON, has an unknown key, or a value of
            the wrong type or outside its choices.
    """
    message = _parse_json_object(body)
    unknown = sorted(set(message) - set(CONTROL_KEYS))
    if unknown:
        raise BadRequest(
            f"unknown key {unknown[0]!r:.40}; use {', '.join(CONTROL_KEYS)}"
        )
    if not message:
        raise BadRequest(f"empty control message; use {', '.join(CONTROL_KEYS)}")
    parsed: dict[str, Any] = {}
    if "action" in message:
        action = message["action"]
        if not isinstance(action, str) or action not in ACTION_LABELS:
            raise BadRequest(
                f"unknown action {action!r:.40}; use one of {', '.join(ACTION_LABELS)}"
            )
        parsed["action"] = Action.parse(action)
    if "mode" in message:
        mode = message["mode"]
        if not isinstance(mode, str) or mode not in MODES:
            raise BadRequest(
                f"unknown mode {mode!r:.40}; use one of {', '.join(MODES)}"
            )
        parsed["mode"] = mode
    for key in ("recording", "skip_stopped"):
        if key in message:
            if not isinstance(message[key], bool):
                raise BadRequest(
                    f"{key} must be true or false, got {message[key]!r:.40}"
                )
            parsed[key] = message[key]
    return parsed


def _parse_edit(body: bytes) -> dict[str, Any]:
    """Check an edit message: ``{"op": ..., "indices": [...], "action": ...}``.

    Raises:
        BadRequest: the op, indices or action are missing or of the wrong type.
    """
    message = _parse_json_object(body)
    op = message.get("op")
    if op not in EDIT_OPS:
        raise BadRequest(
            f"unknown edit op {op!r:.40}; use one of {', '.join(EDIT_OPS)}"
        )
    if op == "undo":
        return {"op": op}
    indices = message.get("indices")
    if (
        not isinstance(indices, list)
        or not indices
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
    ):
        raise BadRequest(
            f"indices must be a non-empty list of frame numbers, got {indices!r:.60}"
        )
    edit: dict[str, Any] = {"op": op, "indices": indices}
    if op == "relabel":
        action = message.get("action")
        if not isinstance(action, str) or action not in ACTION_LABELS:
            raise BadRequest(
                f"unknown action {action!r:.40}; use one of {', '.join(ACTION_LABELS)}"
            )
        edit["action"] = action
    return edit


def _drive_folders(drives_path: Path) -> list[Path]:
    if not drives_path.is_dir():
        return []
    found = [p for p in drives_path.iterdir() if (p / META_NAME).is_file()]
    # Newest first, by when each drive was created.
    return sorted(found, key=lambda p: (p / META_NAME).stat().st_mtime, reverse=True)


def _open_drive(drives_path: Path, name: str) -> Drive:
    """Open a drive by folder name, or answer 404 for any other name."""
    if "/" in name or "\\" in name or name.startswith(".") or not name:
        abort(404)
    try:
        return Drive.open(drives_path / name)
    except DriveError:
        abort(404)


def _drive_detail(drive: Drive) -> dict[str, Any]:
    usable = {r.index: r for r in drive.records}
    frames = [
        {
            "index": raw.index,
            "action": usable[raw.index].action.label
            if raw.index in usable
            else raw.recorded_action.label,
            "recorded": raw.recorded_action.label,
            "mode": raw.mode,
            "excluded": raw.index not in usable,
        }
        for raw in drive.raw_records
    ]
    stats = drive.stats()
    return {
        "name": drive.name,
        "created": drive.meta.get("created", ""),
        "frames": frames,
        "counts": stats.counts,
        "usable": stats.frames,
        "edits": len(drive.edits()),
        "skipped": drive.report.summary(),
    }


def _heartbeat(loop: Any) -> None:
    """Tell the loop a browser is alive, when the loop watches for one."""
    beat = getattr(loop, "heartbeat", None)
    if callable(beat):
        beat(source="web")


def _map_renderer(loop: Any) -> Callable[[], bytes] | None:
    """The top-down map as PNG bytes, when the car can draw one.

    A backend that knows where the car is (the simulator's world) offers a
    ``map_image()`` method returning an RGB uint8 array or PNG bytes; the loop,
    its camera, its drivetrain and their ``world`` are asked in that order.
    """
    camera = getattr(loop, "camera", None)
    drivetrain = getattr(loop, "drivetrain", None)
    owners = (
        loop,
        camera,
        drivetrain,
        getattr(camera, "world", None),
        getattr(drivetrain, "world", None),
    )
    for owner in owners:
        draw = getattr(owner, "map_image", None)
        if callable(draw):
            return lambda: _png(draw())
    return None


def _png(image: Any) -> bytes:
    if isinstance(image, bytes):
        return image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _free_disk_mb(path: Path) -> float | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return round(shutil.disk_usage(candidate).free / 2**20, 1)
    return None
