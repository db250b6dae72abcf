"""A loopback Bybit v5 exchange (linear perpetuals) that unmodified pybit 5.17.0 talks to as to the real one.

Why: gridbot's Bybit adapter, the demo and the benchmarks need an exchange that speaks Bybit's wire
protocol byte-for-byte where pybit cares, is deterministic, and can misbehave on demand (faults).
The matching and accounting live in :mod:`gridbot.emulator.engine`; this module only translates.

Served (``BybitEmulator.endpoints`` gives ``rest`` = ``http://127.0.0.1:PORT``, ``ws`` = ``ws://127.0.0.1:PORT``):

REST (JSON envelope ``{"retCode","retMsg","result","retExtInfo","time"}``, rejections with HTTP 200 and a
real Bybit ``retCode`` as Bybit does).  Signed endpoints check ``X-BAPI-API-KEY`` (10003 "API key is
invalid."), ``X-BAPI-TIMESTAMP``/``X-BAPI-RECV-WINDOW`` (10002, rule ``now - recvWindow <= ts < now + 1000``)
and ``X-BAPI-SIGN`` = HMAC-SHA256(secret, timestamp + key + recvWindow + raw query string | raw JSON body)
(10004 "error sign!"):

- ``GET  /v5/position/list`` (category=linear; ``symbol`` gives every slot of the current position mode, flat
  ones included with their ``cumRealisedPnl``; ``settleCoin`` gives open positions only, as documented).
  ``avgPrice`` is the entry price.
- ``GET  /v5/account/wallet-balance`` (accountType=UNIFIED; one account row, one coin row).
- ``GET  /v5/order/realtime`` (category=linear; open orders and untriggered conditional orders; asked by
  ``orderId`` or ``orderLinkId``, a finished order too).
- ``GET  /v5/order/history`` (category=linear; finished orders, most recently finished first; ``symbol``,
  ``orderId``, ``orderLinkId``, ``limit`` 1..50 (default 20), ``cursor``).
- ``POST /v5/order/create`` (Limit/Market, ``reduceOnly``, ``positionIdx``, ``orderLinkId``,
  ``timeInForce=PostOnly``; ``triggerPrice`` makes a conditional order, stopOrderType ``Stop``).
- ``POST /v5/order/cancel`` (``orderId`` or ``orderLinkId``).
- ``POST /v5/position/trading-stop`` (``takeProfit``/``stopLoss`` on a position -> a reduce-only Market
  conditional order, stopOrderType ``TakeProfit``/``StopLoss``, createType ``CreateByTakeProfit``/
  ``CreateByStopLoss``; ``"0"`` cancels it).
- ``POST /v5/position/switch-mode`` (mode 0 one-way, 3 hedge; 110025 when unchanged, 110024 with an open
  position, 110028 with open orders).
- ``POST /v5/position/set-leverage`` (``buyLeverage`` = ``sellLeverage``, cross margin; 110043 when
  unchanged; pushes the symbol's position rows with the new leverage and margins).
- ``GET  /v5/execution/list`` (category=linear; newest first by ``execTime``; ``orderId`` > ``orderLinkId`` >
  ``symbol`` as documented, ``execType``, ``startTime``/``endTime`` by the documented 7-day rules (more:
  10001), ``limit`` 1..100 default 50, ``cursor``/``nextPageCursor`` ("" at the end)).  Rows are the
  ``execution`` pushes without the WS-only ``execPnl``, ``category``, ``isLeverage``, ``marketUnit``, and
  ``extraFees`` "" as in the REST example.  The cursor names the page's last row, so fills made between
  pages never shift the next page.
- ``GET  /v5/market/time`` and ``GET /v5/market/tickers`` (public, unsigned).

Rejections: 10001 (params, unknown symbol, position idx not matching the mode), 110001 (order does not
exist / too late to cancel), 110007 (available balance insufficient), 110017 (reduce-only rule not
satisfied), 34040 (trading-stop not modified).

WebSocket ``/v5/private``: ``{"op":"auth","args":[key, expires, HMAC("GET/realtime" + expires)]}``; an expired
``expires``, a wrong key or signature answers ``{"success":false,"ret_msg":"Params Error","op":"auth",...}``
(the observed shape; the socket stays open).  Topics ``position``, ``order``, ``execution``, ``wallet``
(and the categorised ``position.linear``, ``order.linear``, ``execution.linear``), pushed as
``{"id","topic","creationTime","data":[row]}``, one frame per engine event, in engine event order.
WebSocket ``/v5/public/linear``: ``tickers.<SYM>`` -- a ``snapshot`` on subscribe, then ``delta`` frames
carrying ``symbol`` plus only the changed fields, with ``cs`` and ``ts``; driven by engine price events
(``price_interval`` steps of the random walk, and ``engine.set_price``).
Both: text ``{"op":"ping"}`` is answered with the documented pong (private
``{"op":"pong","args":["<ms>"],"conn_id",...}``, public
``{"success":true,"ret_msg":"pong","op":"ping",...}``), protocol-level pings with pongs, and
subscribe/unsubscribe with an ack echoing ``req_id`` after
``SUBSCRIBE_ACK_DELAY`` (a few ms: pybit records the ``req_id`` only *after* sending, and an ack that
overtakes it raises on pybit's socket thread).  Pushes of a topic start only after its ack.

Conditional orders: Bybit keeps one ``orderId`` from ``Untriggered`` through ``Triggered`` to ``Filled``;
the engine instead creates a child order when a conditional triggers.  The child's events are mapped onto
the conditional's wire id (its ``orderId``, ``orderLinkId``, ``stopOrderType``, ``createType``,
``triggerPrice``), a Market child's ``New`` is not shown, the fill's execution carries the conditional's
``orderId``, and the engine's closing event of the conditional (already shown through the child) is dropped.
Cancelling the wire id of a triggered conditional cancels its live child.

Forced closes (``engine.liquidate(symbol, position_idx, price, kind)``): an order push (Market, ``createType``
``CreateByTakeOver_PassThrough`` for a liquidation, ``CreateByAdl_PassThrough`` for ADL; New then Filled),
an ``execution`` with ``execType`` ``BustTrade`` / ``AdlTrade``, then position and wallet pushes; listed by
execution/list.  ⚠ That these executions are listed by execution/list is assumed (docs leave it open).
Execution ``seq`` = the position ``seq`` after that fill (one cross sequence, as documented).

Ids: Bybit ids are UUID-shaped strings derived deterministically from the engine's int ids (a hash), with
a bidirectional map; execIds likewise.

Faults (:class:`BybitFaults`, thread-safe, usable while running) -- see its docstring.  Helpers for tests:
``price_interval=0`` (no random walk: prices move only through ``engine.set_price``), the
``price_interval`` setter (accelerate or stop the walk while running) and ``subscriptions(channel)`` (the
active topics per socket, to wait until an SDK has subscribed).

Known mismatches with the real exchange:
- One account, one coin (USDT), linear perpetuals only; other categories answer empty lists; no spot,
  options, inverse, no ``/v5/public/spot`` etc.  Only ``tickers.<SYM>`` exists on the public socket: other
  public topics, and tickers of unknown symbols, are refused (real Bybit accepts every listed topic).
- Full fills only (the engine has no partial fills); no ``PartiallyFilled`` status.  No funding is charged,
  so ``cumRealisedPnl`` is realised PnL net of trading fees only (Bybit also nets funding).
- Conditional orders trigger on the mark price (``triggerBy`` is reported as ``MarkPrice``); a conditional
  sent without ``triggerDirection`` gets the direction implied by the current mark price.  ``tpslMode``,
  ``tpTriggerBy``, ``takeProfit``/``stopLoss`` attached to an order, ``slOrderType`` etc. are ignored.
- A trading-stop TP/SL has the position's size at the time it is set and is not resized when the position
  grows (the engine caps it at the position size when it fills); changing it cancels the old conditional
  and creates a new one with a new ``orderId`` (Bybit amends the existing order in place).  Bybit validates
  TP/SL against the last price; so does the emulator.
- Post-only orders that would take liquidity end ``Rejected`` (Bybit: ``Cancelled`` with
  ``EC_PostOnlyWillTakeLiquidity``).  Reduce-only conditionals of a position that goes flat end
  ``Deactivated`` (cancelType ``CancelByTpSlTsClear``).
- Non-conditional orders have ``stopOrderType`` ``""`` on the socket and ``"UNKNOWN"`` on REST and in
  executions (as in the observed and documented samples).  ``closedPnl``, ``breakEvenPrice``, risk limits
  and ``liqPrice`` are simplified; position and account margins are the engine's (Binance's bracket
  formulas, not Bybit's risk-limit tiers); account rates are sent with 8 decimals.  A never-traded
  slot's ``createdTime`` is the emulator's start.
- Position mode is account-wide (Bybit switches it per symbol or coin).
- WS auth failures always say ``Params Error``; a private subscribe before auth answers
  ``{"success":false,"ret_msg":"Request not authorized",...}`` (the exact v5 wording is not documented).
- ``/v5/market/time`` and the REST/WS auth windows use the wall clock (the SDK signs with it), while the
  data timestamps (``creationTime``, ``updatedTime``, ``ts``, REST ``time``) come from the engine clock.
- ``order/realtime`` ignores ``openOnly`` and ``limit`` (open orders only, one page; by ``orderId``/
  ``orderLinkId`` also a finished order, however old: Bybit keeps the 500 most recent).  ``order/history``
  lists finished orders only (Bybit may list active ones too), has no ``orderStatus``/
  ``orderFilter``/time-range filters, never lags (Bybit's may), and its cursor is a plain offset.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Final

from aiohttp import WSMsgType, web

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

__all__ = ["PRIVATE", "PUBLIC", "BybitEmulator", "BybitFaults"]

logger = logging.getLogger(__name__)

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


def _wall_ms() -> int:
    return int(time.time() * 1000)


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


# --------------------------------------------------------------------------------------------- faults


@dataclass
class _RestFailure:
    http_status: int
    ret_code: int
    ret_msg: str


class _FaultHooks:
    """What BybitFaults asks the running emulator to do (no-ops until it runs)."""

    def drop(self, channel: str) -> None:
        """Abort every socket of ``channel``."""

    def send_raw(self, channel: str, text: str) -> None:
        """Queue ``text`` on every socket of ``channel``."""

    def wake(self) -> None:
        """Re-check pause state (a channel was resumed)."""


class BybitFaults:
    """Misbehaviour on demand; every method is thread-safe and takes effect at once.

    ``channel`` is ``"private"`` or ``"public"``.  Frame faults (duplicate, reorder) apply to data pushes
    (topic frames) that at least one socket of the channel receives -- not to acks, pongs or the ticker
    snapshot; a reordered push waits for the next push of its channel (a drop discards it).  Pause and
    silence apply to everything a socket would send (pushes, acks, pongs, protocol pongs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks = _FaultHooks()
        self._paused: set[str] = set()
        self._silenced: set[str] = set()
        self._duplicate: dict[str, int] = {}
        self._reorder: set[str] = set()
        self._auth_rejected = False
        self._ws_refused = False
        self._rest_delays: dict[str, float] = {}
        self._rest_failures: dict[str, deque[_RestFailure]] = {}

    # -- public

    def drop_private(self) -> None:
        """Abort every private socket (TCP closed without a close frame, like a network drop)."""
        self._hooks.drop(PRIVATE)

    def drop_public(self) -> None:
        """Abort every public socket."""
        self._hooks.drop(PUBLIC)

    def send_raw(self, channel: str, text: str) -> None:
        """Send ``text`` verbatim to every socket of ``channel`` (after what is already queued)."""
        self._hooks.send_raw(_check_channel(channel), text)

    def duplicate_next(self, channel: str, n: int = 1) -> None:
        """Send each of the next ``n`` data pushes of ``channel`` twice."""
        with self._lock:
            self._duplicate[_check_channel(channel)] = self._duplicate.get(channel, 0) + n

    def reorder_next(self, channel: str) -> None:
        """Hold the next data push of ``channel`` and send it after the push that follows it."""
        with self._lock:
            self._reorder.add(_check_channel(channel))

    def pause(self, channel: str) -> None:
        """Stop sending on ``channel``; everything is queued and sent, in order, on :meth:`resume`."""
        with self._lock:
            self._paused.add(_check_channel(channel))

    def resume(self, channel: str) -> None:
        """Undo :meth:`pause`."""
        with self._lock:
            self._paused.discard(_check_channel(channel))
        self._hooks.wake()

    def reject_auth(self, on: bool = True) -> None:
        """While on, private WS auth fails and signed REST answers 10003."""
        with self._lock:
            self._auth_rejected = on

    def silence(self, channel: str, on: bool = True) -> None:
        """A half-dead socket: while on, nothing is sent on ``channel`` (pushes, acks and pongs are
        discarded, protocol pings unanswered) but the sockets stay open."""
        with self._lock:
            if on:
                self._silenced.add(_check_channel(channel))
            else:
                self._silenced.discard(_check_channel(channel))

    def rest_delay(self, path: str, seconds: float) -> None:
        """Delay every answer on ``path`` (e.g. ``/v5/position/list``) by ``seconds``; 0 removes it."""
        with self._lock:
            if seconds > 0:
                self._rest_delays[path] = seconds
            else:
                self._rest_delays.pop(path, None)

    def rest_fail(self, path: str, http_status: int, ret_code: int, ret_msg: str, times: int = 1) -> None:
        """Answer the next ``times`` requests on ``path`` with ``http_status`` and this retCode/retMsg."""
        with self._lock:
            queue = self._rest_failures.setdefault(path, deque())
            queue.extend(_RestFailure(http_status, ret_code, ret_msg) for _ in range(times))

    def refuse_ws(self, on: bool = True) -> None:
        """While on, WebSocket upgrade requests are answered with HTTP 503."""
        with self._lock:
            self._ws_refused = on

    # -- used by the emulator

    def _bind(self, hooks: _FaultHooks) -> None:
        self._hooks = hooks

    def _take_push_action(self, channel: str) -> tuple[int, bool]:
        """(copies, hold) for the next data push on ``channel``; consumes the one-shot faults."""
        with self._lock:
            hold = channel in self._reorder
            self._reorder.discard(channel)
            copies = 1
            if self._duplicate.get(channel, 0) > 0:
                self._duplicate[channel] -= 1
                copies = 2
            return copies, hold

    def _is_paused(self, channel: str) -> bool:
        with self._lock:
            return channel in self._paused

    def _is_silenced(self, channel: str) -> bool:
        with self._lock:
            return channel in self._silenced

    def _auth_is_rejected(self) -> bool:
        with self._lock:
            return self._auth_rejected

    def _ws_is_refused(self) -> bool:
        with self._lock:
            return self._ws_refused

    def _rest_delay_for(self, path: str) -> float:
        with self._lock:
            return self._rest_delays.get(path, 0.0)

    def _take_rest_failure(self, path: str) -> _RestFailure | None:
        with self._lock:
            queue = self._rest_failures.get(path)
            return queue.popleft() if queue else None


def _check_channel(channel: str) -> str:
    if channel not in _CHANNELS:
        raise ValueError(f"channel must be 'private' or 'public', not {channel!r}")
    return channel


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


# --------------------------------------------------------------------------------------------- tickers


@dataclass
class _Ticker:
    """The public ticker of one symbol as last published (deltas are diffs against ``fields``)."""

    open_price: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    direction: str = "PlusTick"
    fields: dict[str, str] = field(default_factory=dict)
    cs: int = 0

    def update(self, prices: Prices, tick: Decimal) -> dict[str, str]:
        last = prices.last
        if last > self.last:
            self.direction = "PlusTick"
        elif last < self.last:
            self.direction = "MinusTick"
        elif not self.direction.startswith("Zero"):
            self.direction = "Zero" + self.direction
        self.last = last
        self.high = max(self.high, last)
        self.low = min(self.low, last)
        change = ((last - self.open_price) / self.open_price).quantize(Decimal("0.000001"))
        return {
            "symbol": prices.symbol,
            "tickDirection": self.direction,
            "price24hPcnt": _s(change),
            "lastPrice": _s(last),
            "prevPrice24h": _s(self.open_price),
            "highPrice24h": _s(self.high),
            "lowPrice24h": _s(self.low),
            "prevPrice1h": _s(self.open_price),
            "markPrice": _s(prices.mark),
            "indexPrice": _s(prices.index),
            "openInterest": "0",
            "openInterestValue": "0",
            "turnover24h": "0",
            "volume24h": "0",
            "fundingIntervalHour": "8",
            "fundingCap": "0.005",
            "nextFundingTime": str(prices.next_funding_time),
            "fundingRate": _s(prices.funding_rate),
            "bid1Price": _s(last),
            "bid1Size": "1",
            "ask1Price": _s(last + tick),
            "ask1Size": "1",
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        }


# --------------------------------------------------------------------------------------------- sockets


@dataclass(eq=False)
class _Conn:
    """One accepted WebSocket; only the loop thread touches it."""

    channel: str
    conn_id: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    queue: asyncio.Queue[str | bytes] = field(default_factory=asyncio.Queue)  # text frame | pong payload
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    topics: set[str] = field(default_factory=set)
    authed: bool = False
    closed: bool = False

    def send_text(self, text: str) -> None:
        if not self.closed:
            self.queue.put_nowait(text)

    def send_json(self, obj: Any) -> None:
        self.send_text(_dumps(obj))

    def send_pong(self, data: bytes) -> None:
        if not self.closed:
            self.queue.put_nowait(data)

    def topics_for(self, kind: str) -> list[str]:
        if kind == "wallet":
            return ["wallet"] if "wallet" in self.topics else []
        return [t for t in (kind, f"{kind}.linear") if t in self.topics]


# --------------------------------------------------------------------------------------------- emulator


class _Hooks(_FaultHooks):
    """Runs the faults' actions on the emulator's loop."""

    def __init__(self, emulator: BybitEmulator) -> None:
        self._emulator = emulator

    def drop(self, channel: str) -> None:
        self._emulator._call_in_loop(self._emulator._abort_channel, channel)

    def send_raw(self, channel: str, text: str) -> None:
        self._emulator._call_in_loop(self._emulator._send_raw_now, channel, text)

    def wake(self) -> None:
        self._emulator._call_in_loop(self._emulator._wake_all)


class BybitEmulator:
    """The loopback Bybit v5 exchange: an :class:`Engine` behind REST and two WebSocket paths.

    Construct, optionally prepare state through :attr:`engine`, then :meth:`start` (or use ``with``).
    ``price_interval`` is the random-walk cadence in seconds (0: no walk, prices move only through
    ``engine.set_price``, for exact tests); ``clock`` (ms) stamps the data, default wall time.
    Drive the market and the account from any thread through :attr:`engine`: every change is pushed.
    """

    SUBSCRIBE_ACK_DELAY: float = 0.005

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        api_key: str = "test-key",
        api_secret: str = "test-secret",
        price_interval: float = 1.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._config = config if config is not None else DEFAULT_CONFIG
        self._api_key = api_key
        self._api_secret = api_secret
        self._price_interval = price_interval
        self._clock = clock if clock is not None else _wall_ms
        self._engine = Engine(self._config, self._clock)
        self._created = self._clock()
        self._ids = _IdBook()
        self._translator = _Translator(self._config, self._ids)
        self._faults = BybitFaults()
        self._faults._bind(_Hooks(self))
        self._ticks = {s.symbol: s.tick_size for s in self._config.symbols}
        self._calls_lock = threading.Lock()
        self._rest_calls: dict[str, int] = {}
        self._server: LoopbackServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._price_handle: Ticker | None = None
        self._conns: dict[str, set[_Conn]] = {PRIVATE: set(), PUBLIC: set()}
        self._held: dict[str, list[_Push | tuple[str, str]]] = {PRIVATE: [], PUBLIC: []}
        self._tickers: dict[str, _Ticker] = {}
        self._conn_numbers = itertools.count(1)
        self._routes: dict[tuple[str, str], tuple[Callable[[_Row], _Row], bool]] = {
            ("GET", "/v5/position/list"): (self._position_list, True),
            ("GET", "/v5/account/wallet-balance"): (self._wallet_balance, True),
            ("GET", "/v5/order/realtime"): (self._order_realtime, True),
            ("GET", "/v5/order/history"): (self._order_history, True),
            ("GET", "/v5/execution/list"): (self._execution_list, True),
            ("POST", "/v5/order/create"): (self._order_create, True),
            ("POST", "/v5/order/cancel"): (self._order_cancel, True),
            ("POST", "/v5/position/trading-stop"): (self._trading_stop, True),
            ("POST", "/v5/position/switch-mode"): (self._switch_mode, True),
            ("POST", "/v5/position/set-leverage"): (self._set_leverage, True),
            ("GET", "/v5/market/time"): (self._market_time, False),
            ("GET", "/v5/market/tickers"): (self._market_tickers, False),
        }
        self._engine.add_listener(self._on_engine_event)

    # -- public surface

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def faults(self) -> BybitFaults:
        return self._faults

    @property
    def endpoints(self) -> Endpoints:
        server = self._require_server()
        return Endpoints(rest=server.http_url, ws=server.ws_url)

    @property
    def price_interval(self) -> float:
        """Seconds between random-walk steps (0: no price loop)."""
        return self._price_interval

    @price_interval.setter
    def price_interval(self, seconds: float) -> None:
        """Change the cadence, also while running: e.g. 0.05 s to accelerate a test, 0 to stop the walk."""
        self._price_interval = seconds
        handle, server = self._price_handle, self._server
        if handle is not None and seconds > 0:
            handle.interval = seconds
        elif handle is not None:
            handle.cancel()
            self._price_handle = None
        elif server is not None and seconds > 0:
            self._price_handle = server.every(seconds, self._price_step)

    @property
    def rest_calls(self) -> dict[str, int]:
        """Requests received per ``"METHOD /path"`` (rejected and faulted ones included); a copy."""
        with self._calls_lock:
            return dict(self._rest_calls)

    def subscriptions(self, channel: str, timeout: float = 5.0) -> list[set[str]]:
        """The active topics of every open socket of ``channel`` (e.g. to wait until an SDK subscribed)."""
        _check_channel(channel)

        async def collect() -> list[set[str]]:
            return [set(conn.topics) for conn in self._conns[channel] if not conn.closed]

        return self._require_server().run_coroutine(collect()).result(timeout)

    def start(self, timeout: float = 10.0) -> None:
        """Serve on 127.0.0.1 (ephemeral port) and start the price loop; returns once listening."""
        if self._server is not None:
            return
        server = LoopbackServer(self._make_app, name="bybit-emulator")
        server.start(timeout=timeout)
        self._server = server
        self._loop = server.loop
        if self._price_interval > 0:
            self._price_handle = server.every(self._price_interval, self._price_step)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every socket and stop serving; idempotent."""
        server = self._server
        if server is None:
            return
        if self._price_handle is not None:
            self._price_handle.cancel()
            self._price_handle = None
        self._loop = None  # engine events from now on are not pushed
        self._server = None
        server.stop(timeout=timeout)  # closes every tracked socket with 1001, then joins its thread

    def __enter__(self) -> BybitEmulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _require_server(self) -> LoopbackServer:
        if self._server is None:
            raise RuntimeError("BybitEmulator is not running; call start() first")
        return self._server

    # -- engine -> loop

    def _price_step(self) -> None:
        try:
            self._engine.step()
        except Exception:
            logger.exception("bybit emulator: price step failed")

    def _on_engine_event(self, event: EngineEvent) -> None:
        """Runs under the engine lock on the engine caller's thread: translate, then hand to the loop."""
        try:
            pushes = self._translator.on_event(event)
        except Exception:
            logger.exception("bybit emulator: failed to translate %s", type(event).__name__)
            return
        if pushes:
            self._call_in_loop(self._fanout, pushes)
        if isinstance(event, PriceEvent):
            self._call_in_loop(self._publish_ticker, event.prices, event.timestamp)

    def _fanout(self, pushes: list[_Push]) -> None:
        for push in pushes:
            self._emit(PRIVATE, push)

    def _emit(self, channel: str, item: _Push | tuple[str, str]) -> None:
        """Deliver one data push on ``channel``, applying the duplicate/reorder faults."""
        if not any(self._targets(conn, item) for conn in self._conns[channel]):
            return
        copies, hold = self._faults._take_push_action(channel)
        if hold:
            self._held[channel].append(item)
            return
        for _ in range(copies):
            self._deliver(channel, item)
        held, self._held[channel] = self._held[channel], []
        for late in held:
            self._deliver(channel, late)

    @staticmethod
    def _targets(conn: _Conn, item: _Push | tuple[str, str]) -> list[str]:
        if isinstance(item, _Push):
            return conn.topics_for(item.kind)
        topic = item[0]
        return [topic] if topic in conn.topics else []

    def _deliver(self, channel: str, item: _Push | tuple[str, str]) -> None:
        for conn in list(self._conns[channel]):
            for topic in self._targets(conn, item):
                if isinstance(item, _Push):
                    conn.send_json({"id": item.push_id, "topic": topic, "creationTime": item.timestamp,
                                    "data": [item.row]})
                else:
                    conn.send_text(item[1])

    # -- tickers (loop thread)

    def _ticker(self, symbol: str) -> _Ticker:
        ticker = self._tickers.get(symbol)
        return ticker if ticker is not None else self._new_ticker(self._engine.prices(symbol))

    def _new_ticker(self, prices: Prices) -> _Ticker:
        ticker = _Ticker(prices.last, prices.last, prices.last, prices.last)
        ticker.fields = ticker.update(prices, self._ticks[prices.symbol])
        self._tickers[prices.symbol] = ticker
        return ticker

    def _publish_ticker(self, prices: Prices, timestamp: int) -> None:
        """Diff against the last published fields; nobody subscribed yet means nothing to send."""
        ticker = self._tickers.get(prices.symbol)
        if ticker is None:
            self._new_ticker(prices)
            return
        fields = ticker.update(prices, self._ticks[prices.symbol])
        changed = {k: v for k, v in fields.items() if ticker.fields.get(k) != v}
        ticker.fields = fields
        if not changed:
            return
        ticker.cs += 1
        topic = f"tickers.{prices.symbol}"
        frame = {"topic": topic, "type": "delta", "data": {"symbol": prices.symbol, **changed},
                 "cs": ticker.cs, "ts": timestamp}
        self._emit(PUBLIC, (topic, _dumps(frame)))

    def _ticker_snapshot(self, symbol: str) -> str:
        ticker = self._ticker(symbol)
        return _dumps({"topic": f"tickers.{symbol}", "type": "snapshot", "data": dict(ticker.fields),
                       "cs": ticker.cs, "ts": self._clock()})

    # -- fault actions (scheduled from any thread, run on the loop)

    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            logger.debug("bybit emulator: loop closed, %r skipped", fn)

    def _abort_channel(self, channel: str) -> None:
        for conn in list(self._conns[channel]):
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()
        self._held[channel] = []

    def _send_raw_now(self, channel: str, text: str) -> None:
        for conn in list(self._conns[channel]):
            conn.send_text(text)

    def _wake_all(self) -> None:
        for conns in self._conns.values():
            for conn in conns:
                conn.wake.set()

    # -- aiohttp app

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v5/private", self._private_ws)
        app.router.add_get("/v5/public/linear", self._public_ws)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        return app

    # -- REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._calls_lock:
            key = f"{request.method} {path}"
            self._rest_calls[key] = self._rest_calls.get(key, 0) + 1
        delay = self._faults._rest_delay_for(path)
        if delay > 0:
            await asyncio.sleep(delay)
        failure = self._faults._take_rest_failure(path)
        if failure is not None:
            return self._json(self._envelope({}, failure.ret_code, failure.ret_msg), failure.http_status)
        route = self._routes.get((request.method, path))
        if route is None:
            return web.Response(status=404, text="404 page not found")
        handler, signed = route
        body = await request.text()
        try:
            if signed:
                payload = request.rel_url.raw_query_string if request.method == "GET" else body
                self._verify(request, payload)
            result = handler(self._params(request, body))
        except _RestError as err:
            return self._json(self._envelope({}, err.ret_code, err.ret_msg), err.http_status)
        except EngineError as err:
            rest_err = _rest_error_from(err)
            return self._json(self._envelope({}, rest_err.ret_code, rest_err.ret_msg))
        return self._json(self._envelope(result))

    @staticmethod
    def _params(request: web.Request, body: str) -> _Row:
        if request.method == "GET":
            return dict(request.query)
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            raise _RestError(10001, "params error: request body is not JSON") from None
        if not isinstance(params, dict):
            raise _RestError(10001, "params error: request body is not a JSON object")
        return params

    def _verify(self, request: web.Request, payload: str) -> None:
        headers = request.headers
        key = headers.get("X-BAPI-API-KEY", "")
        if self._faults._auth_is_rejected() or not hmac.compare_digest(key, self._api_key):
            raise _RestError(10003, "API key is invalid.")
        timestamp = headers.get("X-BAPI-TIMESTAMP", "")
        recv_window = headers.get("X-BAPI-RECV-WINDOW", "5000")
        now = _wall_ms()
        try:
            ts, window = int(timestamp), int(recv_window)
        except ValueError:
            raise _RestError(10002, "invalid request, please check your timestamp and recv_window") from None
        if not now - window <= ts < now + 1000:
            raise _RestError(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]",
            )
        expected = _sign(self._api_secret, timestamp + key + recv_window + payload)
        if not hmac.compare_digest(headers.get("X-BAPI-SIGN", ""), expected):
            raise _RestError(10004, "error sign! please check your signature generation algorithm.")

    def _envelope(self, result: _Row, ret_code: int = 0, ret_msg: str = "OK") -> _Row:
        return {"retCode": ret_code, "retMsg": ret_msg, "result": result, "retExtInfo": {},
                "time": self._clock()}

    @staticmethod
    def _json(body: _Row, status: int = 200) -> web.Response:
        return web.Response(status=status, text=_dumps(body), content_type="application/json")

    def _require_linear(self, params: _Row) -> bool:
        """True for linear; False for another real category (answered with an empty list)."""
        category = params.get("category")
        if category == "linear":
            return True
        if category in ("inverse", "option", "spot"):
            return False
        raise _RestError(10001, "params error: category invalid")

    def _require_symbol(self, symbol: Any) -> str:
        if not isinstance(symbol, str) or symbol not in self._ticks:
            raise _RestError(10001, "params error: symbol invalid")
        return symbol

    def _position_list(self, params: _Row) -> _Row:
        symbol, settle = params.get("symbol"), params.get("settleCoin")
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        if not symbol and not settle:
            raise _RestError(10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        if symbol:
            rows = self._symbol_positions(self._require_symbol(symbol))
        elif settle == self._config.coin:
            rows = self._translator.rest_position_rows([p for p in self._engine.positions() if p.size > 0])
        else:
            rows = []
        return {"list": rows, "nextPageCursor": "", "category": "linear"}

    def _symbol_positions(self, symbol: str) -> list[_Row]:
        slots = (1, 2) if self._engine.hedge_mode else (0,)
        positions = [p for p in self._engine.positions(symbol) if p.position_idx in slots]
        rows = dict(zip((p.position_idx for p in positions), self._translator.rest_position_rows(positions),
                        strict=True))
        mark, leverage = self._engine.prices(symbol).mark, self._engine.leverage(symbol)
        flat = self._translator.flat_position_row
        return [rows.get(idx) or flat(symbol, idx, mark, leverage, self._created) for idx in slots]

    def _wallet_balance(self, params: _Row) -> _Row:
        if params.get("accountType") != "UNIFIED":
            raise _RestError(10001, "accountType only support UNIFIED.")
        row = self._translator.rest_wallet_row(self._engine.wallet())
        coins = params.get("coin")
        if coins and self._config.coin not in str(coins).split(","):
            row["coin"] = []
        return {"list": [row]}

    def _order_realtime(self, params: _Row) -> _Row:
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        symbol = params.get("symbol")
        settle = params.get("settleCoin")
        if settle and settle != self._config.coin:
            return {"list": [], "nextPageCursor": "", "category": "linear"}
        symbol = self._require_symbol(symbol) if symbol else None
        rows = self._translator.rest_order_rows(self._engine.open_orders(symbol))
        by_id = params.get("orderId") or params.get("orderLinkId")
        if by_id:  # asked by id, Bybit also answers recently finished orders
            rows = _matching_ids(rows + self._translator.finished_order_rows(symbol), params)[:1]
        return {"list": rows, "nextPageCursor": "", "category": "linear"}

    def _order_history(self, params: _Row) -> _Row:
        """Finished orders, most recent first, ``limit`` (1..50, default 20) per page, offset cursors."""
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        symbol = params.get("symbol")
        rows = self._translator.finished_order_rows(self._require_symbol(symbol) if symbol else None)
        rows = _matching_ids(rows, params)
        limit = _int(params, "limit", 20)
        if not 1 <= limit <= 50:
            raise _RestError(10001, "params error: limit must be between 1 and 50")
        cursor = params.get("cursor") or "0"
        if not str(cursor).isdigit():
            raise _RestError(10001, "params error: cursor invalid")
        start = int(cursor)
        page = rows[start:start + limit]
        next_cursor = str(start + limit) if start + limit < len(rows) else ""
        return {"list": page, "nextPageCursor": next_cursor, "category": "linear"}

    def _execution_list(self, params: _Row) -> _Row:
        """Executions newest first (execTime, then id), ``limit`` 1..100 (default 50), cursor pages.

        The cursor names the last execution of the page, so fills made between two pages do not shift
        the next one.  ``orderId`` > ``orderLinkId`` > ``symbol`` (the documented priority).
        """
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        limit = _int(params, "limit", 50)
        if not 1 <= limit <= 100:
            raise _RestError(10001, "params error: limit must be between 1 and 100")
        start, end = _execution_window(params, self._clock())
        keep = self._execution_filter(params, start, end)
        rows = self._translator.execution_rows(keep)
        cursor = str(params.get("cursor") or "")
        if cursor:
            after = self._ids.trade_id_of_cursor(cursor)
            if after is None:
                raise _RestError(10001, "params error: cursor invalid")
            rows = [(f, r) for f, r in rows if (f.timestamp, f.trade_id) < after]
        page = rows[:limit]
        next_cursor = self._ids.cursor(page[-1][0]) if len(rows) > limit else ""
        return {"nextPageCursor": next_cursor, "category": "linear", "list": [r for _, r in page]}

    def _execution_filter(self, params: _Row, start: int, end: int) -> Callable[[Fill, _Row], bool]:
        order_id, link_id = params.get("orderId"), params.get("orderLinkId")
        symbol = params.get("symbol")
        if symbol and not (order_id or link_id):
            self._require_symbol(symbol)
        exec_type = params.get("execType")

        def keep(fill: Fill, row: _Row) -> bool:
            if not start <= fill.timestamp <= end or (exec_type and row["execType"] != exec_type):
                return False
            if order_id:
                return bool(row["orderId"] == order_id)
            if link_id:
                return bool(row["orderLinkId"] == link_id)
            return not symbol or fill.symbol == symbol

        return keep

    def _order_create(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        side, order_type = params.get("side"), params.get("orderType")
        if side not in ("Buy", "Sell"):
            raise _RestError(10001, "params error: side invalid")
        if order_type not in ("Limit", "Market"):
            raise _RestError(10001, "params error: orderType invalid")
        qty = _dec(params, "qty")
        price = _dec(params, "price") if order_type == "Limit" else None
        if qty is None or qty <= 0:
            raise _RestError(10001, "params error: qty invalid")
        common: _Row = {
            "symbol": symbol, "side": side, "order_type": order_type, "qty": qty, "price": price,
            "position_idx": _int(params, "positionIdx", 0),
            "client_order_id": str(params.get("orderLinkId") or ""),
        }
        trigger = _dec(params, "triggerPrice", required=False)
        if trigger is not None and trigger > 0:
            kind = self._conditional_kind(symbol, side, trigger, params.get("triggerDirection"))
            with self._translator.origin("Stop", "CreateByUser"):
                order = self._engine.place_conditional(
                    **common, trigger_price=trigger, reduce_only=_flag(params.get("reduceOnly")), kind=kind)
        else:
            order = self._engine.place_order(
                **common, reduce_only=_flag(params.get("reduceOnly")),
                post_only=params.get("timeInForce") == "PostOnly")
        return {"orderId": self._ids.order_wire_id(order.order_id), "orderLinkId": order.client_order_id}

    def _require_linear_only(self, params: _Row) -> None:
        if params.get("category") != "linear":
            raise _RestError(10001, "params error: category invalid (the emulator serves linear only)")

    def _conditional_kind(self, symbol: str, side: str, trigger: Decimal, direction: Any) -> str:
        """Bybit's triggerDirection (1 rises to, 2 falls to) -> the engine's TP/SL trigger sense."""
        mark = self._engine.prices(symbol).mark
        if direction in (None, "", 0, "0"):
            rises = trigger > mark
        elif str(direction) in ("1", "2"):
            rises = str(direction) == "1"
        else:
            raise _RestError(10001, "params error: triggerDirection invalid")
        now = f"trigger_price[{_s(trigger)}] {{}} current[{_s(mark)}]??MarkPrice"
        if rises and trigger <= mark:
            raise _RestError(110092, "expect Rising, but " + now.format("<="))
        if not rises and trigger >= mark:
            raise _RestError(110093, "expect Falling, but " + now.format(">="))
        return "TakeProfit" if rises == (side == "Sell") else "StopLoss"

    def _order_cancel(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        wire_id, link_id = params.get("orderId"), params.get("orderLinkId")
        if wire_id:
            engine_id = self._ids.engine_id(str(wire_id))
        elif link_id:
            engine_id = self._translator.find_by_link(symbol, str(link_id))
        else:
            raise _RestError(10001, "params error: orderId or orderLinkId is required")
        if engine_id is None:
            raise _RestError(110001, "order not exists or too late to cancel")
        # the engine cancels a triggered conditional through its resting child
        order = self._engine.cancel_order(symbol=symbol, order_id=engine_id)
        return {"orderId": self._ids.order_wire_id(order.order_id), "orderLinkId": order.client_order_id}

    def _trading_stop(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        position = self._engine.position(symbol, _int(params, "positionIdx", 0))
        targets = {"TakeProfit": _dec(params, "takeProfit", required=False),
                   "StopLoss": _dec(params, "stopLoss", required=False)}
        if all(v is None for v in targets.values()):
            raise _RestError(10001, "params error: takeProfit, stopLoss or trailingStop is required")
        if position.size == 0:
            raise _RestError(10001, "can not set tp/sl/ts for zero position")
        changed = False
        for kind, value in targets.items():
            if value is not None:
                changed |= self._set_tpsl(position, kind, value)
        if not changed:
            raise _RestError(34040, "not modified")
        return {}

    def _set_tpsl(self, position: Position, kind: str, trigger: Decimal) -> bool:
        """Place, replace or (trigger 0) cancel the position's TP/SL conditional; False if unchanged."""
        existing = self._translator.tpsl_order(position.symbol, position.position_idx, kind)
        if existing is not None and existing.trigger_price == trigger:
            return False
        if trigger == 0 and existing is None:
            return False
        if trigger != 0:
            self._check_tpsl_side(position, kind, trigger)
        if existing is not None:
            self._engine.cancel_order(symbol=position.symbol, order_id=existing.order_id)
        if trigger == 0:
            return True
        create_type = "CreateByTakeProfit" if kind == "TakeProfit" else "CreateByStopLoss"
        with self._translator.origin(kind, create_type):
            order = self._engine.place_conditional(
                symbol=position.symbol, side="Sell" if position.side == "Buy" else "Buy", order_type="Market",
                qty=position.size, trigger_price=trigger, reduce_only=True,
                position_idx=position.position_idx, kind=kind)
        self._translator.set_tpsl(position.symbol, position.position_idx, kind, order.order_id)
        return True

    def _check_tpsl_side(self, position: Position, kind: str, trigger: Decimal) -> None:
        base = self._engine.prices(position.symbol).last
        above = (kind == "TakeProfit") == (position.side == "Buy")
        if above and trigger <= base:
            raise _RestError(10001, f"{kind}:{_s(trigger)} set for {position.side} position should be "
                                    f"higher than base_price:{_s(base)}??LastPrice")
        if not above and trigger >= base:
            raise _RestError(10001, f"{kind}:{_s(trigger)} set for {position.side} position should be "
                                    f"lower than base_price:{_s(base)}??LastPrice")

    def _switch_mode(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        if not params.get("symbol") and not params.get("coin"):
            raise _RestError(10001, "params error: symbol or coin is required")
        mode = _int(params, "mode", -1)
        if mode not in (0, 3):
            raise _RestError(10001, "params error: mode invalid")
        hedge = mode == 3
        if self._engine.hedge_mode == hedge:
            raise _RestError(110025, "Position mode is not modified")
        if self._engine.open_orders():
            raise _RestError(110028, "Open orders exist, so you cannot change position mode")
        if any(p.size > 0 for p in self._engine.positions()):
            raise _RestError(110024, "You have an existing position, so position mode cannot be switched")
        self._engine.set_hedge_mode(hedge)
        return {}

    def _set_leverage(self, params: _Row) -> _Row:
        """Cross margin: ``buyLeverage`` must equal ``sellLeverage``; unchanged is 110043."""
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        buy, sell = _dec(params, "buyLeverage"), _dec(params, "sellLeverage")
        if buy != sell or buy is None:
            raise _RestError(10001, "params error: buyLeverage must equal sellLeverage in cross margin")
        if buy == self._engine.leverage(symbol):
            raise _RestError(110043, "Set leverage not modified")
        self._engine.set_leverage(symbol, buy)
        return {}

    def _market_time(self, params: _Row) -> _Row:
        now = _wall_ms()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def _market_tickers(self, params: _Row) -> _Row:
        if not self._require_linear(params):
            return {"category": params["category"], "list": []}
        symbol = params.get("symbol")
        symbols = [self._require_symbol(symbol)] if symbol else list(self._ticks)
        return {"category": "linear", "list": [dict(self._ticker(s).fields) for s in symbols]}

    # -- WebSockets

    async def _private_ws(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, PRIVATE)

    async def _public_ws(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, PUBLIC)

    async def _serve_ws(self, request: web.Request, channel: str) -> web.StreamResponse:
        if self._faults._ws_is_refused():
            return web.Response(status=503, text="Service Unavailable")
        # autoping off: protocol pongs go through the sender, so silence() can withhold them too
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = _Conn(channel, self._new_conn_id(channel), ws, request.transport)
        server = self._require_server()
        self._conns[channel].add(conn)
        server.track_websocket(ws)
        sender = asyncio.get_running_loop().create_task(self._sender(conn))
        try:
            await self._receive(conn)
        finally:
            conn.closed = True
            self._conns[channel].discard(conn)
            sender.cancel()
            server.untrack(ws)
        return ws

    def _new_conn_id(self, channel: str) -> str:
        number = next(self._conn_numbers)
        if channel == PRIVATE:
            return f"{_uuid_like('conn', number).replace('-', '')[:20]}-{number:x}"
        return _uuid_like("conn", number)

    async def _receive(self, conn: _Conn) -> None:
        async for msg in conn.ws:
            if msg.type == WSMsgType.TEXT:
                self._on_text(conn, msg.data)
            elif msg.type == WSMsgType.PING:
                conn.send_pong(bytes(msg.data))  # aiohttp hands a bytearray
            elif msg.type == WSMsgType.ERROR:
                logger.debug("bybit emulator: %s socket error: %s", conn.channel, conn.ws.exception())
                return

    async def _sender(self, conn: _Conn) -> None:
        """The only writer of a socket: sends queued items in order, honouring pause and silence."""
        try:
            while True:
                data = await conn.queue.get()
                await self._wait_unpaused(conn)
                if self._faults._is_silenced(conn.channel):
                    continue
                if isinstance(data, bytes):
                    await conn.ws.pong(data)
                else:
                    await conn.ws.send_str(data)
        except (ConnectionError, RuntimeError) as err:
            logger.debug("bybit emulator: %s send failed: %s", conn.channel, err)
        except Exception:
            logger.exception("bybit emulator: %s sender failed", conn.channel)
            if conn.transport is not None:
                conn.transport.abort()  # a socket that can no longer send must not look alive

    async def _wait_unpaused(self, conn: _Conn) -> None:
        while self._faults._is_paused(conn.channel):
            conn.wake.clear()
            await conn.wake.wait()

    def _on_text(self, conn: _Conn, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            conn.send_json({"success": False, "ret_msg": "error:request not json", "conn_id": conn.conn_id})
            return
        if not isinstance(message, dict):
            conn.send_json({"success": False, "ret_msg": "error:request not json", "conn_id": conn.conn_id})
            return
        op = message.get("op")
        handlers: dict[Any, Callable[[_Conn, _Row], None]] = {
            "ping": self._on_ping, "auth": self._on_auth,
            "subscribe": self._on_subscribe, "unsubscribe": self._on_unsubscribe,
        }
        handler = handlers.get(op)
        if handler is None:
            conn.send_json({"success": False, "ret_msg": f"error:invalid op:{op}", "conn_id": conn.conn_id})
            return
        handler(conn, message)

    def _on_ping(self, conn: _Conn, message: _Row) -> None:
        req_id = message.get("req_id")
        if conn.channel == PRIVATE:
            pong: _Row = {"op": "pong", "args": [str(self._clock())], "conn_id": conn.conn_id}
            if req_id is not None:
                pong = {"req_id": req_id, **pong}
        else:
            pong = {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id,
                    "req_id": req_id if req_id is not None else "", "op": "ping"}
        conn.send_json(pong)

    def _answer(self, conn: _Conn, message: _Row, op: str, ok: bool, ret_msg: str) -> _Row:
        answer: _Row = {"success": ok, "ret_msg": ret_msg, "op": op, "conn_id": conn.conn_id}
        if "req_id" in message:
            answer["req_id"] = message["req_id"]
        return answer

    def _on_auth(self, conn: _Conn, message: _Row) -> None:
        ok = conn.channel == PRIVATE and self._auth_args_valid(message.get("args"))
        conn.authed = conn.authed or ok
        conn.send_json(self._answer(conn, message, "auth", ok, "" if ok else "Params Error"))

    def _auth_args_valid(self, args: Any) -> bool:
        if self._faults._auth_is_rejected() or not isinstance(args, list) or len(args) != 3:
            return False
        key, expires, signature = args
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            return False
        if expires_ms <= _wall_ms() or not isinstance(key, str) or not isinstance(signature, str):
            return False
        expected = _sign(self._api_secret, f"GET/realtime{expires}")
        return hmac.compare_digest(key, self._api_key) and hmac.compare_digest(signature, expected)

    def _on_subscribe(self, conn: _Conn, message: _Row) -> None:
        topics = message.get("args")
        error = self._subscribe_error(conn, topics)
        loop = asyncio.get_running_loop()
        if error:
            loop.call_later(self.SUBSCRIBE_ACK_DELAY, conn.send_json,
                            self._answer(conn, message, "subscribe", False, error))
            return
        assert isinstance(topics, list)
        loop.call_later(self.SUBSCRIBE_ACK_DELAY, self._activate, conn, message, [str(t) for t in topics])

    def _subscribe_error(self, conn: _Conn, topics: Any) -> str:
        if not isinstance(topics, list) or not topics:
            return "error:args is empty"
        if conn.channel == PRIVATE and not conn.authed:
            return "Request not authorized"
        for topic in topics:
            if topic in conn.topics:
                return f"error:already subscribed,topic:{topic}"
            if not self._topic_known(conn.channel, topic):
                return f"error:handler not found,topic:{topic}"
        return ""

    def _topic_known(self, channel: str, topic: Any) -> bool:
        if not isinstance(topic, str):
            return False
        if channel == PUBLIC:
            return topic.startswith("tickers.") and topic[len("tickers."):] in self._ticks
        if topic in ("wallet", "greeks"):
            return True
        return any(topic == kind + suffix for kind in _PRIVATE_KINDS for suffix in _CATEGORY_SUFFIXES)

    def _activate(self, conn: _Conn, message: _Row, topics: list[str]) -> None:
        """The ack, then (tickers) the snapshot; pushes of these topics start from here."""
        if conn.closed:
            return
        conn.topics.update(topics)
        conn.send_json(self._ack(conn, message, "subscribe"))
        for topic in topics:
            if topic.startswith("tickers."):
                conn.send_text(self._ticker_snapshot(topic[len("tickers."):]))

    def _ack(self, conn: _Conn, message: _Row, op: str) -> _Row:
        if conn.channel == PUBLIC:
            return {"success": True, "ret_msg": "", "conn_id": conn.conn_id,
                    "req_id": message.get("req_id", ""), "op": op}
        return self._answer(conn, message, op, True, "")

    def _on_unsubscribe(self, conn: _Conn, message: _Row) -> None:
        topics = message.get("args")
        if isinstance(topics, list):
            conn.topics.difference_update(str(t) for t in topics)
        asyncio.get_running_loop().call_later(self.SUBSCRIBE_ACK_DELAY, conn.send_json,
                                              self._ack(conn, message, "unsubscribe"))
