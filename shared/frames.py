"""Frame geometry: the one way any source frame becomes a model frame.

A model frame is 120x120x3 RGB uint8. Every source, the Pi camera, a USB
webcam, the simulator and imported 160x120 DonkeyCar images, goes through
``to_model_frame``: a centred square crop, then a resize only when the square
is not already 120 px. The camera asks its own pipeline for a small output
(``camera_output_size``) so that the crop is a free slice on the car.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from shared.errors import FrameError

FRAME_SIZE_PX = 120
FRAME_SHAPE = (FRAME_SIZE_PX, FRAME_SIZE_PX, 3)
FRAME_DTYPE = np.uint8
JPEG_QUALITY = 90


def square_crop_box(width_px: int, height_px: int) -> tuple[int, int, int, int]:
    """Return ``(left, top, right, bottom)`` of the centred square of a frame."""
    side = min(width_px, height_px)
    left = (width_px - side) // 2
    top = (height_px - side) // 2
    return left, top, left + side, top + side


def camera_output_size(
    sensor_width_px: int, sensor_height_px: int, size_px: int = FRAME_SIZE_PX
) -> tuple[int, int]:
    """Return the (width, height) to ask a camera pipeline for.

    The short side is ``size_px`` and the sensor's aspect is kept, so that the
    camera scales in hardware and ``to_model_frame`` only has to crop. Widths
    are rounded up to an even number, which every ISP accepts.
    """
    if sensor_width_px <= 0 or sensor_height_px <= 0:
        raise FrameError(
            f"sensor size {sensor_width_px}x{sensor_height_px} is not positive"
        )
    scale = size_px / min(sensor_width_px, sensor_height_px)
    width = max(size_px, round(sensor_width_px * scale))
    height = max(size_px, round(sensor_height_px * scale))
    return width + width % 2, height + height % 2


def to_model_frame(image: np.ndarray | Image.Image) -> np.ndarray:
    """Crop and scale ``image`` to a 120x120x3 RGB uint8 model frame.

    Accepts an HxWx3 RGB or HxWx4 RGBA uint8 array, or a Pillow image of any
    mode. A frame that is already 120x120x3 uint8 is returned as it is.

    Raises:
        FrameError: the array is not an image of a shape and type we know.
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise FrameError(f"a frame must be a numpy array, not {type(image)!r}")
    if image.dtype != FRAME_DTYPE:
        raise FrameError(f"frame dtype is {image.dtype}, expected uint8 pixels")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise FrameError(f"frame shape is {image.shape}, expected HxWx3 RGB")
    if image.shape == FRAME_SHAPE:
        return image

    height, width = image.shape[:2]
    left, top, right, bottom = square_crop_box(width, height)
    square = image[top:bottom, left:right, :3]
    if square.shape[0] == FRAME_SIZE_PX:
        return np.ascontiguousarray(square)
    resized = Image.fromarray(square).resize(
        (FRAME_SIZE_PX, FRAME_SIZE_PX), Image.Resampling.BILINEAR
    )
    return np.asarray(resized)


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode an RGB uint8 frame as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes | Path) -> np.ndarray:
    """Decode JPEG bytes (or a file) to an RGB uint8 array.

    Raises:
        FrameError: the data is not a complete, decodable image.
    """
    source = data if isinstance(data, Path) else io.BytesIO(data)
    try:
        with Image.open(source) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        name = str(data) if isinstance(data, Path) else f"{len(data)} bytes"
        raise FrameError(f"cannot decode image {name}: {err}") from err
