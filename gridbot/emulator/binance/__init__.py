"""Loopback Binance USDⓈ-M futures exchange for the unmodified python-binance SDK (1.0.37).

Point the SDK at it by overriding its URL attributes: ``Client.API_URL = rest + "/api"``,
``Client.FUTURES_URL = rest + "/fapi"`` (also on ``AsyncClient``, which ThreadedWebsocketManager builds), and
``BinanceSocketManager.FSTREAM_URL = ws + "/"``; ``BinanceEmulator.endpoints`` gives ``rest`` and ``ws``.
Behind it is :class:`gridbot.emulator.engine.Engine` (matching and accounting); this module is only the
wire: REST, WebSockets, Binance field names and error codes, and failure injection (:class:`BinanceFaults`).

Where things are: ``_wire`` (constants, formatting, errors, parameter parsing), ``_payloads`` (REST bodies
from engine snapshots), ``_account`` (leverageBracket, v2/v3 account), ``_rest`` (auth, public, listen-key
and account-state routes), ``_trading`` (order and algo routes), ``_translator`` (engine events -> user-data
frames), ``_sockets`` (listen keys, sockets, the fault stage), ``_faults`` (:class:`BinanceFaults`),
``_server`` (:class:`BinanceEmulator`: its state, app and WebSocket endpoints; the lifecycle both
exchanges share is :class:`gridbot.emulator._base.LoopbackEmulator`).

Served
------
REST (JSON; errors ``{"code": -NNNN, "msg": ...}`` with Binance's HTTP status):

- public: ``GET /api/v3/ping``, ``GET /api/v3/time`` (the SDK calls both when it starts),
  ``GET /fapi/v1/ping``, ``GET /fapi/v1/time``, ``GET /fapi/v1/exchangeInfo`` (PRICE_FILTER, LOT_SIZE,
  MARKET_LOT_SIZE, MAX_NUM_ORDERS, MAX_NUM_ALGO_ORDERS, MIN_NOTIONAL, PERCENT_PRICE; ``onboardDate`` = the
  emulator's start, precisions from tick and step), ``GET /fapi/v1/ticker/24hr`` (one object with
  ``symbol``, else a list), ``GET /fapi/v1/premiumIndex``, ``GET /fapi/v1|v2/ticker/price`` and
  ``GET /fapi/v1/ticker/bookTicker`` (no order book: bid = last, ask = last + one tick, sizes 1);
- what CCXT's ``load_markets`` asks first: ``GET /sapi/v1/capital/config/getall`` (signed; the spot
  wallet's coins - the margin coin and each base asset - with every balance "0", as a futures-only account
  with the default read permission sees it) and ``GET /sapi/v1/margin/allPairs`` (API key; one pair per
  symbol);
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
  and each ``engine.set_price``; ``<sym>@ticker`` (24hrTicker) and ``<sym>@miniTicker`` (24hrMiniTicker)
  likewise, their 24-hour figures being those of the emulated path since start (open = start price,
  volumes and trade counts 0: there are no other traders).

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
  ``engine.liquidate``), no margin-type (isolated) or multi-assets mode; triggers use the engine's
  mark (= last = index) whatever ``workingType`` says (it is echoed only).
- Order and algo ids share one engine counter (Binance uses separate id spaces); trade ids are ints.
- Only HMAC keys (no RSA/Ed25519).  The signature is checked over the raw ``query + body`` with the
  ``signature`` parameter removed, as Binance documents.  ``timestamp`` is checked against the wall clock
  (what the SDK signs with), not the injected ``clock``; ``recvWindow`` above 60000 is -1131.  A missing
  API key is -2014 (HTTP 401).  No rate limits, weights or ``X-MBX-USED-WEIGHT`` headers.
- ``/fapi/v1/order`` takes LIMIT and MARKET only; TRAILING_STOP_MARKET is not supported (-1116),
  ``closePosition`` is refused (-1106), ``priceMatch``, ``selfTradePreventionMode``, ``goodTillDate``
  and ``priceProtect`` are accepted and echoed only; GTD acts as GTC; IOC and FOK both expire at once
  when not marketable (x EXPIRED).  No order amendment, batch orders, ``allOrders``, ``income``,
  ``forceOrders``, margin-type or multi-assets endpoints.  ``newOrderRespType`` ACK (the default)
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
- Market streams other than markPrice, ticker and miniTicker (``!markPrice@arr``, ``@bookTicker``,
  ``@depth``, ``@aggTrade``, ...) are acknowledged and silent.  No order book endpoints.
- CCXT chooses Binance's futures error table by hostname (fapi.binance.com): on 127.0.0.1 futures-only
  codes (-4164, -2019, ...) reach a CCXT user as ``ExchangeError`` carrying the code, not its subclass.
  Unknown REST paths answer aiohttp's plain 404.

Faults (:class:`BinanceFaults`) act on the server loop in call order, before frames produced later:
``reorder_next`` holds a channel's next frame until the one after it exists; ``pause`` holds frames at
the channel (sockets that connect meanwhile get them on ``resume``); ``send_raw`` and
``listenKeyExpired`` bypass the fault stage.
"""

from gridbot.emulator.binance._faults import BinanceFaults
from gridbot.emulator.binance._server import BinanceEmulator
from gridbot.emulator.binance._wire import LISTEN_KEY_VALIDITY_MS, PRIVATE, PUBLIC

__all__ = ["LISTEN_KEY_VALIDITY_MS", "PRIVATE", "PUBLIC", "BinanceEmulator", "BinanceFaults"]
