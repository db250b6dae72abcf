"""Delivery: an ordered queue with per-symbol ticker conflation, and the router that calls callbacks.

The mark-price merge lives here, at delivery time, so the mark a position carries is the mark of
the latest ticker the strategy has seen, and conflating tickers also conflates the positions a
moving mark re-emits.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

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

__all__ = ["Callbacks", "DispatchQueue", "Router", "Subscriptions"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Callbacks:
    """The callbacks of one symbol; any of them may be None."""

    on_position: Callback | None = None
    on_wallet: Callback | None = None
    on_order: Callback | None = None
    on_ticker: Callback | None = None
    on_fill: Callback | None = None


class Subscriptions:
    """Symbol -> callbacks.  Copy-on-write so readers on other threads never need the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_symbol: dict[str, Callbacks] = {}

    def set(self, symbol: str, callbacks: Callbacks) -> bool:
        """Register; True when the symbol is new."""
        with self._lock:
            is_new = symbol not in self._by_symbol
            self._by_symbol = {**self._by_symbol, symbol: callbacks}
            return is_new

    def remove(self, symbol: str) -> bool:
        with self._lock:
            if symbol not in self._by_symbol:
                return False
            self._by_symbol = {s: c for s, c in self._by_symbol.items() if s != symbol}
            return True

    def get(self, symbol: str) -> Callbacks | None:
        return self._by_symbol.get(symbol)

    def symbols(self) -> list[str]:
        return list(self._by_symbol)

    def all(self) -> list[Callbacks]:
        return list(self._by_symbol.values())


class _TickerSlot:
    """A place in the queue where the latest ticker of one symbol will be delivered."""

    __slots__ = ("symbol",)

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol


class DispatchQueue:
    """FIFO of events; a ticker replaces a still-queued ticker of the same symbol (latest wins).

    Nothing else is ever dropped.  Safe for any number of producers and consumers.
    """

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._cond = threading.Condition()
        self._items: deque[Event | _TickerSlot] = deque()
        self._tickers: dict[str, TickerUpdate] = {}
        self._closed = False

    def close(self) -> None:
        """No more events will come: consumers drain what is queued, then get None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def put(self, event: Event) -> None:
        with self._cond:
            if isinstance(event, TickerUpdate):
                if event.symbol in self._tickers:
                    self._counters.add("conflated")
                else:
                    self._items.append(_TickerSlot(event.symbol))
                self._tickers[event.symbol] = event
            else:
                self._items.append(event)
            self._cond.notify()

    def get(self, timeout: float | None) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever).

        None on timeout, or at once when the queue is closed and empty.
        """
        with self._cond:
            ready = self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout)
            if not ready or not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, _TickerSlot):
                return self._tickers.pop(item.symbol)
            return item

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Router:
    """Calls the right callbacks for each event; merges mark prices into positions.

    Only one thread may deliver at a time (the stream guarantees it).  A raising callback is
    logged with its traceback and counted; it never stops delivery.
    """

    def __init__(
        self,
        exchange: str,
        subscriptions: Subscriptions,
        on_status: Callback | None,
        counters: Counters,
    ) -> None:
        self._exchange = exchange
        self._subscriptions = subscriptions
        self._on_status = on_status
        self._counters = counters
        self._marks: dict[str, Decimal] = {}
        self._positions: dict[tuple[str, int], PositionUpdate] = {}
        self._lock = threading.RLock()
        self._sinks: tuple[Callback, ...] = ()

    def add_sink(self, sink: Callback) -> None:
        """Also hand ``sink`` every event delivered to the subscribed symbols (positions with their marks)."""
        with self._lock:
            self._sinks = (*self._sinks, sink)

    def deliver(self, event: Event) -> None:
        with self._lock:
            self._counters.add("events")
            if self._sinks and not isinstance(event, PositionUpdate):
                self._to_sinks(event)  # positions go to the sinks once merged, in _deliver_position
            self._route(event)

    def _to_sinks(self, event: Event) -> None:
        symbol = getattr(event, "symbol", None)
        if symbol is not None and self._subscriptions.get(symbol) is None:
            return
        for sink in self._sinks:
            self._call(sink, event, "sink")

    def _route(self, event: Event) -> None:
        if isinstance(event, StatusUpdate):
            self._call(self._on_status, event, "on_status")
        elif isinstance(event, WalletUpdate):
            self._deliver_wallet(event)
        elif isinstance(event, TickerUpdate):
            self._deliver_ticker(event)
        elif isinstance(event, PositionUpdate):
            self._deliver_position(event)
        elif isinstance(event, OrderUpdate):
            self._deliver_to_symbol(event.symbol, "on_order", event)
        elif isinstance(event, FillUpdate):
            self._deliver_to_symbol(event.symbol, "on_fill", event)

    def forget_symbol(self, symbol: str) -> None:
        """Drop the mark and positions of an unsubscribed symbol (safe from any thread)."""
        with self._lock:
            self._marks.pop(symbol, None)
        for slot in [s for s in self._positions if s[0] == symbol]:
            del self._positions[slot]

    def _deliver_wallet(self, wallet: WalletUpdate) -> None:
        seen: set[int] = set()
        for callbacks in self._subscriptions.all():
            callback = callbacks.on_wallet
            if callback is not None and id(callback) not in seen:
                seen.add(id(callback))
                self._call(callback, wallet, "on_wallet")

    def _deliver_ticker(self, ticker: TickerUpdate) -> None:
        callbacks = self._subscriptions.get(ticker.symbol)
        if callbacks is None:
            return
        self._call(callbacks.on_ticker, ticker, "on_ticker")
        mark = ticker.mark_price
        if mark is None or self._marks.get(ticker.symbol) == mark:
            return
        self._marks[ticker.symbol] = mark
        for (symbol, _), position in list(self._positions.items()):
            if symbol == ticker.symbol and position.size > 0:
                moved = replace(position, timestamp=ticker.timestamp, is_snapshot=False)
                self._counters.add("events")
                self._deliver_position(moved)

    def _deliver_position(self, position: PositionUpdate) -> None:
        mark = self._marks.get(position.symbol)
        if mark is not None:
            position = with_mark(position, mark)
        if self._subscriptions.get(position.symbol) is None:
            return
        self._positions[(position.symbol, position.position_idx)] = position
        if self._sinks:
            self._to_sinks(position)
        self._deliver_to_symbol(position.symbol, "on_position", position)

    def _deliver_to_symbol(self, symbol: str, kind: str, event: Event) -> None:
        callbacks = self._subscriptions.get(symbol)
        if callbacks is not None:
            self._call(getattr(callbacks, kind), event, kind)

    def _call(self, callback: Callback | None, event: Event, kind: str) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            self._counters.add("callback_errors")
            logger.exception(
                "%s callback %s raised on %s (the stream keeps running)",
                self._exchange,
                kind,
                type(event).__name__,
            )


def with_mark(position: PositionUpdate, mark: Decimal) -> PositionUpdate:
    """The position valued at ``mark``: unrealised PnL = (mark - entry) * size, negated for shorts."""
    pnl = (mark - position.entry_price) * position.size
    if position.side == "Sell":
        pnl = -pnl
    if position.size == 0:
        pnl = Decimal(0)
    return replace(position, mark_price=mark, unrealised_pnl=pnl)
