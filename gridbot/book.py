"""The state book: the account's current state as the stream has delivered it, readable without callbacks.

``stream.book`` holds, per subscribed symbol, the position slots (valued at the latest mark), the open
orders and take-profit ids, and the latest ticker; and the wallet per coin, the account view
(:class:`~gridbot.AccountUpdate`), the stream's last status, the state of each socket and when each
last carried a message.  A synchronous strategy loop can read it directly, no callback needed::

    stream = ExchangeStream("bybit", api_key=..., api_secret=...)
    stream.subscribe("BTCUSDT")            # no callbacks: the book alone
    stream.start()
    while running:
        view = stream.book.snapshot()      # one consistent moment
        position = view.position("BTCUSDT")
        ...

Consistency: the book is updated on the dispatch side, just before the event's callback runs, so it
shows exactly what the callbacks have been given (inside a callback it already includes that event).
With ``dispatch="manual"`` it advances when :meth:`~gridbot.ExchangeStream.dispatch_pending` runs.
Each read returns immutable values; :meth:`StateBook.snapshot` returns everything from one moment
between two events.  Socket states and message times are the exception: they are recorded when the
stream's worker learns them (they say how the connection is *now*, ahead of any queued events).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from gridbot._bounded import BoundedSet, FinishedOrders
from gridbot.events import (
    OPEN_ORDER_STATUSES,
    TERMINAL_ORDER_STATUSES,
    AccountUpdate,
    Event,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StatusState,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.stats import StreamStats
from gridbot.tracking import TakeProfitTracker, WalletState

__all__ = ["BookSnapshot", "SocketState", "SocketStatus", "StateBook", "StreamState", "StreamStatus"]

Channel = Literal["private", "public"]
SocketState = Literal["connecting", "up", "down", "failed"]
StreamState = Literal["new", "starting", "connected", "reconnecting", "stopped", "failed"]
_CHANNELS: tuple[Channel, ...] = ("private", "public")
_REMEMBER_FINISHED = 100_000
_SOCKET_STATES: dict[str, SocketState] = {"up": "up", "down": "down", "failed": "failed"}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SocketStatus:
    """One exchange socket: ``private`` (account) or ``public`` (tickers).

    ``since``: wall-clock ms of the last state change; ``last_message_at``: wall-clock ms when the
    socket last delivered a frame (None before the first) - a socket that is ``up`` but silent for
    long is worth a look."""

    channel: Channel
    state: SocketState
    since: int
    detail: str
    last_message_at: int | None


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Everything the book holds, from one moment between two events."""

    positions: tuple[PositionUpdate, ...]
    open_orders: tuple[OrderUpdate, ...]
    take_profit_ids: tuple[tuple[str, int, str], ...]  # (symbol, position_idx, order_id)
    tickers: tuple[TickerUpdate, ...]
    wallets: tuple[WalletUpdate, ...]
    last_fill: tuple[FillUpdate, ...]  # the latest fill per symbol
    state: StatusState | None
    last_event_at: int | None
    account: AccountUpdate | None = None  # the latest account view (margin balance, MM rate, ...)

    def position(self, symbol: str, position_idx: int = 0) -> PositionUpdate | None:
        """The slot's latest position (None before the first: flat slots are known too, size 0)."""
        symbol = symbol.upper()
        return next((p for p in self.positions
                     if p.symbol == symbol and p.position_idx == position_idx), None)

    def orders(self, symbol: str) -> tuple[OrderUpdate, ...]:
        symbol = symbol.upper()
        return tuple(o for o in self.open_orders if o.symbol == symbol)

    def ticker(self, symbol: str) -> TickerUpdate | None:
        symbol = symbol.upper()
        return next((t for t in self.tickers if t.symbol == symbol), None)

    def wallet(self, coin: str = "USDT") -> WalletUpdate | None:
        return next((w for w in self.wallets if w.coin == coin), None)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """What :meth:`gridbot.ExchangeStream.status` reports: one call covering connection, sockets,
    subscriptions, open positions and counters."""

    exchange: str
    state: StreamState
    connected: bool
    sockets: tuple[SocketStatus, ...]
    symbols: tuple[str, ...]
    positions: tuple[PositionUpdate, ...]  # open ones (size > 0)
    open_orders: int
    last_event_at: int | None
    stats: StreamStats = field(default_factory=StreamStats)


