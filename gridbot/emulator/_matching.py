"""The order flow of the engine: validation, matching, conditional triggers and fills with their
accounting (see :mod:`gridbot.emulator.engine` for the semantics).

Runs under the engine lock, called by the engine's public mutations; emits through ``_emit``.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from gridbot.emulator._model import (
    EngineError,
    Fill,
    FillEvent,
    LedgerEntry,
    Order,
    OrderEvent,
    PositionEvent,
    WalletEvent,
)
from gridbot.emulator._state import (
    _ZERO,
    BUY,
    LIMIT,
    MARKET,
    SELL,
    TAKE_PROFIT,
    EngineState,
    _round8,
    _signed,
    _Slot,
)

__all__ = ["Matching"]


class Matching(EngineState):
    """Validation, matching, triggers and fills on top of :class:`EngineState`."""

    # ------------------------------------------------------------------------------------------ validation

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

    # -------------------------------------------------------------------------------------------- matching

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
