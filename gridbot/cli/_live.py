"""What the subcommands that connect to a real account share (``watch``, ``serve``): keys from the
environment, the exchange and host options, starting the stream with the documented exit codes, and
running until told to stop.

Apart from :mod:`gridbot.cli._base` (what every subcommand shares) because only these two hold keys.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import TYPE_CHECKING

from gridbot.cli._base import EXIT_FAILED, EXIT_REJECTED, add_endpoint_arguments, err
from gridbot.errors import AuthenticationError, GridbotError

if TYPE_CHECKING:
    from gridbot.stream import ExchangeStream

__all__ = [
    "KEY_ENV",
    "SECRET_ENV",
    "add_exchange_argument",
    "add_host_arguments",
    "keys_from_environment",
    "run_until",
    "start_stream",
]

KEY_ENV, SECRET_ENV = "GRIDBOT_API_KEY", "GRIDBOT_API_SECRET"


def add_exchange_argument(parser: argparse.ArgumentParser) -> None:
    """``--exchange binance|bybit`` (required)."""
    parser.add_argument("--exchange", choices=("binance", "bybit"), required=True,
                        help="binance (USDⓈ-M futures) or bybit (v5 linear)")


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    """``--testnet``, ``--demo`` and the ``--rest-url``/``--ws-url`` pair."""
    parser.add_argument("--testnet", action="store_true", help="use the exchange's testnet hosts")
    parser.add_argument("--demo", action="store_true",
                        help="use demo trading (Bybit demo trading; Binance's demo hosts)")
    add_endpoint_arguments(parser)


def keys_from_environment(command: str) -> tuple[str, str] | None:
    """The API key and secret from the environment; None (after one line on stderr) when either is
    missing: keys are never command-line arguments, which every user of the machine can read."""
    api_key, api_secret = os.environ.get(KEY_ENV, ""), os.environ.get(SECRET_ENV, "")
    if not api_key or not api_secret:
        err(f"gridbot {command}: set {KEY_ENV} and {SECRET_ENV} in the environment "
            "(keys are never accepted as command-line arguments)")
        return None
    return api_key, api_secret


def start_stream(stream: ExchangeStream, command: str, timeout: float) -> int | None:
    """Start ``stream``; the exit code when it could not (3: keys rejected, 1: no connection), else None."""
    exchange = stream.exchange
    try:
        stream.start(timeout=timeout)
    except AuthenticationError as exc:
        err(f"gridbot {command}: {exchange} rejected the API key: {exc}")
        return EXIT_REJECTED
    except GridbotError as exc:
        err(f"gridbot {command}: could not connect to {exchange}: {exc}")
        return EXIT_FAILED
    return None


def run_until(stop: threading.Event) -> None:
    """Block until ``stop`` is set, in short waits so that Ctrl-C in the main thread is handled promptly."""
    while not stop.wait(0.5):
        pass
