"""Loopback Binance USDⓈ-M futures exchange for the unmodified python-binance SDK (1.0.37).

Point the SDK at it by overriding its URL attributes: ``Client.API_URL = rest + "/api"``,
``Client.FUTURES_URL = rest + "/fapi"`` (also on ``AsyncClient``, which ThreadedWebsocketManager builds), and
``BinanceSocketManager.FSTREAM_URL = ws + "/"``; ``BinanceEmulator.endpoints`` gives ``rest`` and ``ws``.
Behind it is :class:`gridbot.emulator.engine.Engine` (matching and accounting); this module is only the
wire: REST, WebSockets, Binance field names and error codes, and failure injection (:class:`BinanceFaults`).

Served
------
REST (JSON; errors ``{"code": -NNNN, "msg": ...}`` with Binance's HTTP status):

- public: ``GET /api/v3/ping``, ``GET /api/v3/time`` (the SDK calls both when it starts),
  ``GET /fapi/v1/ping``, ``GET /fapi/v1/time``, ``GET /fapi/v1/exchangeInfo`` (PRICE_FILTER/LOT_SIZE only);
- user stream (``X-MBX-APIKEY`` required, unsigned): ``POST|PUT|DELETE /fapi/v1/listenKey``;
- signed (API key -2014/-2015, ``timestamp``/``recvWindow`` -1021, HMAC-SHA256 ``signature`` -1022,
  missing parameters -1102): ``GET /fapi/v3/positionRisk``, ``GET /fapi/v3/balance`` (and v2),
  ``GET /fapi/v1/openOrders``, ``GET /fapi/v1/openAlgoOrders``, ``GET|POST|DELETE /fapi/v1/order``,
  ``DELETE /fapi/v1/allOpenOrders``, ``GET|POST|DELETE /fapi/v1/algoOrder``,
  ``DELETE /fapi/v1/algoOpenOrders``, ``GET|POST /fapi/v1/positionSide/dual``,
  ``GET /fapi/v1/userTrades`` (below), ``GET /fapi/v1/leverageBracket`` (JSON numbers; a list, one
  object with ``symbol``), ``POST /fapi/v1/leverage`` (-4028 invalid, -2027 above the brackets' cap;
  pushes ACCOUNT_CONFIG_UPDATE ``ac`` {s, l}), ``GET /fapi/v2/account`` and ``/fapi/v3/account`` (the
  engine's totals, single-asset mode; v3 lists slots with a position or open-order margin, v2 all).
- ``GET /fapi/v1/userTrades`` (Account-Trade-List): ``symbol`` required; ``orderId``; ``fromId`` (that
  trade and later ones; with ``startTime``/``endTime`` -1128); ``startTime``/``endTime`` at most 7 days
  apart (-1127), neither = the last 7 days of the injected clock; ``limit`` 1..1000, default 500 (outside:
  -1130).  Rows ascending by ``id``; with ``startTime`` the oldest ``limit`` of the window, otherwise the
  most recent ``limit``.  ⚠ Undocumented, decided here: only ``startTime`` = 7 days from it, only
  ``endTime`` = 7 days up to it (Bybit's documented rule); ``commission`` is positive like the stream's
  ``n`` (the docs' example shows a negative one); error codes -1127/-1128/-1130 are Binance's generic
  ones; no 6-month limit.
- order rejections: -2022 reduce-only, -2019 margin, -4061 position side, -1106 ``reduceOnly`` in hedge mode,
  -5022 post-only (GTX) would take, -2021 conditional would trigger at once, -4120 conditional type sent to
  ``/order``, -1111 quantity step, -4014 price tick, -1121 symbol, -2011/-2013 unknown order,
  -4116 duplicate client id, -4059/-4067/-4068 position-mode changes, -4164 an opening order below the
  symbol's minimum notional (reduce-only: any size).

WebSockets (aiohttp answers client pings):

- user data: ``/private/ws?listenKey=K`` (also ``/private/ws/K`` and the legacy ``/ws/K``):
  ORDER_TRADE_UPDATE (x NEW/TRADE/CANCELED/EXPIRED/CALCULATED), ACCOUNT_UPDATE (a delta: the changed
  slots and the USDT balance; ``cr`` = the slot's cumulative realised PnL before fees, ``pa`` signed, ``ps``
  BOTH/LONG/SHORT), ALGO_UPDATE (NEW -> TRIGGERING -> TRIGGERED with ``ai`` = str(id of the placed
  order) -> FINISHED; CANCELED), ``listenKeyExpired`` (``E`` a string, as in the docs) then close 1000.
  A triggered algo's order is a regular order (``o`` LIMIT/MARKET, ``ot`` the algo type, ``sp`` its
  trigger), announced by its ORDER_TRADE_UPDATE NEW, then ALGO_UPDATE TRIGGERED.
- market: ``/market/stream?streams=a/b`` (combined ``{"stream","data"}`` frames), ``/market/ws/<stream>``
  and ``/ws/<stream>`` (raw frames), ``/stream?streams=``; ``SUBSCRIBE``/``UNSUBSCRIBE`` answered
  ``{"result": null, "id": N}``, ``LIST_SUBSCRIPTIONS`` with the list.  ``<sym>@markPrice@1s`` and
  ``<sym>@markPrice`` carry markPriceUpdate (e, E, s, p, ap, i, P, r, T) after every engine price change:
  each ``price_interval`` (an ``engine.step()``; settable while running, 0.05 s in tests; 0: no walk)
  and each ``engine.set_price``.

Forced closes (``engine.liquidate(symbol, position_idx, price, kind)``): ORDER_TRADE_UPDATE x NEW / X NEW,
then x CALCULATED / X FILLED with the fill (``t``, ``l``, ``L``, ``z``, ``ap``, ``rp``, ``n``, ``N``), both
with ``o`` LIQUIDATION, ``f`` IOC and ``c`` "autoclose-<time><id>" (liquidation) or "adl_autoclose" (ADL),
then the ACCOUNT_UPDATE; the fill is listed by userTrades.  ⚠ Docs leave open which fill fields a CALCULATED
event carries and whether these fills are in userTrades: the emulator sets all of them and lists them.

Frames to one socket are sent in engine event order: the engine listener (under the engine lock, on any
thread) translates each event at once and hands the frames to the server loop with
``call_soon_threadsafe``; one queue and one sender task per socket.

Known differences from the real exchange
----------------------------------------
- Matching is the engine's: full fills only (never PARTIALLY_FILLED), no order book or slippage, a
  marketable limit fills at its own price, no funding, no automatic liquidation or ADL (a test calls
  ``engine.liquidate``), no leverage/margin-type changes;
  triggers use the engine's mark (= last = index) whatever ``workingType`` says (it is echoed only).
- Order and algo ids share one engine counter (Binance uses separate id spaces); trade ids are ints.
- Only HMAC keys (no RSA/Ed25519).  The signature is checked over the raw ``query + body`` with the
  ``signature`` parameter removed, as Binance documents.  ``timestamp`` is checked against the wall clock
  (what the SDK signs with), not the injected ``clock``; ``recvWindow`` above 60000 is -1131.  A missing
  API key is -2014 (HTTP 401).  No rate limits, weights or ``X-MBX-USED-WEIGHT`` headers.
- ``/fapi/v1/order`` takes LIMIT and MARKET only; TRAILING_STOP_MARKET is not supported (-1116),
  ``closePosition`` is refused (-1106), ``priceMatch``, ``selfTradePreventionMode``, ``goodTillDate``
  and ``priceProtect`` are accepted and echoed only; GTD acts as GTC; IOC and FOK both expire at once
  when not marketable (x EXPIRED).  No order amendment, batch orders, ``allOrders``,
  ``account``, ``income``, leverage or margin-type endpoints.  ``newOrderRespType`` ACK (the default)
  answers the order as accepted (status NEW, nothing executed), RESULT answers its state after matching.
- A post-only order that would take is answered -5022 and pushes nothing, as documented.
- An untriggered reduce-only algo whose position goes flat ends at once as ALGO_UPDATE CANCELED with
  ``rm`` "Reduce Only reject" (the engine deactivates it; Binance would reject it only when it
  triggers, with the status and reason of the docs' ALGO_UPDATE example).  A triggered algo whose
  order ends unfilled is FINISHED (``aq`` "0").  Cancelling a triggered algo is -2011 (cancel its
  order on ``/fapi/v1/order``).  ``openAlgoOrders`` lists untriggered algos only.  The triggered
  order's ``c`` is the algo's client id.
- Resting reduce-only orders whose position goes flat are CANCELED (engine behaviour).
- ACCOUNT_UPDATE: ``m`` is always ORDER, ``bc`` "0", ``bep`` = entry price, ``mt`` "cross", ``iw`` "0";
  ``n``/``N`` appear on TRADE frames only.  No FUNDING_FEE, TRADE_LITE, MARGIN_CALL,
  ACCOUNT_CONFIG_UPDATE or STRATEGY_UPDATE events.  Frames of different event types are always in
  engine order here; Binance does not guarantee that (a client must not rely on it).
- positionRisk: ``liquidationPrice`` "0", ``adl`` 0, ``breakEvenPrice`` = entry, margins from the
  symbol's leverage and bracket.  Balance and account list the margin coin only; ``feeTier`` 0, no
  ``notionalCoef``; ``maxWithdrawAmount`` = available balance.
- Listen key: one per account; POST returns the active key (extended) or a new one; PUT without a
  ``listenKey`` extends the active key; expiry (60 min on the injected clock) is checked every 0.5 s;
  DELETE closes the key's sockets without an event.  A socket opened with an unknown or expired key is
  refused with HTTP 400 (-1125) at the upgrade.  No 24-hour disconnect, no server pings.
- Market streams other than markPrice (including ``!markPrice@arr``) are acknowledged and silent.
  Unknown REST paths answer aiohttp's plain 404.

Faults (:class:`BinanceFaults`) act on the server loop in call order, before frames produced later:
``reorder_next`` holds a channel's next frame until the one after it exists; ``pause`` holds frames at
the channel (sockets that connect meanwhile get them on ``resume``); ``send_raw`` and
``listenKeyExpired`` bypass the fault stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

from aiohttp import WSMsgType, web

from gridbot.emulator._binance_account import (
    SlotMargins,
    account_information,
    leverage_bracket_row,
    leverage_response,
)
from gridbot.emulator._runner import LoopbackServer, Ticker
from gridbot.emulator.engine import (
    Engine,
    EngineConfig,
    EngineError,
    EngineEvent,
    Fill,
    FillEvent,
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
from gridbot.endpoints import Endpoints

__all__ = ["BinanceEmulator", "BinanceFaults"]

logger = logging.getLogger(__name__)

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


def _fmt(value: Decimal | None) -> str:
    """Binance sends numbers as plain decimal strings, never exponents; zero and None are "0"."""
    if value is None or value == 0:
        return "0"
    return format(value, "f")


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _check_price_interval(seconds: float) -> float:
    if not seconds >= 0:
        raise ValueError(f"price_interval must be >= 0 seconds (0: no random walk), got {seconds!r}")
    return seconds


def _wall_ms() -> int:
    return int(time.time() * 1000)


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


# ------------------------------------------------------------------------------------------ per-order meta


@dataclass
class _OrderMeta:
    """What the Binance request said that the engine does not keep (wire type, TIF, trigger source)."""

    client_id: str
    wire_type: str  # LIMIT, MARKET, TAKE_PROFIT_MARKET, ...
    time_in_force: str = "GTC"
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    wire_reduce_only: bool = False
    is_algo: bool = False


def _algo_wire_type(order: Order) -> str:
    kind = "TAKE_PROFIT" if order.kind == "TakeProfit" else "STOP"
    return f"{kind}_MARKET" if order.order_type == "Market" else kind


def _forced_client_id(order: Order) -> str:
    """Binance's client ids of exchange-made closes: "autoclose-..." (liquidation), "adl_autoclose" (ADL)."""
    return "adl_autoclose" if order.forced == "adl" else f"autoclose-{order.created_time}{order.order_id}"


