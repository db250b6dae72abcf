"""What both loopback exchanges share: an :class:`Engine`, a :class:`LoopbackServer` lifecycle, the price
loop, per-path REST call counts and the hand-off of work to the server's loop.

:class:`LoopbackEmulator` is the base of ``BinanceEmulator`` and ``BybitEmulator``; each supplies its
aiohttp app (``_build_app``) and may extend ``_on_started`` / ``_on_stopped`` (Binance runs its
listen-key expiry timer there).  It must come first among the bases so its methods win over the
mixins' abstract stubs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from gridbot.emulator._runner import LoopbackServer, Ticker
from gridbot.emulator.engine import Engine, EngineConfig
from gridbot.endpoints import Endpoints

__all__ = ["LoopbackEmulator", "check_price_interval", "wall_ms"]

logger = logging.getLogger(__name__)

_E = TypeVar("_E", bound="LoopbackEmulator")


def check_price_interval(seconds: float) -> float:
    if not seconds >= 0:
        raise ValueError(f"price_interval must be >= 0 seconds (0: no random walk), got {seconds!r}")
    return seconds


def wall_ms() -> int:
    return int(time.time() * 1000)


class LoopbackEmulator:
    """A loopback exchange on 127.0.0.1: construct, prepare state through :attr:`engine`, then
    :meth:`start` (or use ``with``); every engine change is pushed to the sockets."""

    _exchange: str = "loopback"  # names the server thread and log lines

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        api_key: str = "test-key",
        api_secret: str = "test-secret",
        price_interval: float = 1.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """``price_interval``: the random-walk cadence in seconds (0: no walk, prices move only through
        ``engine.set_price``, for exact tests); ``clock`` (ms) stamps the data, default wall time."""
        self._config = config if config is not None else self._default_config()
        self._clock: Callable[[], int] = clock if clock is not None else wall_ms
        self._api_key = api_key
        self._api_secret = api_secret
        self._price_interval = check_price_interval(price_interval)
        self._engine = Engine(self._config, self._clock)
        self._created = self._clock()
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._server: LoopbackServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._price_timer: Ticker | None = None
        self._init_exchange()

    # ---- public surface

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def endpoints(self) -> Endpoints:
        server = self._require_server()
        return Endpoints(rest=server.http_url, ws=server.ws_url)

    @property
    def rest_calls(self) -> dict[str, int]:
        """Requests received per ``"METHOD /path"`` (WebSocket upgrades excluded; rejected and faulted
        ones included); a copy."""
        with self._calls_lock:
            return dict(self._calls)

    @property
    def price_interval(self) -> float:
        """Seconds between price steps (0: no random walk; prices move only through
        ``engine.set_price``); settable while running, e.g. 0.05 s to accelerate a test."""
        return self._price_interval

    @price_interval.setter
    def price_interval(self, seconds: float) -> None:
        with self._state_lock:
            self._price_interval = check_price_interval(seconds)
            self._apply_price_interval()

    def start(self, timeout: float = 10.0) -> None:
        """Serve on 127.0.0.1 (ephemeral port) and start the price loop; returns once listening."""
        with self._state_lock:
            if self._server is not None:
                return
            server = LoopbackServer(self._build_app, name=f"{self._exchange}-emulator")
            server.start(timeout=timeout)
            try:
                self._server = server
                self._loop = server.loop
                self._on_started(server)
                self._apply_price_interval()
            except BaseException:
                self._server, self._loop = None, None
                server.stop(timeout=timeout)
                raise

    def stop(self, timeout: float = 5.0) -> None:
        """Close every socket and stop serving; idempotent."""
        with self._state_lock:
            server, self._server = self._server, None
            if server is None:
                return
            if self._price_timer is not None:
                self._price_timer.cancel()
                self._price_timer = None
            self._on_stopping()
            self._loop = None  # engine events from now on are not pushed
            server.stop(timeout=timeout)  # closes every tracked socket with 1001, then joins its thread
            self._on_stopped()

    def __enter__(self: _E) -> _E:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- for the subclass

    def _default_config(self) -> EngineConfig:
        raise NotImplementedError

    def _init_exchange(self) -> None:
        """The exchange's own state (the shared state is set when this runs)."""

    def _build_app(self) -> web.Application:
        raise NotImplementedError

    def _on_started(self, server: LoopbackServer) -> None:
        """Extra timers once listening (under the state lock)."""

    def _on_stopping(self) -> None:
        """Cancel those timers (under the state lock, before the server stops)."""

    def _on_stopped(self) -> None:
        """Reset per-run state (under the state lock, after the server stopped)."""

    # ---- plumbing

    def _require_server(self) -> LoopbackServer:
        server = self._server
        if server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return server

    def _apply_price_interval(self) -> None:
        """Start, retune or stop the price loop to match ``price_interval`` (under the state lock)."""
        timer, server = self._price_timer, self._server
        if timer is not None and self._price_interval > 0:
            timer.interval = self._price_interval
        elif timer is not None:
            timer.cancel()
            self._price_timer = None
        elif server is not None and self._price_interval > 0:
            self._price_timer = server.every(self._price_interval, self._price_step)

    def _price_step(self) -> None:
        try:
            self._engine.step()
        except Exception:
            logger.exception("%s emulator: price step failed", self._exchange)

    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the server's loop, in call order; dropped when the server is not running."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            logger.debug("%s emulator: loop closed, %r skipped", self._exchange, fn)

    def _count(self, request: web.Request) -> None:
        with self._calls_lock:
            self._calls[f"{request.method} {request.path}"] += 1
