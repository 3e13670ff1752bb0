"""``robot``: the car's command line.

Each subcommand lives in the module that does the work; that module's
``add_commands(subparsers)`` registers it here. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from shared.cli import make_parser, run

#: Modules with an ``add_commands(subparsers)`` function, in --help order.
COMMAND_MODULES: list[str] = ["robot.drive_cli", "robot.modelstore"]

EPILOG = """\
examples:
  robot drive --sim
"""


def build_parser():
    parser = make_parser(
        "robot",
        "Drive a MaLPi car: by hand from a browser, or by its model.",
        EPILOG,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
