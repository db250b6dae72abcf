"""Binance wire basics: constants, number formatting, the error answer, request-parameter parsing."""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import web

from gridbot.emulator.engine import (
    EngineError,
)

PRIVATE: Final = "private"
PUBLIC: Final = "public"
_CHANNELS: Final = (PRIVATE, PUBLIC)

LISTEN_KEY_VALIDITY_MS: Final = 60 * 60 * 1000
_DEFAULT_RECV_WINDOW: Final = 5000
_MAX_RECV_WINDOW: Final = 60000
_FUTURE_TOLERANCE_MS: Final = 1000
_KEY_CHECK_INTERVAL: Final = 0.5
_WEEK_MS: Final = 7 * 24 * 60 * 60 * 1000

_PS_BY_IDX: Final[Mapping[int, str]] = {0: "BOTH", 1: "LONG", 2: "SHORT"}
_SIDE_TO_WIRE: Final[Mapping[str, str]] = {"Buy": "BUY", "Sell": "SELL"}
_SIDE_FROM_WIRE: Final[Mapping[str, str]] = {"BUY": "Buy", "SELL": "Sell"}
_ALGO_TYPES: Final[Mapping[str, tuple[str, str]]] = {  # wire type -> (engine kind, engine order type)
    "TAKE_PROFIT_MARKET": ("TakeProfit", "Market"),
    "TAKE_PROFIT": ("TakeProfit", "Limit"),
    "STOP_MARKET": ("StopLoss", "Market"),
    "STOP": ("StopLoss", "Limit"),
}
_CONDITIONAL_WIRE_TYPES: Final = frozenset({*_ALGO_TYPES, "TRAILING_STOP_MARKET"})
_TIME_IN_FORCE: Final = frozenset({"GTC", "IOC", "FOK", "GTX", "GTD"})
_CLIENT_ID_RE: Final = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_KEY_ALPHABET: Final = string.ascii_letters + string.digits

# engine error code -> (HTTP status, Binance code, Binance message)
_ENGINE_ERRORS: Final[Mapping[str, tuple[int, int, str]]] = {
    "unknown_symbol": (400, -1121, "Invalid symbol."),
    "unknown_order": (400, -2011, "Unknown order sent."),
    "bad_qty": (400, -1111, "Precision is over the maximum defined for this asset."),
    "bad_price": (400, -4014, "Price not increased by tick size."),
    "bad_side": (400, -1117, "Invalid side."),
    "bad_order_type": (400, -1116, "Invalid orderType."),
    "reduce_only_rejected": (400, -2022, "ReduceOnly Order is rejected."),
    "insufficient_balance": (400, -2019, "Margin is insufficient."),
    "min_notional": (400, -4164, "Order's notional must be no smaller than the minimum notional "
                                 "(unless you choose reduce only)."),
    "bad_position_idx": (400, -4061, "Order's position side does not match user's setting."),
    "would_immediately_trigger": (400, -2021, "Order would immediately trigger."),
}
_POST_ONLY_REJECTED: Final = (
    400,
    -5022,
    "Due to the order could not be executed as maker, the Post Only order will be rejected.",
)
# why the engine ended a triggered conditional without a child -> ALGO_UPDATE ``rm``
_ALGO_REJECT_REASONS: Final[Mapping[str, str]] = {
    "reduce_only_rejected": "Reduce Only reject",
    "position_closed": "Reduce Only reject",
    "insufficient_balance": "Margin is insufficient",
}


# --------------------------------------------------------------------------------------------- wire helpers


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SignedHandler = Callable[[dict[str, str]], Any]


def _fmt(value: Decimal | None) -> str:
    """Binance sends numbers as plain decimal strings, never exponents; zero and None are "0"."""
    if value is None or value == 0:
        return "0"
    return format(value, "f")


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))




def _new_listen_key() -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(64))


def _new_client_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(22))


class _ApiError(Exception):
    """A Binance error answer: ``{"code": -1022, "msg": "..."}`` with its HTTP status."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg

    def response(self) -> web.Response:
        return _json({"code": self.code, "msg": self.msg}, status=self.status)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(payload), status=status, content_type="application/json")


def _mandatory(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise _malformed(name)
    return value


def _malformed(name: str) -> _ApiError:
    return _ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _not_required(name: str) -> _ApiError:
    return _ApiError(400, -1106, f"Parameter '{name}' sent when not required.")


def _decimal_param(params: Mapping[str, str], name: str) -> Decimal:
    raw = _mandatory(params, name)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _malformed(name) from None
    if not value.is_finite():
        raise _malformed(name)
    return value


def _bool_param(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise _malformed(name)
    return raw == "true"


def _int_param(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise _malformed(name)
        return default
    try:
        return int(raw)
    except ValueError:
        raise _ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _engine_error(exc: EngineError) -> _ApiError:
    status, code, msg = _ENGINE_ERRORS.get(str(exc.code), (400, -1000, str(exc.message)))
    return _ApiError(status, code, msg)


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """Split a raw urlencoded string into (everything but ``signature``, the signature)."""
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&") if raw else ():
        if part.startswith("signature="):
            signature = unquote(part[len("signature=") :])
        else:
            kept.append(part)
    return "&".join(kept), signature


