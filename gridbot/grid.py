"""A compact synchronous grid strategy driven only by :class:`gridbot.ExchangeStream` callbacks.

Levels sit around a start price: ``levels`` buy orders below it and ``levels`` sell orders above, each
``step_pct`` percent apart.  When a level's entry fills, a reduce-only Limit take-profit goes one step
back towards the start price; when that fills, the level is armed again.  In hedge mode buy levels
trade the long slot (``position_idx`` 1) and sell levels the short slot (2); in one-way mode both use
slot 0.

State comes from the stream, never from REST polling: realised PnL from ``cum_realised_pnl`` deltas
(:class:`RealisedPnlTracker`), cross-checked against the fills' own PnL; open take-profit ids from
:class:`TakeProfitTracker`; balance from :class:`WalletState`, MM rate from :class:`AccountState`.
Orders are placed through an :class:`~gridbot._gateways.OrderGateway` (REST, control only).  While the
stream reconnects the strategy places nothing; after the resync it catches up (take-profits for entries
that filled meanwhile, re-armed levels).

Every callback takes one lock, so the strategy can be read from another thread (a terminal view) and
events delivered while an order request is in flight wait for it.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from gridbot._bounded import BoundedMap
from gridbot._gateways import OrderGateway, OrderRejected, ReduceOnlyRejected
from gridbot.errors import AuthenticationError, GridbotError
from gridbot.events import (
    TERMINAL_ORDER_STATUSES,
    AccountUpdate,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    Side,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.tracking import AccountState, RealisedPnlTracker, TakeProfitTracker, WalletState

__all__ = ["Close", "GridConfig", "GridStrategy", "GridView", "Level", "LevelState", "PnlChange",
           "PnlCrossCheck", "PnlMismatch", "fan_out"]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_MAX_FAILURES = 3
_HISTORY = 200
# Order id -> slot for fills that arrive after their order ended (the exchanges do not order the two
# kinds): the latest this many orders are enough, and a long-running grid stays bounded.
_ORDER_SLOTS = 10_000
_Slot = tuple[str, int]


@dataclass(frozen=True)
class GridConfig:
    """One symbol's grid.  ``start_price`` None: the first mark price the stream delivers."""

    symbol: str
    qty: Decimal
    levels: int = 3
    step_pct: Decimal = Decimal("0.2")
    tick_size: Decimal = Decimal("0.1")
    hedge: bool = False
    start_price: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", self.symbol.upper())
        if self.levels < 1:
            raise ValueError("levels must be >= 1")
        if self.qty <= 0 or self.step_pct <= 0 or self.tick_size <= 0:
            raise ValueError("qty, step_pct and tick_size must be > 0")
        if self.step_pct * self.levels >= _HUNDRED:
            raise ValueError("step_pct * levels must stay below 100 %")


class LevelState(enum.Enum):
    IDLE = "idle"              # nothing open: the entry is (re)placed when placing is allowed
    ENTRY_OPEN = "entry"       # the entry order rests
    FILLED = "filled"          # the entry filled; its take-profit is (re)placed when allowed
    TP_OPEN = "tp"             # the take-profit rests
    DISABLED = "disabled"      # repeated failures: left alone


@dataclass
class Level:
    """One grid level: ``index`` < 0 buys below the start price, > 0 sells above it."""

    index: int
    side: Side
    price: Decimal
    tp_price: Decimal
    position_idx: int
    state: LevelState = LevelState.IDLE
    entry_client_id: str = ""
    tp_client_id: str = ""
    order_id: str = ""             # the open entry or take-profit order
    held_qty: Decimal = _ZERO      # filled by the entry, not yet closed by the take-profit
    failures: int = 0
    cancel_requested: bool = False

    @property
    def tp_side(self) -> Side:
        return "Sell" if self.side == "Buy" else "Buy"


@dataclass(frozen=True)
class Close:
    """A take-profit that filled: one round trip of one level."""

    symbol: str
    level: int
    position_idx: int
    side: Side           # the take-profit's side
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    fill_pnl: Decimal    # the take-profit's fills' realised PnL, before fees
    fees: Decimal        # the take-profit's fills' fees
    timestamp: int


