"""Frame geometry: one crop and scale for every source, and JPEG coding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.errors import FrameError
from shared.frames import (
    FRAME_SHAPE,
    camera_output_size,
    decode_jpeg,
    encode_jpeg,
    square_crop_box,
    to_model_frame,
)


def _columns(height: int, width: int, channels: int = 3, step: int = 1) -> np.ndarray:
    """A frame whose red channel is column // step, so crops can be checked."""
    frame = np.zeros((height, width, channels), np.uint8)
    frame[..., 0] = (np.arange(width) // step)[None, :]
    frame[..., 1] = 50
    if channels == 4:
        frame[..., 3] = 255
    return frame


def test_frames_centre_crop_of_160x120_needs_no_scaling() -> None:
    frame = _columns(120, 160)
    model = to_model_frame(frame)
    assert model.shape == FRAME_SHAPE and model.dtype == np.uint8
    assert model[0, 0, 0] == 20 and model[0, -1, 0] == 139
    np.testing.assert_array_equal(model, frame[:, 20:140])
    assert square_crop_box(160, 120) == (20, 0, 140, 120)


def test_frames_640x480_is_cropped_then_scaled() -> None:
    frame = _columns(480, 640, step=4)
    model = to_model_frame(frame)
    assert model.shape == FRAME_SHAPE
    # The square spans source columns 80..559 (red 20..139); scaled by 1/4,
    # model column j shows source columns 80 + 4j .. 83 + 4j, red 20 + j.
    red = model[60, :, 0].astype(int)
    assert np.abs(red - (20 + np.arange(120))).max() <= 1
    assert (model[..., 1] == 50).all()


def test_frames_rgba_and_pillow_images_become_rgb() -> None:
    rgba = _columns(120, 160, channels=4)
    np.testing.assert_array_equal(to_model_frame(rgba), rgba[:, 20:140, :3])
    image = Image.fromarray(rgba, mode="RGBA")
    np.testing.assert_array_equal(to_model_frame(image), rgba[:, 20:140, :3])
    grey = Image.new("L", (160, 120), 77)
    assert (to_model_frame(grey) == 77).all()


def test_frames_a_model_frame_passes_unchanged() -> None:
    frame = np.full(FRAME_SHAPE, 9, np.uint8)
    assert to_model_frame(frame) is frame


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((120, 160), np.uint8),
        np.zeros((120, 160, 2), np.uint8),
        np.zeros((120, 160, 3), np.float32),
        np.zeros((1, 120, 160, 3), np.uint8),
        [[0, 0, 0]],
    ],
    ids=["grey-2d", "two-channels", "float", "batch", "list"],
)
def test_frames_bad_shapes_raise_frame_error(bad: object) -> None:
    with pytest.raises(FrameError):
        to_model_frame(bad)  # type: ignore[arg-type]


def test_frames_camera_output_size_keeps_the_aspect() -> None:
    assert camera_output_size(640, 480) == (160, 120)
    assert camera_output_size(1920, 1080) == (214, 120)
    assert camera_output_size(480, 640) == (120, 160)
    with pytest.raises(FrameError, match="not positive"):
        camera_output_size(0, 480)


def test_frames_jpeg_round_trip(tmp_path: Path) -> None:
    frame = np.tile(
        np.linspace(0, 255, 120, dtype=np.uint8)[:, None, None], (1, 120, 3)
    )
    data = encode_jpeg(frame)
    assert data[:2] == b"\xff\xd8"
    decoded = decode_jpeg(data)
    assert decoded.shape == FRAME_SHAPE
    assert np.abs(decoded.astype(int) - frame).mean() < 1.5
    (tmp_path / "f.jpg").write_bytes(data)
    np.testing.assert_array_equal(decode_jpeg(tmp_path / "f.jpg"), decoded)


def test_frames_decode_refuses_damaged_data(tmp_path: Path) -> None:
    data = encode_jpeg(np.zeros(FRAME_SHAPE, np.uint8))
    with pytest.raises(FrameError, match="cannot decode image"):
        decode_jpeg(data[: len(data) // 2])
    with pytest.raises(FrameError, match="missing.jpg"):
        decode_jpeg(tmp_path / "missing.jpg")
