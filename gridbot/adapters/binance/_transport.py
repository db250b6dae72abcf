"""The Binance transport: what the shared supervisor (:mod:`gridbot.adapters._supervisor`) drives, and the
only code that touches python-binance and websockets internals (with :mod:`._sockets`, :mod:`._receive`,
:mod:`._liveness` and :mod:`._manager`).

:meth:`Transport.open` opens one connection for a channel — ``private``: a fresh listen key by REST, then
the user-data socket ``{ws}/private/ws?listenKey=K``; ``public``: the combined mark-price socket
``{ws}/market/stream?streams=<sym>@markPrice@1s/...`` with the given streams — built on the manager's
loop (every SDK socket binds the constructing thread's loop) and run under the SDK's listener.  It returns
at once; what happens next is reported on the supervisor's :class:`~gridbot.adapters._channel.Attempt`:

- the SDK connected → ``opened``; an error dict on a live connection → ``gap``;
- the connection was lost (the SDK's ``before_reconnect``: its own reconnect loop is off), the SDK gave
  up (its read loop ended, ``BinanceWebsocketUnableToConnect`` / ``ReadLoopClosed`` dicts) or the
  listener ended → the socket is stopped at once (which ends the listener's ``ReadLoopClosed`` flood) and
  ``closed``; the supervisor rebuilds it (a new listen key for the user socket);
- every data frame → ``frame``; every data frame or server ping websockets sees → ``heard`` (the
  supervisor's silence bound: Binance pings every 3 minutes);
- a frame that is not JSON (which would end the SDK's read loop) is counted in ``bad_messages`` and skipped.

A combined stream cannot change its streams in place: the supervisor opens a replacement and switches to
it once it is live.  A handle's ``close`` retires the socket (its tasks cancelled on the loop) and ``join``
waits for its listener to end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

from gridbot._credentials import Credentials
from gridbot._sdk_versions import check_sdk_versions
from gridbot.adapters._channel import Attempt
from gridbot.adapters._supervisor import AuthRejected, ConnectFailed
from gridbot.adapters.binance import _sockets
from gridbot.adapters.binance._manager import Hosts, _SocketThread
from gridbot.adapters.binance._receive import TASKLESS, listen
from gridbot.adapters.binance._sockets import FATAL_ERROR_TYPES, Link, refused_status
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.stats import Counters

__all__ = ["Transport"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_POLL: Final = 0.05  # slice of blocking waits that must notice close()
_SPAWN_TIMEOUT: Final = 10.0  # building a socket on the manager's loop (no network I/O)


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class Transport:
    """The manager thread and the SDK sockets on it (see the module docstring).  ``stopping`` is the
    adapter's close flag: blocking waits give up when it is set.  ``listen_key`` (set once REST is up)
    fetches a new listen key or raises a translated :class:`GridbotError`."""

    def __init__(self, *, credentials: Credentials, hosts: Hosts, testnet: bool, demo: bool,
                 counters: Counters, stopping: threading.Event) -> None:
        check_sdk_versions("binance")
        self._hosts = hosts
        self._counters = counters
        self._stopping = stopping
        self.thread = _SocketThread(credentials=credentials, hosts=hosts, testnet=testnet, demo=demo)
        self.listen_key: Callable[[], str] | None = None
        self._errors: dict[str, BaseException] = {}  # the latest failure to connect, per channel

    # ------------------------------------------------------------------ the manager thread

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

    def last_error(self, channel: str) -> BaseException | None:
        """Why the latest attempt of ``channel`` could not connect (None: no exception was seen)."""
        return self._errors.get(channel)

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

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self.thread.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: close() is under way or done

    # ------------------------------------------------------------------ the supervisor's transport

    def open(self, channel: str, topics: Sequence[str], events: Attempt) -> _LinkHandle:
        """Start one connection of ``channel`` (see the module docstring); returns once it is spawned."""
        if channel == "private":
            link = Link("private", listen_key=self._new_listen_key())
        else:
            link = Link("public", streams=tuple(topics))
        link.on_heard = events.heard
        observer = _LinkEvents(self, link, events)
        try:
            self.run(self._spawn_on_loop(link, observer), time.monotonic() + _SPAWN_TIMEOUT)
        except GridbotError as exc:
            raise ConnectFailed(str(exc)) from exc
        return _LinkHandle(self, link)

    def _new_listen_key(self) -> str:
        if self.listen_key is None:
            raise ConnectFailed("the Binance REST client is not ready")
        try:
            return self.listen_key()
        except AuthenticationError as exc:
            self._errors["private"] = exc
            raise AuthRejected(str(exc)) from exc
        except GridbotError as exc:
            self._errors["private"] = exc
            raise ConnectFailed(str(exc)) from exc

    async def _spawn_on_loop(self, link: Link, observer: _LinkEvents) -> None:
        """Construct the SDK socket on this loop and run it under the SDK's listener."""
        twm = self.thread
        if self._stopping.is_set():
            raise GridbotError("the adapter is closing")
        if link.channel == "private":
            assert link.listen_key is not None
            socket: Any = _sockets._UserSocket(link=link, hooks=observer, client=twm.async_client,
                                               url=self._hosts.ws_private, listen_key=link.listen_key)
        else:
            socket = _sockets._MarketSocket(link=link, hooks=observer, url=self._hosts.ws_market,
                                            streams=link.streams)
        twm._socket_running[link.key] = True
        listener = (listen(twm._socket_running, socket, link.key, observer.message) if TASKLESS
                    else twm.start_listener(socket, link.key, observer.message))
        link.listener = asyncio.get_running_loop().create_task(listener)
        link.listener.add_done_callback(functools.partial(self._listener_done, observer))

    def _listener_done(self, observer: _LinkEvents, task: asyncio.Task[Any]) -> None:
        self.thread._socket_running.pop(observer.link.key, None)
        observer.ended(None if task.cancelled() else task.exception())

    def record_failure(self, link: Link, exc: BaseException) -> None:
        if not link.ever_connected:
            self._errors[link.channel] = exc

    def stop_socket(self, link: Link) -> None:
        """Stop ``link``'s listener (on the manager's loop): ends a ``ReadLoopClosed`` flood."""
        self.thread.stop_socket(link.key)

    def retire(self, link: Link) -> None:
        """Stop ``link`` for good, from any thread (fire and forget)."""
        link.retired = True
        self._call_soon(self._retire_on_loop, link)

    def _retire_on_loop(self, link: Link) -> None:
        link.connected = False
        self.thread.stop_socket(link.key)
        for task in (link.read_task, link.listener):
            if task is not None and not task.done():
                task.cancel()

    def count_bad_frame(self, link: Link, frame: Any, exc: Exception) -> None:
        self._counters.add("bad_messages")
        logger.error("binance %s: dropped a frame that is not JSON (%s); raw=%.200r",
                     link.channel, exc, frame)


