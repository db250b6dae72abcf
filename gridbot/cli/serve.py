"""``gridbot serve``: one process owns the exchange connection and publishes the account to Redis.

An :class:`~gridbot.ExchangeStream` with a :class:`~gridbot.RedisPublisher` attached runs until
SIGINT/SIGTERM (or until the stream fails for good); any number of :class:`~gridbot.RemoteStream`
consumers, on any machine that reaches the Redis server, get its events.  Keys come from the
environment only (a command line is visible to every user of the machine); they never reach Redis.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gridbot.cli import _live as live
from gridbot.cli._base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    bounded_int,
    endpoints_from,
    err,
    symbol,
)
from gridbot.cli._live import KEY_ENV, SECRET_ENV
from gridbot.endpoints import Endpoints
from gridbot.events import Exchange, StatusUpdate
from gridbot.remote import RedisPublisher
from gridbot.remote._redis import Keys, redact
from gridbot.stream import ExchangeStream

__all__ = ["COMMAND", "KEY_ENV", "SECRET_ENV", "ServeConfig", "serve"]


@dataclass(frozen=True)
class ServeConfig:
    exchange: Exchange
    symbols: Sequence[str]
    redis_url: str
    account: str
    testnet: bool = False
    demo: bool = False
    endpoints: Endpoints | None = None
    journal: str | None = None
    maxlen: int = 100_000
    start_timeout: float = 30.0


def _symbols(text: str) -> list[str]:
    values = [symbol(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected symbols such as BTCUSDT,ETHUSDT")
    return list(dict.fromkeys(values))


def _redis_url(text: str) -> str:
    value = text.strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(
            f"expected a redis://, rediss:// or unix:// URL, not {redact(text)!r}")
    return value


def _account(text: str) -> str:
    try:
        Keys.of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _configure(parser: argparse.ArgumentParser) -> None:
    live.add_exchange_argument(parser)
    parser.add_argument("--symbols", type=_symbols, required=True, metavar="A,B",
                        help="comma-separated symbols to publish, e.g. BTCUSDT,ETHUSDT")
    parser.add_argument("--redis", type=_redis_url, required=True, metavar="URL",
                        help="Redis server: redis://[:password@]host:6379/0, rediss://... (TLS), unix://...")
    parser.add_argument("--account", type=_account, required=True, metavar="NAME",
                        help="the name consumers use: gridbot.RemoteStream(URL, account=NAME)")
    parser.add_argument("--journal", metavar="PATH",
                        help="keep the account in this SQLite journal too; a restarted serve resumes from "
                             "it like a long disconnect (fills missed while it was down are fetched and "
                             "published)")
    parser.add_argument("--maxlen", type=bounded_int(100, 100_000_000), default=100_000, metavar="N",
                        help="cap of the Redis stream in entries (approximate; default 100000)")
    live.add_host_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    return serve(ServeConfig(exchange=args.exchange, symbols=args.symbols, redis_url=args.redis,
                             account=args.account, testnet=args.testnet, demo=args.demo,
                             endpoints=endpoints_from(args), journal=args.journal, maxlen=args.maxlen))


COMMAND = Command(
    name="serve",
    help="publish an account's events to Redis for RemoteStream consumers (keys from the environment)",
    description=(
        "Own the exchange connection of one account and publish every event (positions at the mark, "
        "orders, fills, wallet, account, tickers, status) to a Redis Stream, with the latest state kept "
        "beside it, until Ctrl-C or SIGTERM.  Consumers anywhere use gridbot.RemoteStream(URL, "
        "account=NAME).  While Redis is unreachable the exchange stream keeps running and events are "
        "buffered (bounded); the state is republished when Redis is back.\n\n"
        f"Keys come from the environment ({KEY_ENV}, {SECRET_ENV}), never from arguments; they never "
        "reach Redis.\n"
        "Exit codes: 0 stopped by a signal, 1 could not connect or the stream failed, 2 usage or keys "
        "missing, 3 keys rejected."),
    epilog=("Example:\n"
            "  GRIDBOT_API_KEY=... GRIDBOT_API_SECRET=... gridbot serve --exchange bybit \\\n"
            "      --symbols BTCUSDT,ETHUSDT --redis redis://127.0.0.1:6379/0 --account main"),
    configure=_configure,
    run=_run,
)


def serve(config: ServeConfig, stop: threading.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGINT/SIGTERM in the main thread); returns the exit code."""
    keys = live.keys_from_environment("serve")
    if keys is None:
        return EXIT_USAGE
    api_key, api_secret = keys
    stop = stop or threading.Event()
    failed = threading.Event()

    def on_status(update: StatusUpdate) -> None:
        err(f"gridbot serve: {config.exchange} {update.state}: {update.detail}")
        if update.state == "failed":
            failed.set()
            stop.set()

    publisher = RedisPublisher(config.redis_url, config.account, maxlen=config.maxlen)
    stream = ExchangeStream(config.exchange, api_key=api_key, api_secret=api_secret, testnet=config.testnet,
                            demo=config.demo, endpoints=config.endpoints, on_status=on_status,
                            journal=config.journal)
    publisher.attach(stream)
    for name in config.symbols:
        stream.subscribe(name)
    restore = _stop_on_signals(stop)
    publisher.start()
    try:
        return _run_stream(stream, config, stop, failed)
    finally:
        stream.stop(timeout=10.0)
        publisher.stop(timeout=10.0)
        restore()
        stats = publisher.stats
        err(f"gridbot serve: stopped; {stats.published} events published, {stats.dropped} dropped, "
            f"{stats.redis_errors} Redis errors")


def _run_stream(stream: ExchangeStream, config: ServeConfig, stop: threading.Event,
                failed: threading.Event) -> int:
    failed_start = live.start_stream(stream, "serve", timeout=config.start_timeout)
    if failed_start is not None:
        return failed_start
    err(f"gridbot serve: publishing {config.exchange} account {config.account!r} "
        f"({','.join(config.symbols)}) to {redact(config.redis_url)}; Ctrl-C to stop")
    live.run_until(stop)
    return EXIT_FAILED if failed.is_set() else EXIT_OK


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop`` (main thread only); returns a function that restores the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
