"""Engine events -> Bybit private rows (order, execution, position, wallet) and the state Bybit shows
that the engine does not keep; REST views of the same rows."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from gridbot.emulator.bybit._wire import (
    _FORCED_CREATE_TYPES,
    _FORCED_EXEC_TYPES,
    _TERMINAL,
    _UID,
    _ZERO,
    _cancel_type,
    _IdBook,
    _reject_reason,
    _rest_execution,
    _Row,
    _s,
    _trigger_direction,
    _uuid_like,
)
from gridbot.emulator.engine import (
    EngineConfig,
    EngineEvent,
    Fill,
    FillEvent,
    LeverageEvent,
    Order,
    OrderEvent,
    Position,
    PositionEvent,
    Prices,
    Wallet,
    WalletEvent,
)

# --------------------------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class _Push:
    """One private data push: ``kind`` is the topic family; the topic name is set per socket."""

    kind: str
    row: _Row
    timestamp: int
    push_id: str


class _Translator:
    """Engine events -> Bybit rows, plus the little state Bybit shows that the engine does not keep
    (who created a conditional, fees per order, current-position realised PnL, TP/SL per position).

    Called under the engine lock by the listener, and by REST handlers (never while they hold the engine).
    """

    def __init__(self, config: EngineConfig, ids: _IdBook) -> None:
        self._config = config
        self._ids = ids
        self._lock = threading.RLock()
        self._local = threading.local()
        self._orders: dict[int, Order] = {}
        self._origin: dict[int, tuple[str, str]] = {}
        self._fees: dict[int, Decimal] = {}
        self._closed_pnl: dict[int, Decimal] = {}
        self._last_on_created: dict[int, Decimal] = {}
        self._terminal: set[str] = set()
        self._finished: dict[str, Order] = {}  # wire id -> the engine order of its terminal push
        self._positions: dict[tuple[str, int], Position] = {}
        self._slot_created: dict[tuple[str, int], int] = {}
        self._cur_base: dict[tuple[str, int], Decimal] = {}
        self._prices: dict[str, Prices] = {}
        self._tpsl: dict[tuple[str, int, str], int] = {}
        self._executions: list[tuple[Fill, _Row]] = []  # every execution as pushed, oldest first
        self._push_seq = itertools.count(1)

    # -- origin of the next conditional order created on this thread

    @contextmanager
    def origin(self, stop_order_type: str, create_type: str) -> Iterator[None]:
        self._local.origin = (stop_order_type, create_type)
        try:
            yield
        finally:
            self._local.origin = None

    # -- events

    def on_event(self, event: EngineEvent) -> list[_Push]:
        with self._lock:
            if isinstance(event, OrderEvent):
                return self._on_order(event)
            if isinstance(event, FillEvent):
                row = self._execution_row(event)
                self._executions.append((event.fill, row))
                return [self._push("execution", row, event.timestamp)]
            if isinstance(event, PositionEvent):
                return [self._on_position(event)]
            if isinstance(event, WalletEvent):
                return [self._push("wallet", self._wallet_row(event.wallet), event.timestamp)]
            if isinstance(event, LeverageEvent):
                return self._on_leverage(event)
            self._prices[event.prices.symbol] = event.prices
            return []

    def _on_leverage(self, event: LeverageEvent) -> list[_Push]:
        """Bybit pushes the symbol's position rows (new leverage and margins); ``seq`` stays the last
        trade's, as documented for settings changes."""
        pushes = []
        for pos in event.positions:
            key = (pos.symbol, pos.position_idx)
            self._slot_created.setdefault(key, event.timestamp)
            self._positions[key] = pos
            pushes.append(self._push("position", self._position_row(pos, rest=False), event.timestamp))
        return pushes

    def _push(self, kind: str, row: _Row, timestamp: int) -> _Push:
        return _Push(kind, row, timestamp, f"{_UID}{_uuid_like('push', next(self._push_seq))}")

    def _on_order(self, event: OrderEvent) -> list[_Push]:
        order = event.order
        self._remember(order)
        if event.fill is not None:
            self._account_fill(event.fill)
        wire_id = self._ids.order_wire_id(order.order_id)
        if wire_id in self._terminal:
            return []  # e.g. the engine closing a triggered conditional after its child ended
        if order.parent_id is not None and order.order_type == "Market" and order.status == "New":
            return []  # Bybit goes Triggered -> Filled for a market conditional
        return [self._order_push(order, event.timestamp)]

    def _account_fill(self, fill: Fill) -> None:
        self._fees[fill.order_id] = self._fees.get(fill.order_id, _ZERO) + fill.fee
        if fill.realised_pnl != 0:
            self._closed_pnl[fill.order_id] = (self._closed_pnl.get(fill.order_id, _ZERO)
                                               + fill.realised_pnl - fill.fee)

    def _order_push(self, order: Order, timestamp: int) -> _Push:
        row = self._order_row(order, rest=False)
        if order.status in _TERMINAL:
            self._terminal.add(row["orderId"])
            self._finished[row["orderId"]] = order
            head = self._head(order)
            for key, engine_id in list(self._tpsl.items()):
                if engine_id == head.order_id:
                    del self._tpsl[key]
        return self._push("order", row, timestamp)

    def _remember(self, order: Order) -> None:
        self._orders[order.order_id] = order
        if order.parent_id is not None:
            self._ids.alias(order.order_id, order.parent_id)
        if order.order_id not in self._origin:
            self._origin[order.order_id] = self._new_origin(order)
            prices = self._prices.get(order.symbol)
            if prices is not None:
                self._last_on_created[order.order_id] = prices.last

    def _new_origin(self, order: Order) -> tuple[str, str]:
        if order.forced:
            return "", _FORCED_CREATE_TYPES[order.forced]
        if not order.is_conditional:
            return "", "CreateByUser"
        pending: tuple[str, str] | None = getattr(self._local, "origin", None)
        if pending is not None:
            return pending
        if order.kind == "StopLoss":
            return "StopLoss", "CreateByStopLoss"
        return "TakeProfit", "CreateByTakeProfit"

    def _on_position(self, event: PositionEvent) -> _Push:
        pos = event.position
        key = (pos.symbol, pos.position_idx)
        previous = self._positions.get(key)
        if pos.size > 0 and (previous is None or previous.size == 0):
            self._cur_base[key] = previous.cum_realised_net if previous is not None else _ZERO
        self._slot_created.setdefault(key, event.timestamp)
        self._positions[key] = pos
        return self._push("position", self._position_row(pos, rest=False), event.timestamp)

    # -- rows

    def _head(self, order: Order) -> Order:
        """The order the user sees: a triggered conditional's child shows as the conditional."""
        if order.parent_id is not None:
            return self._orders.get(order.parent_id, order)
        return order

    def _order_row(self, order: Order, *, rest: bool) -> _Row:
        head = self._head(order)
        stop_type, create_type = self._origin.get(head.order_id, ("", "CreateByUser"))
        filled = order.filled_qty
        leaves = _ZERO if order.status in _TERMINAL else order.qty - filled
        price = order.price if order.price is not None else _ZERO
        trigger = head.trigger_price if head.is_conditional else None
        by_tpsl = create_type in ("CreateByTakeProfit", "CreateByStopLoss")
        last_on_created = self._last_on_created.get(head.order_id)
        fee = self._fees.get(order.order_id, _ZERO)
        return {
            "category": "linear",
            "symbol": order.symbol,
            "orderId": self._ids.order_wire_id(order.order_id),
            "orderLinkId": head.client_order_id,
            "blockTradeId": "",
            "side": order.side,
            "positionIdx": order.position_idx,
            "orderStatus": order.status,
            "cancelType": _cancel_type(order),
            "rejectReason": _reject_reason(order),
            "timeInForce": "IOC" if order.order_type == "Market" else "GTC",
            "isLeverage": "",
            "price": _s(price),
            "qty": _s(order.qty),
            "avgPrice": _s(order.avg_price) if filled > 0 else ("0" if rest else ""),
            "leavesQty": _s(leaves),
            "leavesValue": _s(leaves * price),
            "cumExecQty": _s(filled),
            "cumExecValue": _s(filled * order.avg_price),
            "cumExecFee": _s(fee),
            "orderType": order.order_type,
            "stopOrderType": stop_type or ("UNKNOWN" if rest else ""),
            "orderIv": "",
            "triggerPrice": _s(trigger) if trigger is not None else ("0" if rest else ""),
            "takeProfit": "",
            "stopLoss": "",
            "triggerBy": "MarkPrice" if head.is_conditional else ("UNKNOWN" if rest else ""),
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": _trigger_direction(head),
            "placeType": "",
            "lastPriceOnCreated": _s(last_on_created),
            "closeOnTrigger": by_tpsl,
            "reduceOnly": head.reduce_only,
            "smpGroup": 0,
            "smpType": "None",
            "smpOrderId": "",
            "slLimitPrice": "0",
            "tpLimitPrice": "0",
            "tpslMode": "Full" if by_tpsl else "UNKNOWN",
            "createType": create_type,
            "marketUnit": "",
            "createdTime": str(head.created_time),
            "updatedTime": str(order.updated_time),
            "feeCurrency": "",
            "closedPnl": _s(self._closed_pnl.get(order.order_id, _ZERO)),
            "slippageTolerance": "0",
            "slippageToleranceType": "UNKNOWN",
            "cumFeeDetail": {self._config.coin: _s(fee)} if fee else {},
        }

    def _execution_row(self, event: FillEvent) -> _Row:
        fill = event.fill
        order = self._orders.get(fill.order_id)
        head = self._head(order) if order is not None else None
        stop_type, create_type = self._origin.get(head.order_id, ("", "CreateByUser")) if head else ("", "")
        prices = self._prices.get(fill.symbol)
        return {
            "category": "linear",
            "symbol": fill.symbol,
            "closedSize": _s(self._closed_size(fill.symbol, fill.position_idx, fill.side, fill.qty)),
            "execFee": _s(fill.fee),
            "execId": self._ids.exec_id(fill.trade_id),
            "execPrice": _s(fill.price),
            "execQty": _s(fill.qty),
            "execType": _FORCED_EXEC_TYPES.get(fill.forced, "Trade"),
            "execValue": _s(fill.price * fill.qty),
            "feeRate": _s(fill.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "blockTradeId": "",
            "markPrice": _s(prices.mark) if prices is not None else "",
            "indexPrice": "",
            "underlyingPrice": "",
            "leavesQty": _s(order.qty - order.filled_qty) if order is not None else "0",
            "orderId": self._ids.order_wire_id(fill.order_id),
            "orderLinkId": head.client_order_id if head is not None else "",
            "orderPrice": _s(order.price) if order is not None and order.price is not None else "0",
            "orderQty": _s(order.qty) if order is not None else "",
            "orderType": order.order_type if order is not None else "",
            "stopOrderType": stop_type or "UNKNOWN",
            "side": fill.side,
            "execTime": str(fill.timestamp),
            "isLeverage": "0",
            "isMaker": fill.is_maker,
            "seq": fill.seq,
            "marketUnit": "",
            "execPnl": _s(fill.realised_pnl),
            "createType": create_type,
            "extraFees": [],
            "feeCurrency": self._config.coin,
        }

    def _closed_size(self, symbol: str, position_idx: int, side: str, qty: Decimal) -> Decimal:
        before = self._positions.get((symbol, position_idx))
        if before is None or before.size == 0 or before.side == side:
            return _ZERO
        return min(qty, before.size)

    def _position_row(self, pos: Position, *, rest: bool) -> _Row:
        key = (pos.symbol, pos.position_idx)
        leverage = pos.leverage
        mark = pos.mark_price
        value = pos.size * pos.entry_price
        im = pos.initial_margin
        mm = pos.maintenance_margin
        cur = pos.cum_realised_net - self._cur_base.get(key, pos.cum_realised_net) if pos.size > 0 else _ZERO
        row: _Row = {
            "positionIdx": pos.position_idx,
            "tradeMode": 0,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": pos.symbol,
            "side": pos.side,
            "size": _s(pos.size),
            ("avgPrice" if rest else "entryPrice"): _s(pos.entry_price),
            "sessionAvgPrice": "",
            "leverage": _s(leverage),
            "breakEvenPrice": _s(pos.entry_price),
            "positionValue": _s(value),
            "positionBalance": _s(im),
            "markPrice": _s(mark),
            "positionIM": _s(im),
            "positionIMByMp": _s(im),
            "positionMM": _s(mm),
            "positionMMByMp": _s(mm),
            "takeProfit": _s(self._tpsl_trigger(pos.symbol, pos.position_idx, "TakeProfit")),
            "stopLoss": _s(self._tpsl_trigger(pos.symbol, pos.position_idx, "StopLoss")),
            "trailingStop": "0",
            "unrealisedPnl": _s(pos.unrealised_pnl),
            "curRealisedPnl": _s(cur),
            "cumRealisedPnl": _s(pos.cum_realised_net),
            "createdTime": str(self._slot_created.get(key, pos.updated_time)),
            "updatedTime": str(pos.updated_time),
            "tpslMode": "Full",
            "liqPrice": "",
            "bustPrice": "",
            "positionStatus": "Normal",
            "adlRankIndicator": 2 if pos.size > 0 else 0,
            "autoAddMargin": 0,
            "leverageSysUpdatedTime": "",
            ("mmrSysUpdateTime" if rest else "mmrSysUpdatedTime"): "",
            "seq": pos.seq,
            "isReduceOnly": False,
        }
        if not rest:
            row["category"] = "linear"
        return row

    def _tpsl_trigger(self, symbol: str, position_idx: int, kind: str) -> Decimal:
        engine_id = self._tpsl.get((symbol, position_idx, kind))
        order = self._orders.get(engine_id) if engine_id is not None else None
        if order is None or order.status != "Untriggered" or order.trigger_price is None:
            return _ZERO
        return order.trigger_price

    def _wallet_row(self, wallet: Wallet) -> _Row:
        """Account totals are the engine's (Binance-formula) figures: IM = positions' + open orders',
        MM = sum of the slots' bracket MM, rates over the margin balance."""
        im = wallet.total_initial_margin
        equity = wallet.equity
        margin_balance = wallet.margin_balance
        im_rate = (im / margin_balance).quantize(Decimal("1E-8")) if margin_balance > 0 else _ZERO
        coin = {
            "coin": wallet.coin,
            "equity": _s(equity),
            "usdValue": _s(equity),
            "walletBalance": _s(wallet.wallet_balance),
            "availableToWithdraw": _s(wallet.available_balance),
            "availableToBorrow": "",
            "borrowAmount": "0",
            "accruedInterest": "0",
            "totalOrderIM": _s(wallet.order_margin),
            "totalPositionIM": _s(wallet.initial_margin),
            "totalPositionMM": _s(wallet.maintenance_margin),
            "unrealisedPnl": _s(wallet.unrealised_pnl),
            "cumRealisedPnl": _s(wallet.wallet_balance - self._config.wallet_balance),
            "bonus": "0",
            "collateralSwitch": True,
            "marginCollateral": True,
            "locked": "0",
            "spotHedgingQty": "0",
            "spotBorrow": "0",
        }
        return {
            "accountIMRate": _s(im_rate),
            "accountIMRateByMp": _s(im_rate),
            "accountMMRate": _s(wallet.mm_rate),
            "accountMMRateByMp": _s(wallet.mm_rate),
            "totalEquity": _s(equity),
            "totalWalletBalance": _s(wallet.wallet_balance),
            "totalMarginBalance": _s(margin_balance),
            "totalAvailableBalance": _s(wallet.available_balance),
            "totalPerpUPL": _s(wallet.unrealised_pnl),
            "totalInitialMargin": _s(im),
            "totalInitialMarginByMp": _s(im),
            "totalMaintenanceMargin": _s(wallet.maintenance_margin),
            "totalMaintenanceMarginByMp": _s(wallet.maintenance_margin),
            "coin": [coin],
            "accountLTV": "0",
            "accountType": "UNIFIED",
        }

    # -- REST views (engine state read by the caller, outside this lock)

    def rest_position_rows(self, positions: list[Position]) -> list[_Row]:
        with self._lock:
            return [self._position_row(p, rest=True) for p in positions]

    def flat_position_row(self, symbol: str, position_idx: int, mark: Decimal, leverage: Decimal,
                          created: int) -> _Row:
        """A slot never traded: Bybit still lists it (symbol query) with zeros, ``seq`` -1 and the
        account's creation time (``created``: the emulator's start)."""
        with self._lock:
            return {
                "positionIdx": position_idx, "tradeMode": 0, "riskId": 1, "riskLimitValue": "2000000",
                "symbol": symbol, "side": "", "size": "0", "avgPrice": "0", "sessionAvgPrice": "",
                "leverage": _s(leverage), "breakEvenPrice": "0", "positionValue": "0",
                "positionBalance": "0", "markPrice": _s(mark), "positionIM": "0", "positionIMByMp": "0",
                "positionMM": "0", "positionMMByMp": "0",
                "takeProfit": "0", "stopLoss": "0", "trailingStop": "0", "unrealisedPnl": "0",
                "curRealisedPnl": "0", "cumRealisedPnl": "0",
                "createdTime": str(created), "updatedTime": str(created),
                "tpslMode": "Full", "liqPrice": "", "bustPrice": "", "positionStatus": "Normal",
                "adlRankIndicator": 0, "autoAddMargin": 0, "leverageSysUpdatedTime": "",
                "mmrSysUpdateTime": "", "seq": -1, "isReduceOnly": False,
            }

    def rest_wallet_row(self, wallet: Wallet) -> _Row:
        with self._lock:
            return self._wallet_row(wallet)

    def rest_order_rows(self, orders: list[Order]) -> list[_Row]:
        """Open orders as Bybit lists them: one row per wire id (a triggered conditional shows as its
        live child under the conditional's id)."""
        with self._lock:
            live_children = {o.parent_id for o in orders if o.parent_id is not None}
            rows: dict[str, _Row] = {}
            for order in orders:
                if order.is_conditional and order.order_id in live_children:
                    continue
                row = self._order_row(order, rest=True)
                rows.setdefault(row["orderId"], row)
            return list(rows.values())

    def finished_order_rows(self, symbol: str | None) -> list[_Row]:
        """Finished orders as REST rows, most recently finished first (a triggered conditional under
        its own wire id, with its child's final state)."""
        with self._lock:
            orders = [o for o in reversed(self._finished.values()) if symbol is None or o.symbol == symbol]
            return [self._order_row(order, rest=True) for order in orders]

    def execution_rows(self, keep: Callable[[Fill, _Row], bool]) -> list[tuple[Fill, _Row]]:
        """Executions as GET /v5/execution/list rows (no WS-only fields), newest first, filtered."""
        with self._lock:
            chosen = [(fill, row) for fill, row in self._executions if keep(fill, row)]
        chosen.sort(key=lambda item: (item[0].timestamp, item[0].trade_id), reverse=True)
        return [(fill, _rest_execution(row)) for fill, row in chosen]

    def find_by_link(self, symbol: str, link_id: str) -> int | None:
        with self._lock:
            for order in reversed(list(self._orders.values())):
                if (order.symbol == symbol and order.client_order_id == link_id and order.parent_id is None
                        and self._ids.order_wire_id(order.order_id) not in self._terminal):
                    return order.order_id
            return None

    def tpsl_order(self, symbol: str, position_idx: int, kind: str) -> Order | None:
        with self._lock:
            engine_id = self._tpsl.get((symbol, position_idx, kind))
            order = self._orders.get(engine_id) if engine_id is not None else None
            return order if order is not None and order.status == "Untriggered" else None

    def set_tpsl(self, symbol: str, position_idx: int, kind: str, engine_id: int) -> None:
        with self._lock:
            self._tpsl[(symbol, position_idx, kind)] = engine_id


