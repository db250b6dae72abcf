"""Delivery for RemoteStream: a queue that carries each event's stream entry ids (so a consumer group
acknowledges only after the callback ran) and conflates tickers, and a router to the callbacks.

Not :mod:`gridbot._dispatch`'s queue and router: those merge marks into positions and compute the
Binance account, while positions arrive here with the producer's merged mark already and nothing is
recomputed; what both need (the subscriptions, the callback checks) is imported from there.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from gridbot import events as ev
from gridbot._dispatch import Callbacks, Subscriptions, check_callback
from gridbot.book import StateBook
from gridbot.stats import Counters

__all__ = ["AckQueue", "RemoteRouter"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any], object]
# Callbacks of one symbol, by event type; wallet and account events go to every subscription.
_SYMBOL_KINDS: Final[Mapping[type, str]] = MappingProxyType({
    ev.PositionUpdate: "on_position", ev.OrderUpdate: "on_order", ev.FillUpdate: "on_fill",
    ev.TickerUpdate: "on_ticker"})

class AckQueue:
    """FIFO of (event, entry ids); a queued ticker is replaced by a newer one of its symbol, and the
    replaced one's ids travel with the survivor so they are acknowledged together.  A ticker's place in
    the FIFO is its symbol (a ``str``): the latest ticker of that symbol is delivered there."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._cond = threading.Condition()
        self._items: deque[tuple[ev.Event, list[str]] | str] = deque()
        self._tickers: dict[str, tuple[ev.TickerUpdate, list[str]]] = {}
        self._closed = False

    def put(self, event: ev.Event, entry_id: str | None) -> None:
        ids = [entry_id] if entry_id is not None else []
        with self._cond:
            if isinstance(event, ev.TickerUpdate):
                queued = self._tickers.get(event.symbol)
                if queued is not None:
                    self._counters.add("conflated")
                    ids = queued[1] + ids
                else:
                    self._items.append(event.symbol)
                self._tickers[event.symbol] = (event, ids)
            else:
                self._items.append((event, ids))
            self._cond.notify()

    def get(self, timeout: float | None) -> tuple[ev.Event, list[str]] | None:
        """The next event and its entry ids, waiting up to ``timeout`` (None: forever); None on timeout,
        or at once when the queue is closed and empty."""
        with self._cond:
            ready = self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout)
            if not ready or not self._items:
                return None
            item = self._items.popleft()
            return self._tickers.pop(item) if isinstance(item, str) else item

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

    def deliver(self, event: ev.Event) -> None:
        self._counters.add("events")
        symbol = getattr(event, "symbol", None)
        if symbol is None or self.subscribed(symbol):
            self.book._apply(event)  # the book shows what the callbacks are given, as ExchangeStream's does
        if isinstance(event, ev.StatusUpdate):
            self._call(self._on_status, event, "on_status")
            return
        kind = _SYMBOL_KINDS.get(type(event))
        if kind is not None:
            callbacks = self._subscriptions.get(symbol) if symbol is not None else None
            if callbacks is not None:
                self._call(getattr(callbacks, kind), event, kind)
            return
        self._account_wide("on_wallet" if isinstance(event, ev.WalletUpdate) else "on_account", event)

    def _account_wide(self, kind: str, event: ev.Event) -> None:
        called: list[Callback] = []  # by equality: a bound method registered for several symbols counts once
        for callbacks in self._subscriptions.all():
            callback = getattr(callbacks, kind)
            if callback is not None and callback not in called:
                called.append(callback)
                self._call(callback, event, kind)

    def _call(self, callback: Callback | None, event: ev.Event, kind: str) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            self._counters.add("callback_errors")
            logger.exception("remote stream callback %s raised on %s (the stream keeps running)",
                             kind, type(event).__name__)
