"""Binance USDⓈ-M futures adapter over python-binance 1.0.37.

One :class:`BinanceAdapter` owns one ``ThreadedWebsocketManager`` (its own thread and event loop), two
SDK sockets on it — the user-data socket ``{ws}/private/ws?listenKey=K`` and the combined mark-price
socket ``{ws}/market/stream?streams=<sym>@markPrice@1s/...`` — a supervisor thread that rebuilds dead
sockets, and two blocking REST ``Client`` objects (one for the stream's seed, one for listen keys).

How python-binance is driven (facts of 1.0.37 this relies on):

- Sockets are constructed *on the manager's loop* (inside a coroutine run there), because every SDK
  socket binds ``get_loop()`` of the constructing thread at construction and later schedules its read
  loop and keep-alive timer on it (``reconnecting_websocket.py:63,146``, ``keepalive_websocket.py:165``).
  They are run by the SDK's own listener ``ThreadedApiManager.start_listener`` (``threaded_stream.py:72``),
  which calls our synchronous callback for every message.  The ``BinanceSocketManager`` factory is not
  used: it caches sockets per kind, and registers the user socket under a ``None`` path.
- The listen key is fetched by REST by us and preset on the ``KeepAliveWebsocket`` so it does not fetch
  one itself (``keepalive_websocket.py:121``).  The SDK keeps it alive: every 5 minutes it POSTs
  ``listenKey`` (which extends the key) and PUTs a keep-alive, reconnecting if the key changed
  (``keepalive_websocket.py:247-268``), so gridbot runs no keep-alive timer of its own.
- The SDK's read-loop queue is made effectively unbounded (``max_queue_size``): the SDK kills the read
  loop when it is full (``reconnecting_websocket.py:212-217``), and our callback never blocks.

Reconnect detection.  The SDK reconnects silently inside ``ReconnectingWebsocket._read_loop``: on a
closed connection it emits ``{"e": "error"}`` dicts through ``_propagate_error`` (``:81``), calls
``before_reconnect()`` before every attempt (``:262-278,304``) and ``connect()`` again, which sets
``ws_state`` to STREAMING on success (``:142``).  The socket classes below subclass the SDK's and hook
exactly those places, all of which run in the read loop, so reports are in the SDK's own order:
``_propagate_error`` reports a ``gap`` (while the link is up), ``before_reconnect`` reports ``down``, a
successful ``connect`` reports ``up`` (the stream resyncs on ``up``), and the end of ``_read_loop``
means the SDK gave up for good (four failed reconnects end in ``BinanceWebsocketUnableToConnect``; a
non-JSON frame or any other error also ends the loop, after which ``recv()`` raises ``ReadLoopClosed``
forever and the listener floods the callback with error dicts).  A dead socket is stopped (which ends
the flood), reported ``down``, and rebuilt by the supervisor thread with jittered exponential backoff,
with a fresh listen key for the user socket; ``up`` follows once it is connected.  If frames keep
flowing on the same connection after a ``gap`` (no reconnect followed), the next frame reports ``up``
so the gap is resynced too.  ``listenKeyExpired`` is forwarded, then the user socket is retired at once,
reported ``down``, and rebuilt with a new key.

Bounded close.  The SDK's own ``stop()`` waits for receive timeouts (10 s) and its threads are
non-daemon.  ``close()`` instead asks the manager's loop to cancel every task on it (listeners, read
loops, keep-alive) — cancellation interrupts the pending ``recv`` at once — close the aiohttp session and
the default executor, all within the budget, then joins the manager thread and the supervisor against
the same deadline.  The manager thread is also made a daemon so a stuck SDK can never keep the process
alive.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import aiohttp
import requests
import websockets.exceptions
from binance.async_client import AsyncClient
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException
from binance.ws.keepalive_websocket import KeepAliveWebsocket
from binance.ws.streams import BinanceSocketManager, ThreadedWebsocketManager

from gridbot._account import AccountConfig
from gridbot._credentials import Credentials, mask_attribute
from gridbot._margin import SymbolBrackets
from gridbot.adapters._base import Channel, Decoded, LinkState, Sink
from gridbot.adapters._binance_receive import TASKLESS, TasklessReceive, listen
from gridbot.adapters._http import AbortableTransport, mount_abortable
from gridbot.adapters._liveness import BINANCE_SERVER_PING_S, watched_connection
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.normalize import Ignored
from gridbot.normalize.binance import (
    algo_orders_from_rest,
    fills_from_rest,
    finished_algo_order_from_rest,
    orders_from_rest,
    parse_market_message,
    parse_user_message,
    positions_from_rest,
    wallets_from_rest,
)
from gridbot.normalize.binance_account import (
    account_config_from_push,
    account_config_from_rest,
    brackets_from_rest,
)
from gridbot.stats import Counters

__all__ = ["BinanceAdapter"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Binance codes for a rejected key or signature: -2014 bad key format, -2015 invalid key/IP/permissions,
# -1022 invalid signature.  HTTP 401 is the status Binance answers them with.
_AUTH_CODES: Final = frozenset({-2014, -2015, -1022})
# "Order does not exist" / "Unknown order sent": the exchange no longer knows the order.
_UNKNOWN_ORDER_CODES: Final = frozenset({-2013, -2011})
# Error dicts whose type means the SDK's read loop is gone for good (see the module docstring).
_FATAL_ERROR_TYPES: Final = frozenset({"BinanceWebsocketUnableToConnect", "ReadLoopClosed"})
_SDK_QUEUE_SIZE: Final = 2**62  # "never full": the SDK kills the socket when its queue is full
_REST_TIMEOUT: Final = 10.0  # seconds per REST request
_WS_OPEN_TIMEOUT: Final = 10.0  # websockets' opening handshake timeout
_CONNECT_TIMEOUT: Final = 15.0  # a rebuild attempt gives up after this long
_CLEANUP_BUDGET: Final = 5.0  # how long a failed open() may spend stopping what it started
_BACKOFF_INITIAL: Final = 0.5
_BACKOFF_CAP: Final = 30.0
_POLL: Final = 0.05  # slice of blocking waits that must notice close()
# A user socket that received no frame and no server ping for this long is treated as down: the
# documented server ping interval plus a margin.
_PRIVATE_SILENCE: Final = BINANCE_SERVER_PING_S + 60.0
_STOP: Final = object()  # supervisor queue sentinel
_TRADES_LIMIT: Final = 1000  # userTrades: "Default 500; max 1000"
_TRADES_WINDOW_MS: Final = 7 * 24 * 3600 * 1000  # "startTime and endTime cannot be longer than 7 days"
_TRADES_HISTORY_MS: Final = 180 * 24 * 3600 * 1000  # "Only support querying trade in the past 6 months"
_MAX_TRADE_PAGES: Final = 1000  # per window: 1M fills; more means the answers do not advance


def _reconnect_delay(attempt: int) -> float:
    """Exponential backoff with jitter: ~0.25-0.5 s, then doubling up to 15-30 s."""
    ceiling = min(_BACKOFF_CAP, _BACKOFF_INITIAL * 2.0**attempt)
    return ceiling * random.uniform(0.5, 1.0)


def _refused_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused websocket upgrade (websockets' InvalidStatus / legacy
    InvalidStatusCode), or None for any other connect failure (network, timeout)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) and 400 <= status < 500 else None


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _touch(link: _Link) -> None:
    link.last_rx = time.monotonic()


def _stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@markPrice@1s"


def _is_algo_order(order: OrderUpdate) -> bool:
    """Algo Service orders come from ALGO_UPDATE pushes or ``openAlgoOrders`` rows (``algoId``)."""
    raw = order.raw
    return raw.get("e") == "ALGO_UPDATE" or "algoId" in raw


# --------------------------------------------------------------------------- hosts and credentials


@dataclass(frozen=True, slots=True)
class _Hosts:
    """Where REST and the two sockets go.  ``rest_*`` None means "the SDK's own host for testnet/demo"."""

    rest_api: str | None
    rest_fapi: str | None
    ws_private: str
    ws_market: str

    @classmethod
    def choose(cls, endpoints: Endpoints | None, *, testnet: bool, demo: bool) -> _Hosts:
        if endpoints is not None:
            return cls(f"{endpoints.rest}/api", f"{endpoints.rest}/fapi",
                       f"{endpoints.ws}/private/", f"{endpoints.ws}/market/")
        # The SDK's own futures stream hosts (read, never modified), chosen as the SDK chooses them.
        base = BinanceSocketManager.FSTREAM_URL.format("com")
        if testnet:
            base = BinanceSocketManager.FSTREAM_TESTNET_URL
        elif demo:
            base = BinanceSocketManager.FSTREAM_DEMO_URL
        return cls(None, None, f"{base}private/", f"{base}market/")

    def apply_to(self, client: Any) -> None:
        """Point one SDK client (sync or async) at our REST hosts, on that instance only."""
        if self.rest_api is None or self.rest_fapi is None:
            return
        for name in ("API_URL", "API_TESTNET_URL", "API_DEMO_URL"):
            setattr(client, name, self.rest_api)
        for name in ("FUTURES_URL", "FUTURES_TESTNET_URL", "FUTURES_DEMO_URL"):
            setattr(client, name, self.rest_fapi)


_Credentials = Credentials


def _mask_secret(client: _T) -> _T:
    """The clear secret stays out of the SDK client's attributes (see gridbot._credentials)."""
    return mask_attribute(client, "API_SECRET")


