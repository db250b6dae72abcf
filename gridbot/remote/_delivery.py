"""Delivery for RemoteStream: a queue that carries each event's stream entry ids (so a consumer group
acknowledges only after the callback ran) and conflates tickers, and a router to the callbacks.

Positions arrive with the producer's merged mark already; nothing is recomputed here.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from gridbot._dispatch import Callbacks, Subscriptions, check_callback
from gridbot.book import StateBook
from gridbot.events import (
    Event,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.stats import Counters

__all__ = ["AckQueue", "RemoteRouter"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any], object]


class _TickerSlot:
    __slots__ = ("symbol",)

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol


class AckQueue:
    """FIFO of (event, entry ids); a queued ticker is replaced by a newer one of its symbol, and the
    replaced one's ids travel with the survivor so they are acknowledged together."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._cond = threading.Condition()
        self._items: deque[tuple[Event, list[str]] | _TickerSlot] = deque()
        self._tickers: dict[str, tuple[TickerUpdate, list[str]]] = {}
        self._closed = False

    def put(self, event: Event, entry_id: str | None) -> None:
        ids = [entry_id] if entry_id is not None else []
        with self._cond:
            if isinstance(event, TickerUpdate):
                queued = self._tickers.get(event.symbol)
                if queued is not None:
                    self._counters.add("conflated")
                    ids = queued[1] + ids
                else:
                    self._items.append(_TickerSlot(event.symbol))
                self._tickers[event.symbol] = (event, ids)
            else:
                self._items.append((event, ids))
            self._cond.notify()

    def get(self, timeout: float | None) -> tuple[Event, list[str]] | None:
        with self._cond:
            ready = self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout)
            if not ready or not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, _TickerSlot):
                ticker, ids = self._tickers.pop(item.symbol)
                return ticker, ids
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class RemoteRouter:
    """Symbol -> callbacks (copy-on-write) and the calls; a raising callback is logged and counted."""

    def __init__(self, on_status: Callback | None, counters: Counters) -> None:
        check_callback("on_status", on_status)
        self._on_status = on_status
        self._counters = counters
        self._subscriptions = Subscriptions()
        self.book = StateBook()

    def set(self, symbol: str, callbacks: Callbacks) -> bool:
        return self._subscriptions.set(symbol, callbacks)

    def remove(self, symbol: str) -> bool:
        if not self._subscriptions.remove(symbol):
            return False
        self.book._forget(symbol)
        return True

    def subscribed(self, symbol: str) -> bool:
        return self._subscriptions.get(symbol) is not None

    def symbols(self) -> list[str]:
        return self._subscriptions.symbols()

    def deliver(self, event: Event) -> None:
        self._counters.add("events")
        symbol = getattr(event, "symbol", None)
        if symbol is None or self.subscribed(symbol):
            self.book._apply(event)  # the book shows what the callbacks are given, as ExchangeStream's does
        if isinstance(event, StatusUpdate):
            self._call(self._on_status, event, "on_status")
        elif isinstance(event, WalletUpdate):
            self._account_wide("on_wallet", event)
        elif isinstance(event, (PositionUpdate, OrderUpdate, FillUpdate, TickerUpdate)):
            callbacks = self._subscriptions.get(event.symbol)
            if callbacks is not None:
                kind = {PositionUpdate: "on_position", OrderUpdate: "on_order", FillUpdate: "on_fill",
                        TickerUpdate: "on_ticker"}[type(event)]
                self._call(getattr(callbacks, kind), event, kind)
        else:  # AccountUpdate: account-wide like the wallet
            self._account_wide("on_account", event)

    def _account_wide(self, kind: str, event: Event) -> None:
        called: list[Callback] = []  # by equality: a bound method registered for several symbols counts once
        for callbacks in self._subscriptions.all():
            callback = getattr(callbacks, kind)
            if callback is not None and callback not in called:
                called.append(callback)
                self._call(callback, event, kind)

    def _call(self, callback: Callback | None, event: Event, kind: str) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            self._counters.add("callback_errors")
            logger.exception("remote stream callback %s raised on %s (the stream keeps running)",
                             kind, type(event).__name__)
