"""The socket side of the loopback Binance: listen keys, accepted sockets with their ordered send queues,
the per-channel fault stage (_Pipe) and the hub that fans frames out; runs on the server loop."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from gridbot.emulator.binance._wire import (
    LISTEN_KEY_VALIDITY_MS,
    PRIVATE,
    PUBLIC,
    _dumps,
    _new_listen_key,
)

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------- listen keys


class _ListenKeys:
    """The account's user-data listen key: one at a time, 60 minutes from its last keepalive."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._key: str | None = None
        self._expires_at = 0

    def create_or_extend(self) -> str:
        """POST: the active key (extended) if there is one, else a fresh key."""
        with self._lock:
            if self._key is None or self._clock() >= self._expires_at:
                self._key = _new_listen_key()
            self._expires_at = self._clock() + LISTEN_KEY_VALIDITY_MS
            return self._key

    def extend(self, key: str | None) -> str | None:
        """PUT: extend the active key; None when there is none (or ``key`` is another one)."""
        with self._lock:
            if self._key is None or self._clock() >= self._expires_at or (key and key != self._key):
                return None
            self._expires_at = self._clock() + LISTEN_KEY_VALIDITY_MS
            return self._key

    def delete(self, key: str | None) -> str | None:
        with self._lock:
            if self._key is None or (key and key != self._key):
                return None
            deleted, self._key = self._key, None
            return deleted

    def is_active(self, key: str) -> bool:
        with self._lock:
            return key == self._key and self._clock() < self._expires_at

    def pop_expired(self, force: bool = False) -> str | None:
        """The active key if its time is up (or ``force``), removing it."""
        with self._lock:
            if self._key is None or (not force and self._clock() < self._expires_at):
                return None
            expired, self._key = self._key, None
            return expired

    @property
    def current(self) -> str | None:
        with self._lock:
            return self._key


# ----------------------------------------------------------------------------------- sockets (loop side)


@dataclass(frozen=True)
class _MarketItem:
    """One market event (markPriceUpdate, 24hrTicker), rendered per connection (combined wrapper or raw)
    for the sockets subscribed to one of ``stream_names``."""

    stream_names: tuple[str, ...]
    data: dict[str, Any]

    @classmethod
    def mark_price(cls, symbol: str, data: dict[str, Any]) -> _MarketItem:
        low = symbol.lower()
        return cls((f"{low}@markPrice@1s", f"{low}@markPrice"), data)

    @classmethod
    def ticker(cls, symbol: str, data: dict[str, Any]) -> _MarketItem:
        return cls((f"{symbol.lower()}@ticker",), data)

    @classmethod
    def mini_ticker(cls, symbol: str, data: dict[str, Any]) -> _MarketItem:
        return cls((f"{symbol.lower()}@miniTicker",), data)


_CLOSE: Final = object()


class _Conn:
    """One accepted WebSocket: an ordered outbound queue drained by one sender task."""

    def __init__(self, ws: web.WebSocketResponse, channel: str, transport: asyncio.Transport | None,
                 *, listen_key: str = "", streams: Iterable[str] = (), combined: bool = True) -> None:
        self.ws = ws
        self.channel = channel
        self.transport = transport
        self.listen_key = listen_key
        self.streams: set[str] = set(streams)
        self.combined = combined
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.sender: asyncio.Task[None] | None = None

    def push(self, text: str) -> None:
        self.queue.put_nowait(text)

    def push_close(self) -> None:
        self.queue.put_nowait(_CLOSE)

    def push_market(self, item: _MarketItem) -> None:
        for name in item.stream_names:
            if name in self.streams:
                self.push(_dumps({"stream": name, "data": item.data}) if self.combined else _dumps(item.data))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (what a network failure looks like)."""
        if self.transport is not None:
            self.transport.abort()
        if self.sender is not None:
            self.sender.cancel()

    async def run_sender(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if item is _CLOSE:
                    await self.ws.close()
                    return
                assert isinstance(item, str)
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):
            logger.debug("binance emulator: %s sender ended", self.channel)
        except Exception:
            logger.exception("binance emulator: %s sender failed", self.channel)


class _Pipe:
    """The fault stage of one channel: pause/hold, duplicate, reorder; then fan-out.  Loop thread only."""

    def __init__(self, fanout: Callable[[Any], None]) -> None:
        self._fanout = fanout
        self.paused = False
        self.held: list[Any] = []
        self.duplicates = 0
        self.reorder_armed = False
        self._reorder_held: list[Any] = []

    def submit(self, item: Any) -> None:
        if self.paused:
            self.held.append(item)
        else:
            self._flow(item)

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for item in held:
            self._flow(item)

    def _flow(self, item: Any) -> None:
        if self._reorder_held:
            first = self._reorder_held.pop()
            self._out(item)
            self._out(first)
        elif self.reorder_armed:
            self.reorder_armed = False
            self._reorder_held.append(item)
        else:
            self._out(item)

    def _out(self, item: Any) -> None:
        self._fanout(item)
        if self.duplicates > 0:
            self.duplicates -= 1
            self._fanout(item)


class _Hub:
    """Every open socket and the two channel pipes.  All methods run on the server's loop thread."""

    def __init__(self) -> None:
        self.conns: dict[str, set[_Conn]] = {PRIVATE: set(), PUBLIC: set()}
        self.pipes: dict[str, _Pipe] = {
            PRIVATE: _Pipe(self._fanout_private),
            PUBLIC: _Pipe(self._fanout_public),
        }

    def submit(self, frames: list[tuple[str, Any]]) -> None:
        for channel, item in frames:
            self.pipes[channel].submit(item)

    def _fanout_private(self, text: str) -> None:
        for conn in self.conns[PRIVATE]:
            conn.push(text)

    def _fanout_public(self, item: _MarketItem) -> None:
        for conn in self.conns[PUBLIC]:
            conn.push_market(item)

    def send_raw(self, channel: str, text: str) -> None:
        for conn in self.conns[channel]:
            conn.push(text)

    def drop(self, channel: str) -> None:
        for conn in list(self.conns[channel]):
            conn.abort()

    def close_key(self, key: str, farewell: str | None) -> None:
        """Send ``farewell`` (if any) then close every private socket of ``key``."""
        for conn in list(self.conns[PRIVATE]):
            if conn.listen_key == key:
                if farewell is not None:
                    conn.push(farewell)
                conn.push_close()


def _market_request(conn: _Conn, text: str) -> None:
    """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS on a market socket, answered in line."""
    try:
        request = json.loads(text)
    except ValueError:
        conn.push(_dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
        return
    if not isinstance(request, dict):
        conn.push(_dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": None}))
        return
    method, params, req_id = request.get("method"), request.get("params") or [], request.get("id")
    if method == "SUBSCRIBE" and isinstance(params, list):
        conn.streams.update(str(p) for p in params)
        conn.push(_dumps({"result": None, "id": req_id}))
    elif method == "UNSUBSCRIBE" and isinstance(params, list):
        conn.streams.difference_update(str(p) for p in params)
        conn.push(_dumps({"result": None, "id": req_id}))
    elif method == "LIST_SUBSCRIPTIONS":
        conn.push(_dumps({"result": sorted(conn.streams), "id": req_id}))
    else:
        error = {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}
        conn.push(_dumps({"error": error, "id": req_id}))

