"""``robot``: the car's command line.

Each subcommand lives in the module that does the work; that module's
``add_commands(subparsers)`` registers it here. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from shared.cli import make_group_parser, run

#: Modules with an ``add_commands(subparsers)`` function, in --help order.
COMMAND_MODULES: list[str] = ["robot.drive_cli", "robot.modelstore"]

EPILOG = """\
examples:
  robot drive                       # on the car: camera, motors, web app
  robot drive --sim                 # anywhere: the simulated car and track
  robot check                       # one-screen self-test
  robot model list
"""


def build_parser() -> argparse.ArgumentParser:
    return make_group_parser(
        "robot",
        "Drive a MaLPi car: by hand from a browser, or by its model.",
        EPILOG,
        COMMAND_MODULES,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
