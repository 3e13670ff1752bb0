"""The car's model store: verified activation, atomic links, rollback, watcher."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

import pytest

from robot import cli
from robot.modelstore import CurrentWatcher, ModelStore, check_model_name
from shared.errors import ModelCardError, ModelError
from shared.modelcard import ModelCard
from tests.deploy.conftest import keep_logging

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def _install(store: ModelStore, fixture: str, name: str | None = None) -> str:
    """Copy a fixture model into the store as a push would; return its sha256."""
    sha = ModelCard.load(FIXTURES / fixture).model_sha256
    shutil.copytree(FIXTURES / fixture, store.path / (name or sha))
    return sha


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "car")
    store.path.mkdir(parents=True)
    return store


def test_modelstore_activate_flips_current_and_keeps_previous(store):
    first = _install(store, "tiny-float32")
    second = _install(store, "tiny-int8")

    assert store.activate(first).model_sha256 == first
    assert (store.current(), store.previous()) == (first, None)
    store.activate(second[:8])  # a unique prefix names the model too
    assert (store.current(), store.previous()) == (second, first)
    assert os.readlink(store.path / "current") == second  # relative link
    assert not [p for p in store.path.iterdir() if ".tmp-" in p.name]

    assert store.rollback().model_sha256 == first
    assert (store.current(), store.previous()) == (first, second)


def test_modelstore_refuses_bytes_that_differ_from_card(store):
    good = _install(store, "tiny-int8")
    store.activate(good)
    bad = _install(store, "tiny-float32")
    model = store.path / bad / "model.tflite"
    model.write_bytes(model.read_bytes()[:-1] + b"\0")

    with pytest.raises(ModelCardError, match="its card says"):
        store.activate(bad)
    assert store.current() == good


def test_modelstore_refuses_folder_not_named_by_its_sha(store):
    _install(store, "tiny-int8", name="a" * 64)
    with pytest.raises(ModelCardError, match="not named by its card's sha256"):
        store.activate("a" * 64)
    assert store.current() is None


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("wrong-shape", "model input is"),
        ("wrong-labels", "model labels"),
        ("not-tflite", "not a TFLite model"),
    ],
)
def test_modelstore_refuses_models_the_car_cannot_run(store, fixture, reason):
    sha = _install(store, fixture)
    with pytest.raises((ModelCardError, ModelError), match=reason):
        store.activate(sha)
    assert store.current() is None


@pytest.mark.parametrize(
    "name", ["../evil", "/etc/passwd", "a/../b", "..", "x/y", "current", ".incoming-x"]
)
def test_modelstore_refuses_paths_as_model_names(store, name):
    with pytest.raises(ModelError, match="not a model folder name"):
        check_model_name(name)
    with pytest.raises(ModelError):
        store.activate(name)


def test_modelstore_cli_refuses_path_with_one_line_error(store, capsys):
    with keep_logging():
        code = cli.main(["model", "activate", "../../etc", "--home", str(store.home)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("robot: error: model name '../../etc' is not a model")


def test_modelstore_rollback_without_previous_is_refused(store):
    with pytest.raises(ModelError, match="no previous model"):
        store.rollback()


def test_modelstore_cli_list_json_shows_models_and_links(store, capsys):
    sha = _install(store, "tiny-int8")
    store.activate(sha)
    with keep_logging():
        assert cli.main(["model", "list", "--home", str(store.home)]) == 0
    assert f"{sha} int8 active" in capsys.readouterr().out


def test_current_watcher_reports_each_flip_once(store):
    first = _install(store, "tiny-float32")
    second = _install(store, "tiny-int8")
    store.activate(first)
    seen: list[Path] = []
    changed = threading.Event()

    def on_change(folder: Path) -> None:
        seen.append(folder)
        changed.set()

    with CurrentWatcher(store, on_change, interval_s=0.02):
        store.activate(second)
        assert changed.wait(5)
    assert seen == [store.path / second]


def test_current_watcher_survives_a_failing_swap(store, caplog):
    first = _install(store, "tiny-float32")
    store.activate(first)
    second = _install(store, "tiny-int8")

    def on_change(folder: Path) -> None:
        raise ModelError(f"cannot load {folder.name}")

    watcher = CurrentWatcher(store, on_change)
    store.activate(second)
    with caplog.at_level(logging.WARNING, logger="robot.modelstore"):
        assert watcher.poll() is True
        assert watcher.poll() is False  # the same target is not retried
    assert "keeping the old one" in caplog.text
