"""``gridbot watch``: print the normalized events of one symbol of a real (or emulated) account.

A module of its own because it is one subcommand (see :mod:`gridbot.cli`); the line format of an
event is :func:`format_event`.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
from collections.abc import Callable

from gridbot.cli import _live as live
from gridbot.cli._base import EXIT_OK, EXIT_USAGE, Command, endpoints_from, err, say, symbol
from gridbot.cli._live import KEY_ENV, SECRET_ENV
from gridbot.endpoints import Endpoints
from gridbot.events import Event, Exchange
from gridbot.stream import ExchangeStream

__all__ = ["COMMAND", "KEY_ENV", "SECRET_ENV", "format_event", "watch"]


def _configure(parser: argparse.ArgumentParser) -> None:
    live.add_exchange_argument(parser)
    parser.add_argument("--symbol", type=symbol, required=True, help="the symbol to watch, e.g. BTCUSDT")
    live.add_host_arguments(parser)


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
    keys = live.keys_from_environment("watch")
    if keys is None:
        return EXIT_USAGE
    api_key, api_secret = keys

    def show(event: Event) -> None:
        write(format_event(event))

    stream = ExchangeStream(exchange, api_key=api_key, api_secret=api_secret, testnet=testnet, demo=demo,
                            endpoints=endpoints, on_status=show)
    stream.subscribe(symbol, on_position=show, on_wallet=show, on_order=show, on_ticker=show, on_fill=show)
    failed = live.start_stream(stream, "watch", timeout=30.0)
    if failed is not None:
        return failed
    try:
        _wait_for_interrupt()
    except KeyboardInterrupt:
        err("gridbot watch: stopping")
    finally:
        stream.stop()
    return EXIT_OK


def _wait_for_interrupt() -> None:
    """Block the main thread until Ctrl-C."""
    live.run_until(threading.Event())


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
