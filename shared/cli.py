"""What every MaLPi command line shares: logging set-up and one-line errors.

Each console script builds an ``argparse`` parser with a subcommand per task
and hands it to ``run``. Errors MaLPi raises on purpose print as one line on
stderr with exit code 2; ``--debug`` shows the full traceback and DEBUG logs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from shared.errors import MalpiError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def make_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A top-level parser with ``--debug`` and ``--quiet`` and an example epilog."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug", action="store_true", help="DEBUG logs and full tracebacks"
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    return parser


def make_group_parser(
    prog: str, description: str, epilog: str, command_modules: Sequence[str]
) -> argparse.ArgumentParser:
    """A console script's parser: one subcommand group per module.

    Each module in ``command_modules`` has an ``add_commands(subparsers)``
    function that registers the subcommands it implements, so a command is
    listed only once the module that does the work exists.
    """
    parser = make_parser(prog, description, epilog)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in command_modules:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    handler: Callable[[argparse.Namespace], int | None],
    help_text: str,
    example: str,
) -> argparse.ArgumentParser:
    """Register a subcommand whose ``--help`` ends with a usage example."""
    sub = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


def configure_logging(debug: bool = False, quiet: bool = False) -> None:
    """Send logs to stderr: INFO by default, DEBUG with --debug."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen subcommand and turn errors into exit codes."""
    args = parser.parse_args(argv)
    configure_logging(debug=args.debug, quiet=args.quiet)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(handler(args) or 0)
    except MalpiError as err:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
