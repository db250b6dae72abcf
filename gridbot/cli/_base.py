"""What every ``gridbot`` subcommand shares: the command record, one-line usage errors, argument
types that turn every bad value into a usage error, endpoint options, exit codes and output helpers.

A subcommand is a module in :mod:`gridbot.cli` that defines ``COMMAND`` (a :class:`Command`) and is
named in :data:`gridbot.cli.COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import NoReturn

from gridbot.endpoints import Endpoints

__all__ = [
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE",
    "Command", "Parser", "UsageError", "add_endpoint_arguments", "bounded_int", "decimal_in",
    "endpoints_from", "err", "positive_float", "say", "symbol",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help (in ``gridbot --help``), description (in its own
    ``--help``), optional epilog, how to add its arguments, and how to run it (returns the exit code).

    ``run`` may raise :class:`UsageError` for a combination of values no single argument type can
    check; ``main`` reports it like any other usage error."""

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""


class UsageError(Exception):
    """A bad combination of arguments: exit 2 with one line on stderr."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (what was wrong, and where the help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def decimal_in(low: Decimal, high: Decimal) -> Callable[[str], Decimal]:
    """An argparse type: a finite decimal number with low < value <= high, kept exact."""

    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text.strip())
        except (InvalidOperation, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not value.is_finite() or not low < value <= high:
            raise argparse.ArgumentTypeError(f"must be > {low} and <= {high}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text}")
    return value


def symbol(text: str) -> str:
    """An argparse type: an exchange symbol such as BTCUSDT (upper-cased)."""
    value = text.strip().upper()
    if not _SYMBOL.match(value):
        raise argparse.ArgumentTypeError(
            f"expected a symbol such as BTCUSDT (2-30 letters or digits), not {text!r}")
    return value


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in schemes or not rest.strip("/"):
            raise argparse.ArgumentTypeError(
                f"expected a {' or '.join(s + '://' for s in schemes)} URL, not {text!r}")
        return value

    parse.__name__ = "URL"
    return parse


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rest-url`` / ``--ws-url``: point the SDKs at another host (a loopback emulator, a proxy).
    Given together; they win over ``--testnet`` / ``--demo``.  Read back with :func:`endpoints_from`."""
    group = parser.add_argument_group("other hosts (e.g. a gridbot emulator; both or neither)")
    group.add_argument("--rest-url", type=_url(("http", "https")), metavar="URL",
                       help="REST host to use instead of the exchange's, e.g. http://127.0.0.1:8080")
    group.add_argument("--ws-url", type=_url(("ws", "wss")), metavar="URL",
                       help="WebSocket host to use instead of the exchange's, e.g. ws://127.0.0.1:8080")


def endpoints_from(args: argparse.Namespace) -> Endpoints | None:
    """The :class:`Endpoints` of ``--rest-url``/``--ws-url``; UsageError when only one is given."""
    rest, ws = getattr(args, "rest_url", None), getattr(args, "ws_url", None)
    if (rest is None) != (ws is None):
        raise UsageError("--rest-url and --ws-url go together: give both or neither")
    return None if rest is None or ws is None else Endpoints(rest=rest, ws=ws)


def say(line: str) -> None:
    """A result line on stdout."""
    print(line, flush=True)


def err(line: str) -> None:
    """A diagnostic line on stderr."""
    print(line, file=sys.stderr, flush=True)
