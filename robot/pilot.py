"""The pilot: a TFLite model that picks an action for each camera frame.

``Pilot.load`` reads ``model.tflite`` and its card ``model.json``, checks the
card against the model's bytes (sha256) and against this car (frame shape and
action labels), opens the model in the first TFLite runtime installed, and
checks the interpreter's own input and output tensors against the card. Any
mismatch is refused with a ``ModelCardError`` or ``ModelError`` that says how
to fix it, so a wrong model never reaches the motors.

The runtimes, in order: LiteRT (``ai_edge_litert``), ``tflite_runtime``, and
TensorFlow's ``tf.lite.Interpreter``. TensorFlow is imported only when neither
of the others is installed (or when asked for by name): the car never needs
it.

Loading takes a while on a Pi, so the drive loop loads a new pilot on another
thread and swaps it in between frames; ``predict`` itself is not thread-safe
and is called by the loop thread only.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.actions import ACTION_LABELS, NUM_ACTIONS, Action
from shared.errors import ModelCardError, ModelError
from shared.frames import FRAME_SHAPE
from shared.modelcard import CARD_NAME, MODEL_NAME, ModelCard

log = logging.getLogger(__name__)

#: Runtime names in the order ``auto`` tries them.
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
#: Bytes 4-8 of every TFLite flatbuffer.
TFLITE_IDENTIFIER = b"TFL3"


@dataclass(frozen=True)
class Prediction:
    """What the pilot made of one frame."""

    action: Action
    #: One probability per action, in class-id order (float32).
    probabilities: np.ndarray
    #: Time spent in the interpreter (set, invoke, get).
    inference_ms: float
    #: The action to record for this frame when it differs from the one
    #: driven (a scripted driver's correction during injected noise).
    label: Action | None = None


def _import_runtime(name: str) -> Any:
    """The ``Interpreter`` class of runtime ``name``; ImportError if missing."""
    if name == "ai_edge_litert":
        return importlib.import_module("ai_edge_litert.interpreter").Interpreter
    if name == "tflite_runtime":
        return importlib.import_module("tflite_runtime.interpreter").Interpreter
    if name == "tensorflow":
        return importlib.import_module("tensorflow").lite.Interpreter
    raise ModelError(
        f"unknown TFLite runtime {name!r}; use auto or one of {', '.join(RUNTIMES)}"
    )


def find_runtime(runtime: str = "auto") -> tuple[str, Any]:
    """Return ``(name, Interpreter class)`` of the runtime to use.

    ``auto`` takes the first of ``RUNTIMES`` that imports; TensorFlow is
    imported only after the other two failed.

    Raises:
        ModelError: the runtime asked for (or every runtime) is not installed.
    """
    names = RUNTIMES if runtime == "auto" else (runtime,)
    missing: list[str] = []
    for name in names:
        try:
            interpreter_class = _import_runtime(name)
        except ImportError as err:
            log.debug("TFLite runtime %s is not installed: %s", name, err)
            missing.append(name)
            continue
        return name, interpreter_class
    if runtime == "auto":
        raise ModelError(
            "no TFLite runtime is installed (tried "
            f"{', '.join(missing)}); install one with `pip install ai-edge-litert`"
        )
    raise ModelError(
        f"TFLite runtime {runtime!r} is not installed; install it or set "
        "pilot.runtime = 'auto' in robot.toml"
    )


def installed_runtimes() -> list[str]:
    """Names of the runtimes that are installed, without importing TensorFlow."""
    return [name for name in RUNTIMES if importlib.util.find_spec(name) is not None]


def resolve_model_path(path: str | Path) -> Path:
    """The model file named by ``path``: a ``.tflite`` file or its folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / MODEL_NAME
    # Resolve links once (models/current), so the model and its card are read
    # from the same folder even if the link flips while we load.
    return path.resolve()


def check_tflite_bytes(model_path: Path) -> None:
    """Refuse a file that is not a TFLite flatbuffer before any runtime sees it.

    Raises:
        ModelError: the file is missing, unreadable or not TFLite.
    """
    try:
        with open(model_path, "rb") as stream:
            head = stream.read(8)
    except OSError as err:
        raise ModelError(f"cannot read model {str(model_path)!r}: {err}") from err
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            f"{str(model_path)!r} is not a TFLite model (its header is "
            f"{head!r}, a TFLite file carries {TFLITE_IDENTIFIER!r} at byte 4); "
            "export it with `trainer export`"
        )


