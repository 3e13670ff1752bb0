"""The simulated camera: a pinhole looking at the floor raster, in numpy.

Where each pixel's ray meets the floor, relative to the car, never changes:
``Renderer`` works it out once. A frame then costs one rotation and
translation of those points, a gather from the floor raster (bilinear or
nearest), the world's wall colour where a ray misses the floor or leaves
the room, and the camera's noise.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from PIL import Image, ImageDraw

from robot.sim.car import Pose
from robot.sim.config import SimCameraConfig
from robot.sim.track import Track
from shared.errors import SimulationError
from shared.frames import FRAME_SHAPE

log = logging.getLogger(__name__)

#: Ground distance given to rays that never meet the floor (beyond any room).
_FAR_M = 1.0e4
#: Frames of camera noise kept ready; each frame reads it from a random offset.
_NOISE_BANK_FRAMES = 8


def ground_offsets(
    config: SimCameraConfig, size_px: int = FRAME_SHAPE[0]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel's ray meets the floor, in the car's frame.

    Returns ``(forward_m, left_m, hits)``, each ``(size_px, size_px)``:
    metres ahead of and to the left of the car's turning centre, and whether
    the ray meets the floor at all (``forward_m`` is huge where it does not).

    Raises:
        SimulationError: the camera is not above the floor or sees no floor.
    """
    if not config.height_m > 0:
        raise SimulationError(
            f"camera height {config.height_m!r} m puts the lens on or under the "
            "floor; set camera.height_m above 0, e.g. 0.2"
        )
    focal_px = (size_px / 2) / math.tan(math.radians(config.fov_deg) / 2)
    centres = (np.arange(size_px) + 0.5 - size_px / 2) / focal_px
    xn = centres[None, :]
    yn = centres[:, None]
    pitch = config.pitch_rad

    # Ray = optical axis + xn * image-right + yn * image-down (car: x ahead,
    # y left, z up; the axis is tilted down by the pitch).
    shape = (size_px, size_px)
    ray_forward = np.broadcast_to(math.cos(pitch) - yn * math.sin(pitch), shape)
    ray_left = np.broadcast_to(-xn, shape)
    ray_up = np.broadcast_to(-math.sin(pitch) - yn * math.cos(pitch), shape)
    hits = ray_up < -1e-9
    if not hits.any():
        raise SimulationError(
            f"camera pitch {config.pitch_deg!r} deg with a "
            f"{config.fov_deg!r} deg field of view sees no floor; tilt it down "
            f"so that pitch_deg > {-config.fov_deg / 2:.1f}"
        )
    t = np.where(hits, config.height_m / np.where(hits, -ray_up, 1.0), 0.0)
    forward = np.where(hits, config.forward_offset_m + t * ray_forward, _FAR_M)
    left = np.where(hits, t * ray_left, 0.0)
    return forward, left, hits


class Renderer:
    """Renders 120x120 RGB uint8 camera frames of a track from car poses.

    ``seed`` drives the per-frame noise; it defaults to the track's seed, so
    a world's frames are the same from run to run.
    """

    def __init__(
        self,
        track: Track,
        config: SimCameraConfig | None = None,
        seed: int | None = None,
        noise: bool = True,
    ) -> None:
        self.track = track
        self.config = config or SimCameraConfig()
        self.noise = noise
        size = FRAME_SHAPE[0]
        forward, left, hits = ground_offsets(self.config, size)
        self.floor_fraction = float(hits.mean())

        floor = track.floor
        rows, cols = floor.shape_px
        res = floor.resolution_m
        self._rows, self._cols = rows, cols
        self._pixels = size * size
        self._origin = (floor.origin_x_m, floor.origin_y_m)
        self._res = res
        # Raster coordinates (in pixels) of each ray's floor point, car-relative.
        self._forward_px = (forward / res).astype(np.float32).ravel()
        self._left_px = (left / res).astype(np.float32).ravel()

        # The floor and, after it, one wall colour per camera pixel, so that a
        # single gather serves both. Each colour is packed into one uint64 with
        # a 16-bit lane per channel: bilinear weights that sum to 256 then
        # blend all three channels in one integer multiply-add without carry
        # (255 * 256 < 2**16).
        appearance = track.appearance
        top = np.array(appearance.wall_top_rgb)
        bottom = np.array(appearance.wall_bottom_rgb)
        fade = np.linspace(0, 1, size)[:, None, None]
        wall = (top * (1 - fade) + bottom * fade) * np.ones((1, size, 1))
        colours = np.concatenate(
            [floor.rgb.reshape(-1, 3), np.rint(wall).astype(np.uint8).reshape(-1, 3)]
        ).astype(np.uint64)
        self._packed = colours[:, 0] | colours[:, 1] << 16 | colours[:, 2] << 32
        self._wall_index = (rows * cols + np.arange(self._pixels)).astype(np.uint64)

        self._rng = np.random.default_rng([track.seed if seed is None else seed, 2])
        noise = self._rng.normal(
            0.0, appearance.noise_sigma, (_NOISE_BANK_FRAMES * self._pixels, 3)
        )
        self._noise_bank = np.rint(np.clip(noise, -100, 100)).astype(np.int16)
        self._jitter = appearance.brightness_jitter
        self._bilinear = self.config.interpolation == "bilinear"
        log.debug(
            "camera sees the floor in %.0f%% of its pixels", 100 * self.floor_fraction
        )

    def render(self, pose: Pose) -> np.ndarray:
        """The camera frame of a car at ``pose``: (120, 120, 3) uint8."""
        # Rotate and translate the rays' floor points into raster pixels (in
        # 1/256 pixel, so that the fraction is the low byte; negative values
        # become huge unsigned ones and fall outside the room).
        c, s = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
        base_u = (pose.x_m - self._origin[0]) / self._res - 0.5
        base_v = (pose.y_m - self._origin[1]) / self._res - 0.5
        u = c * self._forward_px - s * self._left_px + np.float32(base_u)
        v = s * self._forward_px + c * self._left_px + np.float32(base_v)
        if not self._bilinear:
            u += np.float32(0.5)
            v += np.float32(0.5)
        u_fixed = (u * 256).astype(np.int64).view(np.uint64)
        v_fixed = (v * 256).astype(np.int64).view(np.uint64)
        col = u_fixed >> 8
        row = v_fixed >> 8
        inside = (col < self._cols - 1) & (row < self._rows - 1)
        index = np.where(inside, row * self._cols + col, self._wall_index)
        index = index.view(np.int64)  # gathers are faster with signed indices

        # Gather: four neighbours with integer weights summing to 256, or one.
        packed = self._packed
        if self._bilinear:
            a = u_fixed & 255
            b = v_fixed & 255
            w11 = (a * b) >> 8
            step_u = inside.view(np.uint8).astype(np.int64)
            step_v = step_u * self._cols
            below = index + step_v
            blend = packed[index] * (256 - a - b + w11)
            blend += packed[index + step_u] * (a - w11)
            blend += packed[below] * (b - w11)
            blend += packed[below + step_u] * w11
        else:
            blend = packed[index] << 8

        # Unpack the lanes' integer parts (the high byte of each 16-bit lane).
        # One channel at a time: numpy copies long strided runs far faster
        # than many rows of three.
        lanes = blend.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8)
        frame = np.empty((self._pixels, 3), dtype=np.int16)
        for channel in range(3):
            frame[:, channel] = lanes[:, 2 * channel + 1]
        if self.noise:
            start = int(self._rng.integers(0, len(self._noise_bank) - self._pixels))
            frame += self._noise_bank[start : start + self._pixels]
            frame += np.int16(round(self._rng.normal(0.0, self._jitter)))
            np.clip(frame, 0, 255, out=frame)
        return frame.astype(np.uint8).reshape(FRAME_SHAPE)


