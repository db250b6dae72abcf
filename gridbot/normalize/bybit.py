"""Bybit v5 (linear) normalizer: private pushes, public tickers and the REST seed in, events out.

Pure: no SDK, socket, clock or logging, and no mutable module state.  The one stateful object is
:class:`TickerMerger` (``_bybit_ticker.py``, re-exported here), owned by whoever consumes one public socket.

Choices the exchange leaves open (see also each function):

* Rows whose ``category`` is not ``"linear"`` are skipped (a row without one counts as linear); the
  private stream is shared by every category.
* ``timestamp`` is the exchange's update time of the thing itself, so a push and a REST row of the same
  key compare: position/order ``updatedTime``, execution ``execTime``, ticker ``ts``; wallet pushes use the
  message's ``creationTime`` and the REST seed the response's ``time`` (they carry nothing finer).
* Errors (unknown enum value, bad number, malformed frame) raise :class:`NormalizationError` carrying the
  whole pushed message (for REST: the offending row) for the log line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, TypeVar

from gridbot.errors import NormalizationError
from gridbot.events import (
    AccountUpdate,
    Event,
    ExecType,
    FillUpdate,
    OrderStatus,
    OrderUpdate,
    PositionSide,
    PositionUpdate,
    WalletUpdate,
)
from gridbot.normalize._bybit_ticker import TickerMerger
from gridbot.normalize._bybit_wire import EXCHANGE, MALFORMED, control_frame
from gridbot.normalize._common import Ignored, dec, opt_dec, require, to_int

__all__ = [
    "EXCHANGE",
    "TickerMerger",
    "fills_from_rest",
    "orders_from_rest",
    "parse_private_message",
    "positions_from_rest",
    "wallets_from_rest",
]

_LINEAR: Final = "linear"
_ZERO: Final = Decimal(0)
_POSITION_IDXS: Final = frozenset({0, 1, 2})
_ORDER_SIDES: Final = frozenset({"Buy", "Sell"})
_ORDER_TYPES: Final = frozenset({"Limit", "Market"})
# "None" is how some API versions spell a flat position's side.
_POSITION_SIDES: Final[Mapping[str, PositionSide]] = MappingProxyType(
    {"Buy": "Buy", "Sell": "Sell", "": "", "None": ""}
)
# The v5 enum (docs/v5/enum#orderstatus) plus "Created" (accepted, not yet in the book).  Bybit has no
# "Expired": an unlisted value is an error, not a guess.  PartiallyFilledCanceled is spot-only per the
# docs; mapped anyway because "Cancelled" already means "may have filled some" on derivatives.
_ORDER_STATUS: Final[Mapping[str, OrderStatus]] = MappingProxyType(
    {
        "Created": "New",
        "New": "New",
        "PartiallyFilled": "PartiallyFilled",
        "Untriggered": "Untriggered",
        "Triggered": "Triggered",
        "Filled": "Filled",
        "Cancelled": "Cancelled",
        "PartiallyFilledCanceled": "Cancelled",
        "Rejected": "Rejected",
        "Deactivated": "Deactivated",
    }
)
_TAKE_PROFIT_STOP_ORDER_TYPES: Final = frozenset({"TakeProfit", "PartialTakeProfit"})
_TAKE_PROFIT_CREATE_TYPES: Final = frozenset({"CreateByTakeProfit", "CreateByPartialTakeProfit"})
_FILL_EXEC_TYPES: Final[Mapping[str, ExecType]] = MappingProxyType(
    {"Trade": "Trade", "BustTrade": "Liquidation", "AdlTrade": "Adl"}
)
_E = TypeVar("_E")


# ---------------------------------------------------------------------------------------------- private


def parse_private_message(msg: Mapping[str, Any]) -> list[Event] | Ignored:
    """One private-socket frame to events; ``[]`` when every row was of another category or execType.

    Topics ``position``, ``order``, ``execution`` (each also as ``<topic>.linear``) and ``wallet``.
    Op frames (auth, subscribe, pong) give ``Ignored(op)``, ``{"success", "ret_msg"}`` answers without an
    op ``Ignored("ack")``, any other topic ``Ignored(topic)``.
    """
    topic = msg.get("topic")
    if topic is None:
        return control_frame(msg)
    handler = _PRIVATE_HANDLERS.get(topic) if isinstance(topic, str) else None
    if handler is None:
        return Ignored(str(topic))
    rows = msg.get("data")
    if not isinstance(rows, list):
        raise NormalizationError(f"{topic} message without a data list", msg)
    try:
        return handler(msg, rows)
    except MALFORMED as exc:
        raise NormalizationError(f"malformed {topic} message: {exc!r}", msg) from exc


def _position_events(msg: Mapping[str, Any], rows: Sequence[Any]) -> list[Event]:
    default_ts = msg.get("creationTime")
    return [_position(row, msg, default_ts, False) for row in rows if _is_linear(row, _LINEAR)]


def _order_events(msg: Mapping[str, Any], rows: Sequence[Any]) -> list[Event]:
    default_ts = msg.get("creationTime")
    return [_order(row, msg, default_ts, False) for row in rows if _is_linear(row, _LINEAR)]


def _fill_events(msg: Mapping[str, Any], rows: Sequence[Any]) -> list[Event]:
    """``execType`` Trade, and the forced closes BustTrade ("Takeover liquidation": ``exec_type``
    "Liquidation") and AdlTrade ("Adl").  Funding, Delivery, Settle, BlockTrade, MovePosition,
    FutureSpread are skipped; what they change reaches gridbot through the position and wallet pushes.
    ``position_idx`` is always 0: executions carry none, so the stream puts in the order's
    ``positionIdx`` when it has seen that order.
    """
    return [_fill(row, msg) for row in rows if _is_fill(row) and _is_linear(row, _LINEAR)]


def _is_fill(row: Any) -> bool:
    return isinstance(row, Mapping) and row.get("execType") in _FILL_EXEC_TYPES


def _wallet_events(msg: Mapping[str, Any], rows: Sequence[Any]) -> list[Event]:
    ts = to_int(msg.get("creationTime"), "creationTime", msg)
    return _wallets(rows, msg, ts, False)


_PRIVATE_HANDLERS: Final[Mapping[str, Callable[[Mapping[str, Any], Sequence[Any]], list[Event]]]] = (
    MappingProxyType(
        {
            "position": _position_events,
            "position.linear": _position_events,
            "order": _order_events,
            "order.linear": _order_events,
            "execution": _fill_events,
            "execution.linear": _fill_events,
            "wallet": _wallet_events,
        }
    )
)


# ---------------------------------------------------------------------------------------------- rows


def _is_linear(row: Mapping[str, Any], default: str) -> bool:
    category: object = row.get("category", default)
    return category == _LINEAR


def _timestamp(row: Mapping[str, Any], key: str, default: Any, ctx: Any) -> int:
    value = row.get(key)
    if value is None or value == "":
        value = default
    return to_int(value, key, ctx)


def _position_idx(row: Mapping[str, Any], ctx: Any) -> int:
    idx = to_int(row.get("positionIdx"), "positionIdx", ctx)
    if idx in _POSITION_IDXS:
        return idx
    raise NormalizationError(f"unknown positionIdx {idx!r}", ctx)


def _dec_or_zero(value: Any, name: str, ctx: Any) -> Decimal:
    """A number Bybit leaves empty when there is nothing yet (avgPrice, unrealisedPnl, execPnl)."""
    if value is None or value == "":
        return _ZERO
    return dec(value, name, ctx)


def _position(row: Mapping[str, Any], ctx: Any, default_ts: Any, is_snapshot: bool) -> PositionUpdate:
    """A position row (push or REST).  A flat slot (size 0) always has side "", whatever the wire says;
    its entry price may be empty and is then 0.  Pushes carry ``entryPrice``, REST ``avgPrice``.
    """
    size = dec(row.get("size"), "size", ctx)
    wire_side = row.get("side", "")
    side = _POSITION_SIDES.get(wire_side) if isinstance(wire_side, str) else None
    if side is None:
        raise NormalizationError(f"unknown position side {wire_side!r}", ctx)
    if size < 0:
        raise NormalizationError(f"negative position size {size}", ctx)
    entry_wire = row.get("entryPrice")
    if entry_wire is None or entry_wire == "":
        entry_wire = row.get("avgPrice")
    entry_price = opt_dec(entry_wire, "entryPrice", ctx)
    if not size:
        side = ""
        if entry_price is None:
            entry_price = _ZERO
    elif entry_price is None:
        raise NormalizationError("open position without an entry price", ctx)
    return PositionUpdate(
        exchange=EXCHANGE,
        timestamp=_timestamp(row, "updatedTime", default_ts, ctx),
        is_snapshot=is_snapshot,
        raw=row,
        symbol=require(row, "symbol", ctx),
        position_idx=_position_idx(row, ctx),
        side=side,
        size=size,
        entry_price=entry_price,
        mark_price=opt_dec(row.get("markPrice"), "markPrice", ctx),
        unrealised_pnl=_dec_or_zero(row.get("unrealisedPnl"), "unrealisedPnl", ctx),
        cum_realised_pnl=opt_dec(row.get("cumRealisedPnl"), "cumRealisedPnl", ctx),
        seq=_seq(row.get("seq"), ctx),
    )


def _seq(value: Any, ctx: Any) -> int | None:
    """Bybit's cross sequence (a JSON number, or a string in some answers); None when absent."""
    if value is None or value == "":
        return None
    return to_int(value, "seq", ctx)


