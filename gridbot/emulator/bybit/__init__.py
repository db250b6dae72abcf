"""A loopback Bybit v5 exchange (linear perpetuals) that unmodified pybit 5.17.0 talks to as to the real one.

Why: gridbot's Bybit adapter, the demo and the benchmarks need an exchange that speaks Bybit's wire
protocol byte-for-byte where pybit cares, is deterministic, and can misbehave on demand (faults).
The matching and accounting live in :mod:`gridbot.emulator.engine`; this module only translates.

Where things are: ``_wire`` (constants, formatting, errors, parameters, the id book), ``_translator``
(engine events -> private rows, and their REST views), ``_rest`` (every REST route), ``_sockets`` (tickers,
sockets, the v5 socket protocol), ``_faults`` (:class:`BybitFaults`), ``_server`` (:class:`BybitEmulator`;
the lifecycle both exchanges share is :class:`gridbot.emulator._base.LoopbackEmulator`).

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
- ``GET  /v5/market/time``, ``GET /v5/market/tickers`` and ``GET /v5/market/instruments-info`` (public;
  instruments: ``symbol``/``status``/``baseCoin`` filters, one page, ``leverageFilter`` from the brackets,
  ``lotSizeFilter.minNotionalValue``, ``launchTime`` = the emulator's start).
- What CCXT's ``load_markets`` and unified-account detection read: ``GET /v5/asset/coin/query-info`` (the
  margin coin, one chain), ``GET /v5/user/query-api`` (a UTA key: ``uta`` 1, contract permissions, never
  expires) and ``GET /v5/account/info`` (``unifiedMarginStatus`` 5, REGULAR_MARGIN).

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

from gridbot.emulator.bybit._faults import BybitFaults
from gridbot.emulator.bybit._server import BybitEmulator
from gridbot.emulator.bybit._wire import DEFAULT_CONFIG, PRIVATE, PUBLIC

__all__ = ["DEFAULT_CONFIG", "PRIVATE", "PUBLIC", "BybitEmulator", "BybitFaults"]
