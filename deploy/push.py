"""``deploy push`` and ``deploy rollback``: send a model to the car and swap it in.

A push checks the model's bytes against its card here, copies the model and
card to ``models/.incoming-<sha256>-<random>/`` on the car, renames that folder
to ``models/<sha256>/`` once the copy is complete, and runs the car's own
``robot model activate``, which checks and loads the model and only then flips
``models/current``. A push that is interrupted leaves an ``.incoming-`` folder
that is never active; the next push removes it (and any older than an hour).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.car import Car, add_car_options, car_from_args, show_progress
from shared.cli import add_command
from shared.errors import DeployError, ModelCardError
from shared.modelcard import CARD_NAME, ModelCard, sha256_file

log = logging.getLogger(__name__)

#: Export folders of a search, in the order ``push`` prefers them.
EXPORT_PREFERENCE = ("int8", "float32")
#: Copies of interrupted pushes of other models are removed after this long.
STALE_INCOMING_MIN = 60
#: Room to leave on the car beyond the model's own size.
SPARE_BYTES = 1 << 20


@dataclass
class PushResult:
    """What a push did."""

    sha256: str
    uploaded: bool
    activated: bool
    #: The car's own words about the activation.
    verdict: str
    model_bytes: int
    #: Time to log in and ask the car what it has.
    check_s: float
    upload_s: float
    activate_s: float


def find_model(path: str | Path) -> Path:
    """The model folder to push: ``path`` itself, or a search's best export.

    Raises:
        DeployError: ``path`` is neither a model folder nor a search folder with
            an export.
    """
    path = Path(path)
    if (path / CARD_NAME).is_file():
        return path
    if path.name == CARD_NAME and path.is_file():
        return path.parent
    if path.suffix == ".tflite" and (path.parent / CARD_NAME).is_file():
        return path.parent
    for kind in EXPORT_PREFERENCE:
        candidate = path / "export" / kind
        if (candidate / CARD_NAME).is_file():
            return candidate
    if (path / "search.json").is_file():
        raise DeployError(
            f"search {str(path)!r} has no export yet; run `trainer export {path}` first"
        )
    raise DeployError(
        f"{str(path)!r} is neither a model folder (model.tflite + {CARD_NAME}) "
        "nor a search folder with an export; give one of them"
    )


def push(
    car: Car, model: str | Path, *, activate: bool = True, progress: bool = False
) -> PushResult:
    """Copy a model to the car and (unless told not to) activate it there.

    Raises:
        ModelCardError: the model's bytes do not match its card.
        DeployError: the transfer failed or the car refused the model.
    """
    folder = find_model(model)
    card = ModelCard.load(folder)
    model_path = folder / card.model_file
    card.verify_model_file(model_path)
    start = time.monotonic()
    with car.session():
        return _push(car, folder, card, activate, progress, start)


def _push(
    car: Car,
    folder: Path,
    card: ModelCard,
    activate: bool,
    progress: bool,
    start: float,
) -> PushResult:
    model_path = folder / card.model_file
    sha = card.model_sha256
    size = model_path.stat().st_size

    # Ask the car what it has and how much room is left.
    home = shlex.quote(car.home_arg())
    status = car.status(first=f"mkdir -p {home}/models")
    there = {m["sha256"]: m for m in status["models"]}.get(sha)
    ok_there = bool(
        there
        and not there.get("error")
        and there.get("card_sha256") == sha256_file(folder / CARD_NAME)
    )
    if there and not ok_there and sha in (status["current"], status["previous"]):
        raise DeployError(
            f"the car {car.name!r} has model {sha[:12]} with another card, and "
            "uses it as its active or previous model; a card must not change "
            "under a model in use: export the model again to get new bytes"
        )
    if not ok_there and status["free_bytes"] < size + SPARE_BYTES:
        raise DeployError(
            f"the car {car.name!r} has {status['free_bytes'] / 1e6:.1f} MB free, "
            f"the model needs {(size + SPARE_BYTES) / 1e6:.1f} MB; delete old "
            "drives or models on the car"
        )

    # Copy under a temporary name, then rename once complete.
    check_s = time.monotonic() - start
    start = time.monotonic()
    install = ""
    if ok_there:
        log.info("model %s is already on the car; not copying it again", sha[:12])
    else:
        incoming = f".incoming-{sha}-{secrets.token_hex(4)}"
        log.info("copying %s (%.2f MB) to %s", sha[:12], size / 1e6, car.name)
        car.rsync(
            [
                "-t",
                "--chmod=F644",
                str(model_path),
                str(folder / CARD_NAME),
                car.path(f"models/{incoming}/"),
            ],
            progress=progress,
            what="push",
        )
        install = (
            f"( cd {home}/models && {{ [ ! -e {sha} ] || rm -rf -- {sha}; }} && "
            f"mv -- {incoming} {sha} && rm -rf -- .incoming-{sha}-* && "
            f"find . -maxdepth 1 -name '.incoming-*' -mmin +{STALE_INCOMING_MIN} "
            "-exec rm -rf -- {} + )"
        )
    upload_s = time.monotonic() - start

    # Let the car check, load and activate it.
    verdict = f"model {sha[:12]} is on the car, not activated"
    start = time.monotonic()
    if activate:
        try:
            done = car.robot("model", "activate", sha, timeout_s=300, first=install)
        except DeployError as err:
            raise DeployError(
                f"the car refused model {sha[:12]} and kept its active model: {err}"
            ) from err
        verdict = done.stdout.strip()
    elif install:
        done = car.shell(install, timeout_s=60)
        if done.returncode != 0:
            raise DeployError(
                f"cannot move the copied model into place on the car {car.name!r}: "
                f"{done.stderr.strip()}; run the push again"
            )
    return PushResult(
        sha256=sha,
        uploaded=not ok_there,
        activated=activate,
        verdict=verdict,
        model_bytes=size,
        check_s=check_s,
        upload_s=upload_s,
        activate_s=time.monotonic() - start,
    )


def rollback(car: Car) -> str:
    """Make the car's previous model active again; return the car's verdict.

    Raises:
        DeployError: the car has no previous model or refused it.
    """
    with car.session():
        return car.robot("model", "rollback", timeout_s=300).stdout.strip()


def _cmd_push(args: argparse.Namespace) -> int:
    car = car_from_args(args)
    try:
        result = push(
            car, args.model, activate=not args.no_activate, progress=show_progress(args)
        )
    except ModelCardError as err:
        raise DeployError(f"not pushing {args.model!r}: {err}") from err
    copied = (
        f"copied {result.model_bytes / 1e6:.2f} MB in {result.upload_s:.1f} s"
        if result.uploaded
        else "already on the car"
    )
    print(f"{car.name}: {copied}; {result.verdict}")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    car = car_from_args(args)
    print(f"{car.name}: {rollback(car)}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``deploy push`` and ``deploy rollback``."""
    sub = add_command(
        subparsers,
        "push",
        _cmd_push,
        "copy a model to the car and make it the active one",
        "deploy push searches/demo --car pi@malpi.local",
    )
    sub.add_argument(
        "model",
        help="an exported model folder (model.tflite + model.json) or a search "
        "folder (its export/int8, else export/float32)",
    )
    sub.add_argument(
        "--no-activate",
        action="store_true",
        help="only copy the model; activate it later with `robot model activate`",
    )
    add_car_options(sub)
    sub = add_command(
        subparsers,
        "rollback",
        _cmd_rollback,
        "make the car's previous model active again",
        "deploy rollback --car pi@malpi.local",
    )
    add_car_options(sub)