class TopDownMap:
    """A small picture of the whole track, north up, with the car drawn on it."""

    def __init__(self, track: Track, size_px: int = 160) -> None:
        if size_px < 16:
            raise SimulationError(
                f"map size {size_px!r} px is too small; use 16 or more"
            )
        self.track = track
        self.size_px = size_px
        floor = track.floor
        rows, cols = floor.shape_px
        scale = size_px / max(rows, cols)
        width, height = max(1, round(cols * scale)), max(1, round(rows * scale))
        image = Image.fromarray(floor.rgb[::-1]).resize(
            (width, height), Image.Resampling.BOX
        )
        canvas = Image.new("RGB", (size_px, size_px), (30, 30, 30))
        self._left_px = (size_px - width) // 2
        self._top_px = (size_px - height) // 2
        canvas.paste(image, (self._left_px, self._top_px))
        self._metres_to_px = scale / floor.resolution_m
        self._origin = (floor.origin_x_m, floor.origin_y_m + rows * floor.resolution_m)

        # Tape shrunk to a few pixels fades into the floor: draw it over again.
        draw = ImageDraw.Draw(canvas)
        normals = np.stack([-track.segment_dirs[:, 1], track.segment_dirs[:, 0]], 1)
        for side, colour in ((1, (255, 255, 255)), (-1, (255, 255, 255)), (0, None)):
            line = track.points + side * track.half_width_m * normals
            xy = [self.to_pixels(x, y) for x, y in line[:: max(1, len(line) // 400)]]
            fill = colour or (240, 200, 40)
            draw.line(
                xy + xy[:1], fill=fill, width=1 if side else max(1, size_px // 80)
            )
        self._base = canvas

    def to_pixels(self, x_m: float, y_m: float) -> tuple[float, float]:
        """Map pixel (column, row) of a floor point."""
        col = self._left_px + (x_m - self._origin[0]) * self._metres_to_px
        row = self._top_px + (self._origin[1] - y_m) * self._metres_to_px
        return col, row

    def draw(self, pose: Pose | None = None) -> np.ndarray:
        """The map as (size, size, 3) RGB uint8, with the car at ``pose``."""
        image = self._base.copy()
        if pose is not None:
            size = max(3.0, self.size_px / 40)
            col, row = self.to_pixels(pose.x_m, pose.y_m)
            c, s = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
            # A triangle pointing along the heading (rows grow downwards).
            corners = [
                (col + 2 * size * c, row - 2 * size * s),
                (col - size * c - size * s, row + size * s - size * c),
                (col - size * c + size * s, row + size * s + size * c),
            ]
            ImageDraw.Draw(image).polygon(
                corners, fill=(230, 40, 40), outline=(0, 0, 0)
            )
        return np.asarray(image)


def render_map(
    track: Track, pose: Pose | None = None, size_px: int = 160
) -> np.ndarray:
    """A (size_px, size_px, 3) RGB uint8 top-down map with the car drawn on it.

    Builds the map each call; keep a ``TopDownMap`` to draw many frames.
    """
    return TopDownMap(track, size_px).draw(pose)