def _order(row: Mapping[str, Any], ctx: Any, default_ts: Any, is_snapshot: bool) -> OrderUpdate:
    """An order row (push or REST), regular or conditional.

    ``reduce_only``: the ``reduceOnly`` flag, ``closeOnTrigger`` (the docs: it "can only reduce your
    position"), or in hedge mode a Sell on slot 1 / a Buy on slot 2.  ``trigger_price`` is None for
    "", "0" and "0.00" (no trigger).  ``linked_order_id`` is always None: a Bybit conditional order keeps
    its id when it triggers.
    """
    wire_status = row.get("orderStatus")
    status = _ORDER_STATUS.get(wire_status) if isinstance(wire_status, str) else None
    if status is None:
        raise NormalizationError(f"unknown orderStatus {wire_status!r}", ctx)
    side = row.get("side")
    if side not in _ORDER_SIDES:
        raise NormalizationError(f"unknown order side {side!r}", ctx)
    order_type = row.get("orderType")
    if order_type not in _ORDER_TYPES:
        raise NormalizationError(f"unknown orderType {order_type!r}", ctx)
    idx = _position_idx(row, ctx)
    trigger_price = opt_dec(row.get("triggerPrice"), "triggerPrice", ctx)
    return OrderUpdate(
        exchange=EXCHANGE,
        timestamp=_timestamp(row, "updatedTime", default_ts, ctx),
        is_snapshot=is_snapshot,
        raw=row,
        symbol=require(row, "symbol", ctx),
        order_id=str(require(row, "orderId", ctx)),
        client_order_id=str(row.get("orderLinkId") or ""),
        side=side,
        order_type=order_type,
        status=status,
        price=_dec_or_zero(row.get("price"), "price", ctx),
        qty=dec(row.get("qty"), "qty", ctx),
        filled_qty=_dec_or_zero(row.get("cumExecQty"), "cumExecQty", ctx),
        avg_price=_dec_or_zero(row.get("avgPrice"), "avgPrice", ctx),
        trigger_price=trigger_price if trigger_price else None,
        reduce_only=(
            row.get("reduceOnly") is True
            or row.get("closeOnTrigger") is True
            or (idx == 1 and side == "Sell")
            or (idx == 2 and side == "Buy")
        ),
        position_idx=idx,
        is_take_profit=(
            row.get("stopOrderType") in _TAKE_PROFIT_STOP_ORDER_TYPES
            or row.get("createType") in _TAKE_PROFIT_CREATE_TYPES
        ),
        linked_order_id=None,
    )


