"""TFLite export: parity with Keras, refusals, verification and the fixtures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.actions import ACTION_LABELS, Action
from shared.errors import ModelCardError, ModelError
from shared.modelcard import CARD_NAME, MODEL_NAME, ModelCard, sha256_file
from trainer.export import (
    FLOAT32_MAX_ABS_PROB_DIFF,
    INT8_MIN_TOP1_AGREEMENT,
    Tolerance,
    export_model,
    run_tflite,
    verify_export,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
MODELS = FIXTURES / "models"


def _load_make_models():
    spec = importlib.util.spec_from_file_location(
        "make_models", FIXTURES / "make_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_models", module)
    spec.loader.exec_module(module)
    return module


make_models = _load_make_models()


@pytest.fixture(scope="module")
def tiny_model():
    return make_models.train_tiny_model()


@pytest.fixture(scope="module")
def frames():
    calibration, _ = make_models.pattern_frames(6, seed=11)
    check, actions = make_models.pattern_frames(6, seed=12)
    return calibration, check, actions


def test_export_model_float32_writes_parity_into_card(tiny_model, frames, tmp_path):
    _, check, _ = frames
    card = export_model(
        tiny_model,
        tmp_path,
        quantization="float32",
        check_frames=check,
        hyperparameters={"learning_rate": 0.01},
        metrics={"val_accuracy": 0.5},
        data_digest="a" * 64,
    )

    on_disk = ModelCard.load(tmp_path)
    assert on_disk == card
    assert on_disk.model_sha256 == sha256_file(tmp_path / MODEL_NAME)
    assert on_disk.quantization == "float32"
    assert on_disk.input_shape == [120, 120, 3] and on_disk.input_dtype == "uint8"
    assert on_disk.labels == list(ACTION_LABELS)
    assert on_disk.hyperparameters == {"learning_rate": 0.01}
    assert on_disk.data_digest == "a" * 64
    assert on_disk.parity["frames"] == len(check)
    assert on_disk.parity["max_abs_prob_diff"] <= FLOAT32_MAX_ABS_PROB_DIFF
    assert on_disk.parity["top1_agreement"] == 1.0
    assert on_disk.parity["output_dtype"] == "float32"
    assert on_disk.parity["tolerance"]["max_abs_prob_diff"] == 1e-4

    keras_probs = tiny_model.predict(check, verbose=0)
    tflite_probs = run_tflite(tmp_path / MODEL_NAME, check)
    assert np.abs(keras_probs - tflite_probs).max() <= FLOAT32_MAX_ABS_PROB_DIFF


def test_export_model_int8_takes_pixels_and_agrees_with_keras(
    tiny_model, frames, tmp_path
):
    calibration, check, actions = frames
    card = export_model(
        tiny_model,
        tmp_path,
        quantization="int8",
        calibration_frames=calibration,
        check_frames=check,
    )

    assert card.quantization == "int8"
    assert card.parity["top1_agreement"] >= INT8_MIN_TOP1_AGREEMENT
    assert 0 < card.parity["max_abs_prob_diff"] < 0.1
    assert card.parity["output_dtype"] == "uint8"

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / MODEL_NAME))
    interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    assert input_detail["dtype"] == np.uint8
    assert list(input_detail["shape"]) == [1, 120, 120, 3]
    probs = run_tflite(interpreter, check)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.03)
    assert np.mean(probs.argmax(axis=1) == actions) >= 0.9


def test_export_model_beyond_tolerance_writes_nothing(tiny_model, frames, tmp_path):
    calibration, check, _ = frames
    out = tmp_path / "int8"

    with pytest.raises(ModelError, match="nothing was written"):
        export_model(
            tiny_model,
            out,
            quantization="int8",
            calibration_frames=calibration,
            check_frames=check,
            tolerance=Tolerance(max_abs_prob_diff=1e-9),
        )

    assert not (out / CARD_NAME).exists()
    assert not (out / MODEL_NAME).exists()


def test_export_model_refused_keeps_previous_export_whole(tiny_model, frames, tmp_path):
    _, check, _ = frames
    before = export_model(tiny_model, tmp_path, check_frames=check)

    with pytest.raises(ModelError, match="agrees|picks the same class"):
        export_model(
            tiny_model,
            tmp_path,
            check_frames=check,
            tolerance=Tolerance(min_top1_agreement=1.01),
        )

    assert verify_export(tmp_path).model_sha256 == before.model_sha256


def test_export_model_refuses_float_input(frames, tmp_path):
    import keras

    inputs = keras.Input((120, 120, 3))
    outputs = keras.layers.Dense(5, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inputs)
    )
    _, check, _ = frames

    with pytest.raises(ModelError, match="uint8"):
        export_model(keras.Model(inputs, outputs), tmp_path, check_frames=check)
    assert list(tmp_path.iterdir()) == []


def test_export_model_int8_needs_calibration_frames(tiny_model, frames, tmp_path):
    _, check, _ = frames
    with pytest.raises(ModelError, match="calibration"):
        export_model(tiny_model, tmp_path, quantization="int8", check_frames=check)


def test_verify_export_refuses_tampered_model(tiny_model, frames, tmp_path):
    _, check, _ = frames
    export_model(tiny_model, tmp_path, check_frames=check)
    assert verify_export(tmp_path, labels=ACTION_LABELS).quantization == "float32"

    data = bytearray((tmp_path / MODEL_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / MODEL_NAME).write_bytes(bytes(data))

    with pytest.raises(ModelCardError, match="sha256"):
        verify_export(tmp_path)


@pytest.mark.parametrize("name", ["tiny-float32", "tiny-int8"])
def test_fixture_models_verify_and_read_patterns(name):
    card = verify_export(MODELS / name, labels=ACTION_LABELS)
    card.check_compatible()
    assert (MODELS / name / MODEL_NAME).stat().st_size < 200_000

    frames = np.stack([make_models.pattern_frame(a) for a in Action])
    probs = run_tflite(MODELS / name / MODEL_NAME, frames)
    assert list(probs.argmax(axis=1)) == [int(a) for a in Action]


def test_fixture_wrong_shape_card_says_96():
    card = verify_export(MODELS / "wrong-shape")
    assert card.input_shape == [96, 96, 3]
    with pytest.raises(ModelCardError, match="camera gives"):
        card.check_compatible()


def test_fixture_wrong_labels_refused_by_label_check():
    card = ModelCard.load(MODELS / "wrong-labels")
    card.verify_model_file(MODELS / "wrong-labels" / MODEL_NAME)
    assert sorted(card.labels) == sorted(ACTION_LABELS)
    assert card.labels != list(ACTION_LABELS)
    with pytest.raises(ModelCardError, match="labels"):
        verify_export(MODELS / "wrong-labels", labels=ACTION_LABELS)


def test_fixture_not_tflite_has_matching_sha_but_does_not_load():
    card = ModelCard.load(MODELS / "not-tflite")
    card.verify_model_file(MODELS / "not-tflite" / MODEL_NAME)
    with pytest.raises(ModelError, match="LiteRT cannot load"):
        verify_export(MODELS / "not-tflite")


@pytest.mark.slow
def test_make_models_reproduces_committed_fixtures(tmp_path):
    # A fresh interpreter, as a developer runs the script: training in this
    # process has already changed TensorFlow's global state (threads, seeds).
    subprocess.run(
        [sys.executable, str(FIXTURES / "make_models.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    made = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())

    assert made == sorted(p.name for p in MODELS.iterdir() if p.is_dir())
    for name in made:
        card = ModelCard.load(tmp_path / name)
        committed = json.loads((MODELS / name / CARD_NAME).read_text())
        assert committed["model_sha256"] == card.model_sha256, (
            f"{name} differs from what make_models.py makes; run "
            "tests/fixtures/make_models.py and commit tests/fixtures/models"
        )
        assert sha256_file(MODELS / name / MODEL_NAME) == committed["model_sha256"]


@pytest.mark.slow
def test_export_model_seed_cnn_both_quantizations(tmp_path):
    import keras

    from trainer.model import ModelParams, build_model

    keras.utils.set_random_seed(3)
    frames, actions = make_models.pattern_frames(24, seed=21)
    model = build_model(ModelParams(learning_rate=1e-3, dropouts="low"))
    model.fit(frames, actions, epochs=4, batch_size=16, verbose=0)
    check, _ = make_models.pattern_frames(6, seed=22)

    for quantization in ("float32", "int8"):
        card = export_model(
            model,
            tmp_path / quantization,
            quantization=quantization,
            calibration_frames=frames,
            check_frames=check,
        )
        assert verify_export(tmp_path / quantization, labels=ACTION_LABELS) == card
        assert card.parity["frames"] == len(check)


# --- trainer export and trainer report on a search folder ----------------------


def _cli(argv: list[str]) -> int:
    from shared.cli import make_parser, run
    from trainer import export_cli

    parser = make_parser("trainer", "test", "")
    export_cli.add_commands(parser.add_subparsers())
    return run(parser, argv)


@pytest.fixture(scope="module")
def trained_search(tmp_path_factory):
    """A search folder in the agreed layout with one trained run and real drives."""
    import keras

    from tests.trainer.trainer_drives import cycle_actions, write_drive
    from trainer.data import load_dataset

    root = tmp_path_factory.mktemp("project")
    drives = [
        write_drive(root / "drives", f"d{i}", cycle_actions(60, seed=i), seed=i)
        for i in range(2)
    ]
    dataset = load_dataset(drives, root / ".cache")
    keras.utils.set_random_seed(0)
    model = make_models.build_tiny_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        epochs=15,
        batch_size=16,
        verbose=0,
        validation_data=(dataset.x_val, dataset.y_val),
    ).history

    search = root / "searches" / "tiny"
    (search / "runs" / "0-0").mkdir(parents=True)
    model.save(search / "runs" / "0-0" / "model.keras")
    # An untrained run: its classes are too close for int8 to agree on all.
    (search / "runs" / "0-1").mkdir(parents=True)
    make_models.build_tiny_model().save(search / "runs" / "0-1" / "model.keras")
    params = {"learning_rate": 0.01, "batch_size": 16, "optimizer": "adam"}
    run = {
        "run": "0-0",
        "seed": 0,
        "history": history,
        "score": 0.9,
        "balanced_accuracy": 0.88,
        "per_class_recall": [0.9] * 5,
        "confusion": np.eye(5, dtype=int).tolist(),
        "majority_baseline": 0.25,
        "collapsed": False,
        "epochs": 15,
        "train_time_s": 1.0,
        "stopped_early": False,
    }
    meta = {
        "format": 1,
        "software_version": "0.1.0",
        "created": "now",
        "space": {},
        "options": {"trials": 1, "runs": 1, "objective": "score"},
        "data": dataset.summary(),
    }
    (search / "search.json").write_text(json.dumps(meta))
    trial = {
        "tid": 0,
        "params": params,
        "score": 0.9,
        "score_std": 0.0,
        "status": "ok",
        "error": None,
        "runs": [run],
        "epochs_run": 15,
    }
    (search / "trials.jsonl").write_text(json.dumps(trial) + "\n")
    best = {
        "params": params,
        "score": 0.9,
        "score_std": 0.0,
        "run": "0-0",
        "source": "search",
    }
    (search / "best.json").write_text(json.dumps(best))
    return search


def test_export_cli_exports_best_run_both_ways(trained_search, capsys):
    assert _cli(["export", str(trained_search)]) == 0

    out = capsys.readouterr().out
    meta = json.loads((trained_search / "search.json").read_text())
    for kind in ("float32", "int8"):
        folder = trained_search / "export" / kind
        card = verify_export(folder, labels=ACTION_LABELS)
        assert card.quantization == kind
        assert card.hyperparameters["learning_rate"] == 0.01
        assert card.metrics["run"] == "0-0" and card.metrics["score"] == 0.9
        assert card.data_digest == meta["data"]["digest"]
        assert card.parity["frames"] == meta["data"]["val_frames"]
        assert f"{kind}: {folder / MODEL_NAME}" in out
    assert "top-1 agreement" in out


def test_export_cli_named_run_and_missing_run(trained_search, tmp_path, capsys):
    assert (
        _cli(
            [
                "export",
                str(trained_search),
                "--run",
                "0-0",
                "--quantize",
                "float32",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert verify_export(tmp_path / "float32").metrics["run"] == "0-0"
    assert not (tmp_path / "int8").exists()

    assert _cli(["export", str(trained_search), "--run", "7-1"]) == 2
    assert "'7-1' has no model" in capsys.readouterr().err


def test_export_cli_refused_int8_removes_the_older_int8(
    trained_search, tmp_path, capsys
):
    out = tmp_path / "export"
    assert _cli(["export", str(trained_search), "--out", str(out)]) == 0
    assert (out / "int8" / CARD_NAME).is_file()

    argv = ["export", str(trained_search), "--run", "0-1", "--out", str(out)]
    assert _cli([*argv, "--int8-min-agreement", "1.0"]) == 2

    err = capsys.readouterr().err
    assert "int8 TFLite model picks the same class" in err
    assert "nothing was written" in err
    assert verify_export(out / "float32").metrics["run"] == "0-1"
    assert not (out / "int8" / CARD_NAME).exists()
    assert not (out / "int8" / MODEL_NAME).exists()

    assert _cli([*argv, "--int8-min-agreement", "1.5"]) == 2
    assert "from 0 to 1" in capsys.readouterr().err


def test_export_cli_unfinished_search_says_so(trained_search, tmp_path, capsys):
    import shutil

    search = tmp_path / "unfinished"
    shutil.copytree(
        trained_search, search, ignore=shutil.ignore_patterns("export", "report")
    )
    (search / "best.json").unlink()

    assert _cli(["export", str(search)]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert not (search / "export").exists()


def test_report_cli_on_search_folder(trained_search, capsys):
    assert _cli(["report", str(trained_search)]) == 0

    printed = capsys.readouterr().out.split()
    page = trained_search / "report" / "index.html"
    assert str(page) in printed
    text = page.read_text()
    for plot in (trained_search / "report").glob("*.png"):
        assert str(plot) in printed and f'href="{plot.name}"' in text


@pytest.mark.slow
def test_export_and_report_on_a_real_tiny_search(tmp_path, capsys):
    from tests.trainer.trainer_drives import cycle_actions, write_drive
    from trainer.cli import main

    write_drive(tmp_path / "drives", "a", cycle_actions(40, seed=1), seed=1)
    write_drive(tmp_path / "drives", "b", cycle_actions(30, seed=2), seed=2)
    space = {
        "learning_rate": {"dist": "loguniform", "low": -7.5, "high": -6},
        "l2_reg": 1e-5,
        "batch_size": 8,
        "dropouts": "low",
        "optimizer": "adam",
    }
    (tmp_path / "space.json").write_text(json.dumps(space))
    assert main([
        "--quiet", "search", str(tmp_path / "drives"), "--name", "s",
        "--project", str(tmp_path), "--space", str(tmp_path / "space.json"),
        "--trials", "2", "--epochs", "3", "--max-batch", "8", "--top-k", "0",
        "--rerun-runs", "1", "--threads", "2",
    ]) == 0  # fmt: skip
    search = tmp_path / "searches" / "s"
    capsys.readouterr()

    # The report, from the search's own files.
    assert main(["report", "s", "--project", str(tmp_path)]) == 0
    text = (search / "report" / "index.html").read_text()
    plots = sorted(p.name for p in (search / "report").glob("*.png"))
    assert plots == ["confusion.png", "curves.png", "params.png", "scores.png"]
    assert all(f'href="{name}"' in text for name in plots)

    # The export: float32 always; int8 either passes its check or leaves nothing.
    code = main(["export", str(search)])
    best = json.loads((search / "best.json").read_text())
    card = verify_export(search / "export" / "float32", labels=ACTION_LABELS)
    assert card.metrics["run"] == best["run"]
    assert card.hyperparameters == best["params"]
    if code == 0:
        assert verify_export(search / "export" / "int8").quantization == "int8"
    else:
        assert "nothing was written" in capsys.readouterr().err
        assert not (search / "export" / "int8" / CARD_NAME).exists()
