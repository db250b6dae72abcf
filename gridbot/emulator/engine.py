"""Exchange-agnostic matching and accounting engine behind the loopback Binance and Bybit servers.

The engine is pure: no sockets, no asyncio, no wall clock (``clock() -> ms`` is injected) and, for a
given seed, deterministic.  The wire servers translate its events into each exchange's frames, so the
engine models what both exchanges share and nothing more.

Semantics
---------
- Prices: per symbol a seeded random walk (``random.Random`` gauss, relative std-dev ``volatility``) on
  a float "fair" price, quantized to ``tick_size`` as the last price; mark = index = last; the funding
  rate is constant and ``next_funding_time`` is the next multiple of 8 h after ``clock()``.
  ``set_price`` forces all three.  After every price change: conditional triggers (on mark), then
  resting-limit fills (on last), in order-id order.
- Orders fill completely or not at all.  A Limit Buy fills when last <= price (Sell: last >= price): at
  placement as taker at its limit price (``post_only`` -> status "Rejected" instead, returned, not
  raised), later as maker at its limit price.  Market orders fill at once as taker at the last price.
- Position slots: one-way idx 0; hedge idx 1 long / 2 short.  An order *reduces* when it is
  ``reduce_only`` or, in hedge mode, a Sell on idx 1 / Buy on idx 2 (Binance forbids the flag there).
  A reducing order on a flat slot, or on the side it would increase, raises
  ``EngineError("reduce_only_rejected")``; its qty is capped at the position size when it fills (the
  order's ``qty`` is amended to the filled qty, as Bybit does).  Whenever a slot changes, its open
  reducing orders that can no longer reduce (slot flat, or flipped) end: untriggered conditionals
  "Deactivated" (Bybit behaviour), resting regular orders "Cancelled" (reason "position_closed").
- Accounting: average entry on increase (rounded to 8 decimals when longer); realised (before fees)
  ``(fill - entry) * qty`` for longs, ``(entry - fill) * qty`` for shorts; a one-way order that flips
  the position closes the old side and opens the rest at the fill price.  Fee = price * qty * rate.
  Per slot: ``cum_realised_gross`` (Binance ``cr``), ``cum_fees``, ``cum_realised_net`` (Bybit
  ``cumRealisedPnl``).
- Conditionals ("TakeProfit" | "StopLoss") are "Untriggered" until mark crosses the trigger (TP Sell:
  mark >= trigger, TP Buy: mark <= trigger, StopLoss the opposite); one that would trigger at once is
  refused (``would_immediately_trigger``, as Binance does).  On trigger it becomes "Triggered" with
  ``child_id`` set, and a child order (``parent_id``) is placed like a regular one; when the child ends,
  the conditional ends "Filled" (exec_type "Filled") or "Cancelled".
- Account (Binance's documented cross-margin formulas, :mod:`gridbot.emulator.margin`): wallet balance =
  start + realised - fees; margin balance (= equity) = wallet + unrealised PnL (at mark); per slot,
  initial margin = |notional| / the symbol's leverage and maintenance margin = |notional| *
  maintMarginRatio - cum of the bracket with floor < |notional| <= cap (``SymbolConfig.brackets``); open
  orders' initial margin = the part that would open or increase / leverage (at the limit price, last for
  Market); available = max(0, margin balance - positions' IM - open orders' IM); mm_rate = maintenance /
  margin balance.  ``set_leverage`` (integer, up to the first bracket's initial leverage, refused when a
  slot is above the brackets' cap at that leverage) emits a LeverageEvent.
- An order that opens or increases must be worth ``SymbolConfig.min_notional`` (price * qty; Market at
  last): ``EngineError("min_notional")``; reducing orders may be any size.
- Forced closes: ``liquidate(symbol, position_idx, price, kind)`` closes a whole slot at ``price`` with
  an exchange-made Market order (``Order.forced`` / ``Fill.forced`` = "liquidation" | "adl"; taker fee
  for a liquidation, none for ADL).  The engine never liquidates on its own: a test decides when.
- History: ``fills()`` keeps every fill (forced ones too) in execution order; ``Fill.seq`` is the slot's
  ``seq`` after the fill, so an execution and the position update it causes share it (Bybit's cross seq).
- Events are delivered to listeners synchronously while the engine lock is held, in the order they
  happen; per fill: OrderEvent("Trade", with ``fill``) -> FillEvent -> PositionEvent -> WalletEvent.
  Listeners may read the engine but must not change it (``EngineError("reentrant_call")``); a listener
  that raises is logged and the others still run.

The data model (configuration, snapshots, events, EngineError) is in :mod:`gridbot.emulator._model` and
re-exported here; the margin arithmetic is in :mod:`gridbot.emulator.margin`.

Known differences from the real exchanges
-----------------------------------------
No order book, no partial fills, no slippage (a marketable limit fills at its own price, not better);
no funding charges, no automatic liquidation or ADL (only ``liquidate``); cross margin in one coin only
(no isolated margin, no multi-assets mode), fees not reserved, conditionals reserve nothing, the
bracket of a hedge-mode slot is found from that slot's own notional (⚠ Binance does not say); no
time-in-force other than GTC / post-only, no trailing stops, no order amendment; mark =
index = last; prices move only on ``step``/``set_price``.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal

from gridbot.emulator._model import (
    EngineConfig,
    EngineError,
    EngineEvent,
    Fill,
    FillEvent,
    LedgerEntry,
    LeverageEvent,
    Order,
    OrderEvent,
    Position,
    PositionEvent,
    PriceEvent,
    Prices,
    SymbolConfig,
    Wallet,
    WalletEvent,
)
from gridbot.emulator.margin import (
    LeverageBracket,
    bracket_for,
    initial_margin,
    maintenance_margin,
    max_notional,
    round8,
)

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineEvent",
    "Fill",
    "FillEvent",
    "LedgerEntry",
    "LeverageBracket",
    "LeverageEvent",
    "Order",
    "OrderEvent",
    "Position",
    "PositionEvent",
    "PriceEvent",
    "Prices",
    "SymbolConfig",
    "Wallet",
    "WalletEvent",
]

logger = logging.getLogger(__name__)

_ZERO = Decimal("0")
FUNDING_INTERVAL_MS = 8 * 60 * 60 * 1000
BUY, SELL = "Buy", "Sell"
LIMIT, MARKET = "Limit", "Market"
TAKE_PROFIT, STOP_LOSS = "TakeProfit", "StopLoss"


# ----------------------------------------------------------------------------------- internal state


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


# --------------------------------------------------------------------------------------------- engine


class Engine:
    """Matching and accounting for a single cross-margin account; see the module docstring."""

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

    # ----------------------------------------------------------------------------------- plumbing

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

    # ------------------------------------------------------------------------------------- market

    def step(self, *, match: bool = True) -> None:
        """One random-walk step for every symbol, each followed by its triggers and fills.

        ``match=False`` only moves the prices (and pushes them); :meth:`match` then runs the triggers and
        fills.  A lockstep driver (the demo) uses the two halves so that a client sees each step's prices
        before the fills they cause: the public and private sockets are not ordered with each other.
        """
        with self._mutation() as now:
            for market in self._markets.values():
                cfg = market.config
                market.fair = max(market.fair * (1.0 + market.rng.gauss(0.0, cfg.volatility)),
                                  float(cfg.tick_size))
                self._set_last(market, _to_tick(market.fair, cfg.tick_size), now, match=match)

    def match(self) -> None:
        """Run every symbol's triggers and resting fills at the current prices (after ``step(match=False)``)
        - the second half of a split step."""
        with self._mutation() as now:
            for symbol in self._markets:
                self._run_triggers(symbol, now)
                self._run_resting_fills(symbol, now)

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Force mark = last = index (rounded to the tick), then run triggers and fills."""
        with self._mutation() as now:
            market = self._market(symbol)
            if price <= 0:
                raise EngineError("bad_price", f"price must be > 0, got {price}")
            last = _to_tick(price, market.config.tick_size)
            market.fair = float(last)
            self._set_last(market, last, now)

    def _set_last(self, market: _Market, last: Decimal, now: int, *, match: bool = True) -> None:
        market.last = last
        market.timestamp = now
        self._emit(PriceEvent(self._prices_view(market, now), now))
        if match:
            self._run_triggers(market.config.symbol, now)
            self._run_resting_fills(market.config.symbol, now)

    def prices(self, symbol: str) -> Prices:
        with self._lock:
            market = self._market(symbol)
            return self._prices_view(market, self._clock())

    def _prices_view(self, market: _Market, now: int) -> Prices:
        cfg = market.config
        return Prices(symbol=cfg.symbol, mark=market.last, last=market.last, index=market.last,
                      funding_rate=cfg.funding_rate, next_funding_time=_next_funding_time(now),
                      timestamp=market.timestamp or now)

    # ------------------------------------------------------------------------------- account mode

    @property
    def hedge_mode(self) -> bool:
        return self._hedge

    def set_hedge_mode(self, hedge: bool) -> None:
        with self._mutation():
            if hedge == self._hedge:
                return
            has_position = any(slot.size != 0 for m in self._markets.values() for slot in m.slots.values())
            if has_position or self._open:
                raise EngineError("position_or_order_exists",
                                  "position mode can only change with no position and no open order")
            self._hedge = hedge

    # ------------------------------------------------------------------------------------ trading

    def place_order(self, *, symbol: str, side: str, order_type: str, qty: Decimal,
                    price: Decimal | None = None, reduce_only: bool = False, position_idx: int = 0,
                    client_order_id: str = "", post_only: bool = False) -> Order:
        """Place a regular order; it fills inside this call when marketable (see module docstring)."""
        with self._mutation() as now:
            price = self._validate(symbol, side, order_type, qty, price, position_idx)
            order = Order(
                order_id=next(self._order_ids), client_order_id=client_order_id, symbol=symbol, side=side,
                order_type=order_type, qty=qty, price=price, trigger_price=None, reduce_only=reduce_only,
                position_idx=position_idx, status="New", filled_qty=_ZERO, avg_price=_ZERO,
                is_conditional=False, kind="", parent_id=None, child_id=None, created_time=now,
                updated_time=now, post_only=post_only and order_type == LIMIT,
            )
            if order.post_only and self._crosses(order):
                rejected = replace(order, status="Rejected", reason="post_only_would_take")
                self._orders[order.order_id] = rejected
                self._emit(OrderEvent(rejected, "Rejected", now))
                return rejected
            self._check_acceptable(order)
            self._submit(order, now)
            return self._orders[order.order_id]

    def place_conditional(self, *, symbol: str, side: str, order_type: str, qty: Decimal,
                          trigger_price: Decimal, price: Decimal | None = None, reduce_only: bool = True,
                          position_idx: int = 0, client_order_id: str = "",
                          kind: str = TAKE_PROFIT) -> Order:
        """Place a TakeProfit / StopLoss that triggers on the mark price and then places its child."""
        with self._mutation() as now:
            price = self._validate(symbol, side, order_type, qty, price, position_idx)
            if kind not in (TAKE_PROFIT, STOP_LOSS):
                raise EngineError("bad_kind", f"kind must be TakeProfit or StopLoss, got {kind!r}")
            self._validate_price(symbol, trigger_price, "trigger_price")
            order = Order(
                order_id=next(self._order_ids), client_order_id=client_order_id, symbol=symbol, side=side,
                order_type=order_type, qty=qty, price=price, trigger_price=trigger_price,
                reduce_only=reduce_only, position_idx=position_idx, status="Untriggered", filled_qty=_ZERO,
                avg_price=_ZERO, is_conditional=True, kind=kind, parent_id=None, child_id=None,
                created_time=now, updated_time=now,
            )
            if self._is_triggered(order):
                raise EngineError("would_immediately_trigger",
                                  f"{kind} {side} trigger {trigger_price} is already crossed by the mark")
            if self.is_reducing(order):
                self._check_reducible(order)
            self._store_open(order)
            self._emit(OrderEvent(order, "New", now))
            return order

    def cancel_order(self, *, symbol: str, order_id: int | None = None,
                     client_order_id: str | None = None) -> Order:
        """Cancel an open order; a triggered conditional is cancelled through its resting child."""
        with self._mutation() as now:
            self._market(symbol)
            order = self._find_open(symbol, order_id, client_order_id)
            if order.status == "Triggered" and order.child_id is not None:
                self._end_order(self._orders[order.child_id], "Cancelled", "Cancelled", now)
            else:
                self._end_order(order, "Cancelled", "Cancelled", now)
            return self._orders[order.order_id]

    def liquidate(self, symbol: str, position_idx: int, price: Decimal, kind: str = "liquidation") -> Order:
        """Force-close a whole slot at ``price``, as the exchange does: ``kind`` "liquidation" (the
        liquidation engine takes the position over; taker fee) or "adl" (auto-deleveraging; no fee).

        The close is a Market order of the exchange (``forced`` = kind, reduce-only, no client id): it
        emits OrderEvent "New" then "Trade" (with the fill, whose ``forced`` is set), FillEvent,
        PositionEvent and WalletEvent like any fill, and appears in :meth:`fills` and the ledger.  The
        price need not be the mark (it is not moved); it must be on the tick grid.  Open reducing
        orders of the slot end as on any close.  A flat slot raises ``EngineError("no_position")``.
        """
        if kind not in ("liquidation", "adl"):
            raise EngineError("bad_kind", f"kind must be 'liquidation' or 'adl', got {kind!r}")
        with self._mutation() as now:
            self._market(symbol)
            if position_idx not in self._valid_indices():
                raise EngineError("bad_position_idx", f"position_idx {position_idx} is invalid in this mode")
            self._validate_price(symbol, price, "price")
            size = self._size(symbol, position_idx)
            if size == 0:
                raise EngineError("no_position", f"{symbol} idx {position_idx} is flat: nothing to close")
            order = Order(
                order_id=next(self._order_ids), client_order_id="", symbol=symbol,
                side=SELL if size > 0 else BUY, order_type=MARKET, qty=abs(size), price=None,
                trigger_price=None, reduce_only=True, position_idx=position_idx, status="New",
                filled_qty=_ZERO, avg_price=_ZERO, is_conditional=False, kind="", parent_id=None,
                child_id=None, created_time=now, updated_time=now, forced=kind,
            )
            self._store_open(order)
            self._emit(OrderEvent(order, "New", now))
            fee_rate = self._config.taker_fee if kind == "liquidation" else _ZERO
            self._fill(order, price, is_maker=False, now=now, fee_rate=fee_rate)
            return self._orders[order.order_id]

    def _find_open(self, symbol: str, order_id: int | None, client_order_id: str | None) -> Order:
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is None or order.symbol != symbol:
                raise EngineError("unknown_order", f"no order {order_id} on {symbol}")
        elif client_order_id:
            matches = [o for o in (self._orders[i] for i in self._open)
                       if o.symbol == symbol and o.client_order_id == client_order_id]
            if not matches:
                raise EngineError("unknown_order", f"no open order {client_order_id!r} on {symbol}")
            order = matches[-1]
        else:
            raise EngineError("missing_id", "give order_id or client_order_id")
        if order.order_id not in self._open:
            raise EngineError("unknown_order", f"order {order.order_id} is not open ({order.status})")
        return order

    # --------------------------------------------------------------------------------- validation

    def _validate(self, symbol: str, side: str, order_type: str, qty: Decimal, price: Decimal | None,
                  position_idx: int) -> Decimal | None:
        """Check the request's shape; returns the price to store (None for Market)."""
        market = self._market(symbol)
        if side not in (BUY, SELL):
            raise EngineError("bad_side", f"side must be Buy or Sell, got {side!r}")
        if order_type not in (LIMIT, MARKET):
            raise EngineError("bad_order_type", f"order_type must be Limit or Market, got {order_type!r}")
        if position_idx not in self._valid_indices():
            mode = "hedge" if self._hedge else "one-way"
            raise EngineError("bad_position_idx", f"position_idx {position_idx} is invalid in {mode} mode")
        step = market.config.qty_step
        if qty <= 0 or qty % step != 0:
            raise EngineError("bad_qty", f"qty {qty} must be > 0 and a multiple of {step}")
        if order_type == MARKET:
            return None
        if price is None:
            raise EngineError("bad_price", "a Limit order needs a price")
        self._validate_price(symbol, price, "price")
        return price

    def _validate_price(self, symbol: str, price: Decimal, what: str) -> None:
        tick = self._market(symbol).config.tick_size
        if price <= 0 or price % tick != 0:
            raise EngineError("bad_price", f"{what} {price} must be > 0 and a multiple of {tick}")

    def is_reducing(self, order: Order) -> bool:
        """True for reduce-only orders and, in hedge mode, a Sell on the long / Buy on the short slot."""
        if order.reduce_only:
            return True
        idx, side = order.position_idx, order.side
        return (idx == 1 and side == SELL) or (idx == 2 and side == BUY)

    def _can_reduce(self, order: Order) -> bool:
        size = self._size(order.symbol, order.position_idx)
        return size != 0 and (size > 0) != (order.side == BUY)

    def _check_reducible(self, order: Order) -> None:
        if not self._can_reduce(order):
            where = f"{order.symbol} idx {order.position_idx}"
            raise EngineError("reduce_only_rejected", f"{order.side} on {where} would not reduce a position")

    def _check_acceptable(self, order: Order) -> None:
        """Reduce rule for reducing orders, margin for the rest; raises EngineError."""
        if self.is_reducing(order):
            self._check_reducible(order)
            return
        self._check_min_notional(order)
        required = self._order_margin(order)
        available = self._wallet_view(self._wallet_time).available_balance
        if required > available:
            raise EngineError("insufficient_balance",
                              f"order needs {required} {self._config.coin} of margin, {available} available")

    def _check_min_notional(self, order: Order) -> None:
        """An order that opens or increases a position must be worth ``min_notional`` (reducing: any)."""
        market = self._market(order.symbol)
        ref_price = order.price if order.price is not None else market.last
        minimum = market.config.min_notional
        if order.qty * ref_price < minimum:
            raise EngineError("min_notional", f"order notional {order.qty * ref_price} is below {minimum}")

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

    # ----------------------------------------------------------------------------------- matching

    def _store_open(self, order: Order) -> None:
        self._orders[order.order_id] = order
        self._open[order.order_id] = None

    def _submit(self, order: Order, now: int) -> None:
        """Accept a validated regular order: New, then an immediate taker fill when marketable."""
        self._store_open(order)
        self._emit(OrderEvent(order, "New", now))
        if order.order_type == MARKET:
            self._fill(order, self._market(order.symbol).last, is_maker=False, now=now)
        elif self._crosses(order):
            assert order.price is not None
            self._fill(order, order.price, is_maker=False, now=now)

    def _crosses(self, order: Order) -> bool:
        last = self._market(order.symbol).last
        assert order.price is not None
        return last <= order.price if order.side == BUY else last >= order.price

    def _is_triggered(self, order: Order) -> bool:
        mark = self._market(order.symbol).last
        assert order.trigger_price is not None
        rises = (order.kind == TAKE_PROFIT) == (order.side == SELL)
        return mark >= order.trigger_price if rises else mark <= order.trigger_price

    def _open_orders_of(self, symbol: str) -> list[Order]:
        return [self._orders[i] for i in list(self._open) if self._orders[i].symbol == symbol]

    def _run_triggers(self, symbol: str, now: int) -> None:
        for order in self._open_orders_of(symbol):
            current = self._orders[order.order_id]
            if current.status == "Untriggered" and self._is_triggered(current):
                self._trigger(current, now)

    def _run_resting_fills(self, symbol: str, now: int) -> None:
        for order in self._open_orders_of(symbol):
            current = self._orders[order.order_id]
            if (current.order_id in self._open and current.status == "New" and current.order_type == LIMIT
                    and self._crosses(current)):
                assert current.price is not None
                self._fill(current, current.price, is_maker=True, now=now)

    def _trigger(self, conditional: Order, now: int) -> None:
        child_id = next(self._order_ids)
        triggered = replace(conditional, status="Triggered", child_id=child_id, updated_time=now)
        self._orders[triggered.order_id] = triggered
        self._emit(OrderEvent(triggered, "Triggered", now))
        child = Order(
            order_id=child_id, client_order_id="", symbol=conditional.symbol, side=conditional.side,
            order_type=conditional.order_type, qty=conditional.qty, price=conditional.price,
            trigger_price=None, reduce_only=conditional.reduce_only, position_idx=conditional.position_idx,
            status="New", filled_qty=_ZERO, avg_price=_ZERO, is_conditional=False, kind=conditional.kind,
            parent_id=conditional.order_id, child_id=None, created_time=now, updated_time=now,
        )
        try:
            self._check_acceptable(child)
        except EngineError as exc:
            rejected = replace(child, status="Rejected", reason=exc.code)
            self._orders[child_id] = rejected
            self._emit(OrderEvent(rejected, "Rejected", now))
            self._end_parent(rejected, now)
            return
        self._submit(child, now)

    def _end_order(self, order: Order, status: str, exec_type: str, now: int, reason: str = "") -> None:
        ended = replace(order, status=status, updated_time=now, reason=reason)
        self._orders[order.order_id] = ended
        self._open.pop(order.order_id, None)
        self._emit(OrderEvent(ended, exec_type, now))
        self._end_parent(ended, now)

    def _end_parent(self, child: Order, now: int) -> None:
        """A triggered conditional ends with its child: "Filled" when the child filled, else "Cancelled"."""
        if child.parent_id is None:
            return
        parent = self._orders[child.parent_id]
        if child.status == "Filled":
            ended = replace(parent, status="Filled", filled_qty=child.filled_qty, avg_price=child.avg_price,
                            updated_time=now)
        else:
            ended = replace(parent, status="Cancelled", updated_time=now, reason=child.reason)
        self._orders[parent.order_id] = ended
        self._open.pop(parent.order_id, None)
        self._emit(OrderEvent(ended, ended.status, now))

    def _fill(self, order: Order, price: Decimal, *, is_maker: bool, now: int,
              fee_rate: Decimal | None = None) -> None:
        """Fill the whole order (a reducing one capped at the position) and account for it."""
        if self.is_reducing(order) and not self._can_reduce(order):
            self._end_order(order, "Cancelled", "Cancelled", now, reason="position_closed")
            return
        slot = self._slot(order.symbol, order.position_idx)
        qty = min(order.qty, abs(slot.size)) if self.is_reducing(order) else order.qty
        if fee_rate is None:
            fee_rate = self._config.maker_fee if is_maker else self._config.taker_fee
        fee = price * qty * fee_rate
        realised = self._apply_to_slot(slot, order.side, qty, price)
        slot.cum_gross += realised
        slot.cum_fees += fee
        slot.updated_time = now
        slot.seq = next(self._seq)
        self._realised_total += realised
        self._fees_total += fee
        self._wallet_time = now
        fill = Fill(trade_id=next(self._trade_ids), order_id=order.order_id, symbol=order.symbol,
                    side=order.side, price=price, qty=qty, fee=fee, fee_rate=fee_rate, is_maker=is_maker,
                    realised_pnl=realised, position_idx=order.position_idx, timestamp=now,
                    forced=order.forced, seq=slot.seq)
        self._fills.append(fill)
        self._ledger.append(LedgerEntry(trade_id=fill.trade_id, symbol=fill.symbol,
                                        position_idx=fill.position_idx, side=fill.side, qty=qty, price=price,
                                        realised_gross=realised, fee=fee, timestamp=now))
        filled = replace(order, qty=qty, status="Filled", filled_qty=qty, avg_price=price, updated_time=now)
        self._orders[order.order_id] = filled
        self._open.pop(order.order_id, None)
        self._emit(OrderEvent(filled, "Trade", now, fill=fill))
        self._emit(FillEvent(fill, now))
        self._emit(PositionEvent(self._position_view(order.symbol, order.position_idx), now))
        self._emit(WalletEvent(self._wallet_view(now), now))
        self._end_parent(filled, now)
        self._end_stale_reducing(order.symbol, order.position_idx, now)

    @staticmethod
    def _apply_to_slot(slot: _Slot, side: str, qty: Decimal, price: Decimal) -> Decimal:
        """Move the slot by one fill; returns the gross realised PnL of the part that closed."""
        delta = _signed(side, qty)
        size = slot.size
        if size == 0 or (size > 0) == (delta > 0):
            new_size = size + delta
            slot.entry = _round8((slot.entry * abs(size) + price * qty) / abs(new_size))
            slot.size = new_size
            return _ZERO
        closing = min(qty, abs(size))
        realised = (price - slot.entry) * closing if size > 0 else (slot.entry - price) * closing
        slot.size = size + delta
        if slot.size == 0:
            slot.entry = _ZERO
        elif (slot.size > 0) != (size > 0):  # flipped: the rest opens at the fill price
            slot.entry = price
        return realised

    def _end_stale_reducing(self, symbol: str, position_idx: int, now: int) -> None:
        """Reducing orders that can no longer reduce the slot end (flat or flipped position)."""
        for order in self._open_orders_of(symbol):
            current = self._orders[order.order_id]
            if (current.order_id not in self._open or current.position_idx != position_idx
                    or not self.is_reducing(current) or self._can_reduce(current)):
                continue
            if current.status == "Untriggered":
                self._end_order(current, "Deactivated", "Deactivated", now, reason="position_closed")
            elif current.status == "New":
                self._end_order(current, "Cancelled", "Cancelled", now, reason="position_closed")

    # -------------------------------------------------------------------------------------- state

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

    # --------------------------------------------------------------------------------- leverage

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

    def set_leverage(self, symbol: str, leverage: Decimal | int) -> Decimal:
        """Change a symbol's leverage (both slots); emits a LeverageEvent.  Returns the max notional.

        Refused (``EngineError("bad_leverage")``) unless an integer from 1 to the first bracket's
        ``initial_leverage``, and (``"leverage_exceeds_notional"``) when a slot's notional is above what
        the brackets allow at that leverage, as Binance does.
        """
        with self._mutation() as now:
            market = self._market(symbol)
            value = Decimal(leverage)
            brackets = market.config.brackets
            if value % 1 != 0 or not 1 <= value <= brackets[0].initial_leverage:
                raise EngineError("bad_leverage", f"leverage {leverage} must be an integer in "
                                                  f"1..{brackets[0].initial_leverage}")
            limit = max_notional(brackets, value)
            if any(abs(slot.size) * market.last > limit for slot in market.slots.values()):
                raise EngineError("leverage_exceeds_notional",
                                  f"a {symbol} position is above {limit}, the most leverage {value} allows")
            market.leverage = value
            positions = tuple(self._position_view(symbol, idx) for idx in self._valid_indices())
            self._emit(LeverageEvent(symbol, value, positions, self._wallet_view(self._wallet_time), now))
            return limit

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
