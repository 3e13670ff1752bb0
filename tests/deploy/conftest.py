"""Fixtures of the deploy tests: a real sshd, a car home, ``deploy`` in-process."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import cli
from tests.deploy.sshd import ROBOT_CMD, SSHD, SshServer, start_sshd

__all__ = ["ROBOT_CMD", "FIXTURE_MODELS", "copy_model", "keep_logging"]
FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """Debian's sshd on a free loopback port, for the whole session."""
    if not SSHD.is_file() or shutil.which("rsync") is None:
        pytest.skip("the deploy tests need /usr/sbin/sshd and rsync")
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def car_home(tmp_path: Path) -> Path:
    """An empty car home folder, reached through ``sshd``."""
    home = tmp_path / "car"
    home.mkdir()
    return home


@pytest.fixture
def deploy(capsys: pytest.CaptureFixture[str]):
    """Run ``deploy ARGS`` in this process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with keep_logging():
            code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@contextlib.contextmanager
def keep_logging() -> Iterator[None]:
    """Undo the CLI's logging set-up, whose stream is pytest's captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def copy_model(name: str, into: Path) -> Path:
    """A fixture model copied to ``into`` (so a test may damage its copy)."""
    target = into / name
    shutil.copytree(FIXTURE_MODELS / name, target)
    return target


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs folder: a disk that fills up (needs root to mount)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("mounting a small tmpfs as a full disk needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
