"""Tests of the simulated camera and the top-down map."""

from __future__ import annotations

import numpy as np
import pytest

from robot.sim.config import SimCameraConfig
from robot.sim.render import Renderer, TopDownMap, ground_offsets, render_map
from shared.errors import SimulationError
from shared.frames import FRAME_SHAPE


@pytest.fixture(scope="module")
def oval(track_of):
    return track_of("oval", 0)


def test_renderer_gives_model_frames(oval) -> None:
    frame = Renderer(oval).render(oval.pose_at(0.0))

    assert frame.shape == FRAME_SHAPE
    assert frame.dtype == np.uint8


def _tape_colours(track) -> tuple[np.ndarray, np.ndarray]:
    """The floor raster's colour of a yellow dash and of the edge tape."""
    floor = track.floor

    def pixel(x_m: float, y_m: float) -> np.ndarray:
        col = int((x_m - floor.origin_x_m) / floor.resolution_m)
        row = int((y_m - floor.origin_y_m) / floor.resolution_m)
        return floor.rgb[row, col].astype(int)

    edge = track.pose_at(0.05, lateral_m=track.half_width_m)
    return pixel(*track.point_at(0.05)[:2]), pixel(edge.x_m, edge.y_m)


@pytest.mark.parametrize(
    ("shape", "seed"),
    [("oval", 0), ("oval", 3), ("oval", 8), ("figure8", 2), ("random", 1)],
)
def test_renderer_sees_the_lines_ahead_from_the_centre_line(
    track_of, shape: str, seed: int
) -> None:
    track = track_of(shape, seed)
    frame = Renderer(track, noise=False).render(track.pose_at(0.0)).astype(int)
    yellow, white = _tape_colours(track)

    def near(colour: np.ndarray) -> np.ndarray:
        return np.abs(frame - colour).max(axis=-1) < 35

    # Yellow dashes straight ahead in the middle columns of the lower half, not
    # at the sides, and white edge tape somewhere in view.
    assert near(yellow)[60:, 50:70].sum() > 20
    assert near(yellow)[60:, :30].sum() == 0
    assert near(white)[15:].sum() > 30


def test_renderer_noise_differs_per_seed_and_repeats_for_a_seed(oval) -> None:
    pose = oval.pose_at(2.0)

    first = Renderer(oval, seed=1).render(pose)
    again = Renderer(oval, seed=1).render(pose)
    other = Renderer(oval, seed=2).render(pose)
    clean = Renderer(oval, noise=False).render(pose)

    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.abs(first.astype(int) - clean).mean() > 0.5


def test_renderer_noise_changes_from_frame_to_frame(oval) -> None:
    renderer = Renderer(oval)
    pose = oval.pose_at(2.0)

    assert not np.array_equal(renderer.render(pose), renderer.render(pose))


def test_renderer_worlds_look_different_per_seed(track_of) -> None:
    tracks = [track_of("oval", seed) for seed in (0, 2, 3)]

    frames = [Renderer(t, noise=False).render(t.pose_at(0.0)) for t in tracks]

    means = [frame.reshape(-1, 3).mean(axis=0) for frame in frames]
    assert np.abs(means[0] - means[1]).max() > 10
    assert np.abs(means[1] - means[2]).max() > 10


def test_renderer_shows_the_wall_above_the_horizon(oval) -> None:
    renderer = Renderer(oval, noise=False)
    frame = renderer.render(oval.pose_at(0.0))
    wall = np.array(oval.appearance.wall_top_rgb)

    # The default camera's top rows look above the horizon.
    assert np.abs(frame[0, :].astype(float) - wall).max() <= 1.0
    assert renderer.floor_fraction < 1.0


def test_renderer_nearest_and_bilinear_agree_on_average(oval) -> None:
    pose = oval.pose_at(3.0)
    nearest = SimCameraConfig(interpolation="nearest")

    smooth = Renderer(oval, noise=False).render(pose).astype(int)
    blocky = Renderer(oval, nearest, noise=False).render(pose).astype(int)

    assert np.abs(smooth - blocky).mean() < 6


def test_renderer_rotating_the_car_changes_the_view(oval) -> None:
    renderer = Renderer(oval, noise=False)
    pose = oval.pose_at(0.5)
    turned = type(pose)(pose.x_m, pose.y_m, pose.heading_rad + 0.5)

    assert (
        np.abs(renderer.render(pose).astype(int) - renderer.render(turned)).mean() > 5
    )


@pytest.mark.parametrize("pitch_deg", [-30.0, -90.0])
def test_renderer_camera_looking_up_raises(oval, pitch_deg: float) -> None:
    config = SimCameraConfig(pitch_deg=pitch_deg)

    with pytest.raises(SimulationError, match="sees no floor"):
        Renderer(oval, config)


def test_renderer_camera_on_the_floor_raises(oval) -> None:
    with pytest.raises(SimulationError, match="camera height 0.0 m"):
        Renderer(oval, SimCameraConfig(height_m=0.0))


def test_ground_offsets_put_the_bottom_row_close_and_centred() -> None:
    config = SimCameraConfig(height_m=0.2, pitch_deg=30.0, fov_deg=40.0)

    forward, left, hits = ground_offsets(config)

    # The bottom rows look 50 degrees down, the middle rows 30 degrees down.
    assert forward[-1, 59] == pytest.approx(
        0.2 / np.tan(np.radians(50)) + 0.05, rel=0.02
    )
    assert forward[59, 59] == pytest.approx(
        0.2 / np.tan(np.radians(30)) + 0.05, rel=0.02
    )
    assert left[60, 0] > 0 > left[60, -1]
    assert hits.all()


def test_top_down_map_draws_the_car_where_it_is(oval) -> None:
    top_down = TopDownMap(oval, 160)

    here = top_down.draw(oval.pose_at(0.0))
    there = top_down.draw(oval.pose_at(5.0))
    col, row = (round(v) for v in top_down.to_pixels(*oval.point_at(0.0)[:2]))

    assert here.shape == (160, 160, 3) and here.dtype == np.uint8
    assert not np.array_equal(here, there)
    red = here[row - 2 : row + 3, col - 2 : col + 3].astype(int)
    assert ((red[..., 0] > 200) & (red[..., 1] < 80)).any()
    assert render_map(oval, None, 64).shape == (64, 64, 3)
