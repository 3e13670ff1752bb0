"""``deploy``: between the workstation and the car.

Each subcommand lives in the module that does the work; that module's
``add_commands(subparsers)`` registers it here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from shared.cli import make_group_parser, run

#: Modules with an ``add_commands(subparsers)`` function, in --help order.
COMMAND_MODULES: list[str] = ["deploy.push", "deploy.pull", "deploy.status"]

EPILOG = """\
examples:
  deploy push searches/first --car pi@malpi.local
  deploy pull --car pi@malpi.local --into drives
  deploy status --car pi@malpi.local
  deploy rollback --car pi@malpi.local
"""


def build_parser() -> argparse.ArgumentParser:
    return make_group_parser(
        "deploy",
        "Push models to a MaLPi car and pull its drives home.",
        EPILOG,
        COMMAND_MODULES,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