def _default_meta(order: Order) -> _OrderMeta:
    if order.forced:
        return _OrderMeta(client_id=_forced_client_id(order), wire_type="LIQUIDATION", time_in_force="IOC")
    if order.is_conditional:
        return _OrderMeta(
            client_id=order.client_order_id,
            wire_type=_algo_wire_type(order),
            wire_reduce_only=order.reduce_only,
            is_algo=True,
        )
    return _OrderMeta(
        client_id=order.client_order_id,
        wire_type=order.order_type.upper(),
        wire_reduce_only=order.reduce_only,
    )


def _order_status(order: Order, expired: bool) -> str:
    """Engine status -> Binance ``X`` / REST ``status`` of a regular order."""
    status = order.status
    if status == "Cancelled":
        return "EXPIRED" if expired else "CANCELED"
    if status in ("Rejected", "Deactivated", "Expired"):
        return "EXPIRED"
    if status == "Filled":
        return "FILLED"
    if order.filled_qty > 0:
        return "PARTIALLY_FILLED"
    return "NEW"


def _algo_status(order: Order, placed_child: bool) -> str:
    """Engine status -> Binance ``algoStatus`` of a conditional order."""
    if order.status == "Cancelled":
        return "FINISHED" if placed_child else "CANCELED"
    return {
        "Untriggered": "NEW",
        "Triggered": "TRIGGERED",
        "Filled": "FINISHED",
        "Deactivated": "CANCELED",
        "Rejected": "REJECTED",
        "Expired": "EXPIRED",
    }.get(order.status, "NEW")


# ------------------------------------------------------------------------------------------- REST payloads


def _rest_order(order: Order, meta: _OrderMeta, parent: _OrderMeta | None, expired: bool,
                trigger_price: Decimal | None) -> dict[str, Any]:
    """The order object of POST/DELETE/GET /fapi/v1/order and GET /fapi/v1/openOrders."""
    cum_quote = order.filled_qty * order.avg_price if order.avg_price else Decimal(0)
    return {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": _order_status(order, expired),
        "clientOrderId": meta.client_id,
        "price": _fmt(order.price),
        "avgPrice": _fmt(order.avg_price),
        "origQty": _fmt(order.qty),
        "executedQty": _fmt(order.filled_qty),
        "cumQty": _fmt(order.filled_qty),
        "cumQuote": _fmt(cum_quote),
        "timeInForce": meta.time_in_force,
        "type": meta.wire_type,
        "reduceOnly": meta.wire_reduce_only,
        "closePosition": False,
        "side": _SIDE_TO_WIRE[order.side],
        "positionSide": _PS_BY_IDX[order.position_idx],
        "stopPrice": _fmt(trigger_price),
        "workingType": parent.working_type if parent else meta.working_type,
        "priceProtect": parent.price_protect if parent else meta.price_protect,
        "origType": parent.wire_type if parent else meta.wire_type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "time": order.created_time,
        "updateTime": order.updated_time,
    }


def _ack_order(payload: dict[str, Any]) -> dict[str, Any]:
    """newOrderRespType=ACK (the futures default): the order as accepted, before any execution."""
    return {
        **payload,
        "status": "NEW",
        "avgPrice": "0.00",
        "executedQty": "0",
        "cumQty": "0",
        "cumQuote": "0",
        "updateTime": payload["time"],
    }