class StateBook:
    """Read-only view of the account state the stream has delivered (see the module docstring).

    Thread-safe: the stream writes from its dispatching thread, any thread may read.  Reads never
    block on a user callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._positions: dict[tuple[str, int], PositionUpdate] = {}
        self._orders: dict[tuple[str, str], OrderUpdate] = {}
        # Finished orders never come back.  Standalone the book remembers them itself; in a stream it
        # reads the pipeline's memory (_share_finished): one memory, not one per consumer.
        self._finished = FinishedOrders(_REMEMBER_FINISHED)
        self._records_finished = True
        self._take_profits: dict[str, TakeProfitTracker] = {}
        self._tickers: dict[str, TickerUpdate] = {}
        self._wallet = WalletState()
        self._coins: dict[str, None] = {}
        self._fills: dict[str, FillUpdate] = {}
        self._state: StatusState | None = None
        self._account: AccountUpdate | None = None
        self._last_event_at: int | None = None
        now = _now_ms()
        self._sockets: dict[Channel, SocketStatus] = {
            c: SocketStatus(c, "connecting", now, "", None) for c in _CHANNELS}
        self._last_message: dict[Channel, int] = {}

    # ------------------------------------------------------------------ reads

    def position(self, symbol: str, position_idx: int = 0) -> PositionUpdate | None:
        """The slot's latest position, valued at the latest mark (None before the first)."""
        with self._lock:
            return self._positions.get((symbol.upper(), position_idx))

    def positions(self, symbol: str | None = None) -> tuple[PositionUpdate, ...]:
        """Every known slot (flat ones too, size 0), of ``symbol`` or of all symbols."""
        with self._lock:
            return tuple(p for (s, _), p in sorted(self._positions.items())
                         if symbol is None or s == symbol.upper())

    def open_orders(self, symbol: str | None = None) -> tuple[OrderUpdate, ...]:
        """The orders still open (New, PartiallyFilled, Untriggered, Triggered), oldest first."""
        with self._lock:
            return tuple(o for (s, _), o in self._orders.items() if symbol is None or s == symbol.upper())

    def take_profit_ids(self, symbol: str, position_idx: int = 0) -> tuple[str, ...]:
        """The open take-profit order ids of a slot, oldest first (see TakeProfitTracker)."""
        symbol = symbol.upper()
        with self._lock:
            tracker = self._take_profits.get(symbol)
            return tracker.open_ids(symbol, position_idx) if tracker is not None else ()

    def ticker(self, symbol: str) -> TickerUpdate | None:
        with self._lock:
            return self._tickers.get(symbol.upper())

    def mark_price(self, symbol: str) -> Decimal | None:
        """The latest mark price (None until the exchange has sent one)."""
        ticker = self.ticker(symbol)
        return ticker.mark_price if ticker is not None else None

    def wallet(self, coin: str = "USDT") -> WalletUpdate | None:
        """The coin's balances, merged: a field an update leaves None keeps its last known value."""
        with self._lock:
            return self._wallet.get(coin)

    def account(self) -> AccountUpdate | None:
        """The latest account view (AccountUpdate: margin balance, maintenance margin, MM rate, ...)."""
        with self._lock:
            return self._account

    def last_fill(self, symbol: str) -> FillUpdate | None:
        with self._lock:
            return self._fills.get(symbol.upper())

    @property
    def state(self) -> StatusState | None:
        """The state of the last StatusUpdate delivered (None before the first)."""
        with self._lock:
            return self._state

    @property
    def last_event_at(self) -> int | None:
        """Wall-clock ms when the last event was delivered."""
        with self._lock:
            return self._last_event_at

    def sockets(self) -> tuple[SocketStatus, ...]:
        """The private and public sockets, as the stream's worker knows them now."""
        with self._lock:
            return tuple(self._socket(c) for c in _CHANNELS)

    def snapshot(self) -> BookSnapshot:
        """Everything, from one moment between two events."""
        with self._lock:
            return BookSnapshot(
                positions=tuple(p for _, p in sorted(self._positions.items())),
                open_orders=tuple(self._orders.values()),
                take_profit_ids=tuple(tp for _, t in sorted(self._take_profits.items()) for tp in t),
                tickers=tuple(t for _, t in sorted(self._tickers.items())),
                wallets=tuple(w for c in self._coins if (w := self._wallet.get(c)) is not None),
                last_fill=tuple(f for _, f in sorted(self._fills.items())),
                state=self._state,
                last_event_at=self._last_event_at,
                account=self._account,
            )

    def __repr__(self) -> str:
        with self._lock:
            return (f"<StateBook positions={len(self._positions)} open_orders={len(self._orders)} "
                    f"tickers={len(self._tickers)} state={self._state}>")

    # ------------------------------------------------------------------ writes (the stream's)

    def _apply(self, event: Event) -> None:
        """Record one event about to be delivered (dispatching thread)."""
        with self._lock:
            self._last_event_at = _now_ms()
            if isinstance(event, PositionUpdate):
                self._positions[(event.symbol, event.position_idx)] = event
            elif isinstance(event, OrderUpdate):
                self._apply_order(event)
            elif isinstance(event, TickerUpdate):
                self._tickers[event.symbol] = event
            elif isinstance(event, WalletUpdate):
                self._wallet.update(event)
                self._coins.setdefault(event.coin, None)
            elif isinstance(event, FillUpdate):
                self._fills[event.symbol] = event
            elif isinstance(event, StatusUpdate):
                self._state = event.state
            elif isinstance(event, AccountUpdate):
                self._account = event

    def _share_finished(self, finished: FinishedOrders) -> None:
        """Use the stream pipeline's finished-order memory instead of keeping one (before any event).

        The pipeline delivers nothing after an order's end, so the book need not guard against late
        open states; it records an end when it accepts it, before delivery, so the memory may already
        hold the end of an order whose open state is still queued: such an order counts as finished
        only once the book has no open state of it (:class:`_FinishedIds`), and the book keeps showing
        exactly what the callbacks were given."""
        self._finished = finished
        self._records_finished = False

    def _apply_order(self, order: OrderUpdate) -> None:
        symbol = order.symbol
        tracker = self._take_profits.get(symbol)
        if tracker is None:
            tracker = TakeProfitTracker._with_memory(_FinishedIds(self._finished, self._orders, symbol))
            self._take_profits[symbol] = tracker
        key = (symbol, order.order_id)
        if order.status in TERMINAL_ORDER_STATUSES:
            if self._records_finished:
                self._finished.add(symbol, order.order_id, order.status)
            self._orders.pop(key, None)
        elif order.status in OPEN_ORDER_STATUSES:
            if self._records_finished and self._finished.has(symbol, order.order_id):
                return  # standalone: a late open state of a finished order stays out (and out of TP ids)
            self._orders[key] = order
        tracker.update(order)  # after the book: the order is open here while its state is

    def _forget(self, symbol: str) -> None:
        """An unsubscribed symbol leaves the book."""
        with self._lock:
            for slot in [s for s in self._positions if s[0] == symbol]:
                del self._positions[slot]
            for key in [k for k in self._orders if k[0] == symbol]:
                del self._orders[key]
            self._tickers.pop(symbol, None)
            self._fills.pop(symbol, None)
            self._take_profits.pop(symbol, None)

    def _socket_changed(self, channel: Channel, state: str, detail: str) -> None:
        """A socket went up, down or failed (worker thread).  ``gap`` is not a state change."""
        new_state = _SOCKET_STATES.get(state)
        if new_state is None:
            return
        with self._lock:
            self._sockets[channel] = SocketStatus(
                channel, new_state, _now_ms(), detail, self._last_message.get(channel))

    def _message_seen(self, channel: Channel) -> None:
        """A frame arrived on ``channel`` (worker thread; one dict store, no lock on the hot path)."""
        self._last_message[channel] = _now_ms()

    def _socket(self, channel: Channel) -> SocketStatus:
        known = self._sockets[channel]
        last = self._last_message.get(channel)
        return known if last == known.last_message_at else SocketStatus(
            known.channel, known.state, known.since, known.detail, last)


class _FinishedIds:
    """One symbol's view of the finished-order memory as a TakeProfitTracker's terminal ids: orders that
    ended and that the book does not hold open, plus the ids the tracker retires itself (an algo order
    replaced by the order its trigger placed: :meth:`add`; ends are recorded by the book or the pipeline)."""

    __slots__ = ("_finished", "_open", "_retired", "_symbol")

    def __init__(self, finished: FinishedOrders, open_orders: dict[tuple[str, str], OrderUpdate],
                 symbol: str) -> None:
        self._finished = finished
        self._open = open_orders
        self._symbol = symbol
        self._retired: BoundedSet[str] | None = None

    def __contains__(self, order_id: object) -> bool:
        if not isinstance(order_id, str):
            return False
        if self._retired is not None and order_id in self._retired:
            return True
        return (self._symbol, order_id) not in self._open and self._finished.has(self._symbol, order_id)

    def add(self, order_id: str) -> None:
        if self._finished.has(self._symbol, order_id):
            return
        if self._retired is None:
            self._retired = BoundedSet(_REMEMBER_FINISHED)
        self._retired.add(order_id)
