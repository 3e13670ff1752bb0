"""Benchmark the web app as served by waitress on loopback.

Measures, against a real ``DriveLoop`` on the simulator (or the test-pattern
camera with ``--camera pattern``):

- MJPEG delivery: for a client that keeps up and for a slow one, camera
  frames published during the window, MJPEG parts received, distinct frame
  indices (from each part's ``X-Frame-Index``), duplicates, and how far behind
  the newest camera frame each part was when it arrived (a slow client must
  skip frames, not queue them);
- control round trip: ``POST /api/control`` latency over one keep-alive
  connection, mean, median and p99.

Run: ``.venv/bin/python benchmarks/bench_web.py [--seconds 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robot.camera import Camera
from robot.cameras import PatternCamera
from robot.drivetrain import Drivetrain
from robot.drivetrains import RecordingDrivetrain
from robot.loop import DriveLoop
from robot.web.app import MJPEG_BOUNDARY, create_app, make_server, shutdown
from shared.config import RobotConfig

SLOW_RCVBUF_BYTES = 8 * 1024
RECV_CHUNK_BYTES = 1024


@dataclass
class StreamResult:
    client: str
    seconds: float
    camera_frames: int
    parts: int
    distinct: int
    duplicates: int
    out_of_order: int
    delivered_per_camera_frame: float
    mean_lag_frames: float
    max_lag_frames: int


@dataclass
class ControlResult:
    requests: int
    mean_ms: float
    median_ms: float
    p99_ms: float
    max_ms: float


class _SocketReader:
    """Reads an HTTP stream off a raw socket in small pieces, only as needed.

    No read-ahead buffer of its own, so that what a slow reader has not taken
    yet stays in the kernel and on the server, where it is measured.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(RECV_CHUNK_BYTES)
        if not chunk:
            raise SystemExit("the video stream ended")
        self.buffer += chunk

    def readline(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            self._fill()
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def read_stream(
    host: str, port: int, token: str, camera: Camera, seconds: float, delay_s: float
) -> StreamResult:
    """Read /video.mjpg for ``seconds``, sleeping ``delay_s`` after each part."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if delay_s:
        # A slow client: a small receive window, like a phone on weak Wi-Fi.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF_BYTES)
    sock.settimeout(10)
    sock.connect((host, port))
    sock.sendall(
        f"GET /video.mjpg HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    stream = _SocketReader(sock)
    status = stream.readline()
    if b" 200 " not in status:
        raise SystemExit(f"video answered {status!r}")
    while stream.readline().strip():
        pass  # the response headers
    boundary = f"--{MJPEG_BOUNDARY}".encode()

    # Skip the first part: it is whatever frame was newest when we connected.
    indices: list[int] = []
    lags: list[int] = []
    first_camera_index: int | None = None
    started_s = time.monotonic()
    while time.monotonic() - started_s < seconds:
        line = stream.readline()
        while line.strip() != boundary:
            line = stream.readline()
        headers = {}
        while (line := stream.readline().strip()) != b"":
            key, _, value = line.decode().partition(": ")
            headers[key.lower()] = value
        stream.read(int(headers["content-length"]) + 2)
        index = int(headers["x-frame-index"])
        newest = camera.latest()
        if first_camera_index is None:
            first_camera_index = index
            started_s = time.monotonic()
            continue
        indices.append(index)
        lags.append((newest.index if newest else index) - index)
        if delay_s:
            time.sleep(delay_s)
    last = camera.latest()
    sock.close()

    camera_frames = (last.index if last else 0) - (first_camera_index or 0)
    distinct = len(set(indices))
    out_of_order = sum(1 for a, b in zip(indices, indices[1:], strict=False) if b <= a)
    return StreamResult(
        client="slow" if delay_s else "fast",
        seconds=round(time.monotonic() - started_s, 2),
        camera_frames=camera_frames,
        parts=len(indices),
        distinct=distinct,
        duplicates=len(indices) - distinct,
        out_of_order=out_of_order,
        delivered_per_camera_frame=round(distinct / max(1, camera_frames), 3),
        mean_lag_frames=round(statistics.fmean(lags), 2) if lags else 0.0,
        max_lag_frames=max(lags, default=0),
    )


def time_controls(host: str, port: int, token: str, count: int) -> ControlResult:
    """POST ``count`` control messages over one keep-alive connection."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
    }
    latencies_ms = []
    for i in range(count + 20):
        body = b'{"action":"forward"}' if i % 2 else b'{"action":"stop"}'
        started_s = time.perf_counter()
        conn.request("POST", "/api/control", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed_ms = (time.perf_counter() - started_s) * 1000.0
        if response.status != 204:
            raise SystemExit(f"control answered {response.status}")
        if i >= 20:  # warm-up excluded
            latencies_ms.append(elapsed_ms)
    conn.request("POST", "/api/control", body=b'{"action":"stop"}', headers=headers)
    conn.getresponse().read()
    conn.close()
    ordered = sorted(latencies_ms)
    return ControlResult(
        requests=count,
        mean_ms=round(statistics.fmean(ordered), 3),
        median_ms=round(statistics.median(ordered), 3),
        p99_ms=round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        max_ms=round(ordered[-1], 3),
    )


def make_backends(kind: str, rate_hz: float) -> tuple[Camera, Drivetrain, Any]:
    if kind == "sim":
        from robot.sim.backends import make_sim_backends

        world, camera, drivetrain = make_sim_backends(camera_rate_hz=rate_hz)
        return camera, drivetrain, world
    return PatternCamera(rate_hz=rate_hz), RecordingDrivetrain(), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera rate")
    parser.add_argument("--camera", choices=("sim", "pattern"), default="sim")
    parser.add_argument("--slow-delay-ms", type=float, default=100.0)
    parser.add_argument("--controls", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as home:
        config = RobotConfig(home=home, car_name="bench")
        camera, drivetrain, _world = make_backends(args.camera, args.rate_hz)
        with camera, drivetrain, DriveLoop(config, camera, drivetrain) as loop:
            app = create_app(config, loop)
            token = app.config["MALPI_TOKEN"]
            server = make_server(app, "127.0.0.1", 0)
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            port = int(server.effective_port)
            try:
                fast = read_stream(
                    "127.0.0.1", port, token, camera, args.seconds, delay_s=0.0
                )
                slow = read_stream(
                    "127.0.0.1",
                    port,
                    token,
                    camera,
                    args.seconds,
                    delay_s=args.slow_delay_ms / 1000.0,
                )
                control = time_controls("127.0.0.1", port, token, args.controls)
            finally:
                shutdown(app, server)
                thread.join(5)

    print(f"camera: {args.camera} at {args.rate_hz:g} Hz, {args.seconds:g} s per run")
    print(
        f"{'client':<6} {'camera':>7} {'parts':>6} {'distinct':>8} {'dups':>5} "
        f"{'per cam frame':>13} {'lag mean':>8} {'lag max':>7}"
    )
    for r in (fast, slow):
        print(
            f"{r.client:<6} {r.camera_frames:>7} {r.parts:>6} {r.distinct:>8} "
            f"{r.duplicates:>5} {r.delivered_per_camera_frame:>13.3f} "
            f"{r.mean_lag_frames:>8.2f} {r.max_lag_frames:>7}"
        )
    print(
        f"control POST round trip over {control.requests} requests: "
        f"mean {control.mean_ms:.2f} ms, median {control.median_ms:.2f} ms, "
        f"p99 {control.p99_ms:.2f} ms, max {control.max_ms:.2f} ms"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "fast": asdict(fast),
                    "slow": asdict(slow),
                    "control": asdict(control),
                },
                indent=2,
            )
            + "\n"
        )
    ok = fast.duplicates == 0 and slow.duplicates == 0 and fast.out_of_order == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
