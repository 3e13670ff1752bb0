"""``deploy push``, ``status`` and ``rollback`` against a real sshd."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.car import parse_target, rsync_error
from deploy.push import find_model
from shared.errors import DeployError
from shared.modelcard import ModelCard
from tests.deploy.conftest import FIXTURE_MODELS, ROBOT_CMD, copy_model


def _sha(name: str) -> str:
    return ModelCard.load(FIXTURE_MODELS / name).model_sha256


def _link(home: Path, name: str) -> str | None:
    link = home / "models" / name
    return os.readlink(link) if link.is_symlink() else None


def test_push_activates_and_rollback_restores_over_ssh(sshd, car_home, deploy):
    car = sshd.car_args(car_home)

    code, out, err = deploy("push", FIXTURE_MODELS / "tiny-float32", *car)
    assert code == 0, err
    assert f"activated {_sha('tiny-float32')[:12]}" in out
    assert _link(car_home, "current") == _sha("tiny-float32")

    # What an interrupted push of another model left two hours ago.
    stale = car_home / "models" / f".incoming-{'0' * 64}-dead"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))

    code, out, err = deploy("push", FIXTURE_MODELS / "tiny-int8", *car)
    assert code == 0, err
    assert _link(car_home, "current") == _sha("tiny-int8")
    assert _link(car_home, "previous") == _sha("tiny-float32")
    assert not list((car_home / "models").glob(".incoming-*"))

    code, out, err = deploy("status", *car, "--into", car_home / "none")
    assert code == 0, err
    assert f"* {_sha('tiny-int8')[:12]}" in out
    assert f"p {_sha('tiny-float32')[:12]}" in out
    assert "free disk on the car" in out

    code, out, err = deploy("rollback", *car)
    assert code == 0, err
    assert f"rolled back to {_sha('tiny-float32')[:12]}" in out
    assert _link(car_home, "current") == _sha("tiny-float32")
    assert _link(car_home, "previous") == _sha("tiny-int8")


def test_push_search_folder_sends_its_int8_export(sshd, car_home, deploy, tmp_path):
    search = tmp_path / "searches" / "demo"
    (search / "export").mkdir(parents=True)
    (search / "search.json").write_text(json.dumps({"format": 1}))
    shutil.copytree(FIXTURE_MODELS / "tiny-float32", search / "export" / "float32")
    shutil.copytree(FIXTURE_MODELS / "tiny-int8", search / "export" / "int8")

    assert find_model(search) == search / "export" / "int8"
    code, out, err = deploy("push", search, *sshd.car_args(car_home), "--progress")
    assert code == 0, err
    assert _link(car_home, "current") == _sha("tiny-int8")
    assert "push:" in out and "100%" in out  # rsync progress, parsed


def test_push_no_activate_only_uploads(sshd, car_home, deploy):
    code, out, err = deploy(
        "push", FIXTURE_MODELS / "tiny-int8", *sshd.car_args(car_home), "--no-activate"
    )
    assert code == 0, err
    assert "not activated" in out
    assert (car_home / "models" / _sha("tiny-int8") / "model.tflite").is_file()
    assert _link(car_home, "current") is None


def test_push_refuses_model_whose_bytes_differ_from_card(
    sshd, car_home, deploy, tmp_path
):
    model = copy_model("tiny-float32", tmp_path)
    data = bytearray((model / "model.tflite").read_bytes())
    data[-1] ^= 0xFF
    (model / "model.tflite").write_bytes(bytes(data))

    code, out, err = deploy("push", model, *sshd.car_args(car_home))
    assert code == 2
    assert "its card says" in err and "not pushing" in err
    assert not (car_home / "models").exists()


def test_push_wrong_models_are_refused_by_activation(sshd, car_home, deploy):
    car = sshd.car_args(car_home)
    assert deploy("push", FIXTURE_MODELS / "tiny-int8", *car)[0] == 0

    for fixture, reason in [
        ("wrong-shape", "model input is [96, 96, 3]"),
        ("wrong-labels", "model labels"),
    ]:
        code, out, err = deploy("push", FIXTURE_MODELS / fixture, *car)
        assert code == 2
        assert "the car refused model" in err and reason in err
        assert _link(car_home, "current") == _sha("tiny-int8")


@pytest.mark.slow
def test_push_killed_mid_transfer_keeps_old_model(sshd, car_home, deploy, tmp_path):
    car = sshd.car_args(car_home)
    assert deploy("push", FIXTURE_MODELS / "tiny-int8", *car)[0] == 0

    # A push throttled to 1 KiB/s, killed with its ssh and rsync once the copy
    # has started on the car.
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "push", FIXTURE_MODELS / "tiny-float32"]
        + car
        + ["--bwlimit", "1"],
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its ssh socket dies here
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not list((car_home / "models").glob(".incoming-*/*")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    assert _link(car_home, "current") == _sha("tiny-int8")
    assert not (car_home / "models" / _sha("tiny-float32")).exists()
    assert list((car_home / "models").glob(".incoming-*"))

    code, out, err = deploy("push", FIXTURE_MODELS / "tiny-float32", *car)
    assert code == 0, err
    assert _link(car_home, "current") == _sha("tiny-float32")
    assert not list((car_home / "models").glob(".incoming-*"))


def test_push_car_without_space_is_refused_before_copying(sshd, small_disk, deploy):
    code, out, err = deploy(
        "push", FIXTURE_MODELS / "tiny-int8", *sshd.car_args(small_disk)
    )
    assert code == 2
    assert "MB free" in err and "delete old drives or models" in err
    assert not list((small_disk / "models").iterdir())


def test_push_unreachable_car_is_one_line_error(sshd, car_home, deploy):
    code, out, err = deploy(
        "push", FIXTURE_MODELS / "tiny-int8", *sshd.car_args(car_home, "car-down")
    )
    assert code == 2
    assert "cannot reach the car 'car-down'" in err
    assert len(err.strip().splitlines()) == 1


def test_push_refused_login_is_one_line_error(sshd, car_home, deploy):
    code, out, err = deploy(
        "status", *sshd.car_args(car_home, "car-nokey"), "--into", car_home
    )
    assert code == 2
    assert "refused the login" in err and "ssh-copy-id" in err


def test_push_missing_rsync_on_car_is_named(sshd, car_home, deploy):
    code, out, err = deploy(
        "push",
        FIXTURE_MODELS / "tiny-int8",
        *sshd.car_args(car_home),
        "--rsync-path",
        "/nonexistent/rsync",
    )
    assert code == 2
    assert "rsync is not installed on the car" in err


def test_push_missing_robot_on_car_is_named(sshd, car_home, deploy):
    args = sshd.car_args(car_home)
    args[args.index(ROBOT_CMD)] = "/nonexistent/robot"
    code, out, err = deploy("push", FIXTURE_MODELS / "tiny-int8", *args)
    assert code == 2
    assert "'/nonexistent/robot' was not found on the car" in err


def test_push_local_folder_car(tmp_path, deploy):
    car = tmp_path / "democar"
    code, out, err = deploy(
        "push",
        FIXTURE_MODELS / "tiny-float32",
        "--car",
        str(car),
        "--robot-cmd",
        ROBOT_CMD,
    )
    assert code == 0, err
    assert _link(car, "current") == _sha("tiny-float32")

    code, out, err = deploy("rollback", "--car", str(car), "--robot-cmd", ROBOT_CMD)
    assert code == 2
    assert "no previous model" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "destination", "port", "home"),
    [
        ("malpi", "malpi", None, "~/malpi"),
        ("pi@malpi.local", "pi@malpi.local", None, "~/malpi"),
        ("pi@10.0.0.2:2222", "pi@10.0.0.2", 2222, "~/malpi"),
        ("ssh://pi@car:2200/srv/malpi", "pi@car", 2200, "/srv/malpi"),
        ("ssh://car", "car", None, "~/malpi"),
        ("./somewhere", None, None, "somewhere"),
    ],
)
def test_parse_target_forms(text, destination, port, home):
    car = parse_target(text)
    assert (car.destination, car.port, car.home) == (destination, port, home)


def test_parse_target_refuses_host_path():
    with pytest.raises(DeployError, match="--car-home"):
        parse_target("pi@car:/home/pi/malpi")


def test_push_ssh_url_with_options_passed_through(sshd, car_home, deploy):
    root = sshd.root
    code, out, err = deploy(
        "push",
        FIXTURE_MODELS / "tiny-int8",
        "--car",
        f"ssh://{getpass.getuser()}@127.0.0.1:{sshd.port}{car_home}",
        "-F",
        "none",
        "-o",
        f"IdentityFile={root / 'user_key'}",
        "-o",
        f"UserKnownHostsFile={root / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "--robot-cmd",
        ROBOT_CMD,
    )
    assert code == 0, err
    assert _link(car_home, "current") == _sha("tiny-int8")


def test_push_ssh_option_overrides_config(sshd, car_home, deploy):
    args = sshd.car_args(car_home, "car-down") + ["-o", f"Port={sshd.port}"]
    code, out, err = deploy("push", FIXTURE_MODELS / "tiny-int8", *args)
    assert code == 0, err
    assert _link(car_home, "current") == _sha("tiny-int8")


@pytest.mark.parametrize(
    ("stderr", "code", "expected"),
    [
        ('rsync: write failed on "x": No space left on device (28)', 11, "disk space"),
        ("rsync error: received SIGINT, SIGTERM, or SIGHUP (code 20)", 20, "again"),
        ("sh: 1: rsync: not found\n", 127, "rsync is not installed on the car"),
    ],
)
def test_rsync_error_names_the_cause(stderr, code, expected):
    assert expected in str(rsync_error(parse_target("car"), code, stderr, "push"))
