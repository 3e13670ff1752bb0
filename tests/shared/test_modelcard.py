"""Model cards: validation, compatibility, the model's sha256 and round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.actions import ACTION_LABELS
from shared.errors import ModelCardError
from shared.modelcard import CARD_NAME, ModelCard, sha256_file, write_atomic


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3 pretend model bytes" * 100)
    return path


def _card(model_file: Path, **fields) -> ModelCard:
    return ModelCard(model_sha256=sha256_file(model_file), **fields)


def test_modelcard_round_trip(tmp_path: Path, model_file: Path) -> None:
    card = _card(
        model_file,
        quantization="int8",
        hyperparameters={"learning_rate": 1e-4, "dropouts": "mid"},
        metrics={"val_accuracy": 0.61},
    )
    card.validate()
    path = card.save(tmp_path)
    assert path == tmp_path / CARD_NAME
    loaded = ModelCard.load(tmp_path)
    assert loaded == card
    assert loaded.labels == list(ACTION_LABELS) and loaded.input_shape == [120, 120, 3]
    loaded.verify_model_file(model_file)
    loaded.check_compatible()


def test_modelcard_refuses_a_sha_mismatch(model_file: Path) -> None:
    card = _card(model_file)
    model_file.write_bytes(model_file.read_bytes() + b"!")
    with pytest.raises(ModelCardError, match="is damaged or not the one"):
        card.verify_model_file(model_file)
    with pytest.raises(ModelCardError, match="does not exist"):
        card.verify_model_file(model_file.with_name("absent.tflite"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_sha256": "abc"}, "is not a sha256 hex digest"),
        ({"model_sha256": "A" * 64}, "is not a sha256 hex digest"),
        ({"input_shape": [120, 120]}, "must be [height, width, 3]"),
        ({"input_dtype": "int16"}, "input_dtype 'int16'"),
        ({"quantization": "int4"}, "quantization 'int4'"),
        ({"labels": "stop,left"}, "must be a list of names"),
        ({"model_file": "../model.tflite"}, "must be a plain file name"),
        ({"format": 2}, "format 2 is not supported"),
    ],
)
def test_modelcard_validation_names_the_bad_field(fields: dict, message: str) -> None:
    data = {"model_sha256": "0" * 64, **fields}
    with pytest.raises(ModelCardError) as caught:
        ModelCard.from_dict(data)
    assert message in str(caught.value)


def test_modelcard_load_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="every model needs its model.json"):
        ModelCard.load(tmp_path)
    (tmp_path / CARD_NAME).write_text("{not json")
    with pytest.raises(ModelCardError, match="is not JSON"):
        ModelCard.load(tmp_path)
    (tmp_path / CARD_NAME).write_text(json.dumps({"model_sha256": "0" * 64, "x": 1}))
    with pytest.raises(ModelCardError, match="unknown field 'x'"):
        ModelCard.load(tmp_path)
    (tmp_path / CARD_NAME).write_text(json.dumps({"labels": []}))
    with pytest.raises(ModelCardError, match="has no model_sha256"):
        ModelCard.load(tmp_path)


def test_modelcard_check_compatible_refuses_other_cars(model_file: Path) -> None:
    card = _card(model_file, input_shape=[96, 96, 3])
    with pytest.raises(ModelCardError, match="export a model for 120x120x3 frames"):
        card.check_compatible()
    card = _card(model_file, labels=["stop", "forward", "left", "right"])
    with pytest.raises(ModelCardError, match="differ from the car's actions"):
        card.check_compatible()


def test_modelcard_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "file.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]