def _fill(row: Mapping[str, Any], ctx: Any, is_snapshot: bool = False) -> FillUpdate:
    side = row.get("side")
    if side not in _ORDER_SIDES:
        raise NormalizationError(f"unknown execution side {side!r}", ctx)
    is_maker = row.get("isMaker")
    if not isinstance(is_maker, bool):
        raise NormalizationError(f"isMaker is not a boolean: {is_maker!r}", ctx)
    return FillUpdate(
        exchange=EXCHANGE,
        timestamp=to_int(row.get("execTime"), "execTime", ctx),
        raw=row,
        symbol=require(row, "symbol", ctx),
        order_id=str(require(row, "orderId", ctx)),
        trade_id=str(require(row, "execId", ctx)),
        side=side,
        price=dec(row.get("execPrice"), "execPrice", ctx),
        qty=dec(row.get("execQty"), "execQty", ctx),
        fee=dec(row.get("execFee"), "execFee", ctx),
        fee_asset=str(row.get("feeCurrency") or ""),
        realised_pnl=_dec_or_zero(row["execPnl"], "execPnl", ctx) if "execPnl" in row else None,
        is_maker=is_maker,
        position_idx=0,
        exec_type=_FILL_EXEC_TYPES[row["execType"]],
        seq=_seq(row.get("seq"), ctx),
        is_snapshot=is_snapshot,
    )


def _wallets(accounts: Sequence[Any], ctx: Any, ts: int, is_snapshot: bool) -> list[Event]:
    """Per account row: one WalletUpdate per coin row (that coin's ``walletBalance`` and ``equity``, in its
    units; Bybit sends no per-coin available balance since ``availableToWithdraw`` was deprecated), then
    one AccountUpdate from the account-wide USD fields.  "" (not applicable, e.g. isolated margin or
    portfolio margin) is None.
    """
    updates: list[Event] = []
    for account in accounts:
        for coin in account.get("coin") or ():
            updates.append(
                WalletUpdate(
                    exchange=EXCHANGE,
                    timestamp=ts,
                    is_snapshot=is_snapshot,
                    raw=coin,
                    coin=str(require(coin, "coin", ctx)),
                    wallet_balance=opt_dec(coin.get("walletBalance"), "walletBalance", ctx),
                    available_balance=None,
                    equity=opt_dec(coin.get("equity"), "equity", ctx),
                )
            )
        updates.append(_account(account, ctx, ts, is_snapshot))
    return updates


