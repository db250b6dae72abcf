"""The ``gridbot`` command.

Each subcommand is a module of this package that defines ``COMMAND`` (a
:class:`~gridbot.cli._base.Command`); :data:`COMMAND_MODULES` lists them, in ``--help`` order.  To add
one, write ``gridbot/cli/<name>.py`` and add its name here.  Argument types in
:mod:`gridbot.cli._base` make every bad value a one-line usage error (exit 2); ``-v`` is accepted
before or after the subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gridbot import __version__
from gridbot.cli._base import EXIT_USAGE, Command, Parser, UsageError, err
from gridbot.cli._demo_run import is_state_call

__all__ = ["COMMAND_MODULES", "build_parser", "commands", "configure_logging", "is_state_call", "main"]

#: The subcommand modules (``gridbot.cli.<name>``), in the order ``gridbot --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "watch",
    "journal",
    "serve",
)


def commands() -> list[Command]:
    """The registered subcommands."""
    found = []
    for name in COMMAND_MODULES:
        command = importlib.import_module(f"gridbot.cli.{name}").COMMAND
        if not isinstance(command, Command):
            raise TypeError(f"gridbot.cli.{name}.COMMAND is not a Command")
        found.append(command)
    return found


def _verbose_parent() -> Parser:
    # SUPPRESS: a subcommand without -v leaves the value set before the subcommand alone.
    parent = Parser(add_help=False)
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log gridbot's INFO messages (and the SDKs' socket errors) to stderr")
    return parent


def build_parser() -> Parser:
    verbose = _verbose_parent()
    parser = Parser(
        prog="gridbot", parents=[verbose],
        description="Live futures account state for synchronous grid strategies (Binance USDⓈ-M, "
                    "Bybit v5 linear), from exchange WebSockets through the official SDKs.",
        epilog="Run 'gridbot <command> --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"gridbot {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for command in commands():
        sub = subparsers.add_parser(
            command.name, parents=[verbose], help=command.help, description=command.description,
            epilog=command.epilog or None, formatter_class=argparse.RawDescriptionHelpFormatter)
        command.configure(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, set up logging, run the subcommand; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", False))
    try:
        code: int = args._run(args)
    except UsageError as exc:
        err(f"gridbot {args.command}: error: {exc} (see 'gridbot {args.command} --help')")
        return EXIT_USAGE
    return code


def configure_logging(verbose: bool) -> None:
    """The application's one logging setup: warnings (or INFO with -v) to stderr; stdout stays clean.
    The library itself never configures logging."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose:
        logging.getLogger("gridbot").setLevel(logging.INFO)
    else:
        # The SDKs' socket libraries log every lost socket at ERROR; the adapters already report
        # (and handle) each one as a gridbot warning.
        for name in ("websocket", "binance.ws"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