@dataclass(frozen=True)
class PnlChange:
    """One change of the exchange's cumulative realised PnL, next to what the fills since the last
    change of the same slot account for (before fees on Binance, net of fees on Bybit)."""

    symbol: str
    position_idx: int
    delta: Decimal
    fill_pnl: Decimal
    size_before: Decimal
    size_after: Decimal
    timestamp: int

    @property
    def is_close(self) -> bool:
        """The position shrank: a (partial) close, not an opening fee."""
        return self.size_after < self.size_before

    @property
    def matched(self) -> bool:
        return self.delta == self.fill_pnl


@dataclass(frozen=True)
class PnlMismatch:
    """A slot whose cumulative-PnL deltas and fills disagree.  ``after_gap``: the stream reconnected
    since start.  That is no excuse any more: a resync delivers the fills made while the socket was
    down (backfilled by REST), so every mismatch is worth a look.  Slots where a fill came without
    its PnL (Bybit's REST execution list has no ``execPnl``) cannot be checked and are reported by
    :meth:`PnlCrossCheck.unverified` instead."""

    symbol: str
    position_idx: int
    from_cum_realised: Decimal
    from_fills: Decimal
    after_gap: bool


class PnlCrossCheck:
    """Running per-slot totals of cumulative-PnL deltas and of fill PnL; equal when nothing is missing.

    Totals rather than pairs, because Binance does not order ``ACCOUNT_UPDATE`` and
    ``ORDER_TRADE_UPDATE`` against each other.  ``net_of_fees``: Bybit's ``cumRealisedPnl`` is net of
    fees, so a fill counts ``execPnl - execFee`` there; Binance's ``cr`` is before fees.  Fills on a slot
    without a baseline yet are left out: the baseline already includes them.
    """

    def __init__(self, *, net_of_fees: bool) -> None:
        self.net_of_fees = net_of_fees
        self._deltas: dict[_Slot, Decimal] = {}
        self._fills: dict[_Slot, Decimal] = {}
        self._pending: dict[_Slot, Decimal] = {}
        self._unknown: dict[_Slot, int] = {}
        self.gaps = 0

    def note_gap(self) -> None:
        """The stream is reconnecting: fills may be missed from here on."""
        self.gaps += 1

    def fill_pnl(self, fill: FillUpdate) -> Decimal | None:
        """What one fill contributes to the cumulative figure; None when the fill has no PnL."""
        if fill.realised_pnl is None:
            return None
        return fill.realised_pnl - fill.fee if self.net_of_fees else fill.realised_pnl

    def add_fill(self, slot: _Slot, fill: FillUpdate) -> None:
        amount = self.fill_pnl(fill)
        if amount is None:
            self._unknown[slot] = self._unknown.get(slot, 0) + 1
            return
        self._fills[slot] = self._fills.get(slot, _ZERO) + amount
        self._pending[slot] = self._pending.get(slot, _ZERO) + amount

    def add_delta(self, slot: _Slot, delta: Decimal) -> Decimal:
        """Record a delta; returns the fill PnL seen on the slot since its previous delta."""
        self._deltas[slot] = self._deltas.get(slot, _ZERO) + delta
        return self._pending.pop(slot, _ZERO)

    def unverified(self) -> dict[_Slot, int]:
        """Slots that received fills without a PnL, and how many: their totals cannot be compared."""
        return dict(self._unknown)

    def mismatches(self) -> list[PnlMismatch]:
        found = []
        for slot in sorted(self._deltas.keys() | self._fills.keys()):
            if slot in self._unknown:
                continue
            deltas, fills = self._deltas.get(slot, _ZERO), self._fills.get(slot, _ZERO)
            if deltas != fills:
                found.append(PnlMismatch(slot[0], slot[1], deltas, fills, after_gap=self.gaps > 0))
        return found


@dataclass(frozen=True)
class GridView:
    """A consistent snapshot of one grid, for displays and reports."""

    exchange: str
    symbol: str
    paused: bool
    placing: bool
    mark_price: Decimal | None
    positions: tuple[PositionUpdate, ...]
    open_tp_ids: tuple[str, ...]
    closes: int
    realised_pnl: Decimal
    recent_closes: tuple[PnlChange, ...]
    wallet_balance: Decimal | None
    available_balance: Decimal | None  # the account's (AccountUpdate), in margin_coin
    mm_rate: Decimal | None
    levels: tuple[tuple[int, str], ...]
    order_errors: int
    netted: int
    mismatches: tuple[PnlMismatch, ...]
    margin_balance: Decimal | None = None  # the account's (AccountUpdate), in margin_coin


