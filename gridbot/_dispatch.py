"""Delivery: an ordered queue with per-symbol ticker conflation, and the router that calls callbacks.

The mark-price merge lives here, at delivery time, so the mark a position carries is the mark of
the latest ticker the strategy has seen, and conflating tickers also conflates the positions a
moving mark re-emits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from gridbot._account import AccountBatch, AccountConfig, BinanceAccountBook, Delivered
from gridbot.book import StateBook
from gridbot.events import (
    AccountUpdate,
    Event,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.stats import Counters

__all__ = ["CallbackErrorLog", "Callbacks", "DispatchQueue", "ForgetSymbol", "Router", "Subscriptions",
           "check_callback"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any], object]
# A callback's return value is ignored: ``object`` lets ``list.append`` or a lambda be one.
PositionCallback = Callable[[PositionUpdate], object]
WalletCallback = Callable[[WalletUpdate], object]
OrderCallback = Callable[[OrderUpdate], object]
TickerCallback = Callable[[TickerUpdate], object]
FillCallback = Callable[[FillUpdate], object]
AccountCallback = Callable[[AccountUpdate], object]
StatusCallback = Callable[[StatusUpdate], object]
ERROR_LOG_INTERVAL = 10.0  # seconds between summary lines of one repeating callback error


def check_callback(name: str, callback: object) -> None:
    """TypeError unless ``callback`` is None or callable: caught at registration, not on every event."""
    if callback is not None and not callable(callback):
        raise TypeError(f"{name} must be a callable taking one event (or None), "
                        f"not {type(callback).__name__} {callback!r:.60}")


@dataclass(frozen=True, slots=True)
class Callbacks:
    """The callbacks of one symbol; any of them may be None.  Non-callables raise TypeError."""

    on_position: PositionCallback | None = None
    on_wallet: WalletCallback | None = None
    on_order: OrderCallback | None = None
    on_ticker: TickerCallback | None = None
    on_fill: FillCallback | None = None
    on_account: AccountCallback | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            check_callback(field.name, getattr(self, field.name))


class CallbackErrorLog:
    """Logs raising callbacks without flooding the log: the first error of each (callback, exception
    type) with its traceback, then at most one line per ``interval`` with how many more there were.
    :meth:`flush` writes the counts still pending (the stream calls it at stop).  The exact total is
    ``stats.callback_errors``; this only decides what is worth a log line."""

    def __init__(self, exchange: str, *, interval: float = ERROR_LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._exchange = exchange
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # (kind, exception type name) -> [time of the last line, errors since, latest message]
        self._seen: dict[tuple[str, str], list[Any]] = {}

    def record(self, kind: str, event: Event, exc: BaseException) -> None:
        key = (kind, type(exc).__name__)
        now = self._clock()
        summary: tuple[int, str] | None = None
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None:
                entry[1] += 1
                entry[2] = _describe(exc)
                if now - entry[0] >= self._interval:
                    summary = (entry[1], entry[2])
                    entry[0], entry[1] = now, 0
            else:
                self._seen[key] = [now, 0, ""]
        if entry is None:
            logger.error("%s callback %s raised on %s (the stream keeps running; repeats of this error "
                         "are counted, one line per %g s)", self._exchange, kind, type(event).__name__,
                         self._interval, exc_info=exc)
        elif summary is not None:
            self._summary(key, *summary)

    def flush(self) -> None:
        with self._lock:
            pending = [(key, entry[1], entry[2]) for key, entry in self._seen.items() if entry[1]]
            for key, _, _ in pending:
                self._seen[key][1] = 0
        for key, count, latest in pending:
            self._summary(key, count, latest)

    def _summary(self, key: tuple[str, str], count: int, latest: str) -> None:
        logger.error("%s callback %s raised %s %d more time(s) since the last report (latest: %s)",
                     self._exchange, key[0], key[1], count, latest)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


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


@dataclass(frozen=True, slots=True)
class ForgetSymbol:
    """Queued by ``unsubscribe()``: the router drops the symbol's marks and positions when the
    dispatcher reaches it - in order with the events, on the delivering thread, never under a lock
    the caller's own callbacks could need."""

    symbol: str


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
        self._items: deque[Delivered | ForgetSymbol | _TickerSlot] = deque()
        self._tickers: dict[str, TickerUpdate] = {}
        self._closed = False

    def close(self) -> None:
        """No more events will come: consumers drain what is queued, then get None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def put(self, event: Delivered | ForgetSymbol) -> None:
        with self._cond:
            self._append(event)
            self._cond.notify()

    def _append(self, event: Delivered | ForgetSymbol) -> None:
        if isinstance(event, TickerUpdate):
            if event.symbol in self._tickers:
                self._counters.add("conflated")
            else:
                self._items.append(_TickerSlot(event.symbol))
            self._tickers[event.symbol] = event
        else:
            self._items.append(event)

    def put_many(self, events: list[Delivered | ForgetSymbol]) -> None:
        """``put`` each, in order, under one lock with one wake-up (the worker's batches)."""
        if not events:
            return
        with self._cond:
            for event in events:
                self._append(event)
            self._cond.notify()

    def take_all(self, timeout: float | None, limit: int) -> list[Delivered | ForgetSymbol]:
        """Up to ``limit`` queued events, in order, once at least one is there (waiting up to
        ``timeout``; None: forever).  Empty on timeout, or at once when the queue is closed and empty.
        A small ``limit`` keeps conflation working: tickers not taken yet can still be replaced."""
        with self._cond:
            ready = self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout)
            items = self._items
            if not ready or not items:
                return []
            tickers = self._tickers
            taken: list[Delivered | ForgetSymbol] = []
            for _ in range(min(limit, len(items))):
                item = items.popleft()
                taken.append(tickers.pop(item.symbol) if isinstance(item, _TickerSlot) else item)
            return taken

    def get(self, timeout: float | None) -> Delivered | ForgetSymbol | None:
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

    On Binance it also keeps the account book and delivers the computed :class:`AccountUpdate` after
    each position, wallet, order, configuration or mark change that moves it (one per delivered ticker
    at most, so conflated tickers conflate it too).

    Only one thread may deliver at a time (the stream guarantees it).  A raising callback is
    counted and logged through :class:`CallbackErrorLog` (rate-limited); it never stops delivery.
    """

    def __init__(
        self,
        exchange: str,
        subscriptions: Subscriptions,
        on_status: Callback | None,
        counters: Counters,
        *,
        error_log: CallbackErrorLog | None = None,
        book: StateBook | None = None,
    ) -> None:
        check_callback("on_status", on_status)
        self._exchange = exchange
        self._subscriptions = subscriptions
        self._on_status = on_status
        self._counters = counters
        self.errors = error_log if error_log is not None else CallbackErrorLog(exchange)
        self.book = book if book is not None else StateBook()
        self._marks: dict[str, Decimal] = {}
        self._positions: dict[tuple[str, int], PositionUpdate] = {}
        self._lock = threading.RLock()
        self._accounts = (  # the Binance account view, computed here (gridbot._account)
            BinanceAccountBook(exchange, tracked=lambda symbol: subscriptions.get(symbol) is not None)
            if exchange == "binance"
            else None
        )
        self._batch_open = False
        self._pending: tuple[int, bool] | None = None  # (timestamp, is_snapshot) of a held change
        # On a gridbot dispatcher thread even a BaseException (SystemExit...) out of a callback is
        # contained; in the caller's own thread (manual dispatch) it is the caller's to handle.
        self.contain_base_exceptions = False
        self._sinks: tuple[Callback, ...] = ()

    def add_sink(self, sink: Callback) -> None:
        """Also hand ``sink`` every event delivered to the subscribed symbols (positions with their marks)."""
        with self._lock:
            self._sinks = (*self._sinks, sink)

    def deliver(self, event: Delivered | ForgetSymbol) -> None:
        with self._lock:
            if isinstance(event, ForgetSymbol):
                if self._subscriptions.get(event.symbol) is None:  # not subscribed again meanwhile
                    self.forget_symbol(event.symbol)
                return
            if isinstance(event, AccountBatch):
                self._account_batch(event)
                return
            if isinstance(event, AccountConfig):
                self._update_account(event, event.timestamp, event.is_snapshot)
                return
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
        self._record(event)
        if isinstance(event, StatusUpdate):
            self._call(self._on_status, event, "on_status")
        elif isinstance(event, WalletUpdate):
            self._deliver_account_wide("on_wallet", event)
            self._update_account(event, event.timestamp, event.is_snapshot)
        elif isinstance(event, AccountUpdate):
            self._deliver_account_wide("on_account", event)
        elif isinstance(event, TickerUpdate):
            self._deliver_ticker(event)
        elif isinstance(event, PositionUpdate):
            position = self._deliver_position(event)
            self._update_account(position, position.timestamp, position.is_snapshot)
        elif isinstance(event, OrderUpdate):
            self._deliver_to_symbol(event.symbol, "on_order", event)
            self._update_account(event, event.timestamp, event.is_snapshot)
        elif isinstance(event, FillUpdate):
            self._deliver_to_symbol(event.symbol, "on_fill", event)

    def _record(self, event: Event) -> None:
        """The book learns each event just before its callbacks run; positions in
        :meth:`_deliver_position`, once valued at the mark the callback will see."""
        if isinstance(event, PositionUpdate):
            return
        if isinstance(event, (StatusUpdate, WalletUpdate, AccountUpdate)):
            self.book._apply(event)  # account-wide
        elif self._subscriptions.get(event.symbol) is not None:
            self.book._apply(event)

    def forget_symbol(self, symbol: str) -> None:
        """Drop the mark and positions of an unsubscribed symbol (the delivering thread: see
        :class:`ForgetSymbol`)."""
        self.book._forget(symbol)
        with self._lock:
            self._marks.pop(symbol, None)
            for slot in [s for s in self._positions if s[0] == symbol]:
                del self._positions[slot]
            if self._accounts is not None:
                self._accounts.forget_symbol(symbol)

    def _deliver_account_wide(self, kind: str, event: Event) -> None:
        """Every subscription's ``kind`` callback, each distinct callback once (compared by equality, so
        the same bound method registered for several symbols counts once)."""
        called: list[Callback] = []
        for callbacks in self._subscriptions.all():
            callback = getattr(callbacks, kind)
            if callback is not None and callback not in called:
                called.append(callback)
                self._call(callback, event, kind)

    def _update_account(self, item: Delivered, timestamp: int, is_snapshot: bool) -> None:
        """Feed the Binance account book; deliver its view when it changed."""
        accounts = self._accounts
        if accounts is None or not accounts.apply(item):
            return
        if self._batch_open:
            self._pending = (timestamp, is_snapshot)
            return
        self._emit_account(timestamp, is_snapshot)

    def _account_batch(self, marker: AccountBatch) -> None:
        """Hold the account view while a batch is applied; compute it once at its end."""
        if marker.start:
            self._batch_open = True
            return
        self._batch_open = False
        pending, self._pending = self._pending, None
        if pending is not None:
            self._emit_account(*pending)

    def _emit_account(self, timestamp: int, is_snapshot: bool) -> None:
        accounts = self._accounts
        view = accounts.changed_view(timestamp, is_snapshot) if accounts is not None else None
        if view is not None:
            self._counters.add("events")
            self.book._apply(view)
            if self._sinks:
                self._to_sinks(view)
            self._deliver_account_wide("on_account", view)

    def _deliver_ticker(self, ticker: TickerUpdate) -> None:
        callbacks = self._subscriptions.get(ticker.symbol)
        if callbacks is None:
            return
        self._call(callbacks.on_ticker, ticker, "on_ticker")
        mark = ticker.mark_price
        if mark is None or self._marks.get(ticker.symbol) == mark:
            return
        self._marks[ticker.symbol] = mark
        moved_any = False
        for (symbol, _), position in list(self._positions.items()):
            if symbol == ticker.symbol and position.size > 0:
                moved = replace(position, timestamp=ticker.timestamp, is_snapshot=False)
                self._counters.add("events")
                moved = self._deliver_position(moved)
                if self._accounts is not None:
                    moved_any = self._accounts.apply(moved) or moved_any
        if moved_any:
            if self._batch_open:
                self._pending = (ticker.timestamp, False)
            else:
                self._emit_account(ticker.timestamp, False)

    def _deliver_position(self, position: PositionUpdate) -> PositionUpdate:
        """Deliver ``position`` valued at the latest mark; returns what was delivered."""
        mark = self._marks.get(position.symbol)
        if mark is not None:
            position = with_mark(position, mark)
        if self._subscriptions.get(position.symbol) is None:
            return position
        self._positions[(position.symbol, position.position_idx)] = position
        if self._sinks:
            self._to_sinks(position)
        self.book._apply(position)
        self._deliver_to_symbol(position.symbol, "on_position", position)
        return position

    def _deliver_to_symbol(self, symbol: str, kind: str, event: Event) -> None:
        callbacks = self._subscriptions.get(symbol)
        if callbacks is not None:
            self._call(getattr(callbacks, kind), event, kind)

    def _call(self, callback: Callback | None, event: Event, kind: str) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except BaseException as exc:
            if not isinstance(exc, Exception) and not self.contain_base_exceptions:
                raise
            self._counters.add("callback_errors")
            self.errors.record(kind, event, exc)


def with_mark(position: PositionUpdate, mark: Decimal) -> PositionUpdate:
    """The position valued at ``mark``: unrealised PnL = (mark - entry) * size, negated for shorts."""
    pnl = (mark - position.entry_price) * position.size
    if position.side == "Sell":
        pnl = -pnl
    if position.size == 0:
        pnl = Decimal(0)
    return replace(position, mark_price=mark, unrealised_pnl=pnl)
