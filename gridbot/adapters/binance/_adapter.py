"""The Binance USDⓈ-M futures adapter: two supervised sockets, a REST layer, one error map.

One :class:`BinanceAdapter` owns a :class:`~gridbot.adapters.binance._transport.Transport` (the manager
thread and its SDK sockets), the shared :class:`~gridbot.adapters._supervisor.Supervisor` with two channels
— ``private`` (the user-data socket, a fresh listen key for every connection, declared dead after
``private_silence_timeout`` seconds without a frame or a server ping) and ``public`` (the combined
mark-price socket, idle while no symbol is subscribed; a symbol change opens a replacement socket and
switches to it once it is live) — and the REST layer (:mod:`~gridbot.adapters.binance._rest`).

The supervisor reports ``up``/``down``/``gap``/``failed`` to the stream's sink and rebuilds dead sockets
with jittered exponential backoff (``backoff``); python-binance's own reconnect loop is switched off (see
:mod:`~gridbot.adapters.binance._sockets`), so a lost connection is one ``down`` and a rebuild, never a
silent retry of a listen key that may have expired.  ``listenKeyExpired`` is forwarded, then the user socket
is rebuilt at once (``down``, new key, ``up``).  Rejected keys on a rebuild are reported ``failed`` once and
retried with backoff, so the stream recovers when they work again.

Bounded close.  ``close()`` cuts every REST request in flight, closes the supervisor (its runner threads
and every socket it opened), then asks the manager's loop to cancel whatever is left and joins it, all
against one deadline.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any, Final

from gridbot._account import AccountConfig
from gridbot._credentials import Credentials
from gridbot.adapters._backoff import BackoffPolicy
from gridbot.adapters._base import Sink
from gridbot.adapters._supervisor import ChannelSpec, OpenFailed, Supervisor, Timings
from gridbot.adapters.binance._errors import translate, translated
from gridbot.adapters.binance._liveness import BINANCE_SERVER_PING_S
from gridbot.adapters.binance._manager import Hosts
from gridbot.adapters.binance._rest import Rest
from gridbot.adapters.binance._sockets import stream_name
from gridbot.adapters.binance._transport import Transport
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.stats import Counters

__all__ = ["BinanceAdapter"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT: Final = 15.0  # a rebuild attempt gives up after this long
_CLEANUP_BUDGET: Final = 5.0  # how long a failed open() may spend stopping what it started
_MANAGER_STOP_RESERVE: Final = 0.5  # of close()'s budget, kept for stopping the manager's loop
# A user socket that received no frame and no server ping for this long is treated as down: the
# documented server ping interval plus a margin.
_PRIVATE_SILENCE: Final = BINANCE_SERVER_PING_S + 60.0

_NEW, _OPENING, _OPEN, _CLOSING, _CLOSED = "new", "opening", "open", "closing", "closed"


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class BinanceAdapter:
    """The :class:`~gridbot.adapters._base.Adapter` for Binance USDⓈ-M futures (see the module docstring).

    ``backoff`` (the rebuild delays), ``connect_timeout`` and ``private_silence_timeout`` may be replaced
    on an instance before ``open()``, e.g. by tests.
    """

    exchange = "binance"

    def __init__(self, *, api_key: str, api_secret: str, testnet: bool, demo: bool,
                 endpoints: Endpoints | None, sink: Sink, counters: Counters) -> None:
        self._credentials = Credentials(api_key, api_secret)
        self._testnet = testnet
        self._demo = demo
        self._endpoints = endpoints
        self._hosts = Hosts.choose(endpoints, testnet=testnet, demo=demo)
        self._sink = sink
        self._counters = counters
        self.backoff = BackoffPolicy()
        self.connect_timeout = _CONNECT_TIMEOUT
        self.private_silence_timeout = _PRIVATE_SILENCE

        self._lock = threading.Lock()
        self._state = _NEW
        self._symbols: set[str] = set()
        self._stopping = threading.Event()
        self._transport: Transport | None = None
        self._rest: Rest | None = None
        self._supervisor: Supervisor | None = None

    def __repr__(self) -> str:
        return (f"BinanceAdapter(testnet={self._testnet}, demo={self._demo}, "
                f"endpoints={self._endpoints!r}, state={self._state!r})")

    # ------------------------------------------------------------------ Adapter API

    @property
    def connected(self) -> bool:
        supervisor = self._supervisor
        return self._state == _OPEN and supervisor is not None and supervisor.connected

    def open(self, symbols: Collection[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state != _NEW:
                raise GridbotError(f"BinanceAdapter.open() needs a new adapter; this one is {self._state}")
            self._state = _OPENING
            self._symbols.update(symbol.upper() for symbol in symbols)
        try:
            self._open(deadline, timeout)
        except BaseException:
            self._shutdown(time.monotonic() + _CLEANUP_BUDGET)
            with self._lock:
                self._state = _CLOSED
            raise

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._state in (_NEW, _CLOSED, _CLOSING):
                if self._state == _NEW:
                    self._state = _CLOSED
                return
            self._state = _CLOSING
        self._shutdown(deadline)
        with self._lock:
            self._state = _CLOSED

    def add_symbol(self, symbol: str) -> None:
        self._change_symbol(symbol.upper(), add=True)

    def remove_symbol(self, symbol: str) -> None:
        self._change_symbol(symbol.upper(), add=False)

    # ------------------------------------------------------------------ REST (see _rest)

    def check_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        return self._require_rest().check_symbols([symbol.upper() for symbol in symbols])

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        return self._require_rest().fetch_snapshot(symbols, include_wallet=include_wallet)

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        return self._require_rest().fetch_fills(symbol, since_ms, until_ms)

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> AccountConfig | None:
        return self._require_rest().fetch_account_config(symbols, full=full)

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        return self._require_rest().fetch_orders(orders)

    def _require_rest(self) -> Rest:
        rest = self._rest
        if rest is None:
            raise GridbotError("the Binance adapter is not open")
        return rest

    # ------------------------------------------------------------------ open / close

    def _open(self, deadline: float, timeout: float) -> None:
        transport = self._transport = Transport(
            credentials=self._credentials, hosts=self._hosts, testnet=self._testnet, demo=self._demo,
            counters=self._counters, stopping=self._stopping)
        try:
            startup_error = transport.start(deadline)
        except ConnectError:
            raise ConnectError(f"Binance REST API did not answer within {timeout:g} s") from None
        if startup_error is not None:
            action = "starting the Binance client (GET /api/v3/ping, /api/v3/time)"
            with translated(action, self._credentials):
                raise startup_error
        rest = self._rest = transport.run(Rest.build(
            credentials=self._credentials, hosts=self._hosts, testnet=self._testnet, demo=self._demo,
            counters=self._counters, clock_offset=transport.clock_offset), deadline)
        transport.listen_key = functools.partial(rest.new_listen_key, self.connect_timeout)
        supervisor = self._build_supervisor(transport)
        failure = supervisor.start_and_wait(deadline)
        if failure is not None:
            raise self._open_error(failure)
        with self._lock:
            if self._state != _OPENING:
                raise GridbotError("the adapter was closed while opening")
            self._state = _OPEN

    def _build_supervisor(self, transport: Transport) -> Supervisor:
        supervisor = Supervisor("binance", transport, self._sink, counters=self._counters,
                                scrub=self._credentials.redact)
        private = Timings(connect_timeout=self.connect_timeout, silence_timeout=self.private_silence_timeout,
                          backoff=self.backoff)
        supervisor.add(ChannelSpec("private", on_frame=self._on_private_frame, timings=private))
        with self._lock:  # symbols added from now on go to the channel's topics
            streams = [stream_name(symbol) for symbol in self._symbols]
            supervisor.add(ChannelSpec("public", on_frame=functools.partial(self._sink.frame, "public"),
                                       topics=streams, idle_when_empty=True,
                                       timings=Timings(connect_timeout=self.connect_timeout,
                                                       backoff=self.backoff)))
            self._supervisor = supervisor
        return supervisor

    def _open_error(self, failure: OpenFailed) -> GridbotError:
        """The error ``open()`` raises for a channel whose first connection failed, chained to the SDK's
        exception where there was one."""
        channel = failure.channel or "private"
        cause = self._transport.last_error(channel) if self._transport is not None else None
        if isinstance(cause, GridbotError):
            return cause  # translated already (a listen-key request)
        if cause is not None:
            error = translate(cause, f"connecting the {channel} socket", self._credentials)
            error.__cause__ = cause
            return error
        if failure.kind == "auth":
            return AuthenticationError(f"Binance rejected the keys on the {channel} socket: {failure.detail}")
        if failure.detail.startswith("not live"):
            return ConnectError(f"the Binance {channel} socket did not connect in time")
        return ConnectError(f"the Binance {channel} socket could not connect: {failure.detail}")

    def _shutdown(self, deadline: float) -> None:
        """Cut REST, close the supervisor, stop the manager's loop; all against ``deadline``."""
        self._stopping.set()
        rest, transport, supervisor = self._rest, self._transport, self._supervisor
        if rest is not None:
            rest.abort()  # a seed, resync or listen-key request in flight ends now
        if supervisor is not None:
            reserve = min(_MANAGER_STOP_RESERVE, _remaining(deadline) / 2)
            supervisor.close(max(time.monotonic(), deadline - reserve))
        if transport is not None and transport.thread.ident is not None:
            transport.request_stop(budget=max(0.0, _remaining(deadline) - 0.1))
            transport.thread.join(_remaining(deadline))
            if transport.thread.is_alive():
                logger.warning("binance: %s still running when the close timeout ran out",
                               transport.thread.name)
        if rest is not None:
            rest.close()

    # ------------------------------------------------------------------ frames and symbols

    def _on_private_frame(self, payload: Any) -> None:
        """Forward a user-data frame; after ``listenKeyExpired``, rebuild the user socket (new key)."""
        self._sink.frame("private", payload)
        if type(payload) is dict and payload.get("e") == "listenKeyExpired" and self._supervisor is not None:
            self._supervisor.rebuild("private", "listenKeyExpired: renewing the listen key")

    def _change_symbol(self, symbol: str, *, add: bool) -> None:
        with self._lock:
            if (symbol in self._symbols) == add:
                return
            if add:
                self._symbols.add(symbol)
            else:
                self._symbols.discard(symbol)
            supervisor = self._supervisor
        if supervisor is None:
            return  # open() subscribes what is in _symbols
        if add:
            supervisor.add_topics("public", [stream_name(symbol)])
        else:
            supervisor.remove_topics("public", [stream_name(symbol)])