class GridStrategy:
    """The grid of one symbol on one exchange.  Wire it with :meth:`attach` (or pass the ``on_*``
    methods to ``stream.subscribe`` yourself, and :meth:`on_status` to the stream's ``on_status``)."""

    def __init__(
        self,
        config: GridConfig,
        gateway: OrderGateway,
        *,
        exchange: str,
        pnl_net_of_fees: bool | None = None,
        coin: str = "USDT",
        client_id_prefix: str = "gb",
        realised_baseline: Decimal | None = None,
    ) -> None:
        self.config = config
        self.exchange = exchange
        self._gateway = gateway
        self._lock = threading.RLock()
        self._prefix = f"{client_id_prefix}{config.symbol[:6]}"
        self._sequence = 0
        self.pnl = RealisedPnlTracker()
        self.take_profits = TakeProfitTracker()
        self.wallet = WalletState(coin)
        self.account = AccountState()
        net = exchange == "bybit" if pnl_net_of_fees is None else pnl_net_of_fees
        self.cross_check = PnlCrossCheck(net_of_fees=net)
        self._levels: dict[int, Level] = {}
        # client id -> (level index, "entry" | "tp"), while the order may still send updates
        self._by_client_id: dict[str, tuple[int, str]] = {}
        self._order_slots: BoundedMap[str, int] = BoundedMap(_ORDER_SLOTS)  # order id -> position_idx
        self._tp_fills: dict[str, tuple[Decimal, Decimal]] = {}  # tp order id -> (pnl, fees)
        self._positions: dict[int, PositionUpdate] = {}
        self._mark: Decimal | None = None
        self._start_price = config.start_price
        self._paused = False
        self._placing = True
        self.closes: deque[Close] = deque(maxlen=_HISTORY)   # the latest closes; close_count counts all
        self.close_count = 0
        self.pnl_changes: deque[PnlChange] = deque(maxlen=_HISTORY)
        self.order_errors = 0
        self.netted = 0   # take-profits refused because one-way netting had already closed the exposure
        if realised_baseline is not None:
            self._seed_baselines(realised_baseline)
        if self._start_price is not None:
            self._build_levels(self._start_price)

    def _seed_baselines(self, value: Decimal) -> None:
        """Start every slot of the mode from a known cumulative realised PnL (0 on an account that never
        traded the symbol).  Without it the first value the stream reports is the baseline, and on
        Binance, whose REST snapshot has no ``cr``, PnL realised on a slot before its first
        ACCOUNT_UPDATE (e.g. while disconnected) would never show up as a delta."""
        for idx in (1, 2) if self.config.hedge else (0,):
            self.pnl.update(PositionUpdate(
                exchange=self.exchange, timestamp=0, is_snapshot=True, symbol=self.config.symbol,
                position_idx=idx, side="", size=_ZERO, entry_price=_ZERO, mark_price=None,
                unrealised_pnl=_ZERO, cum_realised_pnl=value,
            ))

    # ------------------------------------------------------------------ wiring

    def attach(self, stream: _Subscribable) -> None:
        """Subscribe this grid's callbacks for its symbol (the stream's ``on_status`` is set at
        construction: pass :meth:`on_status`, or :func:`fan_out` of several grids' ones)."""
        stream.subscribe(
            self.config.symbol, on_position=self.on_position, on_wallet=self.on_wallet,
            on_order=self.on_order, on_ticker=self.on_ticker, on_fill=self.on_fill,
            on_account=self.on_account,
        )

    # ------------------------------------------------------------------ callbacks

    def on_status(self, status: StatusUpdate) -> None:
        """Pause while reconnecting; resume (and catch up) once resynced or connected again."""
        with self._lock:
            if status.state == "reconnecting":
                if not self._paused:
                    logger.info("%s %s: stream reconnecting, order placement paused", self.exchange,
                                self.config.symbol)
                self.cross_check.note_gap()
                self._paused = True
            elif status.state in ("resynced", "connected"):
                if self._paused:
                    logger.info("%s %s: stream %s, order placement resumed", self.exchange,
                                self.config.symbol, status.state)
                self._paused = False
                self._work()
            elif status.state in ("stopped", "failed"):
                self._paused = True

    def on_ticker(self, ticker: TickerUpdate) -> None:
        with self._lock:
            price = ticker.mark_price if ticker.mark_price is not None else ticker.last_price
            if price is None:
                return
            self._mark = price
            if self._start_price is None:
                self._start_price = price
                self._build_levels(price)
            self._work()

    def on_position(self, position: PositionUpdate) -> None:
        with self._lock:
            slot = (position.symbol, position.position_idx)
            previous = self._positions.get(position.position_idx)
            self._positions[position.position_idx] = position
            delta = self.pnl.update(position)
            if delta is None:
                return
            fill_pnl = self.cross_check.add_delta(slot, delta)
            before = previous.size if previous is not None else _ZERO
            self.pnl_changes.append(PnlChange(position.symbol, position.position_idx, delta, fill_pnl,
                                              before, position.size, position.timestamp))

    def on_fill(self, fill: FillUpdate) -> None:
        with self._lock:
            known = self._order_slots.get(fill.order_id)
            idx = fill.position_idx if known is None else known
            if self.pnl.baseline(fill.symbol, idx) is not None:
                self.cross_check.add_fill((fill.symbol, idx), fill)
            if fill.order_id in self._tp_fills:
                pnl, fees = self._tp_fills[fill.order_id]
                self._tp_fills[fill.order_id] = (pnl + (fill.realised_pnl or _ZERO), fees + fill.fee)

    def on_wallet(self, wallet: WalletUpdate) -> None:
        with self._lock:
            self.wallet.update(wallet)

    def on_account(self, account: AccountUpdate) -> None:
        with self._lock:
            self.account.update(account)

    def on_order(self, order: OrderUpdate) -> None:
        with self._lock:
            self.take_profits.update(order)
            self._order_slots[order.order_id] = order.position_idx
            role = self._by_client_id.get(order.client_order_id)
            if role is None:
                return
            level = self._levels[role[0]]
            if role[1] == "entry" and order.client_order_id == level.entry_client_id:
                self._entry_update(level, order)
            elif role[1] == "tp" and order.client_order_id == level.tp_client_id:
                self._tp_update(level, order)
            if order.status in TERMINAL_ORDER_STATUSES:
                self._by_client_id.pop(order.client_order_id, None)  # nothing follows a finished order

    # ------------------------------------------------------------------ control from the owner

    def stop_placing(self) -> None:
        """Place nothing from now on (orders already open stay)."""
        with self._lock:
            self._placing = False

    def cancel_entries(self) -> int:
        """Cancel every resting entry order (take-profits stay); returns how many were asked."""
        with self._lock:
            asked = 0
            for level in self._levels.values():
                if level.state is LevelState.ENTRY_OPEN and level.order_id and not level.cancel_requested:
                    level.cancel_requested = True
                    asked += 1
                    try:
                        self._gateway.cancel(self.config.symbol, level.order_id)
                    except GridbotError as exc:  # typically: it filled meanwhile
                        logger.info("%s %s: cancel of %s failed: %s", self.exchange, self.config.symbol,
                                    level.order_id, exc)
            return asked

    # ------------------------------------------------------------------ reading

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def levels(self) -> list[Level]:
        with self._lock:
            return [self._levels[i] for i in sorted(self._levels)]

    def open_tp_ids(self) -> list[str]:
        """Every open take-profit id of this symbol (all slots), from the TakeProfitTracker."""
        with self._lock:
            return [order_id for symbol, _, order_id in self.take_profits if symbol == self.config.symbol]

    def realised_pnl(self) -> Decimal:
        """Sum of the cumulative-realised-PnL deltas of this symbol since start."""
        with self._lock:
            return sum((self.pnl.total(self.config.symbol, idx) for idx in (0, 1, 2)), _ZERO)

    def last_cum_realised(self, position_idx: int) -> Decimal | None:
        return self.pnl.baseline(self.config.symbol, position_idx)

    def view(self) -> GridView:
        with self._lock:
            return GridView(
                exchange=self.exchange,
                symbol=self.config.symbol,
                paused=self._paused,
                placing=self._placing,
                mark_price=self._mark,
                positions=tuple(self._positions[i] for i in sorted(self._positions)),
                open_tp_ids=tuple(self.open_tp_ids()),
                closes=self.close_count,
                realised_pnl=self.realised_pnl(),
                recent_closes=tuple(c for c in self.pnl_changes if c.is_close)[-5:],
                wallet_balance=self.wallet.wallet_balance,
                available_balance=self.account.available_balance,
                mm_rate=self.account.mm_rate,
                levels=tuple((lv.index, lv.state.value) for lv in self.levels),
                order_errors=self.order_errors,
                netted=self.netted,
                mismatches=tuple(self.cross_check.mismatches()),
                margin_balance=self.account.margin_balance,
            )

    # ------------------------------------------------------------------ order lifecycle

    def _entry_update(self, level: Level, order: OrderUpdate) -> None:
        if order.status == "Filled" or (order.status in TERMINAL_ORDER_STATUSES and order.filled_qty > 0):
            level.state = LevelState.FILLED
            level.held_qty = order.filled_qty
            level.order_id = ""
            level.failures = 0
            self._work()
        elif order.status in TERMINAL_ORDER_STATUSES:
            if not level.cancel_requested:
                logger.info("%s %s level %d: entry %s ended %s", self.exchange, self.config.symbol,
                            level.index, order.order_id, order.status)
            level.state = LevelState.IDLE
            level.order_id = ""
            level.cancel_requested = False
        elif level.state in (LevelState.IDLE, LevelState.ENTRY_OPEN):
            level.state = LevelState.ENTRY_OPEN
            level.order_id = order.order_id

    def _tp_update(self, level: Level, order: OrderUpdate) -> None:
        if order.status == "Filled":
            pnl, fees = self._tp_fills.pop(order.order_id, (_ZERO, _ZERO))
            self.close_count += 1
            self.closes.append(Close(
                symbol=self.config.symbol, level=level.index, position_idx=level.position_idx,
                side=order.side, qty=order.filled_qty, entry_price=level.price,
                exit_price=order.avg_price or order.price, fill_pnl=pnl, fees=fees, timestamp=order.timestamp,
            ))
            self._reset(level)
            self._work()
        elif order.status in TERMINAL_ORDER_STATUSES:
            # The exchange ended it: the slot went flat or flipped (one-way netting), so this
            # level's exposure is gone.  Arm the level again rather than chase a position.
            logger.info("%s %s level %d: take-profit %s ended %s; level re-armed", self.exchange,
                        self.config.symbol, level.index, order.order_id, order.status)
            self._tp_fills.pop(order.order_id, None)
            self._reset(level)
            self._work()
        else:
            level.state = LevelState.TP_OPEN
            level.order_id = order.order_id
            self._tp_fills.setdefault(order.order_id, (_ZERO, _ZERO))

    @staticmethod
    def _reset(level: Level) -> None:
        level.state = LevelState.IDLE
        level.order_id = ""
        level.held_qty = _ZERO
        level.cancel_requested = False

    # ------------------------------------------------------------------ placing

    def _work(self) -> None:
        """Place what the levels need, if placing is allowed now."""
        if self._paused or not self._placing:
            return
        for index in sorted(self._levels, key=abs):
            if self._paused or not self._placing:
                return
            level = self._levels[index]
            if level.state is LevelState.IDLE:
                self._place_entry(level)
            elif level.state is LevelState.FILLED:
                self._place_take_profit(level)

    def _place_entry(self, level: Level) -> None:
        client_id = self._next_client_id("e", level)
        level.entry_client_id = client_id
        level.tp_client_id = ""
        order_id = self._place(level, "entry", lambda: self._gateway.place_limit(
            self.config.symbol, level.side, self.config.qty, level.price,
            position_idx=level.position_idx, reduce_only=False, client_order_id=client_id,
        ))
        if order_id is not None and level.state is LevelState.IDLE:
            level.state = LevelState.ENTRY_OPEN
            level.order_id = order_id

    def _place_take_profit(self, level: Level) -> None:
        client_id = self._next_client_id("t", level)
        level.tp_client_id = client_id
        order_id = self._place(level, "tp", lambda: self._gateway.place_limit(
            self.config.symbol, level.tp_side, level.held_qty, level.tp_price,
            position_idx=level.position_idx, reduce_only=True, client_order_id=client_id,
        ))
        if order_id is not None and level.state is LevelState.FILLED:
            level.state = LevelState.TP_OPEN
            level.order_id = order_id
            self._order_slots[order_id] = level.position_idx
            self._tp_fills.setdefault(order_id, (_ZERO, _ZERO))

    def _place(self, level: Level, role: str, request: Callable[[], str]) -> str | None:
        """One order request; failures are counted and logged, never raised into the stream."""
        client_id = level.entry_client_id if role == "entry" else level.tp_client_id
        self._by_client_id[client_id] = (level.index, role)
        try:
            order_id = request()
        except AuthenticationError as exc:
            logger.error("%s %s: keys rejected while placing orders (%s); placing stopped",
                         self.exchange, self.config.symbol, exc)
            self.order_errors += 1
            self._placing = False
            return None
        except GridbotError as exc:
            if isinstance(exc, OrderRejected):  # refused: no order will ever carry this id
                self._by_client_id.pop(client_id, None)
            self._placement_failed(level, role, exc)
            return None
        level.failures = 0
        return order_id

    def _placement_failed(self, level: Level, role: str, exc: GridbotError) -> None:
        if role == "tp" and isinstance(exc, ReduceOnlyRejected) and not self.config.hedge:
            # One-way mode nets: an opposite level's fill already reduced the position this take-profit
            # was for.  Expected, not an error: the level's exposure is gone, so arm it again.
            self.netted += 1
            logger.info("%s %s level %d: take-profit not needed, the one-way position was netted (%s)",
                        self.exchange, self.config.symbol, level.index, exc)
            self._reset(level)
            return
        self.order_errors += 1
        level.failures += 1
        logger.warning("%s %s level %d: %s order failed: %s", self.exchange, self.config.symbol,
                       level.index, role, exc)
        if role == "tp" and isinstance(exc, OrderRejected):
            # Nothing left to take profit on (flat or flipped slot): arm the level again.
            self._reset(level)
        if level.failures >= _MAX_FAILURES:
            logger.error("%s %s level %d: %d failures in a row, level disabled", self.exchange,
                         self.config.symbol, level.index, level.failures)
            level.state = LevelState.DISABLED

    def _next_client_id(self, role: str, level: Level) -> str:
        self._sequence += 1
        direction = "b" if level.index < 0 else "s"
        return f"{self._prefix}-{role}{direction}{abs(level.index)}-{self._sequence}"

    # ------------------------------------------------------------------ levels

    def _build_levels(self, start: Decimal) -> None:
        cfg = self.config
        step = cfg.step_pct / _HUNDRED
        for i in range(1, cfg.levels + 1):
            buy = _round(start * (1 - step * i), cfg.tick_size, ROUND_FLOOR)
            sell = _round(start * (1 + step * i), cfg.tick_size, ROUND_CEILING)
            self._levels[-i] = Level(
                index=-i, side="Buy", price=buy, position_idx=1 if cfg.hedge else 0,
                tp_price=_round(buy * (1 + step), cfg.tick_size, ROUND_CEILING),
            )
            self._levels[i] = Level(
                index=i, side="Sell", price=sell, position_idx=2 if cfg.hedge else 0,
                tp_price=_round(sell * (1 - step), cfg.tick_size, ROUND_FLOOR),
            )
        logger.info("%s %s: grid of %d levels around %s", self.exchange, cfg.symbol, 2 * cfg.levels, start)


def _round(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (value / tick).to_integral_value(rounding=rounding) * tick


class _Subscribable(Protocol):
    """The part of ExchangeStream that :meth:`GridStrategy.attach` uses."""

    def subscribe(
        self,
        symbol: str,
        *,
        on_position: Callable[[PositionUpdate], object] | None = None,
        on_wallet: Callable[[WalletUpdate], object] | None = None,
        on_order: Callable[[OrderUpdate], object] | None = None,
        on_ticker: Callable[[TickerUpdate], object] | None = None,
        on_fill: Callable[[FillUpdate], object] | None = None,
        on_account: Callable[[AccountUpdate], object] | None = None,
    ) -> None: ...


def fan_out(*callbacks: Callable[[StatusUpdate], None]) -> Callable[[StatusUpdate], None]:
    """One ``on_status`` for a stream shared by several grids."""

    def dispatch(status: StatusUpdate) -> None:
        for callback in callbacks:
            callback(status)

    return dispatch
