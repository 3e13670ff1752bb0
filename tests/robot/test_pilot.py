"""The pilot on the real tiny TFLite fixtures, with a real LiteRT interpreter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot.pilot import Pilot, find_runtime
from shared.actions import Action
from shared.errors import ModelCardError, ModelError
from shared.modelcard import CARD_NAME, MODEL_NAME, ModelCard
from tests.fixtures.make_models import pattern_frame

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

pytest.importorskip("ai_edge_litert", reason="LiteRT (ai-edge-litert) is not installed")


def copy_model(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(MODELS / name, target)
    return target


@pytest.mark.parametrize("name", ["tiny-float32", "tiny-int8"])
def test_pilot_picks_the_action_each_pattern_frame_shows(name):
    pilot = Pilot.load(MODELS / name, runtime="ai_edge_litert")
    rng = np.random.default_rng(7)
    for action in Action:
        prediction = pilot.predict(pattern_frame(action, rng))
        assert prediction.action is action
        assert prediction.probabilities.shape == (len(Action),)
        assert prediction.probabilities.dtype == np.float32
        assert prediction.probabilities.sum() == pytest.approx(1.0, abs=0.02)
        assert prediction.inference_ms > 0


def test_pilot_dequantizes_int8_outputs_like_the_float_model():
    float_pilot = Pilot.load(MODELS / "tiny-float32")
    int8_pilot = Pilot.load(MODELS / "tiny-int8")
    assert int8_pilot.card.quantization == "int8"
    frame = pattern_frame(Action.LEFT, np.random.default_rng(3))
    expected = float_pilot.predict(frame).probabilities
    got = int8_pilot.predict(frame).probabilities
    # Quantized probabilities sit on a grid of 1/256; the float ones don't.
    assert np.abs(got - expected).max() < 0.1
    assert not np.array_equal(got, np.round(got))


def test_pilot_loads_from_the_model_file_and_reports_itself():
    pilot = Pilot.load(MODELS / "tiny-float32" / MODEL_NAME)
    info = pilot.describe()
    assert info["runtime"] == "ai_edge_litert"
    assert info["sha256"] == ModelCard.load(MODELS / "tiny-float32").model_sha256
    assert pilot.name.startswith("tiny-float32@")


def test_pilot_auto_runtime_prefers_litert_and_never_imports_tensorflow():
    name, _ = find_runtime("auto")
    assert name == "ai_edge_litert"
    # A fresh interpreter: this test process may have imported TensorFlow.
    script = (
        "import sys; from robot.pilot import Pilot; "
        f"p = Pilot.load({str(MODELS / 'tiny-int8')!r}); "
        "print(p.runtime, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["ai_edge_litert", "False"]


@pytest.mark.slow
def test_pilot_takes_float32_input_models(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="builds a float32-input model")
    keras = tf.keras
    inputs = keras.Input((120, 120, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    folder = tmp_path / "f32"
    folder.mkdir()
    (folder / MODEL_NAME).write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(model).convert()
    )
    from shared.modelcard import sha256_file

    ModelCard(
        model_sha256=sha256_file(folder / MODEL_NAME), input_dtype="float32"
    ).save(folder)
    prediction = Pilot.load(folder).predict(np.full((120, 120, 3), 9, np.uint8))
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_pilot_refuses_a_file_that_is_not_tflite():
    with pytest.raises(ModelError, match="is not a TFLite model"):
        Pilot.load(MODELS / "not-tflite")


def test_pilot_refuses_a_model_whose_input_does_not_match_the_camera():
    with pytest.raises(ModelCardError, match=r"model input is \[96, 96, 3\]"):
        Pilot.load(MODELS / "wrong-shape")


def test_pilot_refuses_a_model_whose_labels_differ():
    with pytest.raises(ModelCardError, match="differ from the car's actions"):
        Pilot.load(MODELS / "wrong-labels")


def test_pilot_refuses_a_card_that_lies_about_the_input(tmp_path):
    folder = copy_model("tiny-float32", tmp_path)
    card = ModelCard.load(folder)
    card.input_dtype = "float32"
    card.save(folder)
    with pytest.raises(ModelError, match="takes uint8 input but its card says"):
        Pilot.load(folder)


def test_pilot_refuses_a_damaged_model_file(tmp_path):
    folder = copy_model("tiny-int8", tmp_path)
    data = bytearray((folder / MODEL_NAME).read_bytes())
    data[-1] ^= 0xFF
    (folder / MODEL_NAME).write_bytes(bytes(data))
    with pytest.raises(ModelCardError, match="has sha256"):
        Pilot.load(folder)


def test_pilot_refuses_a_model_without_card(tmp_path):
    folder = copy_model("tiny-int8", tmp_path)
    (folder / CARD_NAME).unlink()
    with pytest.raises(ModelCardError, match="no model card"):
        Pilot.load(folder)


def test_pilot_refuses_a_missing_model(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Pilot.load(tmp_path / "nothing")


def test_pilot_refuses_an_unknown_runtime():
    with pytest.raises(ModelError, match="unknown TFLite runtime 'onnx'"):
        Pilot.load(MODELS / "tiny-int8", runtime="onnx")


def test_pilot_says_which_runtime_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(ModelError, match="'tflite_runtime' is not installed"):
        find_runtime("tflite_runtime")


def test_pilot_refuses_a_frame_of_the_wrong_shape():
    pilot = Pilot.load(MODELS / "tiny-int8")
    with pytest.raises(ModelError, match="to_model_frame"):
        pilot.predict(np.zeros((120, 160, 3), np.uint8))
