"""Export a Keras model to TFLite, check it against Keras, write it with its card.

Two exports, both taking the camera's uint8 frame as it is (the model scales
pixels in its first layer):

- ``float32``: float weights and activations. Parity: the largest absolute
  difference between the Keras and the TFLite class probabilities over the
  held-out frames must be at most ``FLOAT32_MAX_ABS_PROB_DIFF`` (1e-4).
- ``int8``: full-integer quantization calibrated on real training frames,
  built-in int8 ops only, uint8 input (raw pixels, no quantization parameters)
  and **uint8 output**: class probabilities quantized with the output tensor's
  scale and zero point (scale 1/256, zero point 0 for a softmax). A pilot
  dequantizes with ``(q - zero_point) * scale`` from the interpreter's output
  details; ``run_tflite`` here does the same. Parity: Keras and TFLite must
  pick the same class on at least ``INT8_MIN_TOP1_AGREEMENT`` (90%) of the
  held-out frames; the largest probability difference is reported too.

Every export is run in LiteRT (``ai_edge_litert``, the car's runtime) before
anything is written. An export beyond tolerance raises ``ModelError`` and
writes nothing. Otherwise ``model.tflite`` is written first and ``model.json``
(the card, with the sha256 of the written bytes and the parity figures) last,
both atomically, so a folder with a card always holds the model it describes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.actions import ACTION_LABELS
from shared.errors import ModelCardError, ModelError
from shared.modelcard import (
    CARD_NAME,
    MODEL_NAME,
    QUANTIZATIONS,
    ModelCard,
    sha256_file,
    write_atomic,
)

log = logging.getLogger(__name__)

#: Float32 export: largest allowed |p_keras - p_tflite| over held-out frames.
FLOAT32_MAX_ABS_PROB_DIFF = 1e-4
#: Int8 export: smallest allowed share of held-out frames where both pick the
#: same class.
INT8_MIN_TOP1_AGREEMENT = 0.90
#: At most this many frames calibrate the int8 quantization.
CALIBRATION_FRAMES_MAX = 300
#: At most this many held-out frames are used for the parity check.
CHECK_FRAMES_MAX = 500


@dataclass(frozen=True)
class Tolerance:
    """The limits an export must meet; ``None`` means not checked."""

    max_abs_prob_diff: float | None = None
    min_top1_agreement: float | None = None


#: The stated tolerance of each quantization.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(max_abs_prob_diff=FLOAT32_MAX_ABS_PROB_DIFF),
    "int8": Tolerance(min_top1_agreement=INT8_MIN_TOP1_AGREEMENT),
}


def export_model(
    keras_model: Any,
    out_dir: str | Path,
    *,
    quantization: str = "float32",
    calibration_frames: np.ndarray | None = None,
    check_frames: np.ndarray,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    data_digest: str = "",
    labels: tuple[str, ...] = ACTION_LABELS,
    tolerance: Tolerance | None = None,
) -> ModelCard:
    """Convert ``keras_model``, check it against Keras, and write it with its card.

    Args:
        keras_model: a Keras model with a uint8 HxWx3 input and a softmax over
            ``labels``.
        out_dir: the folder to write ``model.tflite`` and ``model.json`` into.
        quantization: ``"float32"`` or ``"int8"``.
        calibration_frames: N x H x W x 3 uint8 training frames; needed for
            int8 (at most ``CALIBRATION_FRAMES_MAX`` are used, evenly spaced).
        check_frames: N x H x W x 3 uint8 held-out frames for the parity check
            (at most ``CHECK_FRAMES_MAX``, evenly spaced).
        hyperparameters: what trained the model, copied into the card.
        metrics: how good it is (validation figures), copied into the card.
        data_digest: sha256 of the training data, copied into the card.
        labels: the class names in output order.
        tolerance: overrides ``TOLERANCES[quantization]``.

    Returns:
        The card written to ``out_dir / "model.json"``.

    Raises:
        ModelError: the model or the frames do not fit, the conversion fails,
            or the TFLite model disagrees with Keras beyond the tolerance (then
            nothing is written).
    """
    if quantization not in QUANTIZATIONS:
        raise ModelError(
            f"quantization {quantization!r} is not one of {QUANTIZATIONS}; "
            "pick float32 or int8"
        )
    input_shape = _check_input_contract(keras_model, len(labels))
    check_frames = _check_frames(check_frames, input_shape, "check", CHECK_FRAMES_MAX)
    if quantization == "int8":
        if calibration_frames is None or len(calibration_frames) == 0:
            raise ModelError(
                "int8 export needs calibration frames from the training drives; "
                "pass calibration_frames or export float32"
            )
        calibration_frames = _check_frames(
            calibration_frames, input_shape, "calibration", CALIBRATION_FRAMES_MAX
        )
    tolerance = tolerance or TOLERANCES[quantization]

    # Convert in memory; nothing touches out_dir until the parity check passes.
    model_bytes = convert_to_tflite(keras_model, quantization, calibration_frames)

    # Parity: Keras and the car's runtime on the same held-out frames.
    keras_probs = _keras_predict(keras_model, check_frames)
    tflite_probs = run_tflite(model_bytes, check_frames)
    parity = measure_parity(keras_probs, tflite_probs)
    parity["tolerance"] = {
        "max_abs_prob_diff": tolerance.max_abs_prob_diff,
        "min_top1_agreement": tolerance.min_top1_agreement,
    }
    parity["output_dtype"] = _output_dtype(model_bytes)
    _check_parity(parity, tolerance, quantization)
    log.info(
        "%s export agrees with Keras on %d frames: top-1 %.4f, max |dp| %.2e",
        quantization,
        parity["frames"],
        parity["top1_agreement"],
        parity["max_abs_prob_diff"],
    )

    # Write the model, then the card that names its bytes.
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CARD_NAME).unlink(missing_ok=True)
    model_path = out_dir / MODEL_NAME
    write_atomic(model_path, model_bytes)
    card = ModelCard(
        model_sha256=sha256_file(model_path),
        input_shape=list(input_shape),
        input_dtype="uint8",
        labels=list(labels),
        quantization=quantization,
        model_file=MODEL_NAME,
        hyperparameters=dict(hyperparameters or {}),
        metrics=dict(metrics or {}),
        parity=parity,
        data_digest=data_digest,
    )
    card.validate()
    card.save(out_dir / CARD_NAME)
    log.info("wrote %s (%d bytes) and its card", model_path, len(model_bytes))
    return card


def convert_to_tflite(
    keras_model: Any, quantization: str, calibration_frames: np.ndarray | None = None
) -> bytes:
    """Convert a Keras model to TFLite flatbuffer bytes, built-in ops only.

    Raises:
        ModelError: the converter fails (an op with no built-in TFLite kernel).
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if quantization == "int8":
        frames = calibration_frames if calibration_frames is not None else []

        def representative() -> Iterator[list[np.ndarray]]:
            for frame in frames:
                yield [frame[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]

    # Keras prints "Saved artifact at ..." while converting: keep it in the log.
    # TensorFlow logs its temporary SavedModel at INFO: keep that for --debug.
    chatter = io.StringIO()
    tf_log = logging.getLogger("tensorflow")
    tf_level = tf_log.level
    if not log.isEnabledFor(logging.DEBUG):
        tf_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            # The uint8 input is cast inside the model: it needs no statistics.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs")
            model_bytes = converter.convert()
    except Exception as err:
        raise ModelError(
            f"TFLite conversion to {quantization!r} failed: {err}; the model must "
            "use layers with built-in TFLite ops only"
        ) from err
    finally:
        tf_log.setLevel(tf_level)
        if chatter.getvalue():
            log.debug("converter output: %s", chatter.getvalue().strip())
    return bytes(model_bytes)


def make_interpreter(model: bytes | str | Path) -> Any:
    """A LiteRT interpreter with tensors allocated, from bytes or a file.

    Raises:
        ModelError: the bytes are not a TFLite model LiteRT can run.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        if isinstance(model, bytes):
            interpreter = Interpreter(model_content=model)
        else:
            interpreter = Interpreter(model_path=str(model))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        where = "model bytes" if isinstance(model, bytes) else repr(str(model))
        raise ModelError(
            f"LiteRT cannot load {where}: {err}; export the model again"
        ) from err
    return interpreter


def run_tflite(model: bytes | str | Path | Any, frames: np.ndarray) -> np.ndarray:
    """Class probabilities (N x classes, float32) of a TFLite model, one frame at
    a time as on the car; a quantized output is dequantized with its scale and
    zero point.

    ``model`` is flatbuffer bytes, a file, or an interpreter from
    ``make_interpreter``.
    """
    if isinstance(model, (bytes, str, Path)):
        interpreter = make_interpreter(model)
    else:
        interpreter = model
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    scale, zero_point = output_detail["quantization"]
    rows = []
    for frame in frames:
        interpreter.set_tensor(
            input_detail["index"], frame[np.newaxis].astype(input_detail["dtype"])
        )
        interpreter.invoke()
        out = interpreter.get_tensor(output_detail["index"])[0]
        if np.issubdtype(output_detail["dtype"], np.integer) and scale:
            out = (out.astype(np.float32) - zero_point) * scale
        rows.append(out.astype(np.float32))
    return np.stack(rows)


def measure_parity(keras_probs: np.ndarray, tflite_probs: np.ndarray) -> dict:
    """How closely TFLite follows Keras: top-1 agreement and probability gaps."""
    diff = np.abs(keras_probs.astype(np.float64) - tflite_probs.astype(np.float64))
    agree = np.argmax(keras_probs, axis=1) == np.argmax(tflite_probs, axis=1)
    return {
        "frames": int(len(keras_probs)),
        "top1_agreement": float(np.mean(agree)),
        "max_abs_prob_diff": float(diff.max()),
        "mean_abs_prob_diff": float(diff.mean()),
        "runtime": _runtime_name(),
    }


def verify_export(
    folder: str | Path, labels: tuple[str, ...] | None = None
) -> ModelCard:
    """Check an exported folder: valid card, matching sha256, loads, runs once.

    Args:
        folder: a folder with ``model.json`` and the model file it names.
        labels: when given, the card's labels must equal them.

    Returns:
        The folder's card.

    Raises:
        ModelCardError: the card is invalid or does not describe the file.
        ModelError: LiteRT cannot load or run the model, or its input or output
            does not match the card.
    """
    folder = Path(folder)
    card = ModelCard.load(folder / CARD_NAME)
    model_path = folder / card.model_file
    card.verify_model_file(model_path)
    if labels is not None and tuple(card.labels) != tuple(labels):
        raise ModelCardError(
            f"card labels {card.labels!r} differ from {list(labels)!r}; "
            "export the model with this MaLPi's action set"
        )
    interpreter = make_interpreter(model_path)
    input_detail = interpreter.get_input_details()[0]
    shape = [int(n) for n in input_detail["shape"][1:]]
    dtype = np.dtype(input_detail["dtype"]).name
    if shape != card.input_shape or dtype != card.input_dtype:
        raise ModelError(
            f"model {str(model_path)!r} takes {dtype} {shape}, its card says "
            f"{card.input_dtype} {card.input_shape}; export the model again"
        )
    frame = np.zeros((1, *shape), dtype=input_detail["dtype"])
    probs = run_tflite(interpreter, frame)[0]
    if probs.shape != (len(card.labels),) or not np.all(np.isfinite(probs)):
        raise ModelError(
            f"model {str(model_path)!r} gave {probs!r} for a black frame, "
            f"expected {len(card.labels)} finite probabilities; export it again"
        )
    return card


def _check_input_contract(keras_model: Any, classes: int) -> tuple[int, int, int]:
    """The model's HxWx3 input shape, after checking dtype and output size."""
    inputs = keras_model.inputs
    outputs = keras_model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            f"a drive model has one input and one output, this one has "
            f"{len(inputs)} and {len(outputs)}"
        )
    dtype = getattr(inputs[0], "dtype", None)
    dtype_name = getattr(dtype, "name", dtype)
    if str(dtype_name) != "uint8":
        raise ModelError(
            f"model input dtype is {dtype_name!r}, expected 'uint8': the model must "
            "take camera pixels as they are and scale them in its first layer"
        )
    shape = tuple(inputs[0].shape[1:])
    if len(shape) != 3 or shape[2] != 3 or not all(isinstance(n, int) for n in shape):
        raise ModelError(f"model input shape {shape!r} is not HxWx3 with fixed size")
    out_shape = tuple(outputs[0].shape[1:])
    if out_shape != (classes,):
        raise ModelError(
            f"model output shape {out_shape!r} does not match {classes} labels"
        )
    return shape  # type: ignore[return-value]