def _rest_algo(order: Order, meta: _OrderMeta, child: Order | None, trigger_time: int) -> dict[str, Any]:
    """The algo order object of POST /fapi/v1/algoOrder and GET /fapi/v1/openAlgoOrders."""
    return {
        "algoId": order.order_id,
        "clientAlgoId": meta.client_id,
        "algoType": "CONDITIONAL",
        "orderType": meta.wire_type,
        "symbol": order.symbol,
        "side": _SIDE_TO_WIRE[order.side],
        "positionSide": _PS_BY_IDX[order.position_idx],
        "timeInForce": meta.time_in_force,
        "quantity": _fmt(order.qty),
        "algoStatus": _algo_status(order, child is not None),
        "actualOrderId": str(child.order_id) if child else "",
        "actualPrice": _fmt(child.avg_price if child else None),
        "triggerPrice": _fmt(order.trigger_price),
        "price": _fmt(order.price),
        "icebergQuantity": None,
        "tpTriggerPrice": "0",
        "tpPrice": "0",
        "slTriggerPrice": "0",
        "slPrice": "0",
        "tpOrderType": "",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": meta.working_type,
        "priceMatch": "NONE",
        "closePosition": False,
        "priceProtect": meta.price_protect,
        "reduceOnly": meta.wire_reduce_only,
        "createTime": order.created_time,
        "updateTime": order.updated_time,
        "triggerTime": trigger_time,
        "goodTillDate": 0,
    }


def _signed_amount(position: Position) -> Decimal:
    return -position.size if position.side == "Sell" else position.size


def _rest_position(position: Position, mark: Decimal) -> dict[str, Any]:
    """A row of GET /fapi/v3/positionRisk (margins from the engine: the symbol's leverage and bracket)."""
    amount = _signed_amount(position)
    notional = amount * mark
    initial = position.initial_margin
    return {
        "symbol": position.symbol,
        "positionSide": _PS_BY_IDX[position.position_idx],
        "positionAmt": _fmt(amount),
        "entryPrice": _fmt(position.entry_price),
        "breakEvenPrice": _fmt(position.entry_price),
        "markPrice": _fmt(mark),
        "unRealizedProfit": _fmt(position.unrealised_pnl),
        "liquidationPrice": "0",
        "isolatedMargin": "0",
        "notional": _fmt(notional),
        "marginAsset": "USDT",
        "isolatedWallet": "0",
        "initialMargin": _fmt(initial),
        "maintMargin": _fmt(position.maintenance_margin),
        "positionInitialMargin": _fmt(initial),
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": position.updated_time,
    }


def _rest_balance(wallet: Wallet) -> dict[str, Any]:
    """A row of GET /fapi/v3/balance."""
    return {
        "accountAlias": "SgsR",
        "asset": wallet.coin,
        "balance": _fmt(wallet.wallet_balance),
        "crossWalletBalance": _fmt(wallet.wallet_balance),
        "crossUnPnl": _fmt(wallet.unrealised_pnl),
        "availableBalance": _fmt(wallet.available_balance),
        "maxWithdrawAmount": _fmt(wallet.available_balance),
        "marginAvailable": True,
        "updateTime": wallet.updated_time,
    }


def _flat_position(symbol: str, idx: int, mark: Decimal, now: int) -> Position:
    zero = Decimal(0)
    return Position(
        symbol=symbol, position_idx=idx, side="", size=zero, entry_price=zero, mark_price=mark,
        unrealised_pnl=zero, cum_realised_gross=zero, cum_fees=zero, cum_realised_net=zero,
        updated_time=now, seq=0,
    )


def _mark_price_data(prices: Prices) -> dict[str, Any]:
    return {
        "e": "markPriceUpdate",
        "E": prices.timestamp,
        "s": prices.symbol,
        "p": _fmt(prices.mark),
        "ap": _fmt(prices.mark),
        "i": _fmt(prices.index),
        "P": _fmt(prices.index),
        "r": _fmt(prices.funding_rate),
        "T": prices.next_funding_time,
    }


def _exchange_symbol(cfg: SymbolConfig) -> dict[str, Any]:
    base = cfg.symbol[:-4] if cfg.symbol.endswith("USDT") else cfg.symbol
    tick_places = max(0, -int(cfg.tick_size.normalize().as_tuple().exponent))
    qty_places = max(0, -int(cfg.qty_step.normalize().as_tuple().exponent))
    return {
        "symbol": cfg.symbol,
        "pair": cfg.symbol,
        "contractType": "PERPETUAL",
        "status": "TRADING",
        "baseAsset": base,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": tick_places,
        "quantityPrecision": qty_places,
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": _fmt(cfg.tick_size), "minPrice": _fmt(cfg.tick_size),
             "maxPrice": "10000000"},
            {"filterType": "LOT_SIZE", "stepSize": _fmt(cfg.qty_step), "minQty": _fmt(cfg.qty_step),
             "maxQty": "100000"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": _fmt(cfg.qty_step), "minQty": _fmt(cfg.qty_step),
             "maxQty": "100000"},
        ],
    }


def _trade_window(params: Mapping[str, str], now: int) -> tuple[int, int]:
    """userTrades' time window: 7 days at most; the last 7 days when neither bound is sent."""
    has_start, has_end = bool(params.get("startTime")), bool(params.get("endTime"))
    start = _int_param(params, "startTime", 0)
    end = _int_param(params, "endTime", 0)
    if has_start and has_end:
        if end < start:
            raise _ApiError(400, -1128, "Combination of optional parameters invalid.")
        if end - start > _WEEK_MS:
            raise _ApiError(400, -1127, "The time between startTime and endTime cannot be longer "
                                        "than 7 days.")
        return start, end
    if has_start:
        return start, start + _WEEK_MS
    if has_end:
        return end - _WEEK_MS, end
    return now - _WEEK_MS, now


def _user_trade(fill: Fill) -> dict[str, Any]:
    """A row of GET /fapi/v1/userTrades (numbers as decimal strings, ids and time as ints)."""
    return {
        "buyer": fill.side == "Buy",
        "commission": _fmt(fill.fee),
        "commissionAsset": "USDT",
        "id": fill.trade_id,
        "maker": fill.is_maker,
        "orderId": fill.order_id,
        "price": _fmt(fill.price),
        "qty": _fmt(fill.qty),
        "quoteQty": _fmt(fill.price * fill.qty),
        "realizedPnl": _fmt(fill.realised_pnl),
        "side": _SIDE_TO_WIRE[fill.side],
        "positionSide": _PS_BY_IDX[fill.position_idx],
        "symbol": fill.symbol,
        "time": fill.timestamp,
    }


# ---------------------------------------------------------------------------------------- listen keys


