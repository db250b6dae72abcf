"""Bybit v5 linear over pybit 5.17: the adapter (private socket with position, order, execution and
wallet; public ``tickers.<SYM>``; REST seed).

The shared :class:`~gridbot.adapters._supervisor.Supervisor` runs both channels over the Bybit transport
(:mod:`._transport`, the only code touching pybit and websocket-client): text pings every
``ping_interval`` and a ``pong_timeout``, rebuilds with jittered exponential backoff, ``up``/``down``/
``failed`` reports to the stream, topic changes on the live public socket, bounded joins.  Rejected keys
on a rebuild are reported ``failed`` once and retried, so the stream recovers when they work again; a
refused ticker topic is dropped and reported to the stream (``Sink.symbol_rejected``), never fatal.  REST is
:mod:`._rest`; errors are translated by :mod:`._errors`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from gridbot._credentials import Credentials
from gridbot.adapters._backoff import BackoffPolicy
from gridbot.adapters._base import Channel, Sink
from gridbot.adapters._supervisor import ChannelSpec, OpenFailed, Supervisor, Timings
from gridbot.adapters.bybit._errors import AuthRejected, ConnectFailed, scrub_chain
from gridbot.adapters.bybit._rest import BybitRest
from gridbot.adapters.bybit._transport import PRIVATE_TOPICS, BybitTransport
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.stats import Counters

__all__ = ["BybitAdapter", "BybitTimings"]

logger = logging.getLogger(__name__)

_MAINNET_WS: Final = "wss://stream.bybit.com"
_TESTNET_WS: Final = "wss://stream-testnet.bybit.com"
_DEMO_WS: Final = "wss://stream-demo.bybit.com"
_DEMO_TESTNET_WS: Final = "wss://stream-demo-testnet.bybit.com"  # pybit's DEMO_SUBDOMAIN_TESTNET
_PRIVATE_PATH: Final = "/v5/private"
_PUBLIC_PATH: Final = "/v5/public/linear"
_TICKER_PREFIX: Final = "tickers."


@dataclass(frozen=True, slots=True)
class BybitTimings:
    """Supervision timings (seconds).  Defaults follow Bybit's advice: a text ping every 20 s.

    A connection attempt has ``connect_timeout + ack_timeout`` to connect, authenticate and have every
    subscription answered; ``join_grace`` bounds the clean-up after a failed ``open()``."""

    ping_interval: float = 20.0
    pong_timeout: float = 10.0
    connect_timeout: float = 10.0
    ack_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    join_grace: float = 2.0

    def supervision(self) -> Timings:
        return Timings(connect_timeout=self.connect_timeout + self.ack_timeout,
                       ping_interval=self.ping_interval, pong_timeout=self.pong_timeout,
                       backoff=BackoffPolicy(initial=self.backoff_initial, cap=self.backoff_max))


class BybitAdapter:
    """Bybit v5 linear: private socket (position, order, execution, wallet), public ``tickers.<SYM>``,
    REST seed.  See :class:`gridbot.adapters._base.Adapter` for the contract."""

    exchange = "bybit"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        testnet: bool,
        demo: bool,
        endpoints: Endpoints | None,
        sink: Sink,
        counters: Counters,
        timings: BybitTimings | None = None,
    ) -> None:
        self._credentials = Credentials(api_key, api_secret)
        self._testnet = testnet
        self._demo = demo
        self._endpoints = endpoints
        self._sink = sink
        self._counters = counters
        self.timings = timings or BybitTimings()
        self.rng = random.Random()  # the supervisor's jitter (tests may replace it before open())
        self._urls: dict[Channel, str] = _ws_urls(testnet=testnet, demo=demo, endpoints=endpoints)
        self._rest = BybitRest(self._credentials, testnet=testnet, demo=demo, endpoints=endpoints,
                               counters=counters)
        self._transport = BybitTransport(urls=self._urls, credentials=self._credentials, counters=counters,
                                         connect_timeout=self.timings.connect_timeout)
        self._lock = threading.Lock()
        self._state = "idle"  # idle -> opening -> open -> closed
        self._symbols: set[str] = set()
        self._supervisor: Supervisor | None = None

    def __repr__(self) -> str:
        return (
            f"BybitAdapter(testnet={self._testnet}, demo={self._demo}, endpoints={self._endpoints!r}, "
            f"state={self._state!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def open(self, symbols: Collection[str], timeout: float) -> None:
        """Connect and authenticate the private socket, connect the public one, subscribe, and return
        once every auth/subscribe answer is in.  On failure everything started is stopped first."""
        with self._lock:
            if self._state != "idle":
                raise GridbotError(f"BybitAdapter.open() called in state {self._state!r}")
            self._state = "opening"
            self._symbols.update(symbols)  # add_symbol() may already have added some (subscribe during start)
            supervisor = self._supervisor = self._new_supervisor(sorted(self._symbols))
        deadline = supervisor.clock.now() + timeout
        failure = supervisor.start_and_wait(deadline)
        with self._lock:
            closed_meanwhile = self._state == "closed"
            if failure is None and not closed_meanwhile:
                self._state = "open"
                return
            if not closed_meanwhile:
                self._state = "idle"
        self._stop(supervisor, time.monotonic() + self.timings.join_grace)
        if failure is None or closed_meanwhile:  # close() ran while the sockets were settling
            raise ConnectError("Bybit: opening the streams: stopped by close()")
        raise self._open_error(failure)  # outside the except: the SDK's exception is the cause, not this

    def close(self, timeout: float) -> None:
        """Stop the supervisor and sockets and join every thread started, within ``timeout``; idempotent
        (a second call only retries joining what the first could not)."""
        deadline = time.monotonic() + timeout
        self._rest.abort()  # a seed or resync request in flight ends now
        with self._lock:
            if self._state == "idle":
                return
            self._state = "closed"
            supervisor = self._supervisor
        if supervisor is not None:
            self._stop(supervisor, deadline)

    def _stop(self, supervisor: Supervisor, deadline: float) -> None:
        """Close the supervisor, then join any socket it never had a handle of, until ``deadline``."""
        supervisor.close(deadline)
        lingering = self._transport.join_all(deadline)
        if lingering:
            logger.warning("Bybit: %d socket thread(s) still running after the close budget", len(lingering))

    @property
    def connected(self) -> bool:
        supervisor = self._supervisor
        return self._state == "open" and supervisor is not None and supervisor.connected

    def add_symbol(self, symbol: str) -> None:
        """Subscribe ``tickers.<symbol>`` on the live public socket (the supervisor does it, never the
        caller's thread; a dead socket is rebuilt with the whole symbol set instead)."""
        with self._lock:
            self._symbols.add(symbol)
            supervisor = self._supervisor
        if supervisor is not None:
            supervisor.add_topics("public", [_TICKER_PREFIX + symbol])

    def remove_symbol(self, symbol: str) -> None:
        with self._lock:
            self._symbols.discard(symbol)
            supervisor = self._supervisor
        if supervisor is not None:
            supervisor.remove_topics("public", [_TICKER_PREFIX + symbol])

    # ------------------------------------------------------------------ REST

    def check_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        """Symbols Bybit does not list as trading linear perpetuals (see ``BybitRest.unlisted``)."""
        return self._rest.unlisted([symbol.upper() for symbol in symbols])

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        """Positions per symbol, the wallet (optional) and the open linear USDT orders of ``symbols``."""
        return self._rest.snapshot(symbols, include_wallet=include_wallet)

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> None:
        """Bybit sends its account figures (the wallet topic's account fields): nothing to fetch."""
        return None

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        """Final states of orders that left the open orders while disconnected (see ``BybitRest``)."""
        return self._rest.final_orders(orders)

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """Every execution of ``symbol`` in the window, oldest first (see ``BybitRest.fills``); slot 0:
        the stream's private decoder gives each fill its order's ``position_idx``."""
        return self._rest.fills(symbol, since_ms, until_ms)

    # ------------------------------------------------------------------ supervision

    def _open_error(self, failure: OpenFailed) -> GridbotError:
        """``open()``'s error for a first attempt that failed, chained to the SDK's exception (scrubbed
        by the one error map)."""
        what = f"Bybit: opening the streams: {failure}"
        error = AuthenticationError(what) if failure.kind == "auth" else ConnectError(what)
        cause = failure.error
        if cause is None:  # an answer on the socket, no exception: say which
            cause = (AuthRejected if failure.kind == "auth" else ConnectFailed)(failure.detail)
        scrub_chain(cause, self._credentials.redact)
        error.__cause__ = cause
        return error

    def _new_supervisor(self, symbols: Sequence[str]) -> Supervisor:
        supervisor = Supervisor("bybit", self._transport, self._sink, rng=self.rng, counters=self._counters,
                                scrub=self._credentials.redact)
        timings = self.timings.supervision()
        supervisor.add(ChannelSpec("private", topics=PRIVATE_TOPICS, on_frame=self._private_frame,
                                   timings=timings, refusal_fatal=True))
        supervisor.add(ChannelSpec("public", topics=[_TICKER_PREFIX + s for s in symbols],
                                   on_frame=self._public_frame, timings=timings, live_topics=True,
                                   on_refused=self._tickers_refused))
        return supervisor

    def _private_frame(self, payload: object) -> None:
        self._sink.frame("private", payload)

    def _public_frame(self, payload: object) -> None:
        self._sink.frame("public", payload)

    def _tickers_refused(self, topics: Sequence[str], detail: str) -> None:
        """Bybit refused ticker topics (an unknown symbol), at open or while running: the supervisor
        dropped them; the stream is told, so it drops those subscriptions and goes on with the others."""
        symbols = [topic.removeprefix(_TICKER_PREFIX) for topic in topics]
        with self._lock:
            self._symbols.difference_update(symbols)
        for symbol in symbols:
            try:
                self._sink.symbol_rejected(symbol, f"Bybit refused tickers.{symbol}: {detail}")
            except Exception:
                logger.exception("Bybit: the sink raised on a rejected symbol")


def _ws_urls(*, testnet: bool, demo: bool, endpoints: Endpoints | None) -> dict[Channel, str]:
    """Socket URLs: ``endpoints.ws`` when given; else Bybit's hosts (demo: private on the demo host,
    public on the real one, which is what Bybit's demo trading documents)."""
    if endpoints is not None:
        private_host = public_host = endpoints.ws
    else:
        public_host = _TESTNET_WS if testnet else _MAINNET_WS
        if demo:
            private_host = _DEMO_TESTNET_WS if testnet else _DEMO_WS
        else:
            private_host = public_host
    return {"private": private_host + _PRIVATE_PATH, "public": public_host + _PUBLIC_PATH}
