"""``deploy``: between the workstation and the car.

Each subcommand lives in the module that does the work; that module's
``add_commands(subparsers)`` registers it here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from shared.cli import make_parser, run

#: Modules with an ``add_commands(subparsers)`` function, in --help order.
COMMAND_MODULES: list[str] = ["deploy.push", "deploy.pull", "deploy.status"]

EPILOG = """\
examples:
  deploy push searches/demo --car pi@malpi.local
  deploy pull --car pi@malpi.local
"""


def build_parser():
    parser = make_parser(
        "deploy",
        "Push models to a MaLPi car and pull its drives home.",
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
