"""A real OpenSSH server on loopback, for the deploy tests and benchmark.

``start_sshd`` runs Debian's ``/usr/sbin/sshd`` on a free port with a
generated host key, accepting a generated user key, and writes an ssh client
config with three hosts: ``car`` (the server, key accepted), ``car-nokey``
(the server, with a key it does not accept) and ``car-down`` (a port nobody
listens on). ``deploy`` is pointed at that config with ``-F``, so nothing of
the user's own ~/.ssh is read or changed.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
#: How the car runs ``robot``: this interpreter and this checkout.
ROBOT_CMD = f"{sys.executable} -m robot.cli"


@dataclass
class SshServer:
    """A running sshd and the client config that reaches it."""

    port: int
    config: Path
    root: Path

    def car_args(self, home: Path, host: str = "car") -> list[str]:
        """The ``deploy`` options that reach ``home`` through this server."""
        return [
            "--car",
            host,
            "--car-home",
            str(home),
            "-F",
            str(self.config),
            "--robot-cmd",
            ROBOT_CMD,
            "--connect-timeout",
            "5",
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
    )


@contextlib.contextmanager
def start_sshd(root: Path) -> Iterator[SshServer]:
    """Run sshd with keys and configs generated under ``root`` until exit.

    Raises:
        RuntimeError: sshd did not start listening within 10 s.
    """
    root.mkdir(parents=True, exist_ok=True)
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    _keygen(root / "stranger_key")
    (root / "authorized_keys").write_bytes((root / "user_key.pub").read_bytes())
    # Privilege separation needs this folder when sshd runs as root.
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    port = free_port()
    sshd_config = root / "sshd_config"
    sshd_config.write_text(
        f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {root / "host_key"}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {root / "authorized_keys"}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
MaxStartups 50
LogLevel ERROR
"""
    )
    client = root / "ssh_config"
    down_port = free_port()
    common = f"""\
    HostName 127.0.0.1
    User {getpass.getuser()}
    UserKnownHostsFile {root / "known_hosts"}
    StrictHostKeyChecking accept-new
    IdentitiesOnly yes
    LogLevel ERROR
"""
    client.write_text(
        f"Host car\n    Port {port}\n    IdentityFile {root / 'user_key'}\n{common}"
        f"Host car-nokey\n    Port {port}\n"
        f"    IdentityFile {root / 'stranger_key'}\n{common}"
        f"Host car-down\n    Port {down_port}\n"
        f"    IdentityFile {root / 'user_key'}\n{common}"
    )
    log = open(root / "sshd.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(sshd_config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError as err:
            if process.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise RuntimeError(
                    f"sshd did not start: {(root / 'sshd.log').read_text()[-2000:]}"
                ) from err
            time.sleep(0.05)
    try:
        yield SshServer(port=port, config=client, root=root)
    finally:
        process.terminate()
        process.wait(10)
        log.close()
