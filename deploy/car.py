"""Reaching the car: the user's own ``ssh`` and ``rsync``, or a plain folder.

A car target is one of::

    malpi                     a host, or an alias from ~/.ssh/config
    pi@malpi.local            user@host
    pi@192.168.1.20:2222      user@host:port
    ssh://pi@malpi.local:2222/home/pi/malpi
                              a URL; its path, if any, is the car's home
    ./democar  /srv/car  ~/car
                              a local folder standing in for the car's home
                              (it must start with /, ./, ../ or ~)

Everything goes through the ``ssh`` and ``rsync`` programs with
``BatchMode=yes`` and a connect timeout, so ``~/.ssh/config``, keys and the
agent work as they do for the user, and a missing key fails at once instead
of asking for a password. ``-F FILE`` (or ``MALPI_SSH_CONFIG``) picks another
ssh config file, ``-o OPTION`` passes options through, and ``--robot-cmd`` (or
``MALPI_ROBOT_CMD``) says how to run ``robot`` on the car.

Errors from ssh and rsync become one ``DeployError`` sentence that says what
failed (car unreachable, login refused, rsync or robot missing, no space) and
how to fix it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shared.errors import DeployError

log = logging.getLogger(__name__)

DEFAULT_HOME = "~/malpi"
SSH_CONFIG_ENV = "MALPI_SSH_CONFIG"
ROBOT_CMD_ENV = "MALPI_ROBOT_CMD"
#: Exit code of ssh itself when the connection or login failed.
SSH_FAILED = 255
#: Exit code of a shell for a command it cannot find.
NOT_FOUND = 127
_LOCAL_PREFIXES = ("/", "./", "../", "~")
#: A shell saying it cannot run rsync: bash, dash ("sh: 1:") and others.
_RSYNC_MISSING = re.compile(
    r"^(?:[^:]+: )*\S*rsync: (?:command not found|not found|"
    r"no such file or directory)$"
)
_HOST_PORT = re.compile(r"^(?P<dest>[^:/\s]+):(?P<port>\d+)$")


@dataclass
class Car:
    """Where the car is and how to reach it."""

    #: The ssh destination (``host``, ``user@host``), or None for a local folder.
    destination: str | None
    #: The car's home: holds models/ and drives/. On an ssh car, a path
    #: starting with ``~/`` is relative to the login directory.
    home: str = DEFAULT_HOME
    port: int | None = None
    ssh_config: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    #: The command that runs ``robot`` on the car (a shell fragment).
    robot_cmd: str = "robot"
    #: Where rsync is on the car, if not on its PATH.
    rsync_path: str | None = None
    connect_timeout_s: int = 10
    #: Limit transfers to this many KiB/s (0: no limit).
    bwlimit_kib_s: int = 0
    _control_path: str | None = field(default=None, init=False, repr=False)

    @property
    def is_local(self) -> bool:
        return self.destination is None

    @property
    def name(self) -> str:
        """The car as the user named it, for messages."""
        return self.destination or self.home

    def home_arg(self) -> str:
        """The home as it is written in commands run on the car."""
        if self.is_local:
            return str(Path(self.home).expanduser().resolve())
        if self.home == "~":
            return "."
        if self.home.startswith("~/"):
            return self.home[2:] or "."
        return self.home

    def path(self, relative: str) -> str:
        """``relative`` under the car's home, as rsync names it."""
        inside = f"{self.home_arg().rstrip('/')}/{relative}"
        return inside if self.is_local else f"{self.destination}:{inside}"

    # --- ssh ---------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self) -> Iterator[Car]:
        """Share one ssh connection among the commands run inside.

        Starts an ssh master connection (``ControlMaster``) that later ssh and
        rsync calls reuse, so a push or pull logs in once instead of at every
        step. A local-folder car needs none.

        Raises:
            DeployError: ssh cannot reach or log in to the car.
        """
        if self.is_local or self._control_path is not None:
            yield self
            return
        folder = tempfile.mkdtemp(prefix="malpi-ssh-")
        control_path = os.path.join(folder, "master")
        argv = [
            *self.ssh_argv(),
            "-M",
            "-N",
            "-o",
            "ControlPersist=no",
            "-o",
            f"ControlPath={control_path}",
            "--",
            self.destination,
        ]
        log.debug("running %s", shlex.join(argv))
        try:
            master = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise DeployError("ssh is not installed here; install OpenSSH") from err
        try:
            deadline_s = time.monotonic() + self.connect_timeout_s + 5
            while not os.path.exists(control_path):
                if master.poll() is not None:
                    raise ssh_error(
                        self, master.stderr.read().decode("utf-8", "replace")
                    )
                if time.monotonic() > deadline_s:
                    raise DeployError(
                        f"cannot reach the car {self.name!r}: no ssh login within "
                        f"{self.connect_timeout_s + 5} s; check that it is on the "
                        "network"
                    )
                time.sleep(0.01)
            self._control_path = control_path
            yield self
        finally:
            self._control_path = None
            if master.poll() is None:
                master.terminate()
                try:
                    master.wait(5)
                except subprocess.TimeoutExpired:
                    master.kill()
                    master.wait()
            master.stderr.close()
            shutil.rmtree(folder, ignore_errors=True)

    def ssh_argv(self) -> list[str]:
        """``ssh`` and its options, without the destination."""
        argv = ["ssh"]
        if self._control_path is not None:
            # First on the line: ssh takes the first value of each option.
            argv += [
                "-o",
                "ControlMaster=no",
                "-o",
                f"ControlPath={self._control_path}",
            ]
        argv += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout_s}",
        ]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        for option in self.ssh_options:
            argv += ["-o", option]
        return argv

    def shell(
        self, command: str, *, timeout_s: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the car and return what it printed.

        Raises:
            DeployError: ssh cannot reach or log in to the car.
        """
        if self.is_local:
            argv = ["sh", "-c", command]
        else:
            argv = [*self.ssh_argv(), "--", self.destination, command]
        log.debug("running %s", shlex.join(argv))
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except FileNotFoundError as err:
            raise DeployError(
                f"{argv[0]!r} is not installed here; install OpenSSH's client"
            ) from err
        except subprocess.TimeoutExpired as err:
            raise DeployError(
                f"the car {self.name!r} did not answer within {timeout_s:.0f} s"
            ) from err
        if not self.is_local and done.returncode == SSH_FAILED:
            raise ssh_error(self, done.stderr)
        return done

    def robot(
        self, *args: str, timeout_s: float | None = None, first: str = ""
    ) -> subprocess.CompletedProcess[str]:
        """Run ``robot ARGS --home HOME`` on the car; return what it printed.

        ``first`` is a shell command to run before, in the same login; robot
        runs only if it succeeds.

        Raises:
            DeployError: the car is unreachable, ``robot`` is missing there, or
                it failed (its own one-line error is in the message).
        """
        command = (
            f"{self.robot_cmd} {shlex.join(args)} --home {shlex.quote(self.home_arg())}"
        )
        if first:
            command = f"{first} && {command}"
        done = self.shell(command, timeout_s=timeout_s)
        if done.returncode == NOT_FOUND:
            raise DeployError(
                f"the command {self.robot_cmd!r} was not found on the car "
                f"{self.name!r}; install MaLPi there (pip install 'malpi[robot]') "
                "or give its path with --robot-cmd"
            )
        if done.returncode != 0:
            raise DeployError(
                f"the car {self.name!r} said: {robot_message(done.stderr)}"
            )
        return done

    def status(self, first: str = "") -> dict[str, Any]:
        """``robot model list --json`` on the car, parsed.

        Raises:
            DeployError: the car is unreachable or its answer is not JSON.
        """
        done = self.robot("model", "list", "--json", timeout_s=120, first=first)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as err:
            raise DeployError(
                f"the car {self.name!r} answered `robot model list --json` with "
                f"something that is not JSON: {done.stdout[:200]!r}; check that "
                "--robot-cmd runs this version of MaLPi"
            ) from err

    # --- rsync -------------------------------------------------------------------

    def rsync(
        self, args: list[str], *, progress: bool = False, what: str = "transfer"
    ) -> None:
        """Run ``rsync ARGS`` with this car's ssh; show progress if asked.

        Raises:
            DeployError: rsync is missing on either side, the car is unreachable,
                the login is refused, the car is out of space, or rsync failed.
        """
        argv = ["rsync"]
        if not self.is_local:
            argv += ["-e", shlex.join(self.ssh_argv())]
        if self.rsync_path:
            argv += [f"--rsync-path={self.rsync_path}"]
        if self.bwlimit_kib_s:
            argv += [f"--bwlimit={self.bwlimit_kib_s}"]
        if progress:
            argv += ["--info=progress2"]
        argv += args
        log.debug("running %s", shlex.join(argv))
        try:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE if progress else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as err:
            raise DeployError(
                "rsync is not installed here; install it (apt install rsync)"
            ) from err
        errors: list[bytes] = []
        reader = threading.Thread(
            target=lambda: errors.append(process.stderr.read()), daemon=True
        )
        reader.start()
        if progress:
            show_rsync_progress(process.stdout, what)
        code = process.wait()
        reader.join()
        if code != 0:
            stderr = b"".join(errors).decode("utf-8", "replace")
            raise rsync_error(self, code, stderr, what)


_PROGRESS = re.compile(
    rb"(?P<bytes>[\d,]+)\s+(?P<percent>\d+)%\s+(?P<rate>\S+)\s+(?P<eta>\d+:\d\d:\d\d)"
)


def show_rsync_progress(stream: IO[bytes], what: str, interval_s: float = 0.25) -> None:
    """Turn rsync's ``--info=progress2`` output into one line updated in place."""
    shown_s = float("-inf")
    last = ""
    buffer = b""
    while chunk := stream.read1(4096) if hasattr(stream, "read1") else stream.read():
        buffer += chunk
        *parts, buffer = re.split(rb"[\r\n]", buffer)
        for part in parts:
            match = _PROGRESS.search(part)
            if not match:
                continue
            size_mb = int(match["bytes"].replace(b",", b"")) / 1e6
            last = (
                f"\r{what}: {size_mb:8.2f} MB {int(match['percent']):3d}% "
                f"{match['rate'].decode():>12} {match['eta'].decode()}"
            )
            if time.monotonic() - shown_s >= interval_s:
                print(last, end="", flush=True)
                shown_s = time.monotonic()
    if last:
        print(last, flush=True)


def parse_target(text: str, home: str | None = None) -> Car:
    """Turn a ``--car`` value into a ``Car`` (see the module docstring).

    Raises:
        DeployError: the value is empty or looks like ``host:path``.
    """
    text = text.strip()
    if not text:
        raise DeployError("--car is empty; give user@host, an ssh alias or a folder")
    if text.startswith(_LOCAL_PREFIXES) or text == ".":
        return Car(destination=None, home=str(Path(text).expanduser()))
    if text.startswith("ssh://"):
        rest = text[len("ssh://") :]
        authority, _, path = rest.partition("/")
        port = None
        match = _HOST_PORT.match(authority)
        if match:
            authority, port = match["dest"], int(match["port"])
        if not authority or ":" in authority:
            raise DeployError(f"--car {text!r} is not ssh://[user@]host[:port][/path]")
        return Car(
            destination=authority,
            port=port,
            home=f"/{path}".rstrip("/") if path else home or DEFAULT_HOME,
        )
    match = _HOST_PORT.match(text)
    if match:
        return Car(
            destination=match["dest"],
            port=int(match["port"]),
            home=home or DEFAULT_HOME,
        )
    if ":" in text or "/" in text:
        raise DeployError(
            f"--car {text!r} is neither user@host[:port] nor a folder; give the "
            "car's home with --car-home, and start a local folder with ./ or /"
        )
    return Car(destination=text, home=home or DEFAULT_HOME)


def ssh_error(car: Car, stderr: str) -> DeployError:
    """A one-line error for ssh failing to connect or log in."""
    line = _last_line(stderr, default="ssh failed")
    low = stderr.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return DeployError(
            f"the car {car.name!r} refused the login ({line}); check the user name "
            "and put your public key on the car with `ssh-copy-id`"
        )
    if "host key verification failed" in low or "host identification" in low:
        return DeployError(
            f"the car {car.name!r} has an unknown or changed host key ({line}); "
            "connect once with `ssh` to check and accept it"
        )
    if any(
        what in low
        for what in (
            "could not resolve",
            "connection refused",
            "timed out",
            "no route to host",
            "network is unreachable",
            "connection closed",
            "connection reset",
        )
    ):
        return DeployError(
            f"cannot reach the car {car.name!r} ({line}); check that it is on, on "
            "the network, and that the host name, port and sshd are right"
        )
    return DeployError(f"ssh to the car {car.name!r} failed: {line}")


def rsync_error(car: Car, code: int, stderr: str, what: str) -> DeployError:
    """A one-line error for a failed rsync."""
    low = stderr.lower()
    line = _last_line(stderr, default=f"rsync exit code {code}")
    if "no space left on device" in low or "disk quota exceeded" in low:
        return DeployError(
            f"the {what} ran out of disk space ({line}); free space on the car "
            "(delete old drives or models) or on this machine, then run it again"
        )
    if code == SSH_FAILED:
        return ssh_error(car, stderr)
    if (
        code == NOT_FOUND
        or any(_RSYNC_MISSING.match(x) for x in low.splitlines())
        or "(0 bytes received so far)" in low
    ):
        return DeployError(
            f"rsync is not installed on the car {car.name!r} or did not start "
            f"({line}); install it there (sudo apt install rsync) or give its "
            "path with --rsync-path"
        )
    if code in (20, 30, 35) or "killed" in low:
        return DeployError(f"the {what} was interrupted ({line}); run it again")
    return DeployError(
        f"the {what} to or from {car.name!r} failed ({line}); run it again"
    )


def robot_message(stderr: str) -> str:
    """The car's one-line error out of ``robot``'s stderr."""
    for raw in reversed(stderr.strip().splitlines()):
        if ": error: " in raw:
            return raw.split(": error: ", 1)[1].strip()
    return _last_line(stderr, default="robot failed without a message")


def _last_line(text: str, default: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else default


def add_car_options(parser: argparse.ArgumentParser) -> None:
    """The options every ``deploy`` command that talks to a car takes."""
    parser.add_argument(
        "--car",
        required=True,
        help="user@host[:port], an ssh alias, ssh://user@host:port/home, or a "
        "local folder (./car)",
    )
    parser.add_argument(
        "--car-home",
        help=f"the car's home folder holding models/ and drives/ "
        f"(default {DEFAULT_HOME})",
    )
    parser.add_argument(
        "--robot-cmd",
        default=os.environ.get(ROBOT_CMD_ENV, "robot"),
        help="the command that runs `robot` on the car, e.g. "
        f"'~/malpi/.venv/bin/robot' (default: ${ROBOT_CMD_ENV} or robot)",
    )
    parser.add_argument(
        "-F",
        "--ssh-config",
        default=os.environ.get(SSH_CONFIG_ENV),
        help=f"ssh config file to use (default: ${SSH_CONFIG_ENV} or ~/.ssh/config)",
    )
    parser.add_argument(
        "-o",
        "--ssh-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="an ssh option passed through, e.g. -o Port=2222 (repeatable)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=int,
        default=10,
        metavar="SECONDS",
        help="give up connecting after this long (default 10)",
    )
    parser.add_argument(
        "--rsync-path", help="where rsync is on the car, if not on its PATH"
    )
    parser.add_argument(
        "--bwlimit",
        type=int,
        default=0,
        metavar="KIB_S",
        help="limit transfers to this many KiB/s (default: no limit)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show rsync's progress (default: when output is a terminal)",
    )


def car_from_args(args: argparse.Namespace) -> Car:
    """Build the ``Car`` the options name.

    Raises:
        DeployError: ``--car`` is malformed.
    """
    car = parse_target(args.car, args.car_home)
    if car.is_local and args.car_home:
        raise DeployError(
            f"--car {args.car!r} is a local folder, which is the car's home "
            "itself; leave out --car-home"
        )
    car.ssh_config = args.ssh_config
    car.ssh_options = list(args.ssh_option)
    car.robot_cmd = args.robot_cmd
    car.rsync_path = args.rsync_path
    car.connect_timeout_s = args.connect_timeout
    car.bwlimit_kib_s = args.bwlimit
    return car


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to show rsync's progress for these options."""
    return sys.stdout.isatty() if args.progress is None else bool(args.progress)
