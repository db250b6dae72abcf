"""python-binance's sockets, observed: the user-data and mark-price sockets gridbot runs, subclassed (no
SDK class is modified) at the places where the SDK reconnects, reports errors and ends its read loop.

The SDK would reconnect silently inside ``ReconnectingWebsocket._read_loop``: on a closed connection it
emits ``{"e": "error"}`` dicts through ``_propagate_error`` (``reconnecting_websocket.py:81``), calls
``before_reconnect()`` before every attempt (``:262-278,304``) and ``connect()`` again, which sets
``ws_state`` to STREAMING on success (``:142``); after ``MAX_RECONNECTS`` failures it raises
``BinanceWebsocketUnableToConnect`` and the read loop ends for good (any other error also ends the loop,
after which ``recv()`` raises ``ReadLoopClosed`` forever).  Here ``MAX_RECONNECTS`` is 0: a lost
connection takes that last path at once and gridbot's supervisor rebuilds the socket.
:class:`_ObservedSocket` reports exactly those places to its :class:`Hooks`, all from the read loop, so
the reports come in the SDK's own order.

Facts of python-binance 1.0.37 relied on: sockets bind the constructing thread's loop (so they are built
on the manager's loop); the listen key preset on the ``KeepAliveWebsocket`` stops it fetching one
(``keepalive_websocket.py:121``) while the SDK still keeps it alive every 5 minutes (``:247-268``); the
read-loop queue is made effectively unbounded (``max_queue_size``) because the SDK kills the read loop when
it is full (``reconnecting_websocket.py:212-217``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from binance.exceptions import BinanceWebsocketUnableToConnect
from binance.ws.keepalive_websocket import KeepAliveWebsocket

from gridbot.adapters._base import Channel
from gridbot.adapters.binance._liveness import watched_connection
from gridbot.adapters.binance._receive import TASKLESS, TasklessReceive

__all__ = ["FATAL_ERROR_TYPES", "Hooks", "Link", "refused_status", "stream_name"]

logger = logging.getLogger(__name__)

# Error dicts whose type means the SDK's read loop is gone for good.
FATAL_ERROR_TYPES: Final = frozenset({"BinanceWebsocketUnableToConnect", "ReadLoopClosed"})
_SDK_QUEUE_SIZE: Final = 2**62  # "never full": the SDK kills the socket when its queue is full
_WS_OPEN_TIMEOUT: Final = 10.0  # websockets' opening handshake timeout


def refused_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused websocket upgrade (websockets' InvalidStatus / legacy
    InvalidStatusCode), or None for any other connect failure (network, timeout)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) and 400 <= status < 500 else None


def _nothing() -> None:
    pass


def stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@markPrice@1s"


class Link:
    """One SDK socket and what the transport knows about it (flags written on the manager's loop)."""

    _ids = itertools.count(1)

    def __init__(self, channel: Channel, *, listen_key: str | None = None,
                 streams: tuple[str, ...] = ()) -> None:
        self.channel: Channel = channel
        self.key = f"gridbot-{channel}-{next(self._ids)}"  # the SDK listener's path key, unique
        self.listen_key = listen_key
        self.streams = streams
        self.connected = False
        self.ever_connected = False
        self.dead = False
        self.retired = False
        self.reported_errors: collections.deque[Any] = collections.deque()  # error dicts seen at source
        self.listener: asyncio.Task[Any] | None = None
        self.read_task: asyncio.Task[Any] | None = None
        self.ended = threading.Event()  # the SDK listener has ended
        self.on_heard: Callable[[], None] = _nothing  # a data frame or server ping arrived (liveness)

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


def _heard(link: Link) -> None:
    link.on_heard()


class _ObservedSocket(TasklessReceive):
    """The SDK socket with its observation points (see the module docstring).  Subclassed, so no SDK
    class is modified; behaviour is the SDK's (its receive path without a Task per message:
    :mod:`gridbot.adapters.binance._receive`) except that it never reconnects by itself:
    ``MAX_RECONNECTS = 0`` makes a lost connection go the SDK's own "gave up" way at once
    (``before_reconnect``, then ``BinanceWebsocketUnableToConnect`` and the end of the read loop), and
    the supervisor rebuilds the socket with its backoff (and, for the user socket, a new listen key).
    The SDK's loop would retry five times with its own waits (1-2 s doubling, up to ~85 s with connect
    timeouts) and reuse a listen key that may have expired meanwhile."""

    MAX_RECONNECTS = 0
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

    async def _run_reconnect(self) -> None:
        """``ReconnectingWebsocket._run_reconnect`` (``:262``) with ``MAX_RECONNECTS`` 0: close the lost
        connection and give up at once, without the SDK's "Max reconnections" error line."""
        await self.before_reconnect()
        raise BinanceWebsocketUnableToConnect

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
                         create_connection=watched_connection(functools.partial(_heard, link)))
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