class _ListenKeys:
    """The account's user-data listen key: one at a time, 60 minutes from its last keepalive."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._key: str | None = None
        self._expires_at = 0

    def create_or_extend(self) -> str:
        """POST: the active key (extended) if there is one, else a fresh key."""
        with self._lock:
            if self._key is None or self._clock() >= self._expires_at:
                self._key = _new_listen_key()
            self._expires_at = self._clock() + LISTEN_KEY_VALIDITY_MS
            return self._key

    def extend(self, key: str | None) -> str | None:
        """PUT: extend the active key; None when there is none (or ``key`` is another one)."""
        with self._lock:
            if self._key is None or self._clock() >= self._expires_at or (key and key != self._key):
                return None
            self._expires_at = self._clock() + LISTEN_KEY_VALIDITY_MS
            return self._key

    def delete(self, key: str | None) -> str | None:
        with self._lock:
            if self._key is None or (key and key != self._key):
                return None
            deleted, self._key = self._key, None
            return deleted

    def is_active(self, key: str) -> bool:
        with self._lock:
            return key == self._key and self._clock() < self._expires_at

    def pop_expired(self, force: bool = False) -> str | None:
        """The active key if its time is up (or ``force``), removing it."""
        with self._lock:
            if self._key is None or (not force and self._clock() < self._expires_at):
                return None
            expired, self._key = self._key, None
            return expired

    @property
    def current(self) -> str | None:
        with self._lock:
            return self._key


# ----------------------------------------------------------------------------------- sockets (loop side)


@dataclass(frozen=True)
class _MarketItem:
    """One markPriceUpdate, rendered per connection (combined wrapper or raw)."""

    symbol: str
    data: dict[str, Any]

    @property
    def stream_names(self) -> tuple[str, str]:
        low = self.symbol.lower()
        return (f"{low}@markPrice@1s", f"{low}@markPrice")


_CLOSE: Final = object()


class _Conn:
    """One accepted WebSocket: an ordered outbound queue drained by one sender task."""

    def __init__(self, ws: web.WebSocketResponse, channel: str, transport: asyncio.Transport | None,
                 *, listen_key: str = "", streams: Iterable[str] = (), combined: bool = True) -> None:
        self.ws = ws
        self.channel = channel
        self.transport = transport
        self.listen_key = listen_key
        self.streams: set[str] = set(streams)
        self.combined = combined
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.sender: asyncio.Task[None] | None = None

    def push(self, text: str) -> None:
        self.queue.put_nowait(text)

    def push_close(self) -> None:
        self.queue.put_nowait(_CLOSE)

    def push_market(self, item: _MarketItem) -> None:
        for name in item.stream_names:
            if name in self.streams:
                self.push(_dumps({"stream": name, "data": item.data}) if self.combined else _dumps(item.data))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (what a network failure looks like)."""
        if self.transport is not None:
            self.transport.abort()
        if self.sender is not None:
            self.sender.cancel()

    async def run_sender(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if item is _CLOSE:
                    await self.ws.close()
                    return
                assert isinstance(item, str)
                await self.ws.send_str(item)
        except (ConnectionError, RuntimeError):
            logger.debug("binance emulator: %s sender ended", self.channel)
        except Exception:
            logger.exception("binance emulator: %s sender failed", self.channel)


class _Pipe:
    """The fault stage of one channel: pause/hold, duplicate, reorder; then fan-out.  Loop thread only."""

    def __init__(self, fanout: Callable[[Any], None]) -> None:
        self._fanout = fanout
        self.paused = False
        self.held: list[Any] = []
        self.duplicates = 0
        self.reorder_armed = False
        self._reorder_held: list[Any] = []

    def submit(self, item: Any) -> None:
        if self.paused:
            self.held.append(item)
        else:
            self._flow(item)

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for item in held:
            self._flow(item)

    def _flow(self, item: Any) -> None:
        if self._reorder_held:
            first = self._reorder_held.pop()
            self._out(item)
            self._out(first)
        elif self.reorder_armed:
            self.reorder_armed = False
            self._reorder_held.append(item)
        else:
            self._out(item)

    def _out(self, item: Any) -> None:
        self._fanout(item)
        if self.duplicates > 0:
            self.duplicates -= 1
            self._fanout(item)


class _Hub:
    """Every open socket and the two channel pipes.  All methods run on the server's loop thread."""

    def __init__(self) -> None:
        self.conns: dict[str, set[_Conn]] = {PRIVATE: set(), PUBLIC: set()}
        self.pipes: dict[str, _Pipe] = {
            PRIVATE: _Pipe(self._fanout_private),
            PUBLIC: _Pipe(self._fanout_public),
        }

    def submit(self, frames: list[tuple[str, Any]]) -> None:
        for channel, item in frames:
            self.pipes[channel].submit(item)

    def _fanout_private(self, text: str) -> None:
        for conn in self.conns[PRIVATE]:
            conn.push(text)

    def _fanout_public(self, item: _MarketItem) -> None:
        for conn in self.conns[PUBLIC]:
            conn.push_market(item)

    def send_raw(self, channel: str, text: str) -> None:
        for conn in self.conns[channel]:
            conn.push(text)

    def drop(self, channel: str) -> None:
        for conn in list(self.conns[channel]):
            conn.abort()

    def close_key(self, key: str, farewell: str | None) -> None:
        """Send ``farewell`` (if any) then close every private socket of ``key``."""
        for conn in list(self.conns[PRIVATE]):
            if conn.listen_key == key:
                if farewell is not None:
                    conn.push(farewell)
                conn.push_close()


# --------------------------------------------------------------------------- engine events -> frames


class _Translator:
    """Turns engine events into Binance user-data frames and mark-price items, in engine order.

    Called synchronously by the engine under its lock; never calls back into the engine.  A fill comes
    as OrderEvent("Trade", fill) -> FillEvent -> PositionEvent(s) -> WalletEvent: the TRADE frame is sent
    at the OrderEvent, the changed slots wait for the WalletEvent and go out as one ACCOUNT_UPDATE.
    """

    def __init__(self, sink: Callable[[list[tuple[str, Any]]], None]) -> None:
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
            frames.append((PUBLIC, _MarketItem(event.prices.symbol, _mark_price_data(event.prices))))
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


# ------------------------------------------------------------------------------------------------ faults


@dataclass
class _RestFailure:
    status: int
    code: int
    msg: str
    remaining: int


class BinanceFaults:
    """Failure injection for tests.  Every method is thread-safe and returns at once; socket-side faults
    take effect on the server loop in the order they were called, before any frame produced later."""

    def __init__(self, emulator: BinanceEmulator) -> None:
        self._emulator = emulator
        self._lock = threading.Lock()
        self._reject_auth = False
        self._refuse_ws = False
        self._delays: dict[str, float] = {}
        self._failures: dict[str, _RestFailure] = {}

    # ---- sockets

    def drop_private(self) -> None:
        """Abort every user-data socket (no close frame)."""
        self._emulator._on_loop(lambda hub: hub.drop(PRIVATE))

    def drop_public(self) -> None:
        """Abort every market-data socket (no close frame)."""
        self._emulator._on_loop(lambda hub: hub.drop(PUBLIC))

    def expire_listen_key(self) -> None:
        """Expire the active listen key now: its sockets get ``listenKeyExpired`` and are closed."""
        self._emulator._expire_listen_key(force=True)

    def send_raw(self, channel: str, text: str) -> None:
        """Send ``text`` verbatim to every socket of ``channel`` (malformed or unknown frames)."""
        _check_channel(channel)
        self._emulator._on_loop(lambda hub: hub.send_raw(channel, text))

    def duplicate_next(self, channel: str, n: int = 1) -> None:
        """Send each of the next ``n`` frames of ``channel`` twice."""
        _check_channel(channel)

        def arm(hub: _Hub) -> None:
            hub.pipes[channel].duplicates += n

        self._emulator._on_loop(arm)

    def reorder_next(self, channel: str) -> None:
        """Swap the next two frames of ``channel`` (the first is held until the second exists)."""
        _check_channel(channel)

        def arm(hub: _Hub) -> None:
            hub.pipes[channel].reorder_armed = True

        self._emulator._on_loop(arm)

    def pause(self, channel: str) -> None:
        """Hold every frame of ``channel`` until :meth:`resume`."""
        _check_channel(channel)

        def hold(hub: _Hub) -> None:
            hub.pipes[channel].paused = True

        self._emulator._on_loop(hold)

    def resume(self, channel: str) -> None:
        """Deliver the held frames of ``channel``, in order, and stop holding."""
        _check_channel(channel)
        self._emulator._on_loop(lambda hub: hub.pipes[channel].resume())

    def refuse_ws(self, refuse: bool = True) -> None:
        """Answer every WebSocket upgrade with HTTP 503 (existing sockets are untouched)."""
        with self._lock:
            self._refuse_ws = refuse

    # ---- REST

    def reject_auth(self, reject: bool = True) -> None:
        """Signed REST calls and listen-key creation answer -2015 while set."""
        with self._lock:
            self._reject_auth = reject

    def rest_delay(self, path: str, seconds: float) -> None:
        """Delay every answer on ``path`` (e.g. "/fapi/v3/positionRisk") by ``seconds``; 0 removes it."""
        with self._lock:
            if seconds > 0:
                self._delays[path] = seconds
            else:
                self._delays.pop(path, None)

    def rest_fail(self, path: str, http_status: int, code: int, msg: str, times: int = 1) -> None:
        """Answer the next ``times`` calls on ``path`` with ``{"code": code, "msg": msg}``."""
        with self._lock:
            self._failures[path] = _RestFailure(http_status, code, msg, times)

    # ---- read by the server

    @property
    def auth_rejected(self) -> bool:
        with self._lock:
            return self._reject_auth

    @property
    def ws_refused(self) -> bool:
        with self._lock:
            return self._refuse_ws

    def delay_for(self, path: str) -> float:
        with self._lock:
            return self._delays.get(path, 0.0)

    def take_failure(self, path: str) -> _ApiError | None:
        with self._lock:
            failure = self._failures.get(path)
            if failure is None:
                return None
            failure.remaining -= 1
            if failure.remaining <= 0:
                del self._failures[path]
            return _ApiError(failure.status, failure.code, failure.msg)


def _check_channel(channel: str) -> None:
    if channel not in _CHANNELS:
        raise ValueError(f"channel must be 'private' or 'public', not {channel!r}")


# ------------------------------------------------------------------------------------------------ server

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SignedHandler = Callable[[dict[str, str]], Any]


def _default_config() -> EngineConfig:
    return EngineConfig(
        symbols=(
            SymbolConfig("BTCUSDT", Decimal("60000")),
            SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01")),
        )
    )


class BinanceEmulator:
    """A loopback Binance USDⓈ-M futures exchange that the unmodified python-binance SDK talks to."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        api_key: str = "test-key",
        api_secret: str = "test-secret",
        price_interval: float = 1.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._config = config or _default_config()
        self._clock: Callable[[], int] = clock or _wall_ms
        self._api_key = api_key
        self._api_secret = api_secret.encode()
        self._price_interval = _check_price_interval(price_interval)
        self._engine = Engine(self._config, self._clock)
        self._translator = _Translator(self._sink)
        self._engine.add_listener(self._translator.on_event)
        self._keys = _ListenKeys(self._clock)
        self._faults = BinanceFaults(self)
        self._hub = _Hub()
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._server: LoopbackServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._key_timer: Ticker | None = None
        self._price_timer: Ticker | None = None
        self._symbols = {cfg.symbol: cfg for cfg in self._config.symbols}

    # ---- public surface

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def faults(self) -> BinanceFaults:
        return self._faults

    @property
    def endpoints(self) -> Endpoints:
        server = self._require_server()
        return Endpoints(rest=server.http_url, ws=server.ws_url)

    @property
    def rest_calls(self) -> dict[str, int]:
        """Requests received per ``"METHOD /path"`` (WebSocket upgrades excluded); a copy."""
        with self._calls_lock:
            return dict(self._calls)

    @property
    def price_interval(self) -> float:
        """Seconds between price steps and markPriceUpdate pushes (0: no random walk; prices move only
        through ``engine.set_price``); settable while running."""
        return self._price_interval

    @price_interval.setter
    def price_interval(self, seconds: float) -> None:
        with self._state_lock:
            self._price_interval = _check_price_interval(seconds)
            self._apply_price_interval()

    def _apply_price_interval(self) -> None:
        """Start, retune or stop the price loop to match ``price_interval`` (under the state lock)."""
        timer, server = self._price_timer, self._server
        if timer is not None and self._price_interval > 0:
            timer.interval = self._price_interval
        elif timer is not None:
            timer.cancel()
            self._price_timer = None
        elif server is not None and self._price_interval > 0:
            self._price_timer = server.every(self._price_interval, self._tick)

    @property
    def listen_key(self) -> str | None:
        """The active listen key, if any (handy in tests)."""
        return self._keys.current

    def start(self, timeout: float = 10.0) -> None:
        with self._state_lock:
            if self._server is not None:
                return
            server = LoopbackServer(self._build_app, name="binance-emulator")
            server.start(timeout=timeout)
            try:
                self._server = server
                self._loop = server.loop
                self._key_timer = server.every(_KEY_CHECK_INTERVAL, self._check_listen_key)
                self._apply_price_interval()
            except BaseException:
                self._server, self._loop = None, None
                server.stop(timeout=timeout)
                raise

    def stop(self, timeout: float = 5.0) -> None:
        with self._state_lock:
            server, self._server = self._server, None
            if server is None:
                return
            for timer in (self._price_timer, self._key_timer):
                if timer is not None:
                    timer.cancel()
            self._price_timer = self._key_timer = None
            self._loop = None
            server.stop(timeout=timeout)
            self._hub = _Hub()

    def __enter__(self) -> BinanceEmulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- plumbing

    def _require_server(self) -> LoopbackServer:
        server = self._server
        if server is None:
            raise RuntimeError("BinanceEmulator is not started")
        return server

    def _sink(self, frames: list[tuple[str, Any]]) -> None:
        """Engine listener output -> the loop, in call order (called under the engine lock)."""
        loop = self._loop
        if loop is None:
            return
        hub = self._hub
        try:
            loop.call_soon_threadsafe(hub.submit, frames)
        except RuntimeError:
            logger.debug("binance emulator: loop closed, %d frames dropped", len(frames))

    def _on_loop(self, action: Callable[[_Hub], None]) -> None:
        """Run a hub action on the server loop, or now when the server is not running."""
        loop = self._loop
        hub = self._hub
        if loop is None:
            action(hub)
            return
        try:
            loop.call_soon_threadsafe(action, hub)
        except RuntimeError:
            logger.debug("binance emulator: loop closed, fault action dropped")

    def _tick(self) -> None:
        try:
            self._engine.step()
        except Exception:
            logger.exception("binance emulator: engine step failed")

    def _check_listen_key(self) -> None:
        try:
            self._expire_listen_key(force=False)
        except Exception:
            logger.exception("binance emulator: listen key check failed")

    def _expire_listen_key(self, force: bool) -> None:
        key = self._keys.pop_expired(force=force)
        if key is None:
            return
        farewell = _dumps({"e": "listenKeyExpired", "E": str(self._clock()), "listenKey": key})
        self._on_loop(lambda hub: hub.close_key(key, farewell))

    def _count(self, request: web.Request) -> None:
        with self._calls_lock:
            self._calls[f"{request.method} {request.path}"] += 1

    # ---- app

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        get, post, put, delete = "GET", "POST", "PUT", "DELETE"
        routes: list[tuple[str, str, _Handler]] = [
            (get, "/api/v3/ping", self._ping),
            (get, "/api/v3/time", self._time),
            (get, "/fapi/v1/ping", self._ping),
            (get, "/fapi/v1/time", self._time),
            (get, "/fapi/v1/exchangeInfo", self._exchange_info),
            (post, "/fapi/v1/listenKey", self._listen_key_post),
            (put, "/fapi/v1/listenKey", self._listen_key_put),
            (delete, "/fapi/v1/listenKey", self._listen_key_delete),
            (get, "/fapi/v3/positionRisk", self._signed(self._position_risk)),
            (get, "/fapi/v3/balance", self._signed(self._balance)),
            (get, "/fapi/v2/balance", self._signed(self._balance)),
            (get, "/fapi/v1/openOrders", self._signed(self._open_orders)),
            (get, "/fapi/v1/openAlgoOrders", self._signed(self._open_algo_orders)),
            (get, "/fapi/v1/order", self._signed(self._query_order)),
            (post, "/fapi/v1/order", self._signed(self._new_order)),
            (delete, "/fapi/v1/order", self._signed(self._cancel_order)),
            (delete, "/fapi/v1/allOpenOrders", self._signed(self._cancel_all_orders)),
            (get, "/fapi/v1/algoOrder", self._signed(self._query_algo)),
            (post, "/fapi/v1/algoOrder", self._signed(self._new_algo)),
            (delete, "/fapi/v1/algoOrder", self._signed(self._cancel_algo)),
            (delete, "/fapi/v1/algoOpenOrders", self._signed(self._cancel_all_algos)),
            (get, "/fapi/v1/userTrades", self._signed(self._user_trades)),
            (get, "/fapi/v1/leverageBracket", self._signed(self._leverage_bracket)),
            (post, "/fapi/v1/leverage", self._signed(self._change_leverage)),
            (get, "/fapi/v2/account", self._signed(lambda params: self._account(v2=True))),
            (get, "/fapi/v3/account", self._signed(lambda params: self._account(v2=False))),
            (get, "/fapi/v1/positionSide/dual", self._signed(self._get_dual)),
            (post, "/fapi/v1/positionSide/dual", self._signed(self._set_dual)),
            (get, "/private/ws", self._private_ws),
            (get, "/private/ws/{key}", self._private_ws),
            (get, "/ws/{name}", self._ws_any),
            (get, "/market/stream", self._public_ws),
            (get, "/market/ws", self._public_ws),
            (get, "/market/ws/{name}", self._public_ws),
            (get, "/stream", self._public_ws),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        self._count(request)
        try:
            delay = self._faults.delay_for(request.path)
            if delay > 0:
                await asyncio.sleep(delay)
            failure = self._faults.take_failure(request.path)
            if failure is not None:
                return failure.response()
            return await handler(request)
        except _ApiError as exc:
            return exc.response()
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("binance emulator: %s %s failed", request.method, request.path)
            return _ApiError(500, -1000, "An unknown error occurred while processing the request.").response()

    # ---- auth

    def _check_api_key(self, request: web.Request) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise _ApiError(401, -2014, "API-key format invalid.")
        if self._faults.auth_rejected or not hmac.compare_digest(key.encode(), self._api_key.encode()):
            raise _ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")

    async def _verified_params(self, request: web.Request) -> dict[str, str]:
        """API key, timestamp window and HMAC-SHA256 signature of ``query + body``, as Binance checks them."""
        self._check_api_key(request)
        raw_query = request.raw_path.partition("?")[2]
        raw_body = await request.text() if request.can_read_body else ""
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))
        _mandatory(params, "timestamp")
        _mandatory(params, "signature")
        self._check_timestamp(params)
        query, sig_q = _strip_signature(raw_query)
        body, sig_b = _strip_signature(raw_body)
        signature = (sig_b or sig_q or "").lower()
        expected = hmac.new(self._api_secret, (query + body).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise _ApiError(400, -1022, "Signature for this request is not valid.")
        params.pop("signature", None)
        return params

    @staticmethod
    def _check_timestamp(params: Mapping[str, str]) -> None:
        timestamp = _int_param(params, "timestamp")
        window = _int_param(params, "recvWindow", _DEFAULT_RECV_WINDOW)
        if window <= 0 or window > _MAX_RECV_WINDOW:
            raise _ApiError(400, -1131, "recvWindow must be less than 60000")
        now = _wall_ms()
        if timestamp > now + _FUTURE_TOLERANCE_MS:
            raise _ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > window:
            raise _ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _signed(self, handler: _SignedHandler) -> _Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            params = await self._verified_params(request)
            return _json(handler(params))

        return run

    # ---- public REST

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return _json({})

    async def _time(self, request: web.Request) -> web.StreamResponse:
        return _json({"serverTime": self._clock()})

    async def _exchange_info(self, request: web.Request) -> web.StreamResponse:
        return _json({
            "timezone": "UTC",
            "serverTime": self._clock(),
            "assets": [{"asset": self._config.coin, "marginAvailable": True}],
            "symbols": [_exchange_symbol(cfg) for cfg in self._config.symbols],
        })

    # ---- listen key

    async def _listen_key_post(self, request: web.Request) -> web.StreamResponse:
        self._check_api_key(request)
        return _json({"listenKey": self._keys.create_or_extend()})

    async def _listen_key_put(self, request: web.Request) -> web.StreamResponse:
        self._check_api_key(request)
        key = self._keys.extend(await self._listen_key_param(request))
        if key is None:
            raise _ApiError(400, -1125, "This listenKey does not exist.")
        return _json({"listenKey": key})

    async def _listen_key_delete(self, request: web.Request) -> web.StreamResponse:
        self._check_api_key(request)
        key = self._keys.delete(await self._listen_key_param(request))
        if key is None:
            raise _ApiError(400, -1125, "This listenKey does not exist.")
        self._on_loop(lambda hub: hub.close_key(key, None))
        return _json({})

    @staticmethod
    async def _listen_key_param(request: web.Request) -> str | None:
        params = dict(parse_qsl(request.raw_path.partition("?")[2]))
        if request.can_read_body:
            params.update(parse_qsl(await request.text()))
        return params.get("listenKey") or None

    # ---- account state

    def _symbol_param(self, params: Mapping[str, str], required: bool) -> str | None:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                _mandatory(params, "symbol")
            return None
        if symbol not in self._symbols:
            raise _ApiError(400, -1121, "Invalid symbol.")
        return symbol

    def _position_risk(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """v3: only symbols with a position or an open order; every slot of such a symbol."""
        wanted = self._symbol_param(params, required=False)
        engine = self._engine
        rows = []
        with engine.lock:  # one consistent snapshot
            slots = (1, 2) if engine.hedge_mode else (0,)
            with_orders = {o.symbol for o in engine.open_orders(wanted)}
            touched = {(p.symbol, p.position_idx): p for p in engine.positions(wanted)}
            symbols = sorted({s for (s, _), p in touched.items() if p.size != 0} | with_orders)
            for symbol in symbols:
                mark = engine.prices(symbol).mark
                for idx in slots:
                    position = touched.get((symbol, idx)) or engine.position(symbol, idx)
                    rows.append(_rest_position(position, mark))
        return rows

    def _balance(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return [_rest_balance(self._engine.wallet())]

    def _regular_payload(self, order: Order) -> dict[str, Any]:
        parent = self._engine.order(order.parent_id) if order.parent_id is not None else None
        parent_meta = self._translator.meta(parent) if parent is not None else None
        trigger = parent.trigger_price if parent is not None else order.trigger_price
        return _rest_order(order, self._translator.meta(order), parent_meta,
                           self._translator.is_expired(order.order_id), trigger)

    def _algo_payload(self, order: Order) -> dict[str, Any]:
        child_id, trigger_time = self._translator.algo_child(order.order_id)
        child = self._engine.order(child_id) if child_id is not None else None
        return _rest_algo(order, self._translator.meta(order), child, trigger_time)

    def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol_param(params, required=False)
        with self._engine.lock:
            orders = [o for o in self._engine.open_orders(symbol) if not o.is_conditional]
            return [self._regular_payload(o) for o in orders]

    def _open_algo_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol_param(params, required=False)
        with self._engine.lock:
            return [
                self._algo_payload(o)
                for o in self._engine.open_orders(symbol)
                if o.is_conditional and o.status == "Untriggered"
            ]

    def _leverage_bracket(self, params: dict[str, str]) -> Any:
        """A list of every symbol's brackets; one object when ``symbol`` is sent (as documented)."""
        symbol = self._symbol_param(params, required=False)
        if symbol is not None:
            return leverage_bracket_row(symbol, self._engine.brackets(symbol))
        return [leverage_bracket_row(s, self._engine.brackets(s)) for s in self._engine.symbols]

    def _change_leverage(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        leverage = _int_param(params, "leverage")
        try:
            self._engine.set_leverage(symbol, leverage)
        except EngineError as exc:
            if exc.code == "leverage_exceeds_notional":
                raise _ApiError(400, -2027, "Exceeded the maximum allowable position at current "
                                            "leverage.") from None
            raise _ApiError(400, -4028, f"Leverage {leverage} is not valid") from None
        return leverage_response(symbol, Decimal(leverage), self._engine.brackets(symbol))

    def _account(self, *, v2: bool) -> dict[str, Any]:
        engine = self._engine
        with engine.lock:  # one consistent snapshot
            slots: list[SlotMargins] = []
            for symbol in engine.symbols:
                for idx in ((1, 2) if engine.hedge_mode else (0,)):
                    slots.append((engine.position(symbol, idx), engine.open_order_margin(symbol, idx),
                                  engine.brackets(symbol)))
            return account_information(engine.wallet(), slots, v2=v2)

    def _user_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """GET /fapi/v1/userTrades: the symbol's fills (forced closes included), ascending by id."""
        symbol = self._symbol_param(params, required=True) or ""
        limit = _int_param(params, "limit", 500)
        if not 1 <= limit <= 1000:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        fills = list(self._engine.fills(symbol))
        if params.get("orderId"):
            order_id = _int_param(params, "orderId")
            fills = [f for f in fills if f.order_id == order_id]
        if params.get("fromId"):
            if params.get("startTime") or params.get("endTime"):
                raise _ApiError(400, -1128, "Combination of optional parameters invalid.")
            from_id = _int_param(params, "fromId")
            return [_user_trade(f) for f in fills if f.trade_id >= from_id][:limit]
        start, end = _trade_window(params, self._clock())
        in_window = [f for f in fills if start <= f.timestamp <= end]
        page = in_window[:limit] if params.get("startTime") else in_window[-limit:]
        return [_user_trade(f) for f in page]

    # ---- trading helpers

    def _position_idx(self, params: Mapping[str, str]) -> int:
        side = params.get("positionSide", "BOTH").upper() or "BOTH"
        if side not in ("BOTH", "LONG", "SHORT"):
            raise _ApiError(400, -4006, "Invalid position side.")
        idx = {"BOTH": 0, "LONG": 1, "SHORT": 2}[side]
        if (idx == 0) == self._engine.hedge_mode:
            raise _ApiError(400, -4061, "Order's position side does not match user's setting.")
        return idx

    def _reduce_only(self, params: Mapping[str, str]) -> bool:
        """Hedge mode forbids the flag (closing orders there, SELL LONG / BUY SHORT, reduce by nature)."""
        if self._engine.hedge_mode:
            if "reduceOnly" in params:
                raise _not_required("reduceOnly")
            return False
        return _bool_param(params, "reduceOnly")

    def _client_id(self, params: Mapping[str, str], name: str, prefix: str) -> str:
        client_id = params.get(name) or _new_client_id(prefix)
        if not _CLIENT_ID_RE.match(client_id):
            raise _ApiError(400, -4015, "Client order id is not valid.")
        if any(o.client_order_id == client_id for o in self._engine.open_orders()):
            raise _ApiError(400, -4116, "ClientOrderId is duplicated.")
        return client_id

    def _side(self, params: Mapping[str, str]) -> str:
        side = _SIDE_FROM_WIRE.get(_mandatory(params, "side").upper())
        if side is None:
            raise _ApiError(400, -1117, "Invalid side.")
        return side

    def _quantity(self, params: Mapping[str, str]) -> Decimal:
        qty = _decimal_param(params, "quantity")
        if qty <= 0:
            raise _ApiError(400, -4003, "Quantity less than or equal to zero.")
        return qty

    def _price(self, params: Mapping[str, str], name: str) -> Decimal:
        price = _decimal_param(params, name)
        if price <= 0:
            raise _ApiError(400, -4001, "Price less than 0.")
        return price

    def _find_order(self, params: Mapping[str, str], id_name: str, client_name: str,
                    conditional: bool) -> Order:
        raw_id = params.get(id_name)
        client_id = params.get(client_name)
        if not raw_id and not client_id:
            raise _ApiError(
                400, -1102, f"Param '{client_name}' or '{id_name}' must be sent, but both were empty/null!"
            )
        try:
            if raw_id:
                order = self._engine.order(_int_param(params, id_name))
            else:
                order = self._order_by_client_id(client_id or "", conditional)
        except EngineError:
            raise _ApiError(400, -2013, "Order does not exist.") from None
        if order.is_conditional != conditional:
            raise _ApiError(400, -2013, "Order does not exist.")
        return order

    def _order_by_client_id(self, client_id: str, conditional: bool) -> Order:
        matches = [o for o in self._engine.open_orders() if o.client_order_id == client_id]
        if not matches:
            raise _ApiError(400, -2013, "Order does not exist.")
        return matches[0]

    # ---- regular orders

    def _new_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        side = self._side(params)
        wire_type = _mandatory(params, "type").upper()
        if wire_type in _CONDITIONAL_WIRE_TYPES:
            raise _ApiError(400, -4120, "Order type not supported for this endpoint. "
                            "Please use the Algo Order API endpoints instead.")
        if wire_type not in ("LIMIT", "MARKET"):
            raise _ApiError(400, -1116, "Invalid orderType.")
        qty = self._quantity(params)
        idx = self._position_idx(params)
        reduce_only = self._reduce_only(params)
        price: Decimal | None = None
        tif = "GTC"
        if wire_type == "LIMIT":
            tif = _mandatory(params, "timeInForce").upper()
            if tif not in _TIME_IN_FORCE:
                raise _ApiError(400, -1115, "Invalid timeInForce.")
            price = self._price(params, "price")
        elif params.get("price"):
            raise _not_required("price")
        client_id = self._client_id(params, "newClientOrderId", "emu_")
        meta = _OrderMeta(client_id, wire_type, tif, wire_reduce_only=reduce_only)
        order = self._place(meta, lambda: self._engine.place_order(
            symbol=symbol, side=side, order_type=wire_type.capitalize(), qty=qty, price=price,
            reduce_only=reduce_only, position_idx=idx, client_order_id=client_id, post_only=tif == "GTX",
        ))
        if order.status == "Rejected":
            raise _ApiError(*_POST_ONLY_REJECTED)
        accepted = self._regular_payload(order)
        if tif in ("IOC", "FOK") and order.status == "New":
            self._translator.expire_on_cancel(order.order_id)
            order = self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        if params.get("newOrderRespType", "ACK").upper() == "RESULT":
            return self._regular_payload(order)
        return _ack_order(accepted)

    def _place(self, meta: _OrderMeta, place: Callable[[], Order]) -> Order:
        self._translator.expect(meta)
        try:
            return place()
        except EngineError as exc:
            raise _engine_error(exc) from None
        finally:
            self._translator.forget_expected(meta.client_id)

    def _query_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._symbol_param(params, required=True)
        order = self._find_order(params, "orderId", "origClientOrderId", conditional=False)
        return self._regular_payload(order)

    def _cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        order = self._find_order(params, "orderId", "origClientOrderId", conditional=False)
        try:
            cancelled = self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        except EngineError:
            raise _ApiError(400, -2011, "Unknown order sent.") from None
        return self._regular_payload(cancelled)

    def _cancel_all_orders(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        for order in self._engine.open_orders(symbol):
            if not order.is_conditional:
                with contextlib.suppress(EngineError):  # filled or cancelled meanwhile: nothing to do
                    self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ---- algo (conditional) orders

    def _new_algo(self, params: dict[str, str]) -> dict[str, Any]:
        algo_type = _mandatory(params, "algoType").upper()
        if algo_type != "CONDITIONAL":
            raise _ApiError(400, -1116, "Invalid algoType.")
        symbol = self._symbol_param(params, required=True) or ""
        side = self._side(params)
        wire_type = _mandatory(params, "type").upper()
        if wire_type not in _ALGO_TYPES:
            raise _ApiError(400, -1116, "Invalid orderType.")
        if _bool_param(params, "closePosition"):
            raise _not_required("closePosition")
        kind, order_type = _ALGO_TYPES[wire_type]
        qty = self._quantity(params)
        trigger = self._price(params, "triggerPrice")
        price = self._price(params, "price") if order_type == "Limit" else None
        idx = self._position_idx(params)
        reduce_only = self._reduce_only(params)
        tif = (params.get("timeInForce") or "GTC").upper()
        if tif not in _TIME_IN_FORCE:
            raise _ApiError(400, -1115, "Invalid timeInForce.")
        client_id = self._client_id(params, "clientAlgoId", "emu_algo_")
        meta = _OrderMeta(
            client_id, wire_type, tif,
            working_type=(params.get("workingType") or "CONTRACT_PRICE").upper(),
            price_protect=_bool_param(params, "priceProtect"),
            wire_reduce_only=reduce_only,
            is_algo=True,
        )
        order = self._place(meta, lambda: self._engine.place_conditional(
            symbol=symbol, side=side, order_type=order_type, qty=qty, trigger_price=trigger, price=price,
            reduce_only=reduce_only, position_idx=idx, client_order_id=client_id, kind=kind,
        ))
        return self._algo_payload(order)

    def _query_algo(self, params: dict[str, str]) -> dict[str, Any]:
        return self._algo_payload(self._find_order(params, "algoId", "clientAlgoId", conditional=True))

    def _cancel_algo(self, params: dict[str, str]) -> dict[str, Any]:
        order = self._find_order(params, "algoId", "clientAlgoId", conditional=True)
        if order.status != "Untriggered":  # triggered: its regular order is cancelled on /fapi/v1/order
            raise _ApiError(400, -2011, "Unknown order sent.")
        try:
            self._engine.cancel_order(symbol=order.symbol, order_id=order.order_id)
        except EngineError:
            raise _ApiError(400, -2011, "Unknown order sent.") from None
        return {
            "algoId": order.order_id,
            "clientAlgoId": self._translator.meta(order).client_id,
            "code": "200",
            "msg": "success",
        }

    def _cancel_all_algos(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        for order in self._engine.open_orders(symbol):
            if order.is_conditional and order.status == "Untriggered":
                with contextlib.suppress(EngineError):
                    self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ---- position mode

    def _get_dual(self, params: dict[str, str]) -> dict[str, Any]:
        return {"dualSidePosition": self._engine.hedge_mode}

    def _set_dual(self, params: dict[str, str]) -> dict[str, Any]:
        wanted = _mandatory(params, "dualSidePosition").lower()
        if wanted not in ("true", "false"):
            raise _malformed("dualSidePosition")
        hedge = wanted == "true"
        if hedge == self._engine.hedge_mode:
            raise _ApiError(400, -4059, "No need to change position side.")
        if self._engine.open_orders():
            raise _ApiError(400, -4067, "Position side cannot be changed if there exists open orders.")
        try:
            self._engine.set_hedge_mode(hedge)
        except EngineError:
            raise _ApiError(400, -4068, "Position side cannot be changed if there exists position.") from None
        return {"code": 200, "msg": "success"}

    # ---- WebSockets

    def _refusal(self) -> web.StreamResponse | None:
        if self._faults.ws_refused:
            return web.Response(status=503, text="Service Unavailable")
        return None

    async def _ws_any(self, request: web.Request) -> web.StreamResponse:
        """``/ws/<x>``: a user-data socket when ``x`` is the listen key, else a raw market stream."""
        name = request.match_info["name"]
        if self._keys.is_active(name) or (len(name) == 64 and "@" not in name):
            return await self._private_ws(request, name)
        return await self._public_ws(request)

    async def _private_ws(self, request: web.Request, key: str | None = None) -> web.StreamResponse:
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        key = key or request.match_info.get("key") or request.query.get("listenKey", "")
        if not self._keys.is_active(key):
            return _ApiError(400, -1125, "This listenKey does not exist.").response()
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, PRIVATE, request.transport, listen_key=key)
        await self._serve(request, conn, handle_text=None)
        return ws

    async def _public_ws(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        name = request.match_info.get("name")
        if name is not None:
            streams, combined = [name], False
        else:
            raw = request.query.get("streams", "")
            streams, combined = [s for s in raw.split("/") if s], request.path.endswith("stream")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, PUBLIC, request.transport, streams=streams, combined=combined)
        await self._serve(request, conn, handle_text=_market_request)
        return ws

    async def _serve(self, request: web.Request, conn: _Conn,
                     handle_text: Callable[[_Conn, str], None] | None) -> None:
        hub = self._hub
        server = self._server
        hub.conns[conn.channel].add(conn)
        if server is not None:
            server.track_websocket(conn.ws)
        conn.sender = asyncio.ensure_future(conn.run_sender())
        try:
            async for msg in conn.ws:
                if msg.type == WSMsgType.TEXT and handle_text is not None:
                    handle_text(conn, msg.data)
        except (ConnectionError, asyncio.CancelledError):
            logger.debug("binance emulator: %s socket ended", conn.channel)
        finally:
            hub.conns[conn.channel].discard(conn)
            if server is not None:
                server.untrack(conn.ws)
            if conn.sender is not None and not conn.sender.done():
                conn.push_close()
                await asyncio.wait({conn.sender}, timeout=1.0)
                conn.sender.cancel()


def _market_request(conn: _Conn, text: str) -> None:
    """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS on a market socket, answered in line."""
    try:
        request = json.loads(text)
    except ValueError:
        conn.push(_dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
        return
    if not isinstance(request, dict):
        conn.push(_dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": None}))
        return
    method, params, req_id = request.get("method"), request.get("params") or [], request.get("id")
    if method == "SUBSCRIBE" and isinstance(params, list):
        conn.streams.update(str(p) for p in params)
        conn.push(_dumps({"result": None, "id": req_id}))
    elif method == "UNSUBSCRIBE" and isinstance(params, list):
        conn.streams.difference_update(str(p) for p in params)
        conn.push(_dumps({"result": None, "id": req_id}))
    elif method == "LIST_SUBSCRIPTIONS":
        conn.push(_dumps({"result": sorted(conn.streams), "id": req_id}))
    else:
        error = {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}
        conn.push(_dumps({"error": error, "id": req_id}))
