"""Cameras: one interface, one class per backend.

Every camera is a context manager that yields timestamped 120x120 RGB model
frames. A backend captures on its own thread (or in its own pipeline) and
publishes each frame into a one-slot mailbox; ``read`` returns the newest
frame that the caller has not seen yet, so a slow consumer skips stale frames
instead of queueing them.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from shared.errors import HardwareError
from shared.frames import FRAME_SHAPE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One model frame and when it was captured."""

    #: 120x120x3 RGB uint8.
    image: np.ndarray
    #: ``time.monotonic()`` at capture.
    t_mono_s: float
    #: Counts up from 0 for each frame the camera published.
    index: int

    def age_ms(self, now_s: float | None = None) -> float:
        """How old the frame is, in milliseconds."""
        now_s = time.monotonic() if now_s is None else now_s
        return (now_s - self.t_mono_s) * 1000.0


class Camera(ABC):
    """A source of model frames; use as ``with SomeCamera(...) as cam:``."""

    #: Short backend name shown in logs and the web app.
    name = "camera"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._newest: Frame | None = None
        self._count = 0

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def open(self) -> None:
        """Start capturing. Raises HardwareError when the camera is missing."""

    @abstractmethod
    def close(self) -> None:
        """Stop capturing and release the device; safe to call twice."""

    def publish(self, image: np.ndarray, t_mono_s: float | None = None) -> Frame:
        """Make ``image`` the newest frame (called by the capturing backend)."""
        if image.shape != FRAME_SHAPE:
            raise HardwareError(
                f"{self.name} camera gave a {image.shape} frame, expected "
                f"{FRAME_SHAPE}; check its output size"
            )
        t_mono_s = time.monotonic() if t_mono_s is None else t_mono_s
        with self._cond:
            frame = Frame(image=image, t_mono_s=t_mono_s, index=self._count)
            self._count += 1
            self._newest = frame
            self._cond.notify_all()
        return frame

    def latest(self) -> Frame | None:
        """The newest frame, without waiting; ``None`` before the first."""
        with self._cond:
            return self._newest

    def read(self, after_index: int = -1, timeout_s: float = 1.0) -> Frame:
        """Wait for and return the newest frame with index above ``after_index``.

        Raises:
            HardwareError: no new frame arrived within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._newest is None or self._newest.index <= after_index:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    raise HardwareError(
                        f"{self.name} camera gave no new frame for "
                        f"{timeout_s * 1000:.0f} ms; check that it is connected"
                    )
            return self._newest