async def _create_async_client(credentials: _Credentials, hosts: _Hosts, *, testnet: bool,
                               demo: bool) -> Any:
    """The manager's AsyncClient, on our hosts, started as ``AsyncClient.create`` starts it.

    ``create`` pings before one could change its hosts, so it is replicated: ``GET /api/v3/ping``,
    then ``GET /api/v3/time`` for the signing clock offset.
    """
    client = AsyncClient(api_key=credentials.key, api_secret=credentials.secret, testnet=testnet, demo=demo)
    hosts.apply_to(client)
    _mask_secret(client)
    try:
        await client.ping()
        server = await client.get_server_time()
        client.timestamp_offset = server["serverTime"] - int(time.time() * 1000)
    except BaseException:
        await client.close_connection()
        raise
    return client


# --------------------------------------------------------------------------- SDK sockets, observed


class _Link:
    """One SDK socket and what the adapter knows about it.  Flags change under the adapter's lock."""

    _ids = itertools.count(1)

    def __init__(self, channel: Channel, *, listen_key: str | None = None,
                 streams: tuple[str, ...] = ()) -> None:
        self.channel: Channel = channel
        self.key = f"gridbot-{channel}-{next(self._ids)}"  # the SDK listener's path key, unique
        self.listen_key = listen_key
        self.streams = streams
        self.settled = threading.Event()  # first connect succeeded, or failed for good
        self.connected = False
        self.ever_connected = False
        self.dead = False
        self.retired = False
        self.gap_pending = False
        self.reported_errors: collections.deque[Any] = collections.deque()  # error dicts seen at source
        self.error: BaseException | None = None
        self.last_rx = time.monotonic()  # last data frame or server ping (written on the loop)
        self.listener: asyncio.Task[Any] | None = None
        self.read_task: asyncio.Task[Any] | None = None

    def __repr__(self) -> str:
        return f"<_Link {self.key} connected={self.connected} dead={self.dead} retired={self.retired}>"


class _Hooks(Protocol):
    """What the observed SDK sockets report; called on the manager's loop, never raises."""

    def sdk_connected(self, link: _Link) -> None: ...

    def sdk_reconnecting(self, link: _Link) -> None: ...

    def sdk_connect_failed(self, link: _Link, exc: Exception) -> None: ...

    def sdk_read_loop_ended(self, link: _Link) -> None: ...

    def sdk_error(self, link: _Link, error: dict[str, Any]) -> None: ...

    def sdk_bad_frame(self, link: _Link, frame: Any, exc: Exception) -> None: ...


def _notify(hook: Callable[[_Link], None], link: _Link) -> None:
    try:
        hook(link)
    except BaseException:
        logger.exception("binance %s: link hook failed", link.channel)