class _LinkEvents:
    """One link's SDK observations (:class:`~gridbot.adapters.binance._sockets.Hooks`, on the manager's
    loop) and listener messages, turned into the supervisor's attempt events; never raises."""

    def __init__(self, transport: Transport, link: Link, events: Attempt) -> None:
        self._transport = transport
        self.link = link
        self._events = events

    def message(self, msg: Any) -> None:
        """The SDK listener's callback: forward at once; never block, never raise into the SDK."""
        try:
            if type(msg) is dict and msg.get("e") == "error":
                reported = self.link.reported_errors
                if reported and reported[0] is msg:
                    reported.popleft()  # already seen by sdk_error when the read loop raised it
                else:
                    self._error_dict(msg)
                return
            self._events.frame(msg)
        except BaseException:
            logger.exception("binance %s: handling an SDK message failed", self.link.channel)

    def ended(self, exc: BaseException | None) -> None:
        self.link.ended.set()
        if exc is not None:
            self._transport.record_failure(self.link, exc)
        self._dead(f"the SDK listener ended: {type(exc).__name__}" if exc else "the SDK listener ended")

    def sdk_connected(self, link: Link) -> None:
        link.connected = link.ever_connected = True
        self._events.opened()

    def sdk_reconnecting(self, link: Link) -> None:
        """The connection is lost; the SDK's own reconnect loop is off, so this socket is done."""
        self._dead("the connection was lost")

    def sdk_connect_failed(self, link: Link, exc: Exception) -> None:
        """A reconnect of the user socket refused by the exchange (an HTTP status instead of the upgrade)
        means its listen key is gone — expired while we were disconnected, so no ``listenKeyExpired``
        frame came.  The SDK would retry the dead key up to five times with growing waits (15-30 s):
        it is closed now, so the supervisor rebuilds it with a new key."""
        self._transport.record_failure(link, exc)
        status = refused_status(exc)
        if link.channel == "private" and link.ever_connected and status is not None:
            self._dead(f"the exchange refused the user socket (HTTP {status}): stale listen key")

    def sdk_read_loop_ended(self, link: Link) -> None:
        self._dead("the SDK's read loop ended")

    def sdk_error(self, link: Link, error: dict[str, Any]) -> None:
        """The read loop raised an error dict: report it now, in order with the reconnect hooks (the
        listener delivers the dict later, possibly after the reconnect's ``opened``)."""
        link.reported_errors.append(error)
        self._error_dict(error)

    def sdk_bad_frame(self, link: Link, frame: Any, exc: Exception) -> None:
        self._transport.count_bad_frame(link, frame, exc)

    def _error_dict(self, error: dict[str, Any]) -> None:
        kind = str(error.get("type"))
        detail = f"SDK error {kind}: {error.get('m')}"
        if kind in FATAL_ERROR_TYPES:
            self._dead(detail)
        else:
            self._events.gap(detail)

    def _dead(self, detail: str) -> None:
        link = self.link
        if link.dead or link.retired:
            return
        link.dead = True
        link.connected = False
        self._transport.stop_socket(link)
        self._events.closed(detail)


class _LinkHandle:
    """The supervisor's handle on one link: close it (fire and forget), join its listener."""

    def __init__(self, transport: Transport, link: Link) -> None:
        self._transport = transport
        self._link = link

    def __repr__(self) -> str:
        return repr(self._link)

    def subscribe(self, topics: Sequence[str]) -> None:
        raise ConnectFailed("a Binance combined stream changes by replacement, not in place")

    def unsubscribe(self, topics: Sequence[str]) -> None:
        raise ConnectFailed("a Binance combined stream changes by replacement, not in place")

    def ping(self) -> None:
        """Not used: Binance pings (websockets answers), and the supervisor bounds the silence."""

    def close(self) -> None:
        self._transport.retire(self._link)

    def join(self, timeout: float) -> bool:
        return self._link.ended.wait(timeout) or not self._transport.thread.is_alive()
