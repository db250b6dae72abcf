"""The engine's state and its read side: markets, position slots, orders, fills and the ledger, and the
views and margin figures computed from them (see :mod:`gridbot.emulator.engine` for the semantics).

:class:`EngineState` is the base of :class:`~gridbot.emulator.engine.Engine`: the order flow that
changes the state is :mod:`gridbot.emulator._matching`, the public mutations are in the engine module.
Everything here runs under the engine lock and emits nothing but through ``_emit``.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from gridbot.emulator._model import (
    EngineConfig,
    EngineError,
    EngineEvent,
    Fill,
    LedgerEntry,
    Order,
    Position,
    Prices,
    SymbolConfig,
    Wallet,
)
from gridbot.emulator.margin import (
    LeverageBracket,
    bracket_for,
    initial_margin,
    maintenance_margin,
    round8,
)

__all__ = ["BUY", "FUNDING_INTERVAL_MS", "LIMIT", "MARKET", "SELL", "STOP_LOSS", "TAKE_PROFIT", "EngineState"]

logger = logging.getLogger("gridbot.emulator.engine")  # one logger for the engine, whatever module

_ZERO = Decimal("0")
FUNDING_INTERVAL_MS = 8 * 60 * 60 * 1000
BUY, SELL = "Buy", "Sell"
LIMIT, MARKET = "Limit", "Market"
TAKE_PROFIT, STOP_LOSS = "TakeProfit", "StopLoss"


@dataclass
class _Slot:
    """Mutable state of one position slot; ``size`` is signed (> 0 long, < 0 short)."""

    size: Decimal = _ZERO
    entry: Decimal = _ZERO
    cum_gross: Decimal = _ZERO
    cum_fees: Decimal = _ZERO
    updated_time: int = 0
    seq: int = 0


@dataclass
class _Market:
    config: SymbolConfig
    rng: random.Random
    fair: float
    last: Decimal
    leverage: Decimal
    timestamp: int = 0
    slots: dict[int, _Slot] = field(default_factory=dict)


_round8 = round8  # quotients to 8 decimals, shorter values untouched (so 30000.1 stays 30000.1)


def _to_tick(value: float | Decimal, tick: Decimal) -> Decimal:
    """Quantize a price to the tick grid, never below one tick."""
    ticks = (Decimal(value) / tick).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return max(ticks, Decimal(1)) * tick


def _next_funding_time(now_ms: int) -> int:
    return (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


def _signed(side: str, qty: Decimal) -> Decimal:
    return qty if side == BUY else -qty


class EngineState:
    """The state of a single cross-margin account and everything that only reads it."""

    def __init__(self, config: EngineConfig, clock: Callable[[], int]) -> None:
        if not config.symbols:
            raise ValueError("EngineConfig.symbols is empty")
        self._config = config
        self._clock = clock
        self._lock = threading.RLock()
        self._emitting = False
        self._listeners: list[Callable[[EngineEvent], None]] = []
        self._hedge = config.hedge_mode
        self._markets: dict[str, _Market] = {}
        for sym_cfg in config.symbols:
            self._markets[sym_cfg.symbol] = self._new_market(sym_cfg, config)
        id_base = (config.seed % 1000) * 1_000_000
        self._order_ids = itertools.count(8_000_000_000 + id_base + 1)
        self._trade_ids = itertools.count(1_000_000_000 + id_base + 1)
        self._seq = itertools.count(1)
        self._orders: dict[int, Order] = {}
        self._open: dict[int, None] = {}  # ordered set of open order ids (placement order)
        self._ledger: list[LedgerEntry] = []
        self._fills: list[Fill] = []
        self._realised_total = _ZERO
        self._fees_total = _ZERO
        self._wallet_time = clock()

    @staticmethod
    def _new_market(sym_cfg: SymbolConfig, config: EngineConfig) -> _Market:
        """One independent random stream per symbol, so adding a symbol never changes another's path."""
        start = _to_tick(sym_cfg.start_price, sym_cfg.tick_size)
        leverage = sym_cfg.leverage if sym_cfg.leverage is not None else config.leverage
        if not 1 <= leverage <= sym_cfg.brackets[0].initial_leverage or leverage % 1 != 0:
            raise ValueError(f"{sym_cfg.symbol}: leverage {leverage} must be an integer in "
                             f"1..{sym_cfg.brackets[0].initial_leverage}")
        return _Market(config=sym_cfg, rng=random.Random(f"{config.seed}/{sym_cfg.symbol}"),
                       fair=float(start), last=start, leverage=leverage)

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def lock(self) -> threading.RLock:
        """The engine's re-entrant lock: hold it to read several things as one consistent snapshot."""
        return self._lock

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._markets)

    def symbol_config(self, symbol: str) -> SymbolConfig:
        return self._market(symbol).config

    def add_listener(self, fn: Callable[[EngineEvent], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[EngineEvent], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    @contextmanager
    def _mutation(self) -> Iterator[int]:
        """Hold the lock for a state change, refuse re-entry from a listener; yields the call's time."""
        with self._lock:
            if self._emitting:
                raise EngineError("reentrant_call", "listeners must not change the engine")
            yield self._clock()

    def _emit(self, event: EngineEvent) -> None:
        self._emitting = True
        try:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    logger.exception("engine listener %r failed on %s", listener, type(event).__name__)
        finally:
            self._emitting = False

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            raise EngineError("unknown_symbol", f"unknown symbol {symbol!r}")
        return market

    def _slot(self, symbol: str, position_idx: int) -> _Slot:
        """The slot to change; creating it is what makes it "touched" (listed by positions())."""
        slots = self._market(symbol).slots
        if position_idx not in slots:
            slots[position_idx] = _Slot()
        return slots[position_idx]

    def _size(self, symbol: str, position_idx: int) -> Decimal:
        slot = self._market(symbol).slots.get(position_idx)
        return slot.size if slot is not None else _ZERO

    def _valid_indices(self) -> tuple[int, ...]:
        return (1, 2) if self._hedge else (0,)

    # ---------------------------------------------------------------------------------------------- prices

    def prices(self, symbol: str) -> Prices:
        with self._lock:
            market = self._market(symbol)
            return self._prices_view(market, self._clock())

    def _prices_view(self, market: _Market, now: int) -> Prices:
        cfg = market.config
        return Prices(symbol=cfg.symbol, mark=market.last, last=market.last, index=market.last,
                      funding_rate=cfg.funding_rate, next_funding_time=_next_funding_time(now),
                      timestamp=market.timestamp or now)

    @property
    def hedge_mode(self) -> bool:
        return self._hedge

    # --------------------------------------------------------------------------------- reducing and margin

    def is_reducing(self, order: Order) -> bool:
        """True for reduce-only orders and, in hedge mode, a Sell on the long / Buy on the short slot."""
        if order.reduce_only:
            return True
        idx, side = order.position_idx, order.side
        return (idx == 1 and side == SELL) or (idx == 2 and side == BUY)

    def _can_reduce(self, order: Order) -> bool:
        size = self._size(order.symbol, order.position_idx)
        return size != 0 and (size > 0) != (order.side == BUY)

    def _order_margin(self, order: Order) -> Decimal:
        """Initial margin of the part of an order that would open or increase its slot."""
        if self.is_reducing(order):
            return _ZERO
        size = self._size(order.symbol, order.position_idx)
        delta = _signed(order.side, order.qty)
        opening = order.qty if size == 0 or (size > 0) == (delta > 0) else max(_ZERO, order.qty - abs(size))
        market = self._market(order.symbol)
        ref_price = order.price if order.price is not None else market.last
        return initial_margin(opening * ref_price, market.leverage)

    # ----------------------------------------------------------------------------------------------- state

    def positions(self, symbol: str | None = None) -> list[Position]:
        """Every slot of the current mode that ever had a fill, flat ones too."""
        with self._lock:
            symbols = [symbol] if symbol is not None else list(self._markets)
            result: list[Position] = []
            for sym in symbols:
                slots = self._market(sym).slots
                result.extend(self._position_view(sym, idx) for idx in sorted(slots)
                              if idx in self._valid_indices())
            return result

    def position(self, symbol: str, position_idx: int) -> Position:
        """One slot; an untouched slot is returned flat."""
        with self._lock:
            self._market(symbol)
            if position_idx not in self._valid_indices():
                raise EngineError("bad_position_idx", f"position_idx {position_idx} is invalid in this mode")
            return self._position_view(symbol, position_idx)

    def _position_view(self, symbol: str, position_idx: int) -> Position:
        market = self._market(symbol)
        slot = market.slots.get(position_idx) or _Slot()
        side = BUY if slot.size > 0 else SELL if slot.size < 0 else ""
        unrealised = (market.last - slot.entry) * slot.size if slot.size != 0 else _ZERO
        notional = slot.size * market.last
        brackets = market.config.brackets
        return Position(symbol=symbol, position_idx=position_idx, side=side, size=abs(slot.size),
                        entry_price=slot.entry, mark_price=market.last, unrealised_pnl=unrealised,
                        cum_realised_gross=slot.cum_gross, cum_fees=slot.cum_fees,
                        cum_realised_net=slot.cum_gross - slot.cum_fees, updated_time=slot.updated_time,
                        seq=slot.seq, leverage=market.leverage,
                        initial_margin=initial_margin(notional, market.leverage),
                        maintenance_margin=maintenance_margin(brackets, notional),
                        maint_margin_ratio=bracket_for(brackets, notional).maint_margin_ratio)

    def wallet(self) -> Wallet:
        with self._lock:
            return self._wallet_view(self._wallet_time)

    def _wallet_view(self, updated_time: int) -> Wallet:
        """The cross account by Binance's formulas (single-asset mode): margin balance = wallet +
        uPnL; maintenance = sum of each slot's; available = max(0, margin balance - positions' IM -
        open orders' IM); mm_rate = maintenance / margin balance (0 while nothing is held or owed)."""
        unrealised = position_im = maintenance = _ZERO
        for symbol, market in self._markets.items():
            for idx in market.slots:
                if idx in self._valid_indices():
                    view = self._position_view(symbol, idx)
                    unrealised += view.unrealised_pnl
                    position_im += view.initial_margin
                    maintenance += view.maintenance_margin
        balance = self._config.wallet_balance + self._realised_total - self._fees_total
        equity = balance + unrealised
        order_margin = sum((self._order_margin(self._orders[i]) for i in self._open
                            if self._orders[i].status == "New"), _ZERO)
        available = max(_ZERO, equity - position_im - order_margin)
        mm_rate = _round8(maintenance / equity) if equity > 0 and maintenance > 0 else _ZERO
        return Wallet(coin=self._config.coin, wallet_balance=balance, available_balance=available,
                      equity=equity, unrealised_pnl=unrealised, maintenance_margin=maintenance,
                      mm_rate=mm_rate, updated_time=updated_time, initial_margin=position_im,
                      order_margin=order_margin)

    def open_order_margin(self, symbol: str, position_idx: int) -> Decimal:
        """Initial margin of a slot's open orders that would open or increase it."""
        with self._lock:
            return sum((self._order_margin(self._orders[i]) for i in self._open
                        if self._orders[i].status == "New" and self._orders[i].symbol == symbol
                        and self._orders[i].position_idx == position_idx), _ZERO)

    def leverage(self, symbol: str) -> Decimal:
        with self._lock:
            return self._market(symbol).leverage

    def brackets(self, symbol: str) -> tuple[LeverageBracket, ...]:
        return self._market(symbol).config.brackets

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders in placement order: New, Untriggered, and Triggered conditionals whose child rests."""
        with self._lock:
            if symbol is not None:
                self._market(symbol)
            return [self._orders[i] for i in self._open if symbol is None or self._orders[i].symbol == symbol]

    def order(self, order_id: int) -> Order:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                raise EngineError("unknown_order", f"no order {order_id}")
            return order

    def fills(self, symbol: str | None = None) -> tuple[Fill, ...]:
        """Every fill so far (forced closes included), in execution order (ascending ``trade_id``)."""
        with self._lock:
            if symbol is not None:
                self._market(symbol)
            return tuple(f for f in self._fills if symbol is None or f.symbol == symbol)

    @property
    def ledger(self) -> tuple[LedgerEntry, ...]:
        with self._lock:
            return tuple(self._ledger)

    def realised_gross(self, symbol: str | None = None) -> Decimal:
        with self._lock:
            entries = (e for e in self._ledger if symbol is None or e.symbol == symbol)
            return sum((e.realised_gross for e in entries), _ZERO)

    def fees_paid(self, symbol: str | None = None) -> Decimal:
        with self._lock:
            return sum((e.fee for e in self._ledger if symbol is None or e.symbol == symbol), _ZERO)
