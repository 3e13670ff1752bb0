"""``trainer``: the workstation's command line.

Each subcommand lives in the module that does the work; that module's
``add_commands(subparsers)`` registers it here. TensorFlow is imported only
by the subcommands that train, so ``trainer data`` starts at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from shared.cli import make_group_parser, run

#: Modules with an ``add_commands(subparsers)`` function, in --help order.
COMMAND_MODULES: list[str] = [
    "trainer.data_cli",
    "trainer.train_cli",
    "trainer.export_cli",
    "trainer.evaluate_cli",
]

EPILOG = """\
examples:
  trainer data import-donkey ../shared/data/donkeycar-tub drives/
  trainer data stats drives/
  trainer search drives/ --name first --trials 30 --epochs 10
  trainer report searches/first
  trainer export searches/first
  trainer evaluate --sim --model searches/first/export/int8
"""


def build_parser() -> argparse.ArgumentParser:
    return make_group_parser(
        "trainer",
        "Train, search, report on and export MaLPi drive models.",
        EPILOG,
        COMMAND_MODULES,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