def _account(account: Mapping[str, Any], ctx: Any, ts: int, is_snapshot: bool) -> AccountUpdate:
    """The account row's totals (USD): wallet, perp uPnL, margin balance, IM, MM, available, MM rate."""
    def total(name: str) -> Decimal | None:
        return opt_dec(account.get(name), name, ctx)

    return AccountUpdate(
        exchange=EXCHANGE,
        timestamp=ts,
        is_snapshot=is_snapshot,
        raw={k: v for k, v in account.items() if k != "coin"},
        margin_coin="USD",
        wallet_balance=total("totalWalletBalance"),
        unrealised_pnl=total("totalPerpUPL"),
        margin_balance=total("totalMarginBalance"),
        initial_margin=total("totalInitialMargin"),
        maintenance_margin=total("totalMaintenanceMargin"),
        available_balance=total("totalAvailableBalance"),
        mm_rate=total("accountMMRate"),
        computed=False,
    )


# ---------------------------------------------------------------------------------------------- REST seed


def positions_from_rest(response: Mapping[str, Any]) -> list[PositionUpdate]:
    """``GET /v5/position/list`` (full pybit response).  Flat slots are kept: their ``cumRealisedPnl`` is
    the baseline of the realised-PnL tracker.  ``avgPrice`` is the entry price.
    """
    return _linear_rows(response, "position/list", lambda row, ts: _position(row, row, ts, True))


def orders_from_rest(response: Mapping[str, Any]) -> list[OrderUpdate]:
    """``GET /v5/order/realtime`` (full pybit response): open orders, conditional and TP/SL included."""
    return _linear_rows(response, "order/realtime", lambda row, ts: _order(row, row, ts, True))


def fills_from_rest(response: Mapping[str, Any]) -> list[FillUpdate]:
    """``GET /v5/execution/list`` (full pybit response; one page): the Trade, BustTrade and AdlTrade rows,
    oldest first.  The docs sort by ``execTime`` descending and warn that rows of one ``execTime`` may
    be out of order, so rows are sorted here by (``execTime``, ``seq``, ``execId``).  The REST row has
    no ``execPnl``: ``realised_pnl`` is then None.  ``position_idx`` is 0 (rows carry none).
    """
    rows, category, _response_ts = _rest_rows(response)
    try:
        fills = [_fill(row, row, True) for row in rows if _is_fill(row) and _is_linear(row, category)]
    except MALFORMED as exc:
        raise NormalizationError(f"malformed execution/list response: {exc!r}", response) from exc
    if any(not isinstance(row, Mapping) for row in rows):
        raise NormalizationError("execution/list holds a row that is not an object", response)
    fills.sort(key=lambda fill: (fill.timestamp, -1 if fill.seq is None else fill.seq, fill.trade_id))
    return fills


def wallets_from_rest(response: Mapping[str, Any]) -> list[Event]:
    """``GET /v5/account/wallet-balance`` (full pybit response): WalletUpdates per coin and one AccountUpdate
    per account row; ``timestamp`` is the response's ``time``."""
    rows, _category, response_ts = _rest_rows(response)
    try:
        return _wallets(rows, response, to_int(response_ts, "time", response), True)
    except MALFORMED as exc:
        raise NormalizationError(f"malformed wallet-balance response: {exc!r}", response) from exc


def _linear_rows(
    response: Mapping[str, Any], what: str, build: Callable[[Mapping[str, Any], Any], _E]
) -> list[_E]:
    """``build(row, response time)`` for every linear row of a REST response; a malformed row raises
    NormalizationError naming the endpoint, with the whole response."""
    rows, category, response_ts = _rest_rows(response)
    try:
        return [build(row, response_ts) for row in rows if _is_linear(row, category)]
    except MALFORMED as exc:
        raise NormalizationError(f"malformed {what} response: {exc!r}", response) from exc


def _rest_rows(response: Mapping[str, Any]) -> tuple[Sequence[Any], str, Any]:
    """``result.list``, the response's category (rows without their own inherit it) and its ``time``."""
    code = response.get("retCode")
    if code != 0:
        raise NormalizationError(f"REST error retCode={code!r} retMsg={response.get('retMsg')!r}", response)
    result = require(response, "result", response)
    rows = require(result, "list", response)
    if not isinstance(rows, list):
        raise NormalizationError("result.list is not a list", response)
    category = result.get("category") or _LINEAR
    return rows, category, response.get("time")


# ---------------------------------------------------------------------------------------------- tickers
