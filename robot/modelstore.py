"""The car's model store: verified models, an atomic ``current`` link, rollback.

On the car, ``<home>/models/`` holds one folder per model, named by the sha256
of its ``model.tflite``::

    models/
        3fa2...e1/model.tflite, model.json
        .incoming-3fa2...e1-k2j4/   a push still copying (never active)
        current  -> 3fa2...e1      the model the car drives with
        previous -> 9b07...44      the one before, for rollback

``ModelStore.activate`` verifies a model folder (its name, its card, the
sha256 of its bytes), checks the card against the car's camera and action
set, loads the model in the car's runtime and runs one inference, and only
then flips ``current``: the new link is made under a temporary name and
renamed over the old one, so a reader sees the old model or the new one and
never a half-made link. ``CurrentWatcher`` lets a running ``robot drive``
notice the flip and swap its pilot between frames.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot.pilot import Pilot
from shared.actions import ACTION_LABELS
from shared.cli import add_command
from shared.config import RobotConfig, load_config
from shared.drives import LABELS_NAME, META_NAME
from shared.errors import MalpiError, ModelCardError, ModelError
from shared.fileio import fsync_dir, sha256_file
from shared.frames import FRAME_SHAPE
from shared.modelcard import CARD_NAME, ModelCard

log = logging.getLogger(__name__)

CURRENT = "current"
PREVIOUS = "previous"
LOCK_NAME = ".lock"
_HEX = frozenset("0123456789abcdef")
#: The shortest sha256 prefix accepted as a model name.
MIN_PREFIX_CHARS = 6


@dataclass(frozen=True)
class ModelEntry:
    """One installed model folder and its card."""

    sha256: str
    path: Path
    card: ModelCard | None
    #: Why the card could not be read, if it could not.
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """What ``robot model list`` and ``deploy status`` show of this model."""
        model_file = self.path / (self.card.model_file if self.card else "")
        size = model_file.stat().st_size if model_file.is_file() else 0
        card = self.card
        card_path = self.path / CARD_NAME
        return {
            "sha256": self.sha256,
            "card_sha256": sha256_file(card_path) if card_path.is_file() else None,
            "size_bytes": size,
            "quantization": card.quantization if card else None,
            "created": card.created if card else None,
            "metrics": card.metrics if card else {},
            "error": self.error,
        }


def is_sha256(name: str) -> bool:
    """True if ``name`` is a lower-case hex sha256 digest."""
    return len(name) == 64 and set(name) <= _HEX


def check_model_name(name: str) -> str:
    """Return ``name`` as a plain folder name, refusing paths that leave models/.

    Raises:
        ModelError: the name is absolute, has ``..`` or more than one component.
    """
    stripped = name.rstrip("/")
    parts = Path(stripped).parts
    if (
        not stripped
        or stripped.startswith("/")
        or os.path.isabs(name)
        or ".." in parts
        or len(parts) != 1
        or stripped in (".", CURRENT, PREVIOUS)
        or stripped.startswith(".")
    ):
        raise ModelError(
            f"model name {name!r} is not a model folder name; give the sha256 "
            "(or its first characters) of a model under models/, not a path"
        )
    return stripped


class ModelStore:
    """The ``models/`` folder of a car home."""

    def __init__(
        self,
        home: str | Path,
        *,
        frame_shape: tuple[int, ...] = FRAME_SHAPE,
        labels: tuple[str, ...] = ACTION_LABELS,
    ) -> None:
        self.home = Path(home).expanduser()
        self.path = self.home / "models"
        self.frame_shape = tuple(frame_shape)
        self.labels = tuple(labels)

    # --- reading ---------------------------------------------------------------

    def _link(self, name: str) -> str | None:
        try:
            target = os.readlink(self.path / name)
        except OSError:  # no link yet, or not a link
            return None
        return Path(target).name

    def current(self) -> str | None:
        """The sha256 of the active model, or None."""
        return self._link(CURRENT)

    def previous(self) -> str | None:
        """The sha256 of the model before the active one, or None."""
        return self._link(PREVIOUS)

    def current_path(self) -> Path | None:
        """The folder of the active model, or None."""
        sha = self.current()
        return self.path / sha if sha else None

    def entries(self) -> list[ModelEntry]:
        """Every installed model folder (temporary ``.incoming-*`` ones left out)."""
        if not self.path.is_dir():
            return []
        found = []
        for folder in sorted(self.path.iterdir()):
            if folder.is_symlink() or not folder.is_dir() or not is_sha256(folder.name):
                continue
            try:
                card = ModelCard.load(folder / CARD_NAME)
                found.append(ModelEntry(folder.name, folder, card))
            except ModelCardError as err:
                found.append(ModelEntry(folder.name, folder, None, str(err)))
        return found

    def resolve(self, name: str) -> Path:
        """The folder of the model named by its sha256 or a unique prefix of it.

        Raises:
            ModelError: the name is a path, or names no model or several.
        """
        name = check_model_name(name)
        folder = self.path / name
        if folder.is_dir() and not folder.is_symlink():
            return folder
        if len(name) >= MIN_PREFIX_CHARS and set(name) <= _HEX:
            matches = [e.path for e in self.entries() if e.sha256.startswith(name)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ModelError(
                    f"model name {name!r} matches {len(matches)} models; "
                    "give more characters of the sha256"
                )
        known = ", ".join(e.sha256[:12] for e in self.entries()) or "none"
        raise ModelError(
            f"no model {name!r} under {str(self.path)!r} (installed: {known}); "
            "push it first with `deploy push`"
        )

    # --- checking --------------------------------------------------------------

    def verify(self, folder: Path) -> ModelCard:
        """Check a model folder and run the model once; return its card.

        Raises:
            ModelCardError: the card is bad, names other bytes or another folder,
                or does not fit this car's camera and actions.
            ModelError: the car's runtime cannot load or run the model.
        """
        card = ModelCard.load(folder / CARD_NAME)
        if folder.name != card.model_sha256:
            raise ModelCardError(
                f"model folder {folder.name!r} is not named by its card's sha256 "
                f"{card.model_sha256[:12]}...; push the model again with `deploy push`"
            )
        model_path = folder / card.model_file
        card.verify_model_file(model_path)
        card.check_compatible(self.frame_shape, self.labels)
        try_model(folder)
        return card

    # --- changing --------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _point(self, link: str, sha: str) -> None:
        tmp = self.path / f".{link}.tmp-{os.getpid()}-{threading.get_ident()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(sha, tmp)
        os.replace(tmp, self.path / link)
        fsync_dir(self.path)

    def activate(self, name: str) -> ModelCard:
        """Verify the model ``name`` and make it the active one.

        The active model before it becomes ``previous``. Nothing changes if any
        check fails.

        Raises:
            ModelError, ModelCardError: the model is refused; the message says why.
        """
        folder = self.resolve(name)
        card = self.verify(folder)
        with self._locked():
            old = self.current()
            if old != folder.name:
                if old is not None:
                    self._point(PREVIOUS, old)
                self._point(CURRENT, folder.name)
        log.info("model %s is active (previous %s)", folder.name[:12], old)
        return card

    def rollback(self) -> ModelCard:
        """Make the previous model active again; the active one becomes previous.

        Raises:
            ModelError: there is no previous model, or it fails its checks.
        """
        previous = self.previous()
        if previous is None:
            raise ModelError(
                f"no previous model under {str(self.path)!r} to roll back to; "
                "push another model first"
            )
        return self.activate(previous)

    def status(self) -> dict[str, Any]:
        """Models, the active and previous ones, drives and free disk, as JSON."""
        drives = []
        drives_path = self.home / "drives"
        if drives_path.is_dir():
            for folder in sorted(drives_path.iterdir()):
                if not (folder / META_NAME).is_file():
                    continue
                labels = folder / LABELS_NAME
                drives.append(
                    {
                        "name": folder.name,
                        "labels_bytes": labels.stat().st_size
                        if labels.is_file()
                        else 0,
                    }
                )
        usage_path = self.home.absolute()
        while not usage_path.exists():
            usage_path = usage_path.parent
        return {
            "home": str(self.home),
            "current": self.current(),
            "previous": self.previous(),
            "models": [e.summary() for e in self.entries()],
            "drives": drives,
            "free_bytes": shutil.disk_usage(usage_path).free,
        }


def try_model(folder: Path) -> Pilot:
    """Load the model in ``folder`` as the car's pilot and run one inference.

    Raises:
        ModelCardError, ModelError: the pilot refuses the model (see
            ``robot.pilot.Pilot.load``) or it fails on a frame.
    """
    pilot = Pilot.load(folder)
    pilot.predict(np.zeros(FRAME_SHAPE, dtype=np.uint8))
    return pilot


class CurrentWatcher:
    """Polls ``models/current`` and reports each change to ``on_change``.

    Example::

        with CurrentWatcher(store, loop.swap_pilot):
            ...  # the drive loop runs; a new push is swapped in within a second

    ``on_change(folder)`` runs on the watcher's thread, never on the drive
    loop. If it raises, the error is logged as a warning and the watcher keeps
    going; the same link target is not retried until it changes again.
    """

    def __init__(
        self,
        store: ModelStore,
        on_change: Callable[[Path], object],
        *,
        interval_s: float = 0.25,
    ) -> None:
        self.store = store
        self.on_change = on_change
        self.interval_s = interval_s
        self.seen: str | None = store.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="model-watcher", daemon=True
        )

    def __enter__(self) -> CurrentWatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def poll(self) -> bool:
        """Check the link once; True if it changed and ``on_change`` was called."""
        sha = self.store.current()
        if sha is None or sha == self.seen:
            return False
        self.seen = sha
        folder = self.store.path / sha
        log.info("models/current now points at %s; swapping the pilot", sha[:12])
        try:
            self.on_change(folder)
        except (MalpiError, OSError, ValueError, RuntimeError) as err:
            log.warning("new model %s not loaded, keeping the old one: %s", sha, err)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()


# --- command line ----------------------------------------------------------------


def _store(args: argparse.Namespace) -> ModelStore:
    home = args.home
    if home is None:
        home = load_config(RobotConfig, args.config).home
    return ModelStore(home)


def _describe(card: ModelCard) -> str:
    metrics = ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in sorted(card.metrics.items())
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    parts = [card.model_sha256[:12], card.quantization, card.created]
    return " ".join(parts) + (f" ({metrics})" if metrics else "")


def _cmd_activate(args: argparse.Namespace) -> int:
    store = _store(args)
    card = store.activate(args.model)
    previous = store.previous()
    print(
        f"activated {_describe(card)}; previous {previous[:12] if previous else 'none'}"
    )
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    store = _store(args)
    card = store.rollback()
    print(f"rolled back to {_describe(card)}; previous {store.previous()[:12]}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    status = store.status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    for model in status["models"]:
        mark = {status["current"]: "active", status["previous"]: "previous"}.get(
            model["sha256"], ""
        )
        line = f"{model['sha256']} {model['quantization'] or '?'} {mark}"
        print(line.rstrip() + (f" ({model['error']})" if model["error"] else ""))
    if not status["models"]:
        print(f"no models under {store.path}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``robot model activate|rollback|list``."""
    model = subparsers.add_parser(
        "model",
        help="activate, roll back and list the car's models",
        description="Activate, roll back and list the models under <home>/models.",
    )
    verbs = model.add_subparsers(title="commands", metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--home", help="the car's home folder (default: robot.toml or ~/malpi)"
        )
        sub.add_argument("--config", help="robot.toml to read the home from")

    sub = add_command(
        verbs,
        "activate",
        _cmd_activate,
        "check a model (sha256, card, one inference) and make it the active one",
        "robot model activate 3fa2c9e1d0b7 --home ~/malpi",
    )
    sub.add_argument("model", help="sha256 (or its first characters) under models/")
    common(sub)
    sub = add_command(
        verbs,
        "rollback",
        _cmd_rollback,
        "make the previous model active again",
        "robot model rollback",
    )
    common(sub)
    sub = add_command(
        verbs,
        "list",
        _cmd_list,
        "list the models, the active and previous one, drives and free disk",
        "robot model list --json",
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    common(sub)
