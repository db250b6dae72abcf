"""``gridbot watch``: print the normalized events of one symbol of a real (or emulated) account."""

from __future__ import annotations

import argparse
import dataclasses
import os
import threading
from collections.abc import Callable

from gridbot.cli._base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    Command,
    add_endpoint_arguments,
    endpoints_from,
    err,
    say,
    symbol,
)
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, GridbotError
from gridbot.events import Event, Exchange
from gridbot.stream import ExchangeStream

__all__ = ["COMMAND", "KEY_ENV", "SECRET_ENV", "format_event", "watch"]

KEY_ENV, SECRET_ENV = "GRIDBOT_API_KEY", "GRIDBOT_API_SECRET"


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exchange", choices=("binance", "bybit"), required=True,
                        help="binance (USDⓈ-M futures) or bybit (v5 linear)")
    parser.add_argument("--symbol", type=symbol, required=True, help="the symbol to watch, e.g. BTCUSDT")
    parser.add_argument("--testnet", action="store_true", help="use the exchange's testnet hosts")
    parser.add_argument("--demo", action="store_true",
                        help="use demo trading (Bybit demo trading; Binance's demo hosts)")
    add_endpoint_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    return watch(args.exchange, args.symbol, testnet=args.testnet, demo=args.demo,
                 endpoints=endpoints_from(args))


COMMAND = Command(
    name="watch",
    help="print the live events of a real account (keys from the environment)",
    description=(
        "Print every normalized event of one symbol (positions, wallet, orders, fills, tickers and the "
        "stream's status) as one line each, until Ctrl-C.\n\n"
        f"Keys come from the environment ({KEY_ENV}, {SECRET_ENV}), never from arguments.\n"
        "Exit codes: 0 stopped by Ctrl-C, 1 could not connect, 2 usage or keys missing, 3 keys rejected."),
    epilog=("Against a loopback emulator (python -c 'from gridbot.emulator import BybitEmulator; ...'):\n"
            "  GRIDBOT_API_KEY=test-key GRIDBOT_API_SECRET=test-secret gridbot watch --exchange bybit \\\n"
            "      --symbol BTCUSDT --rest-url http://127.0.0.1:PORT --ws-url ws://127.0.0.1:PORT"),
    configure=_configure,
    run=_run,
)


def watch(exchange: Exchange, symbol: str, *, testnet: bool = False, demo: bool = False,
          endpoints: Endpoints | None = None, out: Callable[[str], None] | None = None) -> int:
    """Print normalized events until Ctrl-C.  2: keys missing; 3: keys rejected; 1: cannot connect."""
    write = out or say
    api_key, api_secret = os.environ.get(KEY_ENV, ""), os.environ.get(SECRET_ENV, "")
    if not api_key or not api_secret:
        err(f"gridbot watch: set {KEY_ENV} and {SECRET_ENV} in the environment "
            "(keys are never accepted as command-line arguments)")
        return EXIT_USAGE

    def show(event: Event) -> None:
        write(format_event(event))

    stream = ExchangeStream(exchange, api_key=api_key, api_secret=api_secret, testnet=testnet, demo=demo,
                            endpoints=endpoints, on_status=show)
    stream.subscribe(symbol, on_position=show, on_wallet=show, on_order=show, on_ticker=show, on_fill=show)
    try:
        stream.start(timeout=30.0)
    except AuthenticationError as exc:
        err(f"gridbot watch: {exchange} rejected the API key: {exc}")
        return EXIT_REJECTED
    except GridbotError as exc:
        err(f"gridbot watch: could not connect to {exchange}: {exc}")
        return EXIT_FAILED
    try:
        _wait_for_interrupt()
    except KeyboardInterrupt:
        err("gridbot watch: stopping")
    finally:
        stream.stop()
    return EXIT_OK


def _wait_for_interrupt() -> None:
    """Block the main thread until Ctrl-C (short waits, so the signal is handled promptly)."""
    idle = threading.Event()
    while not idle.wait(0.5):
        pass


def format_event(event: Event) -> str:
    """One line per event: its type and fields (Decimals as plain numbers; ``raw`` left out)."""
    parts = [type(event).__name__, event.exchange]
    for field in dataclasses.fields(event):
        if field.name in ("exchange", "raw"):
            continue
        value = getattr(event, field.name)
        if value is None or value == "" or (field.name in ("is_snapshot", "restored") and not value):
            continue
        parts.append(f"{field.name}={value}")
    return " ".join(parts)
