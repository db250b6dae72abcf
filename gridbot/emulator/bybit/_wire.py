"""Bybit wire basics: constants, number and id formatting, the retCode error, parameter parsing, the
engine-id <-> wire-id book and small row helpers."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from gridbot.emulator.engine import (
    EngineConfig,
    EngineError,
    Fill,
    Order,
    SymbolConfig,
)

PRIVATE: Final = "private"
PUBLIC: Final = "public"
_CHANNELS: Final = (PRIVATE, PUBLIC)

_Row = dict[str, Any]

_UID: Final = "100475188"
_TERMINAL: Final = frozenset({"Filled", "Cancelled", "Rejected", "Deactivated", "Expired"})
_PRIVATE_KINDS: Final = ("position", "order", "execution")
_CATEGORY_SUFFIXES: Final = ("", ".linear", ".inverse", ".option", ".spot")
_ZERO: Final = Decimal(0)
_WEEK_MS: Final = 7 * 24 * 60 * 60 * 1000
# Engine.liquidate kinds -> Bybit createType of the order / execType of its fill
_FORCED_CREATE_TYPES: Final = {"liquidation": "CreateByTakeOver_PassThrough",
                               "adl": "CreateByAdl_PassThrough"}
_FORCED_EXEC_TYPES: Final = {"liquidation": "BustTrade", "adl": "AdlTrade"}
# fields of an execution the REST list does not carry (per the field tables of both pages)
_WS_ONLY_EXECUTION_FIELDS: Final = ("category", "isLeverage", "execPnl", "marketUnit")

DEFAULT_CONFIG: Final = EngineConfig(symbols=(SymbolConfig(symbol="BTCUSDT", start_price=Decimal("60000")),))


# --------------------------------------------------------------------------------------------- helpers




def _s(value: Decimal | None) -> str:
    """Bybit sends numbers as plain decimal strings; no exponent, no trailing zeros, no ``-0``."""
    if value is None:
        return ""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _uuid_like(kind: str, number: int) -> str:
    """A UUID-shaped id that is a pure function of (kind, number): stable across runs."""
    h = hashlib.sha256(f"gridbot-bybit-emulator:{kind}:{number}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _dec(params: _Row, key: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(key)
    if raw is None or raw == "":
        if required:
            raise _RestError(10001, f"params error: {key} is required")
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise _RestError(10001, f"params error: {key} invalid") from None
    if not value.is_finite():
        raise _RestError(10001, f"params error: {key} invalid")
    return value


def _int(params: _Row, key: str, default: int) -> int:
    raw = params.get(key, default)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise _RestError(10001, f"params error: {key} invalid") from None


class _RestError(Exception):
    """A Bybit rejection: ``retCode``/``retMsg`` in the envelope (HTTP 200 unless said otherwise)."""

    def __init__(self, ret_code: int, ret_msg: str, http_status: int = 200) -> None:
        super().__init__(ret_msg)
        self.ret_code = ret_code
        self.ret_msg = ret_msg
        self.http_status = http_status


# engine error code -> (retCode, retMsg)
_ENGINE_ERRORS: Final[dict[str, tuple[int, str]]] = {
    "unknown_symbol": (10001, "params error: symbol invalid"),
    "unknown_order": (110001, "order not exists or too late to cancel"),
    "order_not_open": (110001, "order not exists or too late to cancel"),
    "bad_qty": (10001, "params error: qty invalid"),
    "bad_price": (10001, "params error: price invalid"),
    "bad_side": (10001, "params error: side invalid"),
    "bad_order_type": (10001, "params error: orderType invalid"),
    "reduce_only_rejected": (110017, "Reduce-only rule not satisfied"),
    "insufficient_balance": (110007, "ab not enough for new order"),
    "min_notional": (110094, "Order does not meet minimum order value"),
    "bad_leverage": (10001, "leverage invalid"),
    "leverage_exceeds_notional": (110013, "cannot set leverage, due to risk limit"),
    "bad_position_idx": (10001, "position idx not match position mode"),
    "duplicate_client_order_id": (110072, "OrderLinkedID is duplicate"),
    "would_immediately_trigger": (110092, "trigger_price is already crossed by the current price"),
    "missing_id": (10001, "params error: orderId or orderLinkId is required"),
    "position_or_order_exists": (110024, "You have an existing position, so position mode cannot be changed"),
}


def _rest_error_from(error: EngineError) -> _RestError:
    ret_code, ret_msg = _ENGINE_ERRORS.get(error.code, (10001, f"params error: {error.code}"))
    return _RestError(ret_code, ret_msg)


# --------------------------------------------------------------------------------------------- ids


class _IdBook:
    """Engine int ids <-> Bybit UUID-shaped strings.  A triggered conditional's child is an alias of its
    parent: Bybit shows one order id for the whole life of a conditional."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._to_engine: dict[str, int] = {}
        self._alias: dict[int, int] = {}

    def order_wire_id(self, engine_id: int) -> str:
        with self._lock:
            root = self._alias.get(engine_id, engine_id)
            wire = _uuid_like("order", root)
            self._to_engine[wire] = root
            return wire

    def alias(self, child_id: int, parent_id: int) -> None:
        with self._lock:
            self._alias[child_id] = self._alias.get(parent_id, parent_id)

    def engine_id(self, wire_id: str) -> int | None:
        with self._lock:
            return self._to_engine.get(wire_id)

    @staticmethod
    def exec_id(trade_id: int) -> str:
        return _uuid_like("exec", trade_id)

    @staticmethod
    def cursor(fill: Fill) -> str:
        """An execution/list page cursor: the (execTime, id) of the page's last row, Bybit-like text."""
        return f"{fill.trade_id}%3A{fill.timestamp}%2C{fill.trade_id}%3A{fill.timestamp}"

    @staticmethod
    def trade_id_of_cursor(cursor: str) -> tuple[int, int] | None:
        """(execTime, trade id) of a cursor, whether the client sent it as is or URL-decoded it once."""
        first = cursor.replace("%3A", ":").replace("%2C", ",").split(",")[0]
        trade_id, _, timestamp = first.partition(":")
        if not trade_id.isdigit() or not timestamp.isdigit():
            return None
        return int(timestamp), int(trade_id)


