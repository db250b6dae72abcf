"""The Binance transport: the only code that touches python-binance and websockets internals.

One :class:`Transport` owns one ``ThreadedWebsocketManager`` (:class:`_SocketThread`: its own thread and
event loop, an ``AsyncClient`` on our REST hosts, a bounded stop) and runs two kinds of SDK socket on it —
the user-data socket ``{ws}/private/ws?listenKey=K`` and the combined mark-price socket
``{ws}/market/stream?streams=<sym>@markPrice@1s/...`` — each described by a :class:`Link`.

How python-binance 1.0.37 is driven (facts this relies on):

- Sockets are constructed *on the manager's loop* (inside a coroutine run there), because every SDK
  socket binds ``get_loop()`` of the constructing thread at construction and later schedules its read
  loop and keep-alive timer on it (``reconnecting_websocket.py:63,146``, ``keepalive_websocket.py:165``).
  They run under the SDK's listener (``ThreadedApiManager.start_listener``, ``threaded_stream.py:72``,
  or its task-free twin :func:`~gridbot.adapters.binance._receive.listen`), which calls a synchronous
  callback for every message.  The ``BinanceSocketManager`` factory is not used: it caches sockets per
  kind, and registers the user socket under a ``None`` path.
- The listen key is fetched by REST by the adapter and preset on the ``KeepAliveWebsocket`` so it does not
  fetch one itself (``keepalive_websocket.py:121``).  The SDK keeps it alive: every 5 minutes it POSTs
  ``listenKey`` (which extends the key) and PUTs a keep-alive, reconnecting if the key changed
  (``keepalive_websocket.py:247-268``), so gridbot runs no keep-alive timer of its own.
- The SDK's read-loop queue is made effectively unbounded (``max_queue_size``): the SDK kills the read
  loop when it is full (``reconnecting_websocket.py:212-217``), and the callback never blocks.

Observation points.  The SDK reconnects silently inside ``ReconnectingWebsocket._read_loop``: on a closed
connection it emits ``{"e": "error"}`` dicts through ``_propagate_error`` (``:81``), calls
``before_reconnect()`` before every attempt (``:262-278,304``) and ``connect()`` again, which sets
``ws_state`` to STREAMING on success (``:142``).  :class:`_ObservedSocket` subclasses the SDK's socket
and reports exactly those places to its :class:`Hooks` (the adapter), all from the read loop, so the
reports come in the SDK's own order; the end of ``_read_loop`` means the SDK gave up for good.

Bounded close.  The SDK's own ``stop()`` waits for receive timeouts (10 s) and its threads are non-daemon.
:meth:`Transport.request_stop` instead asks the manager's loop to cancel every task on it (listeners,
read loops, keep-alive) — cancellation interrupts the pending ``recv`` at once — close the aiohttp
session and the default executor, all within the budget.  The manager thread is a daemon so a stuck SDK
can never keep the process alive.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from binance.async_client import AsyncClient
from binance.ws.keepalive_websocket import KeepAliveWebsocket
from binance.ws.streams import BinanceSocketManager, ThreadedWebsocketManager

from gridbot._credentials import Credentials, mask_attribute
from gridbot.adapters._base import Channel
from gridbot.adapters.binance._liveness import watched_connection
from gridbot.adapters.binance._receive import TASKLESS, TasklessReceive, listen
from gridbot.endpoints import Endpoints
from gridbot.errors import ConnectError, GridbotError

__all__ = ["FATAL_ERROR_TYPES", "Hooks", "Hosts", "Link", "Transport", "refused_status", "stream_name"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Error dicts whose type means the SDK's read loop is gone for good.
FATAL_ERROR_TYPES: Final = frozenset({"BinanceWebsocketUnableToConnect", "ReadLoopClosed"})
_SDK_QUEUE_SIZE: Final = 2**62  # "never full": the SDK kills the socket when its queue is full
_WS_OPEN_TIMEOUT: Final = 10.0  # websockets' opening handshake timeout
_POLL: Final = 0.05  # slice of blocking waits that must notice close()


def refused_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused websocket upgrade (websockets' InvalidStatus / legacy
    InvalidStatusCode), or None for any other connect failure (network, timeout)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) and 400 <= status < 500 else None


def stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@markPrice@1s"


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _touch(link: Link) -> None:
    link.last_rx = time.monotonic()


# --------------------------------------------------------------------------- hosts and credentials


@dataclass(frozen=True, slots=True)
class Hosts:
    """Where REST and the two sockets go.  ``rest_*`` None means "the SDK's own host for testnet/demo"."""

    rest_api: str | None
    rest_fapi: str | None
    ws_private: str
    ws_market: str

    @classmethod
    def choose(cls, endpoints: Endpoints | None, *, testnet: bool, demo: bool) -> Hosts:
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


def _mask_secret(client: _T) -> _T:
    """The clear secret stays out of the SDK client's attributes (see gridbot._credentials)."""
    return mask_attribute(client, "API_SECRET")


