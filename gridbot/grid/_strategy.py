"""The grid strategy itself: stream callbacks in, order requests out, under one lock.

Its shape (levels, prices) lives in :mod:`._levels` and its PnL bookkeeping in :mod:`._pnl`; this module
holds what changes while the grid runs: level states, open orders, pausing around reconnects.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from gridbot import events as ev
from gridbot._bounded import BoundedMap
from gridbot.adapters._orders import OrderGateway
from gridbot.errors import AuthenticationError, GridbotError, OrderRejected, ReduceOnlyRejected
from gridbot.grid._levels import GridConfig, Level, LevelState, build_levels
from gridbot.grid._pnl import Close, PnlChange, PnlCrossCheck, PnlMismatch
from gridbot.grid._wiring import Subscribable
from gridbot.tracking import AccountState, RealisedPnlTracker, TakeProfitTracker, WalletState

__all__ = ["GridStrategy", "GridView"]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_MAX_FAILURES = 3
_HISTORY = 200
# Order id -> slot for fills that arrive after their order ended (the exchanges do not order the two
# kinds): the latest this many orders are enough, and a long-running grid stays bounded.
_ORDER_SLOTS = 10_000


@dataclass(frozen=True)
class GridView:
    """A consistent snapshot of one grid, for displays and reports."""

    exchange: str
    symbol: str
    paused: bool
    placing: bool
    mark_price: Decimal | None
    positions: tuple[ev.PositionUpdate, ...]
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
        self._positions: dict[int, ev.PositionUpdate] = {}
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
            self.pnl.update(ev.PositionUpdate(
                exchange=self.exchange, timestamp=0, is_snapshot=True, symbol=self.config.symbol,
                position_idx=idx, side="", size=_ZERO, entry_price=_ZERO, mark_price=None,
                unrealised_pnl=_ZERO, cum_realised_pnl=value,
            ))

    # ------------------------------------------------------------------ wiring

    def attach(self, stream: Subscribable) -> None:
        """Subscribe this grid's callbacks for its symbol (the stream's ``on_status`` is set at
        construction: pass :meth:`on_status`, or :func:`fan_out` of several grids' ones)."""
        stream.subscribe(
            self.config.symbol, on_position=self.on_position, on_wallet=self.on_wallet,
            on_order=self.on_order, on_ticker=self.on_ticker, on_fill=self.on_fill,
            on_account=self.on_account,
        )

    # ------------------------------------------------------------------ callbacks

    def on_status(self, status: ev.StatusUpdate) -> None:
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

    def on_ticker(self, ticker: ev.TickerUpdate) -> None:
        with self._lock:
            price = ticker.mark_price if ticker.mark_price is not None else ticker.last_price
            if price is None:
                return
            self._mark = price
            if self._start_price is None:
                self._start_price = price
                self._build_levels(price)
            self._work()

    def on_position(self, position: ev.PositionUpdate) -> None:
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

    def on_fill(self, fill: ev.FillUpdate) -> None:
        with self._lock:
            known = self._order_slots.get(fill.order_id)
            idx = fill.position_idx if known is None else known
            if self.pnl.baseline(fill.symbol, idx) is not None:
                self.cross_check.add_fill((fill.symbol, idx), fill)
            if fill.order_id in self._tp_fills:
                pnl, fees = self._tp_fills[fill.order_id]
                self._tp_fills[fill.order_id] = (pnl + (fill.realised_pnl or _ZERO), fees + fill.fee)

    def on_wallet(self, wallet: ev.WalletUpdate) -> None:
        with self._lock:
            self.wallet.update(wallet)

    def on_account(self, account: ev.AccountUpdate) -> None:
        with self._lock:
            self.account.update(account)

    def on_order(self, order: ev.OrderUpdate) -> None:
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
            if order.status in ev.TERMINAL_ORDER_STATUSES:
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

    def _entry_update(self, level: Level, order: ev.OrderUpdate) -> None:
        if order.status == "Filled" or (order.status in ev.TERMINAL_ORDER_STATUSES and order.filled_qty > 0):
            level.state = LevelState.FILLED
            level.held_qty = order.filled_qty
            level.order_id = ""
            level.failures = 0
            self._work()
        elif order.status in ev.TERMINAL_ORDER_STATUSES:
            if not level.cancel_requested:
                logger.info("%s %s level %d: entry %s ended %s", self.exchange, self.config.symbol,
                            level.index, order.order_id, order.status)
            level.state = LevelState.IDLE
            level.order_id = ""
            level.cancel_requested = False
        elif level.state in (LevelState.IDLE, LevelState.ENTRY_OPEN):
            level.state = LevelState.ENTRY_OPEN
            level.order_id = order.order_id

    def _tp_update(self, level: Level, order: ev.OrderUpdate) -> None:
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
        elif order.status in ev.TERMINAL_ORDER_STATUSES:
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
        self._levels = build_levels(self.config, start)
        logger.info("%s %s: grid of %d levels around %s", self.exchange, self.config.symbol,
                    2 * self.config.levels, start)
