"""Engine events -> Binance user-data frames (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, ALGO_UPDATE,
ACCOUNT_CONFIG_UPDATE) and mark-price items, in engine order."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gridbot.emulator.binance._market import _DayStats, mini_ticker_event, ticker_event
from gridbot.emulator.binance._payloads import (
    _default_meta,
    _mark_price_data,
    _order_status,
    _OrderMeta,
    _signed_amount,
)
from gridbot.emulator.binance._sockets import (
    _MarketItem,
)
from gridbot.emulator.binance._wire import (
    _ALGO_REJECT_REASONS,
    _PS_BY_IDX,
    _SIDE_TO_WIRE,
    PRIVATE,
    PUBLIC,
    _dumps,
    _fmt,
)
from gridbot.emulator.engine import (
    EngineEvent,
    Fill,
    FillEvent,
    LeverageEvent,
    Order,
    OrderEvent,
    Position,
    PositionEvent,
    PriceEvent,
    Wallet,
    WalletEvent,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- engine events -> frames


class _Translator:
    """Turns engine events into Binance user-data frames and mark-price items, in engine order.

    Called synchronously by the engine under its lock; never calls back into the engine.  A fill comes
    as OrderEvent("Trade", fill) -> FillEvent -> PositionEvent(s) -> WalletEvent: the TRADE frame is sent
    at the OrderEvent, the changed slots wait for the WalletEvent and go out as one ACCOUNT_UPDATE.
    """

    def __init__(self, sink: Callable[[list[tuple[str, Any]]], None],
                 start_prices: dict[str, Decimal]) -> None:
        self._day = {symbol: _DayStats.starting_at(price) for symbol, price in start_prices.items()}
        self._sink = sink
        self._lock = threading.RLock()
        self._pending_meta: dict[str, _OrderMeta] = {}
        self._meta: dict[int, _OrderMeta] = {}
        self._new_sent: set[int] = set()
        self._expire_on_cancel: set[int] = set()
        self._last: dict[int, Order] = {}  # latest copy of every conditional and child order seen
        self._child_of: dict[int, int] = {}  # algo id -> id of the regular order it placed
        self._trigger_time: dict[int, int] = {}
        self._pending_positions: dict[tuple[str, int], Position] = {}

    # ---- bookkeeping shared with the REST side

    def day_stats(self, symbol: str) -> _DayStats:
        """A copy of the symbol's 24-hour figures as last pushed."""
        with self._lock:
            stats = self._day[symbol]
            return _DayStats(stats.open_price, stats.high, stats.low, stats.last)

    def expect(self, meta: _OrderMeta) -> None:
        """Register what a REST request said about the order the engine is about to create."""
        with self._lock:
            self._pending_meta[meta.client_id] = meta

    def forget_expected(self, client_id: str) -> None:
        with self._lock:
            self._pending_meta.pop(client_id, None)

    def expire_on_cancel(self, order_id: int) -> None:
        """The next cancel of this order is an IOC/FOK expiry: report it as EXPIRED."""
        with self._lock:
            self._expire_on_cancel.add(order_id)

    def meta(self, order: Order) -> _OrderMeta:
        with self._lock:
            return self._meta_locked(order)

    def is_expired(self, order_id: int) -> bool:
        with self._lock:
            return order_id in self._expire_on_cancel

    def algo_child(self, algo_id: int) -> tuple[int | None, int]:
        """(id of the regular order a triggered algo placed, trigger time) as the stream reported them."""
        with self._lock:
            return self._child_of.get(algo_id), self._trigger_time.get(algo_id, 0)

    def _meta_locked(self, order: Order) -> _OrderMeta:
        meta = self._meta.get(order.order_id)
        if meta is None:
            meta = self._pending_meta.pop(order.client_order_id, None) if order.client_order_id else None
            if meta is None or meta.is_algo != order.is_conditional:
                meta = self._child_meta(order) or _default_meta(order)
            self._meta[order.order_id] = meta
        return meta

    def _child_meta(self, order: Order) -> _OrderMeta | None:
        """A triggered algo's order: LIMIT/MARKET, the algo's client id and time in force."""
        parent = self._last.get(order.parent_id) if order.parent_id is not None else None
        if parent is None:
            return None
        parent_meta = self._meta_locked(parent)
        return _OrderMeta(
            client_id=order.client_order_id or parent_meta.client_id,
            wire_type=order.order_type.upper(),
            time_in_force=parent_meta.time_in_force,
            working_type=parent_meta.working_type,
            price_protect=parent_meta.price_protect,
            wire_reduce_only=parent_meta.wire_reduce_only,
        )

    # ---- the engine listener

    def on_event(self, event: EngineEvent) -> None:
        frames: list[tuple[str, Any]] = []
        try:
            with self._lock:
                self._handle(event, frames)
        except Exception:
            logger.exception("binance emulator: could not translate %s", type(event).__name__)
        if frames:
            self._sink(frames)

    def _handle(self, event: EngineEvent, frames: list[tuple[str, Any]]) -> None:
        if isinstance(event, FillEvent):
            return  # already reported by the OrderEvent("Trade") that carries the same fill
        if isinstance(event, PositionEvent):
            pos = event.position
            self._pending_positions[(pos.symbol, pos.position_idx)] = pos
            return
        if isinstance(event, WalletEvent):
            frames.append((PRIVATE, _dumps(self._account_update(event.wallet, event.timestamp))))
            return
        self._flush_positions(frames)
        if isinstance(event, OrderEvent):
            if event.order.is_conditional:
                self._on_algo(event, frames)
            else:
                self._on_order(event, frames)
        elif isinstance(event, PriceEvent):
            prices = event.prices
            frames.append((PUBLIC, _MarketItem.mark_price(prices.symbol, _mark_price_data(prices))))
            stats = self._day.setdefault(prices.symbol, _DayStats.starting_at(prices.last))
            stats.update(prices.last)
            frames.append((PUBLIC, _MarketItem.ticker(prices.symbol, ticker_event(prices, stats))))
            frames.append((PUBLIC, _MarketItem.mini_ticker(prices.symbol, mini_ticker_event(prices, stats))))
        elif isinstance(event, LeverageEvent):
            config = {"e": "ACCOUNT_CONFIG_UPDATE", "E": event.timestamp, "T": event.timestamp,
                      "ac": {"s": event.symbol, "l": int(event.leverage)}}
            frames.append((PRIVATE, _dumps(config)))

    def _flush_positions(self, frames: list[tuple[str, Any]]) -> None:
        """Slots changed without a wallet change (not expected from the engine): report them alone."""
        if self._pending_positions:
            last = max(p.updated_time for p in self._pending_positions.values())
            frames.append((PRIVATE, _dumps(self._account_update(None, last))))

    def _account_update(self, wallet: Wallet | None, timestamp: int) -> dict[str, Any]:
        positions, self._pending_positions = list(self._pending_positions.values()), {}
        balances = []
        if wallet is not None:
            wb = _fmt(wallet.wallet_balance)
            balances.append({"a": wallet.coin, "wb": wb, "cw": wb, "bc": "0"})
        return {
            "e": "ACCOUNT_UPDATE",
            "E": timestamp,
            "T": timestamp,
            "a": {"m": "ORDER", "B": balances, "P": [_position_row(p) for p in positions]},
        }

    def _on_order(self, event: OrderEvent, frames: list[tuple[str, Any]]) -> None:
        order, kind = event.order, event.exec_type
        if order.parent_id is not None:
            self._last[order.order_id] = order
        if order.order_id not in self._new_sent:
            if kind == "Rejected":
                return  # never accepted: Binance answers the request with an error and pushes nothing
            self._new_sent.add(order.order_id)
            frames.append((PRIVATE, _dumps(self._order_update(order, "NEW", event.timestamp, fresh=True))))
            self._announce_child(order, event.timestamp, frames)
        if kind == "New":
            return
        if kind == "Trade":
            exec_type = "CALCULATED" if order.forced else "TRADE"  # CALCULATED: liquidation / ADL fill
            update = self._order_update(order, exec_type, event.timestamp, event.fill)
            frames.append((PRIVATE, _dumps(update)))
        elif kind == "Cancelled":
            exec_type = "EXPIRED" if order.order_id in self._expire_on_cancel else "CANCELED"
            frames.append((PRIVATE, _dumps(self._order_update(order, exec_type, event.timestamp))))
        elif kind in ("Expired", "Rejected", "Deactivated"):
            frames.append((PRIVATE, _dumps(self._order_update(order, "EXPIRED", event.timestamp))))
        else:
            logger.warning("binance emulator: regular order event %r not translated", kind)

    def _announce_child(self, child: Order, timestamp: int, frames: list[tuple[str, Any]]) -> None:
        """A triggered algo's regular order exists: ALGO_UPDATE TRIGGERED with ``ai`` = its id."""
        parent = self._last.get(child.parent_id) if child.parent_id is not None else None
        if parent is None:
            return
        self._child_of[parent.order_id] = child.order_id
        self._trigger_time.setdefault(parent.order_id, timestamp)
        frames.append((PRIVATE, _dumps(self._algo_update(parent, "TRIGGERED", timestamp))))

    def _on_algo(self, event: OrderEvent, frames: list[tuple[str, Any]]) -> None:
        order, kind = event.order, event.exec_type
        self._last[order.order_id] = order
        reason = ""
        if kind == "New":
            status = "NEW"
        elif kind == "Triggered":
            self._trigger_time[order.order_id] = event.timestamp
            status = "TRIGGERING"
        elif kind == "Filled":
            status = "FINISHED"
        elif kind == "Cancelled" and order.order_id in self._child_of:
            status = "FINISHED"  # its order ended unfilled: the algo's own work is done
        elif kind in ("Cancelled", "Deactivated"):
            status = "CANCELED"
            reason = _ALGO_REJECT_REASONS.get(order.reason, "") if order.reason else ""
        elif kind in ("Rejected", "Expired"):
            status = "REJECTED" if kind == "Rejected" else "EXPIRED"
        else:
            logger.warning("binance emulator: conditional order event %r not translated", kind)
            return
        frames.append((PRIVATE, _dumps(self._algo_update(order, status, event.timestamp, reason))))

    # ---- frame builders

    def _order_update(self, order: Order, exec_type: str, timestamp: int, fill: Fill | None = None,
                      *, fresh: bool = False) -> dict[str, Any]:
        meta = self._meta_locked(order)
        parent = self._last.get(order.parent_id) if order.parent_id is not None else None
        parent_meta = self._meta_locked(parent) if parent is not None else None
        if fresh:
            status = "NEW"
        elif exec_type == "EXPIRED":
            status = "EXPIRED"
        else:
            status = _order_status(order, expired=False)
        zero = Decimal(0)
        body: dict[str, Any] = {
            "s": order.symbol,
            "c": meta.client_id,
            "S": _SIDE_TO_WIRE[order.side],
            "o": meta.wire_type,
            "f": meta.time_in_force,
            "q": _fmt(order.qty),
            "p": _fmt(order.price),
            "ap": _fmt(zero if fresh else order.avg_price),
            "sp": _fmt(parent.trigger_price if parent is not None else order.trigger_price),
            "x": exec_type,
            "X": status,
            "i": order.order_id,
            "l": _fmt(fill.qty if fill else zero),
            "z": _fmt(zero if fresh else order.filled_qty),
            "L": _fmt(fill.price if fill else zero),
            "T": timestamp,
            "t": fill.trade_id if fill else 0,
            "b": "0",
            "a": "0",
            "m": fill.is_maker if fill else False,
            "R": meta.wire_reduce_only,
            "wt": meta.working_type,
            "ot": parent_meta.wire_type if parent_meta else meta.wire_type,
            "ps": _PS_BY_IDX[order.position_idx],
            "cp": False,
            "pP": meta.price_protect,
            "si": 0,
            "ss": 0,
            "rp": _fmt(fill.realised_pnl if fill else zero),
            "V": "EXPIRE_MAKER",
            "pm": "NONE",
            "gtd": 0,
        }
        if fill is not None:
            body["N"] = "USDT"
            body["n"] = _fmt(fill.fee)
        return {"e": "ORDER_TRADE_UPDATE", "E": timestamp, "T": timestamp, "o": body}

    def _algo_update(self, order: Order, status: str, timestamp: int, reason: str = "") -> dict[str, Any]:
        meta = self._meta_locked(order)
        child_id = self._child_of.get(order.order_id)
        child = self._last.get(child_id) if child_id is not None else None
        body: dict[str, Any] = {
            "caid": meta.client_id,
            "aid": order.order_id,
            "at": "CONDITIONAL",
            "o": meta.wire_type,
            "s": order.symbol,
            "S": _SIDE_TO_WIRE[order.side],
            "ps": _PS_BY_IDX[order.position_idx],
            "f": meta.time_in_force,
            "q": _fmt(order.qty),
            "X": status,
            "ai": str(child_id) if child_id is not None else "",
            "ap": _fmt(child.avg_price if child else None),
            "aq": _fmt(child.filled_qty if child else None),
            "act": child.order_type.upper() if child else "0",
            "tp": _fmt(order.trigger_price),
            "p": _fmt(order.price),
            "V": "EXPIRE_MAKER",
            "wt": meta.working_type,
            "pm": "NONE",
            "cp": False,
            "pP": meta.price_protect,
            "R": meta.wire_reduce_only,
            "tt": self._trigger_time.get(order.order_id, 0),
            "gtd": 0,
        }
        if reason:
            body["rm"] = reason
        return {"e": "ALGO_UPDATE", "T": timestamp, "E": timestamp, "o": body}


def _position_row(position: Position) -> dict[str, Any]:
    return {
        "s": position.symbol,
        "pa": _fmt(_signed_amount(position)),
        "ep": _fmt(position.entry_price),
        "bep": _fmt(position.entry_price),
        "cr": _fmt(position.cum_realised_gross),
        "up": _fmt(position.unrealised_pnl),
        "mt": "cross",
        "iw": "0",
        "ps": _PS_BY_IDX[position.position_idx],
    }


