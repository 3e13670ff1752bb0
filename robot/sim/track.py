"""The simulated world: a floor with a closed track taped on it.

A track is its centre line, a closed polyline resampled at a fixed spacing
(``TrackConfig.spacing_m``), travelled in the direction of increasing arc
length. White tape marks both edges and a dashed yellow line the centre, as
on indoor DonkeyCar tracks. The floor (texture, tape colours, lighting) is
painted once per world into a top-down raster that the camera samples; the
seed picks the floor, the lights and the camera noise so that a pilot cannot
learn one image by heart.

Geometry queries (nearest centre point, signed lateral distance, arc-length
progress, on-track test) work on the polyline. On the figure-eight the
centre line crosses itself; ``ProgressTracker`` follows the car along the
branch it is on, so that progress and laps are never counted twice.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from robot.sim.car import Pose
from robot.sim.config import TRACK_SHAPES, TrackConfig
from shared.errors import SimulationError

log = logging.getLogger(__name__)

#: How many following seeds a failed random track looks through for advice.
_SEEDS_TO_SUGGEST = 50


@dataclass(frozen=True)
class TrackPoint:
    """The centre-line point nearest to a query, and where the query is."""

    #: Polyline segment (its start vertex) that holds the point.
    index: int
    #: Arc length from the start, in [0, track length).
    s_m: float
    x_m: float
    y_m: float
    #: Direction of travel at the point.
    heading_rad: float
    #: Signed distance of the query from the centre line, positive to the left.
    lateral_m: float

    @property
    def distance_m(self) -> float:
        """Unsigned distance of the query from the centre line."""
        return abs(self.lateral_m)


@dataclass(frozen=True)
class Appearance:
    """What a world looks like beyond its floor raster; picked by the seed."""

    floor_kind: str
    #: Wall colour at the top and at the bottom of the frame (RGB, 0-255).
    wall_top_rgb: tuple[float, float, float]
    wall_bottom_rgb: tuple[float, float, float]
    #: Standard deviation of the camera's per-pixel noise, in 8-bit levels.
    noise_sigma: float
    #: Standard deviation of a per-frame brightness shift, in 8-bit levels.
    brightness_jitter: float


@dataclass(frozen=True)
class FloorRaster:
    """The floor seen from above: row ``r``, column ``c`` covers the square at
    ``(origin_x_m + c * resolution_m, origin_y_m + r * resolution_m)``."""

    #: (rows, columns, 3) RGB uint8; rows go towards +y.
    rgb: np.ndarray
    origin_x_m: float
    origin_y_m: float
    resolution_m: float

    @property
    def shape_px(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


class Track:
    """A closed track on a floor: geometry queries and the painted floor.

    Build one with ``make_track``. Lengths are metres, angles radians.
    """

    def __init__(
        self,
        shape: str,
        seed: int,
        config: TrackConfig,
        points: np.ndarray,
        *,
        floor_source: Track | None = None,
    ) -> None:
        self.shape = shape
        self.seed = seed
        self.config = config
        #: (N, 2) centre-line vertices, evenly spaced, first not repeated.
        self.points = np.ascontiguousarray(points, dtype=np.float64)
        nxt = np.roll(self.points, -1, axis=0)
        seg = nxt - self.points
        self.segment_lengths = np.hypot(seg[:, 0], seg[:, 1])
        self.segment_dirs = seg / self.segment_lengths[:, None]
        self.headings = np.arctan2(seg[:, 1], seg[:, 0])
        #: Arc length at each vertex.
        self.s = np.concatenate([[0.0], np.cumsum(self.segment_lengths)[:-1]])
        self.length_m = float(self.segment_lengths.sum())
        self.half_width_m = config.width_m / 2
        self._floor_source = floor_source

    def __repr__(self) -> str:
        return (
            f"Track(shape={self.shape!r}, seed={self.seed}, "
            f"length_m={self.length_m:.2f}, width_m={self.config.width_m})"
        )

    # --- geometry ------------------------------------------------------------

    @property
    def spacing_m(self) -> float:
        return self.length_m / len(self.points)

    def nearest(
        self, x_m: float, y_m: float, hint: int | None = None, window_m: float = 0.5
    ) -> TrackPoint:
        """The centre-line point nearest to ``(x_m, y_m)``.

        With ``hint`` (a previous ``TrackPoint.index``) only the centre line
        within ``window_m`` of it is searched, which keeps a car on its own
        branch where the figure-eight crosses itself.
        """
        n = len(self.points)
        if hint is None:
            candidates = None
            dx = self.points[:, 0] - x_m
            dy = self.points[:, 1] - y_m
        else:
            reach = max(1, int(window_m / self.spacing_m))
            candidates = (hint + np.arange(-reach, reach + 1)) % n
            dx = self.points[candidates, 0] - x_m
            dy = self.points[candidates, 1] - y_m
        best = int(np.argmin(dx * dx + dy * dy))
        vertex = best if candidates is None else int(candidates[best])

        # Refine on the two segments that meet at the nearest vertex.
        found = None
        for index in ((vertex - 1) % n, vertex):
            ax, ay = self.points[index]
            ux, uy = self.segment_dirs[index]
            length = self.segment_lengths[index]
            t = min(max((x_m - ax) * ux + (y_m - ay) * uy, 0.0), length)
            px, py = ax + t * ux, ay + t * uy
            d2 = (x_m - px) ** 2 + (y_m - py) ** 2
            if found is None or d2 < found[0]:
                found = (d2, index, t, px, py)
        _, index, t, px, py = found
        ux, uy = self.segment_dirs[index]
        lateral = ux * (y_m - py) - uy * (x_m - px)
        s_m = (self.s[index] + t) % self.length_m
        return TrackPoint(
            index=index,
            s_m=float(s_m),
            x_m=float(px),
            y_m=float(py),
            heading_rad=float(self.headings[index]),
            lateral_m=float(lateral),
        )

    def lateral_distance(self, x_m: float, y_m: float) -> float:
        """Signed distance from the centre line, positive to the left."""
        return self.nearest(x_m, y_m).lateral_m

    def progress(self, x_m: float, y_m: float) -> float:
        """Arc length of the nearest centre-line point, in [0, length)."""
        return self.nearest(x_m, y_m).s_m

    def on_track(self, x_m: float, y_m: float) -> bool:
        """Whether the point lies between the edge lines."""
        return self.nearest(x_m, y_m).distance_m <= self.half_width_m

    def point_at(self, s_m: float) -> tuple[float, float, float]:
        """``(x, y, heading)`` of the centre line at arc length ``s_m``."""
        s_m = s_m % self.length_m
        index = min(
            int(np.searchsorted(self.s, s_m, side="right")) - 1, len(self.s) - 1
        )
        t = s_m - self.s[index]
        ax, ay = self.points[index]
        ux, uy = self.segment_dirs[index]
        return float(ax + t * ux), float(ay + t * uy), float(self.headings[index])

    def pose_at(self, s_m: float = 0.0, lateral_m: float = 0.0) -> Pose:
        """A car pose on the track at ``s_m``, facing the direction of travel."""
        x, y, heading = self.point_at(s_m)
        return Pose(
            x - lateral_m * math.sin(heading),
            y + lateral_m * math.cos(heading),
            heading,
        )

    def reversed(self) -> Track:
        """The same track (and floor) driven the other way round, from the same
        start point."""
        points = np.roll(self.points[::-1], 1, axis=0)
        return Track(
            self.shape,
            self.seed,
            self.config,
            points,
            floor_source=self._floor_source or self,
        )

    # --- the floor -----------------------------------------------------------

    @property
    def floor(self) -> FloorRaster:
        """The painted top-down floor raster (made on first use)."""
        if self._floor_source is not None:
            return self._floor_source.floor
        return self._painted[0]

    @property
    def appearance(self) -> Appearance:
        """Wall colours and camera noise of this world."""
        if self._floor_source is not None:
            return self._floor_source.appearance
        return self._painted[1]

    @cached_property
    def _painted(self) -> tuple[FloorRaster, Appearance]:
        return _paint(self)


class ProgressTracker:
    """Follows a car along the centre line and adds up its net progress.

    Progress is the arc length driven in the direction of travel, minus any
    driven backwards; it never jumps between the two branches of a crossing.
    """

    def __init__(self, track: Track, window_m: float = 0.5) -> None:
        self.track = track
        self.window_m = window_m
        self.progress_m = 0.0
        self.point: TrackPoint | None = None

    @property
    def laps(self) -> int:
        """Completed laps: net progress over whole track lengths."""
        return max(0, int(self.progress_m // self.track.length_m))

    def reset(self) -> None:
        """Forget where the car was and restart progress from zero."""
        self.progress_m = 0.0
        self.point = None

    def update(self, x_m: float, y_m: float) -> TrackPoint:
        """Move the car to ``(x_m, y_m)`` and return its nearest centre point."""
        track = self.track
        previous = self.point
        if previous is None:
            self.point = track.nearest(x_m, y_m)
            return self.point

        point = track.nearest(x_m, y_m, hint=previous.index, window_m=self.window_m)
        jumped = False
        if point.distance_m > track.half_width_m:
            # Far off the line: the car may now be nearer another part of it.
            anywhere = track.nearest(x_m, y_m)
            if anywhere.distance_m + track.half_width_m < point.distance_m:
                point, jumped = anywhere, True

        if not jumped:
            delta = point.s_m - previous.s_m
            delta = (delta + track.length_m / 2) % track.length_m - track.length_m / 2
            if abs(delta) <= self.window_m:
                self.progress_m += delta
        self.point = point
        return point


# --- building tracks -----------------------------------------------------------


def make_track(
    shape: str = "oval", seed: int = 0, config: TrackConfig | None = None
) -> Track:
    """Build the track ``shape`` (oval, figure8 or random) for ``seed``.

    The seed picks the random track's shape and every world's floor, lighting
    and camera noise.

    Raises:
        SimulationError: the shape is unknown, or the random track of this
            seed is too tight or comes too close to itself.
    """
    config = config or TrackConfig()
    if shape not in TRACK_SHAPES:
        raise SimulationError(
            f"track shape {shape!r} is unknown; use one of {', '.join(TRACK_SHAPES)}"
        )
    if shape == "oval":
        points = _resample(_oval(config), config.spacing_m)
    elif shape == "figure8":
        points = _resample(_figure8(config), config.spacing_m)
    else:
        points = _resample(_random_curve(seed, config), config.spacing_m)
        problem = _random_track_problem(points, config)
        if problem:
            raise SimulationError(
                f"random track seed {seed!r} {problem}; {_suggest_seed(seed, config)}"
            )
        points = np.roll(points, -_straightest(points, config.spacing_m), axis=0)
    _check_turn_radius(shape, seed, points, config)
    track = Track(shape, seed, config, points)
    log.debug("built %r", track)
    return track


def _oval(config: TrackConfig) -> np.ndarray:
    """A stadium, counter-clockwise, starting mid-way along the bottom straight."""
    half = config.oval_straight_m / 2
    radius = config.oval_radius_m
    count = 4000
    step = (2 * config.oval_straight_m + 2 * math.pi * radius) / count
    s = np.arange(count) * step
    bounds = np.cumsum(
        [half, math.pi * radius, config.oval_straight_m, math.pi * radius]
    )
    x = np.empty(count)
    y = np.empty(count)

    part = s < bounds[0]
    x[part], y[part] = s[part], -radius
    part = (s >= bounds[0]) & (s < bounds[1])
    angle = (s[part] - bounds[0]) / radius - math.pi / 2
    x[part], y[part] = half + radius * np.cos(angle), radius * np.sin(angle)
    part = (s >= bounds[1]) & (s < bounds[2])
    x[part], y[part] = half - (s[part] - bounds[1]), radius
    part = (s >= bounds[2]) & (s < bounds[3])
    angle = (s[part] - bounds[2]) / radius + math.pi / 2
    x[part], y[part] = -half + radius * np.cos(angle), radius * np.sin(angle)
    part = s >= bounds[3]
    x[part], y[part] = -half + (s[part] - bounds[3]), -radius
    return np.stack([x, y], axis=1)


def _figure8(config: TrackConfig) -> np.ndarray:
    """A lemniscate of Gerono crossing itself at the origin, starting at the
    right end of its right lobe."""
    t = np.linspace(0, 2 * math.pi, 4000, endpoint=False) + math.pi / 2
    x = config.figure8_half_length_m * np.sin(t)
    y = 2 * config.figure8_half_width_m * np.sin(t) * np.cos(t)
    return np.stack([x, -y], axis=1)


def _random_curve(seed: int, config: TrackConfig) -> np.ndarray:
    """A circle whose radius is perturbed by a few random harmonics."""
    rng = np.random.default_rng([seed, 0])
    theta = np.linspace(0, 2 * math.pi, 4000, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, config.random_harmonics + 1):
        amplitude = config.random_amplitude * rng.uniform(-1, 1) / (k - 1)
        radius += amplitude * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    radius *= config.random_radius_m
    stretch = rng.uniform(1.0, 1.4)
    points = np.stack(
        [stretch * radius * np.cos(theta), radius * np.sin(theta)], axis=1
    )
    return points - points.mean(axis=0)


def _resample(points: np.ndarray, spacing_m: float) -> np.ndarray:
    """The closed polyline ``points`` resampled at (nearly) ``spacing_m``."""
    closed = np.vstack([points, points[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    count = max(16, round(s[-1] / spacing_m))
    targets = np.arange(count) * (s[-1] / count)
    return np.stack(
        [np.interp(targets, s, closed[:, 0]), np.interp(targets, s, closed[:, 1])],
        axis=1,
    )


def _curvature(points: np.ndarray) -> np.ndarray:
    """Curvature at each vertex of an evenly spaced closed polyline (1/m)."""
    seg = np.roll(points, -1, axis=0) - points
    headings = np.arctan2(seg[:, 1], seg[:, 0])
    turn = np.angle(np.exp(1j * (headings - np.roll(headings, 1))))
    spacing = np.hypot(seg[:, 0], seg[:, 1]).mean()
    # Average over a few vertices so that interpolation corners do not count.
    kernel = np.ones(5) / 5
    padded = np.concatenate([turn[-2:], turn, turn[:2]])
    return np.convolve(padded, kernel, mode="valid") / spacing


def _straightest(points: np.ndarray, spacing_m: float, span_m: float = 1.0) -> int:
    """Index where the metre of track that follows curves least: the start line."""
    reach = max(1, int(span_m / spacing_m))
    curvature = np.abs(_curvature(points))
    ahead = np.concatenate([curvature, curvature[:reach]])
    window = np.convolve(ahead, np.ones(reach), mode="valid")[: len(points)]
    return int(np.argmin(window))


def _check_turn_radius(
    shape: str, seed: int, points: np.ndarray, config: TrackConfig
) -> None:
    tightest_m = 1 / max(np.abs(_curvature(points)).max(), 1e-9)
    if tightest_m <= config.width_m / 2:
        raise SimulationError(
            f"{shape} track turns with a radius of {tightest_m:.2f} m, less than "
            f"half its width {config.width_m / 2:.2f} m; make it larger or narrower"
        )


def _random_track_problem(points: np.ndarray, config: TrackConfig) -> str:
    """Why a random centre line cannot be driven, or an empty string."""
    tightest_m = 1 / max(np.abs(_curvature(points)).max(), 1e-9)
    if tightest_m < config.min_turn_radius_m:
        return (
            f"has a turn of radius {tightest_m:.2f} m, tighter than the "
            f"{config.min_turn_radius_m:.2f} m minimum"
        )

    # Parts of the track far apart along it must stay apart on the floor.
    step = max(1, int(0.04 / config.spacing_m))
    sparse = points[::step]
    spacing = config.spacing_m * step
    clearance_m = config.min_clearance_widths * config.width_m
    count = len(sparse)
    index = np.arange(count)
    apart = np.abs(index[:, None] - index[None, :])
    apart = np.minimum(apart, count - apart) * spacing
    far = apart > math.pi * max(clearance_m, config.min_turn_radius_m)
    diff = sparse[:, None, :] - sparse[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    closest_m = float(dist[far].min()) if far.any() else math.inf
    if closest_m < clearance_m:
        return (
            f"comes within {closest_m:.2f} m of itself, less than "
            f"{clearance_m:.2f} m ({config.min_clearance_widths} track widths)"
        )
    return ""


def _suggest_seed(seed: int, config: TrackConfig) -> str:
    for other in range(seed + 1, seed + 1 + _SEEDS_TO_SUGGEST):
        points = _resample(_random_curve(other, config), config.spacing_m)
        if not _random_track_problem(points, config):
            return f"try another seed, e.g. {other}"
    return (
        "no seed nearby gives a valid track with these settings; lower "
        "track.random_amplitude or raise track.random_radius_m"
    )


# --- painting the floor --------------------------------------------------------


def _paint(track: Track) -> tuple[FloorRaster, Appearance]:
    """Paint the floor, its tape lines and its lighting for the track's seed."""
    config = track.config
    rng = np.random.default_rng([track.seed, 1])
    res = config.resolution_m
    reach_m = config.width_m / 2 + config.edge_line_m / 2 + 2 * res
    low = track.points.min(axis=0) - config.margin_m - reach_m
    high = track.points.max(axis=0) + config.margin_m + reach_m
    cols, rows = np.ceil((high - low) / res).astype(int)

    # Distance of every pixel near the track from the centre line.
    dist, s_near = _distance_field(track, low, res, (rows, cols), reach_m)

    # The floor, then the tape on it.
    kind = str(rng.choice(["concrete", "wood", "tiles", "carpet"]))
    image = _floor_texture(kind, rng, rows, cols, res)
    grain = rng.normal(0.0, 1.0, (rows, cols)).astype(np.float32)
    white = rng.uniform(225, 250) + rng.uniform(-6, 6, 3)
    yellow = rng.uniform([210, 170, 20], [240, 205, 70])
    tape_shade = (1.0 - 0.04 * np.abs(grain))[..., None]

    edge_alpha = np.clip(
        0.5 - (np.abs(dist - config.width_m / 2) - config.edge_line_m / 2) / res, 0, 1
    )
    _blend(image, edge_alpha, white * tape_shade)
    dash_alpha = _dash_alpha(s_near, track.length_m, config)
    centre_alpha = np.clip(0.5 - (dist - config.centre_line_m / 2) / res, 0, 1)
    _blend(image, centre_alpha * dash_alpha, yellow * tape_shade)

    # Lighting: overall gain and tint, a gradient across the room, a few lamps.
    gain = rng.uniform(0.7, 1.15)
    tint = rng.uniform(0.92, 1.08, 3)
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32) * res
    extent = max(rows, cols) * res
    angle = rng.uniform(0, 2 * math.pi)
    light = 1.0 + rng.uniform(0, 0.2) * (
        (math.cos(angle) * xs + math.sin(angle) * ys) / extent - 0.5
    )
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0, cols * res), rng.uniform(0, rows * res)
        sigma = rng.uniform(0.3, 1.0)
        light += rng.uniform(0.1, 0.35) * np.exp(
            -((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)
        )
    image *= (light * gain)[..., None] * tint
    rgb = np.clip(image, 0, 255).astype(np.uint8)

    wall = rng.uniform(110, 220) + rng.uniform(-15, 15, 3)
    appearance = Appearance(
        floor_kind=kind,
        wall_top_rgb=tuple(float(v) for v in np.clip(wall * gain * tint, 0, 255)),
        wall_bottom_rgb=tuple(
            float(v) for v in np.clip(0.7 * wall * gain * tint, 0, 255)
        ),
        noise_sigma=float(rng.uniform(1.5, 6.0)),
        brightness_jitter=float(rng.uniform(1.0, 4.0)),
    )
    floor = FloorRaster(rgb, float(low[0]), float(low[1]), res)
    log.debug(
        "painted a %dx%d %s floor for the %s track, seed %d",
        cols,
        rows,
        kind,
        track.shape,
        track.seed,
    )
    return floor, appearance


def _blend(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Paint ``colour`` over ``image`` with per-pixel coverage ``alpha``."""
    a = alpha[..., None].astype(np.float32)
    image *= 1 - a
    image += a * colour


def _dash_alpha(s_near: np.ndarray, length_m: float, config: TrackConfig) -> np.ndarray:
    """Coverage of the centre dashes along the line, antialiased at their ends."""
    period = config.dash_m + config.gap_m
    count = max(1, round(length_m / period))
    period = length_m / count
    dash = config.dash_m * period / (config.dash_m + config.gap_m)
    phase = s_near % period
    inside = np.minimum(phase, dash - phase)
    outside = -np.minimum(phase - dash, period - phase)
    signed = np.where(phase < dash, inside, outside)
    return np.clip(0.5 + signed / config.resolution_m, 0, 1)


def _distance_field(
    track: Track,
    origin: np.ndarray,
    res: float,
    shape_px: tuple[int, int],
    reach_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the centre line and arc length of the nearest point, for each
    raster pixel within ``reach_m`` of the line (``inf`` and 0 elsewhere).

    Each segment scatters a grid of samples (0.7 pixel apart) over the strip
    around it; each pixel keeps the nearest segment among those that reached
    it. Where the figure-eight crosses, the nearer branch wins, so the tape of
    one branch does not cross the other's lane.
    """
    rows, cols = shape_px
    step = 0.7 * res  # < res / sqrt(2): every pixel square gets a sample
    along = np.arange(-0.5 * track.spacing_m, 1.5 * track.spacing_m, step)
    across = np.arange(-(reach_m + res), reach_m + res + 1e-9, step)
    offsets_a = np.repeat(along, len(across))
    offsets_n = np.tile(across, len(along))
    best_pix, best_d, best_s = [], [], []

    for start in range(0, len(track.points), 256):
        seg = slice(start, start + 256)
        a = track.points[seg]
        u = track.segment_dirs[seg]
        n = np.stack([-u[:, 1], u[:, 0]], axis=1)
        sx = a[:, :1] + offsets_a * u[:, :1] + offsets_n * n[:, :1]
        sy = a[:, 1:] + offsets_a * u[:, 1:] + offsets_n * n[:, 1:]
        col = np.floor((sx - origin[0]) / res).astype(np.int64)
        row = np.floor((sy - origin[1]) / res).astype(np.int64)

        # Exact distance from each sampled pixel's centre to its segment.
        px = origin[0] + (col + 0.5) * res - a[:, :1]
        py = origin[1] + (row + 0.5) * res - a[:, 1:]
        length = track.segment_lengths[seg][:, None]
        t = np.clip(px * u[:, :1] + py * u[:, 1:], 0, length)
        d = np.hypot(px - t * u[:, :1], py - t * u[:, 1:])
        s = (track.s[seg][:, None] + t) % track.length_m
        keep = (d <= reach_m) & (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        pix, d, s = (row * cols + col)[keep], d[keep], s[keep]
        pix, d, s = _nearest_per_pixel(pix, d, s)
        best_pix.append(pix)
        best_d.append(d)
        best_s.append(s)

    pix, d, s = _nearest_per_pixel(
        np.concatenate(best_pix), np.concatenate(best_d), np.concatenate(best_s)
    )
    dist = np.full(rows * cols, np.inf, dtype=np.float32)
    s_near = np.zeros(rows * cols, dtype=np.float32)
    dist[pix] = d
    s_near[pix] = s
    return dist.reshape(rows, cols), s_near.reshape(rows, cols)


def _nearest_per_pixel(
    pix: np.ndarray, d: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep, for each pixel, the sample with the smallest distance."""
    order = np.lexsort((d, pix))
    pix, d, s = pix[order], d[order], s[order]
    first = np.ones(len(pix), dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    return pix[first], d[first], s[first]


def _smooth_noise(
    rng: np.random.Generator, shape_px: tuple[int, int], cell_px: tuple[float, float]
) -> np.ndarray:
    """Smooth value noise in [-1, 1] with features about ``cell_px`` apart."""
    rows, cols = shape_px
    grid = rng.uniform(-1, 1, (int(rows / cell_px[0]) + 2, int(cols / cell_px[1]) + 2))
    r = np.arange(rows) / cell_px[0]
    c = np.arange(cols) / cell_px[1]
    r0, c0 = r.astype(int), c.astype(int)
    fr, fc = r - r0, c - c0
    fr = (fr * fr * (3 - 2 * fr))[:, None]
    fc = (fc * fc * (3 - 2 * fc))[None, :]
    top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c0 + 1] * fc
    bottom = grid[r0 + 1][:, c0] * (1 - fc) + grid[r0 + 1][:, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def _floor_texture(
    kind: str, rng: np.random.Generator, rows: int, cols: int, res: float
) -> np.ndarray:
    """A (rows, cols, 3) float32 floor of ``kind`` before lighting."""
    shape = (rows, cols)
    tint = rng.uniform(-8, 8, 3)

    def cells(metres: float) -> tuple[float, float]:
        return (metres / res, metres / res)

    if kind == "concrete":
        base = rng.uniform(90, 160) + tint
        shade = 20 * _smooth_noise(rng, shape, cells(1.0))
        shade += 10 * _smooth_noise(rng, shape, cells(0.2))
        shade += 4 * rng.normal(0, 1, shape)
    elif kind == "wood":
        base = rng.uniform([140, 95, 55], [175, 125, 80])
        plank_px = rng.uniform(0.1, 0.2) / res
        along_x = bool(rng.integers(0, 2))
        across = np.arange(rows if along_x else cols) / plank_px
        plank = rng.normal(0, 10, int(across.max()) + 2)[across.astype(int)]
        seam = np.clip(1 - np.abs(across - np.round(across)) * plank_px, 0, 1)
        stripes = plank - 25 * seam
        stretched = (
            (0.6 / res, 0.015 / res) if not along_x else (0.015 / res, 0.6 / res)
        )
        shade = 8 * _smooth_noise(rng, shape, stretched)
        shade += stripes[:, None] if along_x else stripes[None, :]
        shade += 3 * rng.normal(0, 1, shape)
    elif kind == "tiles":
        base = rng.uniform(125, 180) + tint
        tile_px = rng.uniform(0.3, 0.6) / res
        grout_px = 0.008 / res
        r = np.arange(rows)[:, None] / tile_px
        c = np.arange(cols)[None, :] / tile_px
        tiles = rng.normal(0, 6, (int(rows / tile_px) + 2, int(cols / tile_px) + 2))
        shade = tiles[r.astype(int), c.astype(int)]
        edge = np.minimum(np.abs(r - np.round(r)), np.abs(c - np.round(c))) * tile_px
        grout = np.clip(1 - (edge - grout_px / 2), 0, 1)
        shade += 6 * _smooth_noise(rng, shape, cells(0.8)) - 45 * grout
        shade += 2 * rng.normal(0, 1, shape)
    else:
        palette = np.array([[50, 60, 85], [70, 70, 75], [50, 75, 55], [85, 55, 50]])
        base = palette[rng.integers(0, len(palette))] + tint
        shade = 8 * _smooth_noise(rng, shape, cells(0.05))
        shade += 6 * _smooth_noise(rng, shape, cells(0.6))
        shade += 8 * rng.normal(0, 1, shape)
    image = np.empty((rows, cols, 3), dtype=np.float32)
    image[:] = base
    image += shade[..., None].astype(np.float32)
    return image
