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
re-exported here; the state and its views are in :mod:`gridbot.emulator._state`, the order flow
(validation, matching, triggers, fills) in :mod:`gridbot.emulator._matching`, the margin arithmetic in
:mod:`gridbot.emulator.margin`; this module holds the public mutations.

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

from dataclasses import replace
from decimal import Decimal

from gridbot.emulator._matching import Matching
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
from gridbot.emulator._state import (
    _ZERO,
    BUY,
    LIMIT,
    MARKET,
    SELL,
    STOP_LOSS,
    TAKE_PROFIT,
    _Market,
    _to_tick,
)
from gridbot.emulator.margin import LeverageBracket, max_notional

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


class Engine(Matching):
    """Matching and accounting for a single cross-margin account; see the module docstring."""

    # ---------------------------------------------------------------------------------------------- market

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

    # ---------------------------------------------------------------------------------------- account mode

    def set_hedge_mode(self, hedge: bool) -> None:
        with self._mutation():
            if hedge == self._hedge:
                return
            has_position = any(slot.size != 0 for m in self._markets.values() for slot in m.slots.values())
            if has_position or self._open:
                raise EngineError("position_or_order_exists",
                                  "position mode can only change with no position and no open order")
            self._hedge = hedge

    # --------------------------------------------------------------------------------------------- trading

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

    # -------------------------------------------------------------------------------------------- leverage

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