class _ObservedSocket(TasklessReceive):
    """The SDK socket with three observation points (see the module docstring).  Subclassed, so no SDK
    class is modified; behaviour is the SDK's (its receive path without a Task per message:
    :mod:`gridbot.adapters._binance_receive`)."""

    _gb_link: _Link
    _gb_hooks: _Hooks

    async def connect(self) -> None:
        try:
            await super().connect()
        except Exception as exc:
            try:
                self._gb_hooks.sdk_connect_failed(self._gb_link, exc)
            except BaseException:
                logger.exception("binance %s: link hook failed", self._gb_link.channel)
            raise
        _notify(self._gb_hooks.sdk_connected, self._gb_link)

    async def before_reconnect(self) -> None:
        _notify(self._gb_hooks.sdk_reconnecting, self._gb_link)
        await super().before_reconnect()

    async def _propagate_error(self, error_msg: dict[str, Any]) -> None:
        try:
            self._gb_hooks.sdk_error(self._gb_link, error_msg)
        except BaseException:
            logger.exception("binance %s: link hook failed", self._gb_link.channel)
        await super()._propagate_error(error_msg)

    def _handle_message(self, evt: Any) -> Any:
        """The SDK ends its read loop for good on a frame that is not JSON (a new gap, and a dead socket
        to rebuild); one bad frame is counted and skipped instead (None: the SDK queues nothing)."""
        try:
            return super()._handle_message(evt)
        except (ValueError, TypeError, OSError) as exc:
            try:
                self._gb_hooks.sdk_bad_frame(self._gb_link, evt, exc)
            except BaseException:
                logger.exception("binance %s: link hook failed", self._gb_link.channel)
            return None

    async def _read_loop(self) -> None:
        self._gb_link.read_task = asyncio.current_task()
        try:
            if TASKLESS:
                await self._read_frames()
            else:
                await super()._read_loop()
        finally:
            _notify(self._gb_hooks.sdk_read_loop_ended, self._gb_link)


class _UserSocket(_ObservedSocket, KeepAliveWebsocket):  # type: ignore[misc]
    """``{ws}/private/ws?listenKey=K`` with our listen key preset; the SDK keeps it alive."""

    def __init__(self, *, link: _Link, hooks: _Hooks, client: Any, url: str, listen_key: str) -> None:
        super().__init__(client=client, url=url, keepalive_type="futures", prefix="ws/",
                         max_queue_size=_SDK_QUEUE_SIZE, open_timeout=_WS_OPEN_TIMEOUT,
                         create_connection=watched_connection(functools.partial(_touch, link)))
        self._gb_link = link
        self._gb_hooks = hooks
        self._listen_key = listen_key
        self._build_path()  # prefix "ws", path "?listenKey=K"


class _MarketSocket(_ObservedSocket):
    """``{ws}/market/stream?streams=a@markPrice@1s/b@markPrice@1s`` (combined frames)."""

    def __init__(self, *, link: _Link, hooks: _Hooks, url: str, streams: Sequence[str]) -> None:
        super().__init__(url=url, path="streams=" + "/".join(streams), prefix="stream?",
                         max_queue_size=_SDK_QUEUE_SIZE, open_timeout=_WS_OPEN_TIMEOUT)
        self._gb_link = link
        self._gb_hooks = hooks


# --------------------------------------------------------------------------- the manager thread