def _check_frames(
    frames: np.ndarray, input_shape: tuple[int, ...], what: str, limit: int
) -> np.ndarray:
    """Frames checked against the input contract, thinned evenly to ``limit``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != input_shape:
        raise ModelError(
            f"{what} frames are {frames.dtype} {frames.shape}, expected uint8 "
            f"N x {' x '.join(map(str, input_shape))}"
        )
    if len(frames) == 0:
        raise ModelError(f"no {what} frames; the parity check needs held-out frames")
    if len(frames) > limit:
        frames = frames[np.linspace(0, len(frames) - 1, limit).astype(int)]
    return frames


def _keras_predict(keras_model: Any, frames: np.ndarray) -> np.ndarray:
    return np.asarray(keras_model.predict(frames, batch_size=64, verbose=0))


def _check_parity(parity: dict, tolerance: Tolerance, quantization: str) -> None:
    limit = tolerance.max_abs_prob_diff
    if limit is not None and parity["max_abs_prob_diff"] > limit:
        raise ModelError(
            f"{quantization} TFLite model differs from Keras by up to "
            f"{parity['max_abs_prob_diff']:.2e} in probability on "
            f"{parity['frames']} held-out frames, limit {limit:.1e}; nothing was "
            "written: check the converter and the layers the model uses"
        )
    floor = tolerance.min_top1_agreement
    if floor is not None and parity["top1_agreement"] < floor:
        raise ModelError(
            f"{quantization} TFLite model picks the same class as Keras on "
            f"{parity['top1_agreement']:.1%} of {parity['frames']} held-out frames "
            f"(max probability gap {parity['max_abs_prob_diff']:.3f}), limit "
            f"{floor:.0%}; nothing was written: a model whose classes are this "
            "close needs more training, or calibrate on more varied training "
            "frames, or export float32"
        )


def _output_dtype(model_bytes: bytes) -> str:
    detail = make_interpreter(model_bytes).get_output_details()[0]
    return np.dtype(detail["dtype"]).name


def _runtime_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ai-edge-litert {version('ai-edge-litert')}"
    except PackageNotFoundError:
        return "ai-edge-litert"