class Pilot:
    """A checked TFLite model that turns frames into actions.

    Example::

        pilot = Pilot.load("~/malpi/models/current")
        prediction = pilot.predict(frame.image)
        motors.drive(prediction.action)
    """

    #: The drive mode its frames are recorded with (``shared.drives.MODES``).
    record_mode = "pilot"

    def __init__(
        self,
        model_path: Path,
        card: ModelCard,
        interpreter: Any,
        runtime: str,
    ) -> None:
        self.model_path = model_path
        self.card = card
        self.runtime = runtime
        self._interpreter = interpreter
        (self._input,) = interpreter.get_input_details()
        (self._output,) = interpreter.get_output_details()
        self._input_dtype = np.dtype(self._input["dtype"])
        self._output_dtype = np.dtype(self._output["dtype"])
        scale, zero_point = self._output.get("quantization", (0.0, 0))
        self._output_scale = float(scale)
        self._output_zero_point = int(zero_point)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        runtime: str = "auto",
        num_threads: int | None = None,
    ) -> Pilot:
        """Load and check ``model.tflite`` (or a folder holding it) and its card.

        Raises:
            ModelCardError: the card is missing, does not describe these bytes,
                or does not fit this car's frames and actions.
            ModelError: the file is not TFLite, no runtime is installed, or
                the interpreter's tensors disagree with the card.
        """
        model_path = resolve_model_path(path)
        if not model_path.is_file():
            raise ModelError(
                f"model {str(model_path)!r} does not exist; give a model.tflite "
                "or its folder, or push one with `deploy push`"
            )

        # The card: present, describing these bytes, fitting this car.
        card = ModelCard.load(model_path.parent / CARD_NAME)
        card.verify_model_file(model_path)
        card.check_compatible(FRAME_SHAPE, ACTION_LABELS)

        # The runtime and the interpreter.
        check_tflite_bytes(model_path)
        name, interpreter_class = find_runtime(runtime)
        try:
            interpreter = interpreter_class(
                model_path=str(model_path), num_threads=num_threads
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelError(
                f"{name} cannot load {str(model_path)!r}: {err}; export the "
                "model again with `trainer export`"
            ) from err
        _check_tensors(model_path, card, interpreter)

        pilot = cls(model_path, card, interpreter, name)
        log.info(
            "model %s loaded (%s, %s input) with %s",
            pilot.name,
            card.quantization,
            card.input_dtype,
            name,
        )
        return pilot

    @property
    def sha256(self) -> str:
        return self.card.model_sha256

    @property
    def name(self) -> str:
        """A short name: the model's folder and the start of its sha256."""
        folder = self.model_path.parent.name
        if folder == self.sha256:  # models/<sha256>/ on the car
            return self.sha256[:12]
        return f"{folder}@{self.sha256[:12]}"

    def describe(self) -> dict[str, Any]:
        """JSON-able facts for status pages."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "path": str(self.model_path),
            "runtime": self.runtime,
            "quantization": self.card.quantization,
            "input_dtype": self.card.input_dtype,
        }

    def predict(self, image: np.ndarray) -> Prediction:
        """Run the model on one 120x120x3 uint8 RGB frame.

        Raises:
            ModelError: the frame has the wrong shape or type.
        """
        if image.shape != FRAME_SHAPE or image.dtype != np.uint8:
            raise ModelError(
                f"the pilot takes {FRAME_SHAPE} uint8 frames, got {image.shape} "
                f"{image.dtype}; convert it with shared.frames.to_model_frame"
            )
        batch = image[np.newaxis]
        if self._input_dtype != np.uint8:
            # The model scales pixels itself; a float model takes them as 0-255.
            batch = batch.astype(self._input_dtype)

        start = time.perf_counter()
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])[0]
        inference_ms = (time.perf_counter() - start) * 1000.0

        if self._output_dtype.kind in "iu" and self._output_scale > 0:
            probabilities = (
                raw.astype(np.float32) - self._output_zero_point
            ) * self._output_scale
        else:
            probabilities = raw.astype(np.float32)
        action = Action(int(np.argmax(probabilities)))
        return Prediction(action, probabilities, inference_ms)


def _check_tensors(model_path: Path, card: ModelCard, interpreter: Any) -> None:
    """Compare the interpreter's input and output tensors with the card."""
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            f"model {str(model_path)!r} has {len(inputs)} inputs and "
            f"{len(outputs)} outputs; a pilot has one image input and one "
            "output of action probabilities"
        )
    shape = [int(n) for n in inputs[0]["shape"]]
    expected = [1, *card.input_shape]
    if shape != expected:
        raise ModelError(
            f"model {str(model_path)!r} takes input {shape!r} but its card says "
            f"{expected!r}; the card was not written for this model, export again"
        )
    dtype = np.dtype(inputs[0]["dtype"]).name
    if dtype != card.input_dtype:
        raise ModelError(
            f"model {str(model_path)!r} takes {dtype} input but its card says "
            f"{card.input_dtype!r}; the card was not written for this model, "
            "export again"
        )
    out_shape = [int(n) for n in outputs[0]["shape"]]
    if out_shape != [1, NUM_ACTIONS]:
        raise ModelError(
            f"model {str(model_path)!r} outputs {out_shape!r}, expected "
            f"[1, {NUM_ACTIONS}] (one probability per action)"
        )
    out_dtype = np.dtype(outputs[0]["dtype"])
    if out_dtype not in (np.float32, np.uint8, np.int8):
        raise ModelError(
            f"model {str(model_path)!r} outputs {out_dtype.name}; a pilot "
            "outputs float32, uint8 or int8 probabilities"
        )


__all__ = [
    "Pilot",
    "Prediction",
    "RUNTIMES",
    "ModelCardError",
    "ModelError",
    "find_runtime",
    "installed_runtimes",
]
