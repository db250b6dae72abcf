"""``gridbot serve``: one process owns the exchange connection and publishes the account to Redis.

The CLI module parses arguments; this one runs: an :class:`~gridbot.ExchangeStream` with a
:class:`~gridbot.RedisPublisher` attached, until SIGINT/SIGTERM or a fatal stream failure.
API keys come from the environment only (GRIDBOT_API_KEY, GRIDBOT_API_SECRET): a command line is
visible to every user of the machine.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError
from gridbot.events import StatusUpdate
from gridbot.remote._producer import RedisPublisher
from gridbot.remote._redis import redact
from gridbot.stream import ExchangeStream

__all__ = ["ServeConfig", "serve"]

logger = logging.getLogger(__name__)

KEY_ENV, SECRET_ENV = "GRIDBOT_API_KEY", "GRIDBOT_API_SECRET"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


@dataclass(frozen=True)
class ServeConfig:
    exchange: Literal["binance", "bybit"]
    symbols: Sequence[str]
    redis_url: str
    account: str
    testnet: bool = False
    demo: bool = False
    endpoints: Endpoints | None = None
    journal: str | None = None
    maxlen: int = 100_000
    start_timeout: float = 30.0


def _say(message: str) -> None:
    print(f"gridbot serve: {message}", file=sys.stderr, flush=True)


def serve(config: ServeConfig, stop: threading.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGINT/SIGTERM in the main thread); returns the exit code."""
    api_key, api_secret = os.environ.get(KEY_ENV, ""), os.environ.get(SECRET_ENV, "")
    if not api_key or not api_secret:
        _say(f"error: set {KEY_ENV} and {SECRET_ENV} in the environment (keys are never taken as arguments)")
        return EXIT_USAGE
    stop = stop or threading.Event()
    failed = threading.Event()

    def on_status(update: StatusUpdate) -> None:
        _say(f"{config.exchange} {update.state}: {update.detail}")
        if update.state == "failed":
            failed.set()
            stop.set()

    extra: dict[str, Any] = {}
    if config.journal is not None:
        extra["journal"] = config.journal
    publisher = RedisPublisher(config.redis_url, config.account, maxlen=config.maxlen)
    stream = ExchangeStream(config.exchange, api_key=api_key, api_secret=api_secret, testnet=config.testnet,
                            demo=config.demo, endpoints=config.endpoints, on_status=on_status, **extra)
    publisher.attach(stream)
    for symbol in config.symbols:
        stream.subscribe(symbol)
    restore = _stop_on_signals(stop)
    publisher.start()
    try:
        try:
            stream.start(timeout=config.start_timeout)
        except AuthenticationError as exc:
            _say(f"error: the exchange rejected the API key: {exc}")
            return EXIT_REJECTED
        except ConnectError as exc:
            _say(f"error: {exc}")
            return EXIT_FAILED
        _say(f"publishing {config.exchange} account {config.account!r} ({', '.join(config.symbols)}) to "
             f"{redact(config.redis_url)}; Ctrl-C to stop")
        stop.wait()
        return EXIT_FAILED if failed.is_set() else EXIT_OK
    finally:
        stream.stop(timeout=10.0)
        publisher.stop(timeout=10.0)
        restore()
        stats = publisher.stats
        _say(f"stopped: {stats.published} events published, {stats.dropped} dropped, "
             f"{stats.redis_errors} Redis errors")


def _stop_on_signals(stop: threading.Event) -> Any:
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