class _SocketThread(ThreadedWebsocketManager):  # type: ignore[misc]
    """The ThreadedWebsocketManager of one adapter: its own loop, our REST hosts, a bounded stop.

    ``socket_listener`` (what ``run()`` runs) is replaced: it starts the AsyncClient on our hosts,
    signals ``ready``, then idles until ``request_stop`` and cancels everything on the loop.
    """

    def __init__(self, *, credentials: _Credentials, hosts: _Hosts, testnet: bool, demo: bool) -> None:
        # Keys go to our own AsyncClient only; the base class would keep a copy it never uses here.
        super().__init__(testnet=testnet, loop=asyncio.new_event_loop(), max_queue_size=_SDK_QUEUE_SIZE)
        self.name = "gridbot-binance-ws"
        self.daemon = True
        self._gb_credentials = credentials
        self._gb_hosts = hosts
        self._gb_testnet = testnet
        self._gb_demo = demo
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self._stop_requested = asyncio.Event()
        self._stop_budget = 1.0  # for an end without request_stop (a failed start)
        self._startup: asyncio.Task[Any] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = self._loop
        return loop

    @property
    def async_client(self) -> Any:
        return self._client

    def run(self) -> None:
        try:
            self._loop.run_until_complete(self.socket_listener())
        except BaseException:
            logger.exception("binance socket thread failed")
        finally:
            self._loop.close()

    async def socket_listener(self) -> None:
        try:
            if await self._start_client():
                await self._stop_requested.wait()
        finally:
            await self._shutdown()

    async def _start_client(self) -> bool:
        try:
            if self._stop_requested.is_set():
                return False
            self._startup = asyncio.ensure_future(_create_async_client(
                self._gb_credentials, self._gb_hosts, testnet=self._gb_testnet, demo=self._gb_demo))
            self._client = await self._startup
            return True
        except asyncio.CancelledError:
            return False  # request_stop() during the start
        except Exception as exc:  # noqa: BLE001 - handed to open(), which translates it
            self.startup_error = exc
            return False
        finally:
            self.ready.set()

    def request_stop(self, budget: float) -> None:
        """Ask the loop to cancel everything and end; from any thread; returns at once."""
        self._running = False
        self._stop_budget = budget
        try:
            self._loop.call_soon_threadsafe(self._begin_stop)
        except RuntimeError:
            pass  # the loop is already closed: the thread has ended

    def _begin_stop(self) -> None:
        self._stop_requested.set()
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()

    async def _shutdown(self) -> None:
        """Cancel every task on this loop (listeners, read loops, keep-alives), close the HTTP session
        and the default executor, all within the budget; anything still stuck is abandoned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_budget
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            if stuck:
                logger.warning("binance: %d socket task(s) did not stop in time", len(stuck))
        self._socket_running.clear()
        await self._bounded(self._close_client(), deadline)
        await self._bounded(loop.shutdown_default_executor(), deadline)

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._client.close_connection()

    @staticmethod
    async def _bounded(coro: Coroutine[Any, Any, None], deadline: float) -> None:
        try:
            await asyncio.wait_for(coro, max(0.0, deadline - asyncio.get_running_loop().time()))
        except Exception:  # shutdown goes on; the cause is logged
            logger.warning("binance: shutdown step did not finish cleanly", exc_info=True)


# --------------------------------------------------------------------------- the adapter

_NEW, _OPENING, _OPEN, _CLOSING, _CLOSED = "new", "opening", "open", "closing", "closed"


class BinanceAdapter:
    """The :class:`~gridbot.adapters._base.Adapter` for Binance USDⓈ-M futures (see the module docstring).

    ``reconnect_delay(attempt)`` (seconds before rebuild attempt ``attempt + 1``) and
    ``connect_timeout`` may be replaced on an instance, e.g. by tests.
    """

    exchange = "binance"

    def __init__(self, *, api_key: str, api_secret: str, testnet: bool, demo: bool,
                 endpoints: Endpoints | None, sink: Sink, counters: Counters) -> None:
        self._credentials = _Credentials(api_key, api_secret)
        self._testnet = testnet
        self._demo = demo
        self._endpoints = endpoints
        self._hosts = _Hosts.choose(endpoints, testnet=testnet, demo=demo)
        self._sink = sink
        self._counters = counters
        self.reconnect_delay: Callable[[int], float] = _reconnect_delay
        self.connect_timeout = _CONNECT_TIMEOUT
        self.private_silence_timeout = _PRIVATE_SILENCE

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._state = _NEW
        self._reporting = False
        self._closing = False
        self._symbols: set[str] = set()
        self._current: dict[Channel, _Link | None] = {"private": None, "public": None}
        self._up: dict[Channel, bool] = {"private": False, "public": False}
        self._fatal: GridbotError | None = None
        self._failed: set[Channel] = set()  # channels reported failed (keys rejected), until rebuilt
        self._brackets: dict[str, SymbolBrackets] = {}  # fetched once per symbol (fetch_account_config)

        self._twm: _SocketThread | None = None
        self._seed_rest: Any = None  # Client for fetch_snapshot (the stream's worker thread)
        self._control_rest: Any = None  # Client for listen keys (open(), then the supervisor)
        self._transports: list[AbortableTransport] = []  # cut by close(): no REST call outlives it
        self._stopping = threading.Event()
        self._commands: queue.Queue[object] = queue.Queue()
        self._supervisor = threading.Thread(target=self._supervise, name="gridbot-binance-supervisor",
                                            daemon=True)

    def __repr__(self) -> str:
        return (f"BinanceAdapter(testnet={self._testnet}, demo={self._demo}, "
                f"endpoints={self._endpoints!r}, state={self._state!r})")

    # ------------------------------------------------------------------ Adapter API

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._state == _OPEN and all(self._up.values())

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
            self._reporting = False
        self._shutdown(deadline)
        with self._lock:
            self._state = _CLOSED

    def add_symbol(self, symbol: str) -> None:
        self._change_symbols(symbol.upper(), add=True)

    def remove_symbol(self, symbol: str) -> None:
        self._change_symbols(symbol.upper(), add=False)

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        client = self._require_seed_rest()
        wanted = frozenset(symbol.upper() for symbol in symbols)
        events: list[Event] = []
        if wanted:
            rows = self._rest_rows("fetching positions (GET /fapi/v3/positionRisk)",
                                   client.futures_position_information, wanted)
            events.extend(positions_from_rest(rows))
        if include_wallet:
            rows = self._rest_rows("fetching the balance (GET /fapi/v3/balance)",
                                   client.futures_account_balance, None)
            events.extend(wallets_from_rest(rows))
        if wanted:
            rows = self._rest_rows("fetching open orders (GET /fapi/v1/openOrders)",
                                   client.futures_get_open_orders, wanted)
            events.extend(orders_from_rest(rows))
            rows = self._rest_rows("fetching open algo orders (GET /fapi/v1/openAlgoOrders)",
                                   client.futures_get_open_algo_orders, wanted)
            events.extend(algo_orders_from_rest(rows))
        return events

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """``GET /fapi/v1/userTrades`` of ``symbol`` in windows of at most 7 days (the documented span);
        a full page (1000 rows) continues with ``fromId`` = the highest id + 1 (inclusive per the zh-CN
        docs; ``fromId`` cannot be combined with times), until a page is short or passes the window.
        The docs state no order: rows are sorted by trade id."""
        client = self._require_seed_rest()
        found: dict[str, FillUpdate] = {}
        start = max(since_ms, until_ms - _TRADES_HISTORY_MS)  # "only ... the past 6 months"
        while start <= until_ms:
            end = min(until_ms, start + _TRADES_WINDOW_MS - 1)
            for fill in self._trades_window(client, symbol, start, end):
                if fill.symbol == symbol and start <= fill.timestamp <= end:
                    found[fill.trade_id] = fill
            start = end + 1
        return sorted(found.values(), key=lambda fill: int(fill.trade_id))

    def _trades_window(self, client: Any, symbol: str, start: int, end: int) -> list[FillUpdate]:
        action = f"fetching the fills of {symbol} (GET /fapi/v1/userTrades)"
        rows = self._rest_rows(action, functools.partial(
            client.futures_account_trades, symbol=symbol, startTime=start, endTime=end, limit=_TRADES_LIMIT),
            None)
        fills = fills_from_rest(rows)
        for _page in range(_MAX_TRADE_PAGES):
            if len(rows) < _TRADES_LIMIT or not fills or fills[-1].timestamp > end:
                return fills
            next_id = int(fills[-1].trade_id) + 1
            rows = self._rest_rows(action, functools.partial(
                client.futures_account_trades, symbol=symbol, fromId=next_id, limit=_TRADES_LIMIT), None)
            page = fills_from_rest(rows)
            if page and int(page[0].trade_id) < next_id:
                raise GridbotError(f"Binance {action}: fromId={next_id} answered older trades")
            fills.extend(page)
        raise GridbotError(f"Binance {action}: more than {_MAX_TRADE_PAGES} pages in one window")

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> AccountConfig | None:
        """Leverage brackets of ``symbols`` not fetched before (``GET /fapi/v1/leverageBracket?symbol=S``,
        once per symbol), and their leverage and margin type plus the multi-assets mode
        (``GET /fapi/v2/account``, every seed: they may change while disconnected).

        A failure here does not fail the seed -- positions, orders and the wallet matter more than the
        computed account view: it is logged, the figures that need the missing input are None, and the
        next seed (every resync) fetches it again.
        """
        client = self._require_seed_rest()
        wanted = [symbol.upper() for symbol in symbols]
        for symbol in wanted:
            if symbol not in self._brackets:
                self._brackets.update(self._fetch_brackets(client, symbol))
        timestamp = time.time_ns() // 1_000_000
        self._counters.add("rest_calls")
        try:
            with self._translated("fetching the account (GET /fapi/v2/account)"):
                account = client.futures_account()
            return account_config_from_rest(account, self._brackets, wanted, full=full, timestamp=timestamp)
        except AuthenticationError:
            raise
        except GridbotError as exc:
            logger.warning("binance: no leverage or margin type for the account view (%s); its margin "
                           "figures are unknown until the next resync", exc)
            brackets = {s: b for s, b in self._brackets.items() if s in wanted}
            return AccountConfig(exchange="binance", timestamp=timestamp, is_snapshot=True, full=full,
                                 brackets=brackets)

    def _fetch_brackets(self, client: Any, symbol: str) -> dict[str, SymbolBrackets]:
        self._counters.add("rest_calls")
        action = f"fetching the leverage brackets of {symbol} (GET /fapi/v1/leverageBracket)"
        try:
            with self._translated(action):
                return brackets_from_rest(client.futures_leverage_bracket(symbol=symbol))
        except AuthenticationError:
            raise
        except GridbotError as exc:
            logger.warning("binance: %s (%s); its maintenance margin is unknown until the next resync",
                           action, exc)
            return {}

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        """Final states by REST: ``GET /fapi/v1/order`` for regular orders, ``GET /fapi/v1/algoOrder``
        for Algo Service orders (told apart by their wire origin: ALGO_UPDATE or an ``algoId`` row)."""
        client = self._require_seed_rest()
        events: list[Event] = []
        for order in orders:
            if _is_algo_order(order):
                row = self._rest_order(
                    f"querying algo order {order.order_id} (GET /fapi/v1/algoOrder)",
                    functools.partial(client.futures_get_algo_order, algoId=order.order_id))
                if row is not None:
                    events.extend(self._finished_algo_order(order, row))
            else:
                row = self._rest_order(
                    f"querying order {order.symbol} {order.order_id} (GET /fapi/v1/order)",
                    functools.partial(client.futures_get_order, symbol=order.symbol, orderId=order.order_id))
                if row is not None:
                    events.extend(orders_from_rest([row]))
        return events

    def _finished_algo_order(self, order: OrderUpdate, row: dict[str, Any]) -> list[Event]:
        """The algo order's final state; for a triggered one, also the order it placed, whose fill
        decides Filled or Cancelled (the algo row has no filled quantity)."""
        child_id = row.get("actualOrderId")
        if row.get("algoStatus") != "FINISHED" or child_id in (None, "", 0, "0"):
            return list(algo_orders_from_rest([row]))
        query = functools.partial(self._require_seed_rest().futures_get_order, symbol=order.symbol,
                                  orderId=child_id)
        child = self._rest_order(
            f"querying order {order.symbol} {child_id} placed by algo {order.order_id} (GET /fapi/v1/order)",
            query)
        events: list[Event] = list(orders_from_rest([child])) if child is not None else []
        events.append(finished_algo_order_from_rest(row, child))
        return events

    def decode(self, channel: Channel, payload: Any) -> Decoded:
        if channel == "private":
            if isinstance(payload, dict) and payload.get("e") == "ACCOUNT_CONFIG_UPDATE":
                return [account_config_from_push(payload)]
            return parse_user_message(payload)
        result = parse_market_message(payload)
        return result if isinstance(result, Ignored) else list[Event](result)

    # ------------------------------------------------------------------ open / close

    def _open(self, deadline: float, timeout: float) -> None:
        twm = self._twm = _SocketThread(credentials=self._credentials, hosts=self._hosts,
                                        testnet=self._testnet, demo=self._demo)
        twm.start()
        if not twm.ready.wait(_remaining(deadline)):
            raise ConnectError(f"Binance REST API did not answer within {timeout:g} s")
        if twm.startup_error is not None:
            with self._translated("starting the Binance client (GET /api/v3/ping, /api/v3/time)"):
                raise twm.startup_error
        self._seed_rest, self._control_rest = self._run_on_loop(self._build_rest_clients(), deadline)

        private = _Link("private", listen_key=self._new_listen_key(_remaining(deadline)))
        links = [private]
        self._spawn(private, deadline)
        streams = self._desired_streams()
        public = _Link("public", streams=streams) if streams else None
        if public is not None:
            links.append(public)
            self._spawn(public, deadline)
        for link in links:
            self._await_settled(link, deadline)

        self._install("private", private)
        self._install("public", public)
        self._supervisor.start()
        with self._lock:
            while not all(self._up.values()) and self._fatal is None:
                left = _remaining(deadline)
                if left <= 0:
                    raise ConnectError(f"Binance sockets were not both connected within {timeout:g} s")
                self._changed.wait(left)
            if self._fatal is not None:
                raise self._fatal
            self._state = _OPEN
            self._reporting = True
        self._commands.put("public")  # symbols added while opening

    def _shutdown(self, deadline: float) -> None:
        """Stop the supervisor and the manager's loop, join both against ``deadline``."""
        self._closing = True
        self._stopping.set()
        self._commands.put(_STOP)
        for transport in self._transports:
            transport.abort()  # a seed, resync or listen-key request in flight ends now
        threads = [self._supervisor]
        twm = self._twm
        if twm is not None:
            twm.request_stop(budget=max(0.0, _remaining(deadline) - 0.1))
            threads.append(twm)
        threads = [thread for thread in threads if thread.ident is not None]  # started ones
        for thread in threads:
            thread.join(_remaining(deadline))
        for client in (self._seed_rest, self._control_rest):
            self._close_rest(client)
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            logger.warning("binance: %s still running when the close timeout ran out", ", ".join(stuck))

    @staticmethod
    def _close_rest(client: Any) -> None:
        if client is None:
            return
        try:
            client.close_connection()
        except Exception:  # closing a session must not fail close()
            logger.warning("binance: closing a REST session failed", exc_info=True)

    async def _build_rest_clients(self) -> tuple[Any, Any]:
        """Both REST clients, built on the manager's loop: the SDK constructor calls ``get_loop()``,
        which would otherwise create and set an event loop in the caller's thread."""
        seed = Client(api_key=self._credentials.key, api_secret=self._credentials.secret,
                      requests_params={"timeout": _REST_TIMEOUT}, testnet=self._testnet, demo=self._demo,
                      ping=False)
        control = Client(api_key=self._credentials.key, api_secret=self._credentials.secret,
                         testnet=self._testnet, demo=self._demo, ping=False)
        for client in (seed, control):
            self._hosts.apply_to(client)
            _mask_secret(client)
            transport = mount_abortable(getattr(client, "session", None))
            if transport is not None:
                self._transports.append(transport)
        return seed, control

    # ------------------------------------------------------------------ REST

    def _new_listen_key(self, timeout: float) -> str:
        client = self._control_rest
        client.REQUEST_TIMEOUT = max(0.1, min(_REST_TIMEOUT, timeout))  # this instance only
        with self._translated("creating a listen key (POST /fapi/v1/listenKey)"):
            key = client.futures_stream_get_listen_key()
        if not isinstance(key, str) or not key:
            raise GridbotError("Binance returned no listen key")
        return key

    def _require_seed_rest(self) -> Any:
        client = self._seed_rest
        if client is None:
            raise GridbotError("the Binance adapter is not open")
        client.timestamp_offset = self._clock_offset()  # the SDK's measured clock offset, for signing
        return client

    def _rest_order(self, action: str, call: Callable[[], Any]) -> dict[str, Any] | None:
        """One order row, or None when the exchange no longer knows the order."""
        self._counters.add("rest_calls")
        try:
            with self._translated(action):
                row = call()
        except GridbotError as exc:
            cause = exc.__cause__
            if isinstance(cause, BinanceAPIException) and cause.code in _UNKNOWN_ORDER_CODES:
                return None
            raise
        if not isinstance(row, dict):
            raise GridbotError(f"Binance answered {action} with a {type(row).__name__}, not an object")
        return row

    def _rest_rows(self, action: str, call: Callable[[], Any],
                   wanted: frozenset[str] | None) -> list[dict[str, Any]]:
        """A documented list-of-objects answer, filtered to ``wanted`` symbols.  Any other shape (an
        object, a list holding strings...) is an error: it must fail the seed or resync (which is
        retried), never pass for "no positions/orders"."""
        self._counters.add("rest_calls")
        with self._translated(action):
            rows = call()
        if not isinstance(rows, list):
            raise GridbotError(f"Binance answered {action} with a {type(rows).__name__}, not a list")
        odd = next((row for row in rows if not isinstance(row, dict)), None)
        if odd is not None:
            raise GridbotError(f"Binance answered {action} with a list holding a "
                               f"{type(odd).__name__} ({str(odd)[:80]!r}), not objects")
        if wanted is None:
            return rows
        return [row for row in rows if row.get("symbol") in wanted]

    def _clock_offset(self) -> int:
        twm = self._twm
        client = twm.async_client if twm is not None else None
        offset = getattr(client, "timestamp_offset", 0)
        return offset if isinstance(offset, int) else 0

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """The one place SDK exceptions become gridbot errors (``raise ... from``), secrets scrubbed."""
        try:
            yield
        except GridbotError:
            raise
        except Exception as exc:
            raise self._translate(exc, action) from exc

    def _translate(self, exc: BaseException, action: str) -> GridbotError:
        self._scrub(exc)
        if isinstance(exc, BinanceAPIException):
            code, message = exc.code, self._credentials.redact(str(exc.message))
            if code in _AUTH_CODES or exc.status_code == 401:
                return AuthenticationError(
                    f"Binance rejected the API key or signature while {action}: code {code}: {message}")
            return GridbotError(f"Binance refused {action}: code {code}: {message} (HTTP {exc.status_code})")
        detail = f"{type(exc).__name__}: {self._credentials.redact(str(exc))}"
        if isinstance(exc, (requests.RequestException, aiohttp.ClientError, OSError, asyncio.TimeoutError,
                            concurrent.futures.TimeoutError, websockets.exceptions.WebSocketException)):
            return ConnectError(f"cannot reach Binance while {action}: {detail}")
        if isinstance(exc, BinanceRequestException):
            return GridbotError(f"Binance sent an invalid answer while {action}: {detail}")
        return GridbotError(f"unexpected error while {action}: {detail}")

    def _scrub(self, exc: BaseException) -> None:
        """Remove signatures and keys from the messages of ``exc`` and its causes (requests puts the
        signed URL into its connection errors), so a logged traceback cannot show them."""
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            try:
                text = str(current)
                clean = self._credentials.redact(text)
                if clean != text:
                    current.args = (clean,)
            except Exception:  # noqa: BLE001 - an odd exception type must not mask the real error
                logger.debug("binance: could not scrub %s", type(current).__name__)
            current = current.__cause__ or current.__context__

    # ------------------------------------------------------------------ the manager's loop

    def _run_on_loop(self, coro: Coroutine[Any, Any, _T], deadline: float) -> _T:
        """Run ``coro`` on the manager's loop and wait for it, giving up on close() or ``deadline``."""
        twm = self._twm
        if twm is None:
            coro.close()
            raise GridbotError("the Binance socket thread is not running")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, twm.loop)
        except RuntimeError:
            coro.close()
            raise GridbotError("the Binance socket thread has stopped") from None
        while True:
            try:
                return future.result(timeout=min(_POLL, max(_remaining(deadline), 0.001)))
            except concurrent.futures.TimeoutError:
                if self._stopping.is_set():
                    future.cancel()
                    raise GridbotError("the adapter is closing") from None
                if _remaining(deadline) <= 0:
                    future.cancel()
                    raise ConnectError("the Binance socket thread did not respond in time") from None
            except concurrent.futures.CancelledError:
                raise GridbotError("the Binance socket thread has stopped") from None

    def _spawn(self, link: _Link, deadline: float) -> None:
        self._run_on_loop(self._spawn_on_loop(link), deadline)

    async def _spawn_on_loop(self, link: _Link) -> None:
        """Construct the SDK socket on this loop and run it with the SDK's listener."""
        twm = self._twm
        assert twm is not None
        if self._closing:
            raise GridbotError("the adapter is closing")
        if link.channel == "private":
            assert link.listen_key is not None
            socket: Any = _UserSocket(link=link, hooks=self, client=twm.async_client,
                                      url=self._hosts.ws_private, listen_key=link.listen_key)
        else:
            socket = _MarketSocket(link=link, hooks=self, url=self._hosts.ws_market, streams=link.streams)
        twm._socket_running[link.key] = True
        callback = functools.partial(self._on_sdk_message, link)
        listener = (listen(twm._socket_running, socket, link.key, callback) if TASKLESS
                    else twm.start_listener(socket, link.key, callback))
        link.listener = asyncio.get_running_loop().create_task(listener)
        link.listener.add_done_callback(functools.partial(self._on_listener_done, link))

    def _await_settled(self, link: _Link, deadline: float) -> None:
        """Wait for the first connect of ``link``; on failure retire it and raise the translated error."""
        while not link.settled.wait(min(_POLL, max(_remaining(deadline), 0.001))):
            if self._stopping.is_set():
                self._retire(link)
                raise GridbotError("the adapter is closing")
            if _remaining(deadline) <= 0:
                self._retire(link)
                raise ConnectError(f"the Binance {link.channel} socket did not connect in time")
        if link.ever_connected:
            return
        self._retire(link)
        with self._translated(f"connecting the {link.channel} socket"):
            raise link.error or ConnectError(f"the Binance {link.channel} socket closed while connecting")

    def _retire(self, link: _Link) -> None:
        """Stop ``link`` for good, from any thread (fire and forget)."""
        link.retired = True
        twm = self._twm
        if twm is None:
            return
        try:
            twm.loop.call_soon_threadsafe(self._retire_on_loop, link)
        except RuntimeError:
            pass  # the loop is closed; nothing runs there any more

    def _retire_on_loop(self, link: _Link) -> None:
        link.retired = True
        link.connected = False
        if self._twm is not None:
            self._twm.stop_socket(link.key)
        for task in (link.read_task, link.listener):
            if task is not None and not task.done():
                task.cancel()

    # ------------------------------------------------------------------ SDK callbacks (manager's loop)

    def _on_sdk_message(self, link: _Link, msg: Any) -> None:
        """The SDK callback: forward at once; never block, never raise into the SDK."""
        try:
            if type(msg) is dict and msg.get("e") == "error":
                self._on_error_dict(link, msg)
                return
            self._sink.frame(link.channel, msg)
            if link.gap_pending:
                self._on_frames_after_gap(link)
            if link.channel == "private" and type(msg) is dict and msg.get("e") == "listenKeyExpired":
                self._on_listen_key_expired(link)
        except BaseException:
            logger.exception("binance %s: handling an SDK message failed", link.channel)

    def _on_error_dict(self, link: _Link, msg: dict[str, Any]) -> None:
        """An error dict reaching the listener: the SDK gave up, or a gap not yet seen at its source."""
        if link.reported_errors and link.reported_errors[0] is msg:
            link.reported_errors.popleft()  # already reported by sdk_error when the read loop raised it
            return
        kind = str(msg.get("type"))
        if kind in _FATAL_ERROR_TYPES:
            if not (link.retired or self._closing):
                self._on_dead(link, f"SDK error {kind}: {msg.get('m')}")
            return
        self._report_gap(link, msg)

    def sdk_error(self, link: _Link, error: dict[str, Any]) -> None:
        """The read loop raised an error dict: report the ``gap`` now, in order with the reconnect hooks
        (the listener delivers the dict later, possibly after the reconnect's ``up``)."""
        link.reported_errors.append(error)
        self._report_gap(link, error)

    def sdk_bad_frame(self, link: _Link, frame: Any, exc: Exception) -> None:
        self._counters.add("bad_messages")
        logger.error("binance %s: dropped a frame that is not JSON (%s); raw=%.200r",
                     link.channel, exc, frame)

    def _report_gap(self, link: _Link, error: dict[str, Any]) -> None:
        if link.retired or self._closing or str(error.get("type")) in _FATAL_ERROR_TYPES:
            return
        with self._lock:
            if link.dead or self._current[link.channel] is not link or not self._up[link.channel]:
                return  # a link that is down resyncs on its next up anyway
            link.gap_pending = True
            self._report(link.channel, "gap", f"SDK error {error.get('type')}: {error.get('m')}")

    def _on_frames_after_gap(self, link: _Link) -> None:
        """Frames flow on the same connection after an error dict: report ``up`` so the gap is resynced."""
        with self._lock:
            if not link.gap_pending:
                return
            link.gap_pending = False
            if self._current[link.channel] is link and self._up[link.channel] and not link.retired:
                self._report(link.channel, "up", "frames flow again after an SDK error")

    def _on_listen_key_expired(self, link: _Link) -> None:
        with self._lock:
            if self._current["private"] is not link or link.retired:
                return
            self._set_up("private", False, "listenKeyExpired: renewing the listen key")
        self._retire_on_loop(link)
        self._commands.put("private")

    def sdk_connected(self, link: _Link) -> None:
        with self._lock:
            link.last_rx = time.monotonic()
            link.connected = True
            link.ever_connected = True
            if self._current[link.channel] is link and not (link.retired or link.dead):
                link.gap_pending = False
                self._set_up(link.channel, True, "the SDK reconnected")
        link.settled.set()

    def sdk_reconnecting(self, link: _Link) -> None:
        with self._lock:
            link.connected = False
            if self._current[link.channel] is link and not link.retired:
                self._set_up(link.channel, False, "the SDK is reconnecting")

    def sdk_connect_failed(self, link: _Link, exc: Exception) -> None:
        """A reconnect of the user socket refused by the exchange (an HTTP status instead of the upgrade)
        means its listen key is gone — expired while we were disconnected, so no ``listenKeyExpired``
        frame came.  The SDK would retry the dead key up to five times with growing waits (15-30 s);
        retire the link now so the supervisor rebuilds it with a new key."""
        status = _refused_status(exc)
        if link.channel != "private" or not link.ever_connected or status is None:
            return
        if not (link.retired or self._closing):
            self._on_dead(link, f"the exchange refused the user socket (HTTP {status}): stale listen key")

    def sdk_read_loop_ended(self, link: _Link) -> None:
        if not (link.retired or self._closing):
            self._on_dead(link, "the SDK's read loop ended")

    def _on_listener_done(self, link: _Link, task: asyncio.Task[Any]) -> None:
        twm = self._twm
        if twm is not None:
            twm._socket_running.pop(link.key, None)
        exc = None if task.cancelled() else task.exception()
        if link.retired or self._closing:
            return
        if exc is not None and link.error is None and not link.ever_connected:
            link.error = exc
        detail = f"the SDK listener ended: {type(exc).__name__}" if exc else "the SDK listener ended"
        self._on_dead(link, detail)

    def _on_dead(self, link: _Link, detail: str) -> None:
        """The SDK gave up on ``link``: stop it, report ``down``, let the supervisor rebuild it."""
        with self._lock:
            if link.dead or link.retired:
                return
            link.dead = True
            link.connected = False
            is_current = self._current[link.channel] is link
            if is_current:
                self._set_up(link.channel, False, detail)
        logger.warning("binance %s socket is dead (%s); rebuilding it", link.channel, detail)
        link.settled.set()
        if self._twm is not None:
            self._twm.stop_socket(link.key)  # ends the listener's ReadLoopClosed flood
        if is_current:
            self._commands.put(link.channel)

    # ------------------------------------------------------------------ link state (under the lock)

    def _set_up(self, channel: Channel, up: bool, detail: str) -> None:
        if self._up[channel] == up:
            return
        self._up[channel] = up
        self._changed.notify_all()
        self._report(channel, "up" if up else "down", detail)

    def _report(self, channel: Channel, state: LinkState, detail: str) -> None:
        if not self._reporting:
            return
        try:
            self._sink.link(channel, state, detail)
        except BaseException:
            logger.exception("binance %s: the sink failed on a %s report", channel, state)

    def _install(self, channel: Channel, link: _Link | None) -> None:
        """Make ``link`` the channel's socket (None: no market socket needed) and retire the old one."""
        with self._lock:
            old = self._current[channel]
            self._current[channel] = link
            self._failed.discard(channel)
            if link is None:
                self._set_up(channel, True, "no symbols to watch")
            else:
                link.gap_pending = False
                self._set_up(channel, link.connected and not link.dead, "new socket connected")
                if link.dead:
                    self._commands.put(channel)
        if old is not None and old is not link:
            self._retire(old)

    # ------------------------------------------------------------------ symbols and the supervisor

    def _desired_streams(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(_stream_name(symbol) for symbol in sorted(self._symbols))

    def _change_symbols(self, symbol: str, *, add: bool) -> None:
        with self._lock:
            if (symbol in self._symbols) == add:
                return
            if add:
                self._symbols.add(symbol)
            else:
                self._symbols.discard(symbol)
            running = self._state == _OPEN
        if running:
            self._commands.put("public")

    def _needs_new_link(self, channel: Channel) -> bool:
        with self._lock:
            link = self._current[channel]
            if channel == "private":
                return link is None or link.dead or link.retired
            desired = tuple(_stream_name(symbol) for symbol in sorted(self._symbols))
            if link is None:
                return bool(desired)
            return link.dead or link.retired or link.streams != desired

    def _supervise(self) -> None:
        """Rebuild dead sockets and apply symbol changes, one channel attempt at a time, with backoff."""
        due: dict[Channel, float] = {}
        attempts: dict[Channel, int] = {"private": 0, "public": 0}
        while not self._stopping.is_set():
            wait = max(0.0, min(due.values()) - time.monotonic()) if due else None
            watch = max(0.05, min(5.0, self.private_silence_timeout / 4))
            try:
                item = self._commands.get(timeout=watch if wait is None else min(wait, watch))
            except queue.Empty:
                item = None
            if item is _STOP or self._stopping.is_set():
                return
            self._check_silence()
            woken: Channel | None = "private" if item == "private" else "public" if item == "public" else None
            if woken is not None and woken not in due:
                due[woken] = time.monotonic()
            for channel in [ch for ch, at in due.items() if at <= time.monotonic()]:
                if self._stopping.is_set():
                    return
                try:
                    finished = self._attempt(channel)
                except BaseException:
                    logger.exception("binance %s: rebuild attempt failed unexpectedly", channel)
                    finished = False
                if finished:
                    del due[channel]
                    attempts[channel] = 0
                else:
                    due[channel] = time.monotonic() + self.reconnect_delay(attempts[channel])
                    attempts[channel] += 1

    def _check_silence(self) -> None:
        """A connected user socket that received nothing — no data frame, no server ping — for longer
        than ``private_silence_timeout`` is stalled: declare it dead, which reports ``down`` and has
        it rebuilt (new listen key); the stream resyncs when it is back."""
        with self._lock:
            link = self._current["private"]
            if link is None or link.dead or link.retired or not link.connected:
                return
            silent = time.monotonic() - link.last_rx
        if silent <= self.private_silence_timeout:
            return
        twm = self._twm
        if twm is None:
            return
        detail = f"no frame and no server ping for {silent:.0f} s"
        try:
            twm.loop.call_soon_threadsafe(self._on_dead, link, detail)
        except RuntimeError:
            pass  # the loop is closed: close() is under way

    def _attempt(self, channel: Channel) -> bool:
        """One try at giving ``channel`` the socket it needs; False means "try again after a backoff"."""
        if not self._needs_new_link(channel):
            return True
        deadline = time.monotonic() + self.connect_timeout
        try:
            if channel == "private":
                link: _Link | None = _Link("private", listen_key=self._new_listen_key(self.connect_timeout))
            else:
                streams = self._desired_streams()
                link = _Link("public", streams=streams) if streams else None
            if link is not None:
                self._spawn(link, deadline)
                self._await_settled(link, deadline)
        except AuthenticationError as exc:
            # Keys revoked: reported once, then retried with backoff, so the stream recovers by itself
            # when they work again (as it does after any other failed rebuild).
            self._fail(channel, exc)
            return False
        except GridbotError as exc:
            if not self._stopping.is_set():
                logger.warning("binance %s socket: rebuild attempt failed: %s", channel, exc)
            return False
        self._install(channel, link)
        return True

    def _fail(self, channel: Channel, exc: AuthenticationError) -> None:
        with self._lock:
            self._fatal = exc
            self._set_up(channel, False, str(exc))
            first = channel not in self._failed
            self._failed.add(channel)
            if first:
                self._report(channel, "failed", f"{exc}; retrying with backoff until the keys work again")
            self._changed.notify_all()
        if first:
            logger.error("binance %s socket: keys rejected (%s); retrying with backoff", channel, exc)