async def _create_async_client(credentials: Credentials, hosts: Hosts, *, testnet: bool,
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


class Link:
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
        return f"<Link {self.key} connected={self.connected} dead={self.dead} retired={self.retired}>"


class Hooks(Protocol):
    """What the observed SDK sockets report; called on the manager's loop, never raises."""

    def sdk_connected(self, link: Link) -> None: ...

    def sdk_reconnecting(self, link: Link) -> None: ...

    def sdk_connect_failed(self, link: Link, exc: Exception) -> None: ...

    def sdk_read_loop_ended(self, link: Link) -> None: ...

    def sdk_error(self, link: Link, error: dict[str, Any]) -> None: ...

    def sdk_bad_frame(self, link: Link, frame: Any, exc: Exception) -> None: ...


def _notify(hook: Callable[[Link], None], link: Link) -> None:
    try:
        hook(link)
    except BaseException:
        logger.exception("binance %s: link hook failed", link.channel)


class _ObservedSocket(TasklessReceive):
    """The SDK socket with three observation points (see the module docstring).  Subclassed, so no SDK
    class is modified; behaviour is the SDK's (its receive path without a Task per message:
    :mod:`gridbot.adapters.binance._receive`)."""

    _gb_link: Link
    _gb_hooks: Hooks

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

    def __init__(self, *, link: Link, hooks: Hooks, client: Any, url: str, listen_key: str) -> None:
        super().__init__(client=client, url=url, keepalive_type="futures", prefix="ws/",
                         max_queue_size=_SDK_QUEUE_SIZE, open_timeout=_WS_OPEN_TIMEOUT,
                         create_connection=watched_connection(functools.partial(_touch, link)))
        self._gb_link = link
        self._gb_hooks = hooks
        self._listen_key = listen_key
        self._build_path()  # prefix "ws", path "?listenKey=K"


class _MarketSocket(_ObservedSocket):
    """``{ws}/market/stream?streams=a@markPrice@1s/b@markPrice@1s`` (combined frames)."""

    def __init__(self, *, link: Link, hooks: Hooks, url: str, streams: Sequence[str]) -> None:
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

    def __init__(self, *, credentials: Credentials, hosts: Hosts, testnet: bool, demo: bool) -> None:
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




# --------------------------------------------------------------------------- the transport


class Transport:
    """The manager thread and the SDK sockets on it: open a channel's socket (:meth:`spawn`), retire it,
    run code on the manager's loop, stop everything within a budget.  ``stopping`` is the adapter's
    close flag: blocking waits give up when it is set."""

    def __init__(self, *, credentials: Credentials, hosts: Hosts, testnet: bool, demo: bool,
                 stopping: threading.Event) -> None:
        self._hosts = hosts
        self._stopping = stopping
        self.thread = _SocketThread(credentials=credentials, hosts=hosts, testnet=testnet, demo=demo)

    def start(self, deadline: float) -> BaseException | None:
        """Start the manager thread and its AsyncClient; the SDK's startup error, untranslated (None: up).
        Raises ConnectError when it is not up by ``deadline``."""
        self.thread.start()
        if not self.thread.ready.wait(_remaining(deadline)):
            raise ConnectError("Binance REST API did not answer in time")
        return self.thread.startup_error

    def request_stop(self, budget: float) -> None:
        """Cancel everything on the manager's loop and end its thread (joined by the caller)."""
        self.thread.request_stop(budget)

    def clock_offset(self) -> int:
        """The SDK's measured server clock offset (ms), for signing REST requests."""
        offset = getattr(self.thread.async_client, "timestamp_offset", 0)
        return offset if isinstance(offset, int) else 0

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the manager's loop; nothing when the loop is closed."""
        try:
            self.thread.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: close() is under way or done

    def run(self, coro: Coroutine[Any, Any, _T], deadline: float) -> _T:
        """Run ``coro`` on the manager's loop and wait for it, giving up on close or ``deadline``."""
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.thread.loop)
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

    def spawn(self, link: Link, hooks: Hooks, on_message: Callable[[Link, Any], None],
              on_ended: Callable[[Link, BaseException | None], None], deadline: float) -> None:
        """Build ``link``'s SDK socket on the manager's loop and run it under the SDK's listener:
        ``on_message(link, msg)`` for every message, ``on_ended(link, error)`` when the listener ends."""
        self.run(self._spawn_on_loop(link, hooks, on_message, on_ended), deadline)

    async def _spawn_on_loop(self, link: Link, hooks: Hooks, on_message: Callable[[Link, Any], None],
                             on_ended: Callable[[Link, BaseException | None], None]) -> None:
        twm = self.thread
        if self._stopping.is_set():
            raise GridbotError("the adapter is closing")
        if link.channel == "private":
            assert link.listen_key is not None
            socket: Any = _UserSocket(link=link, hooks=hooks, client=twm.async_client,
                                      url=self._hosts.ws_private, listen_key=link.listen_key)
        else:
            socket = _MarketSocket(link=link, hooks=hooks, url=self._hosts.ws_market, streams=link.streams)
        twm._socket_running[link.key] = True
        callback = functools.partial(on_message, link)
        listener = (listen(twm._socket_running, socket, link.key, callback) if TASKLESS
                    else twm.start_listener(socket, link.key, callback))
        link.listener = asyncio.get_running_loop().create_task(listener)
        link.listener.add_done_callback(functools.partial(self._listener_done, link, on_ended))

    def _listener_done(self, link: Link, on_ended: Callable[[Link, BaseException | None], None],
                       task: asyncio.Task[Any]) -> None:
        self.thread._socket_running.pop(link.key, None)
        on_ended(link, None if task.cancelled() else task.exception())

    def stop_socket(self, link: Link) -> None:
        """Stop ``link``'s listener (on the manager's loop): ends a ``ReadLoopClosed`` flood."""
        self.thread.stop_socket(link.key)

    def retire(self, link: Link) -> None:
        """Stop ``link`` for good, from any thread (fire and forget)."""
        link.retired = True
        self.call_soon(self.retire_on_loop, link)

    def retire_on_loop(self, link: Link) -> None:
        link.retired = True
        link.connected = False
        self.thread.stop_socket(link.key)
        for task in (link.read_task, link.listener):
            if task is not None and not task.done():
                task.cancel()