def _rest_execution(row: _Row) -> _Row:
    rest = {k: v for k, v in row.items() if k not in _WS_ONLY_EXECUTION_FIELDS}
    rest["extraFees"] = ""  # the REST example sends a string, the socket a list
    return rest


def _execution_window(params: _Row, now: int) -> tuple[int, int]:
    """execution/list's documented time rules: 7 days by default, from/to one bound, at most 7 days."""
    start_raw, end_raw = params.get("startTime"), params.get("endTime")
    start = _int(params, "startTime", 0) if start_raw not in (None, "") else None
    end = _int(params, "endTime", 0) if end_raw not in (None, "") else None
    if start is not None and end is not None:
        if end < start or end - start > _WEEK_MS:
            raise _RestError(10001, "params error: The time range between startTime and endTime "
                                    "cannot exceed 7 days")
        return start, end
    if start is not None:
        return start, start + _WEEK_MS
    if end is not None:
        return end - _WEEK_MS, end
    return now - _WEEK_MS, now


def _matching_ids(rows: list[_Row], params: _Row) -> list[_Row]:
    """The rows matching the ``orderId`` / ``orderLinkId`` filters that are present."""
    for key in ("orderId", "orderLinkId"):
        if params.get(key):
            rows = [r for r in rows if r[key] == params[key]]
    return rows


def _cancel_type(order: Order) -> str:
    if order.status == "Deactivated":
        return "CancelByTpSlTsClear"
    if order.status == "Cancelled":
        return "CancelByReduceOnly" if order.reason == "position_closed" else "CancelByUser"
    return "UNKNOWN"


def _reject_reason(order: Order) -> str:
    if order.status == "Cancelled" and not order.reason:
        return "EC_PerCancelRequest"
    if order.reason == "post_only_would_take":
        return "EC_PostOnlyWillTakeLiquidity"
    if order.reason == "insufficient_balance":
        return "EC_InsufficientMargin"
    return "EC_NoError"


def _trigger_direction(order: Order) -> int:
    """1: triggers when the price rises to triggerPrice, 2: when it falls (0: not conditional)."""
    if not order.is_conditional:
        return 0
    rises = (order.kind == "TakeProfit") == (order.side == "Sell")
    return 1 if rises else 2


