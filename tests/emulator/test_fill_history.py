"""Fill history (Binance GET /fapi/v1/userTrades, Bybit GET /v5/execution/list) and forced closes
(``engine.liquidate``: liquidation / ADL), driven by the real python-binance ``Client`` and pybit ``HTTP``.

Shapes follow the docs pages cited in gridbot/emulator (Account-Trade-List, v5/order/execution); the clock
is injected, so the 7-day windows are exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from binance import Client
from binance.exceptions import BinanceAPIException
from pybit.exceptions import InvalidRequestError
from pybit.unified_trading import HTTP
from websockets.sync.client import ClientConnection, connect

from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import EngineConfig, EngineError, SymbolConfig
from tests.emulator.sdk_clients import binance_client, bybit_http

pytestmark = pytest.mark.timeout(60)

KEY, SECRET = "test-key", "test-secret"
BTC = "BTCUSDT"
T0 = 1_700_000_000_000
DAY = 24 * 60 * 60 * 1000
CONFIG = EngineConfig(symbols=(SymbolConfig(BTC, Decimal("60000"), volatility=0.0),
                               SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01"))))
USER_TRADE_FIELDS = {"buyer", "commission", "commissionAsset", "id", "maker", "orderId", "price", "qty",
                     "quoteQty", "realizedPnl", "side", "positionSide", "symbol", "time"}
# the documented REST row (v5/order/execution field table); execPnl, category, isLeverage are WS-only
EXECUTION_FIELDS = {"symbol", "orderId", "orderLinkId", "side", "orderPrice", "orderQty", "leavesQty",
                    "createType", "orderType", "stopOrderType", "execFee", "execId", "execPrice", "execQty",
                    "execType", "execValue", "execTime", "feeCurrency", "isMaker", "feeRate", "tradeIv",
                    "markIv", "markPrice", "indexPrice", "underlyingPrice", "blockTradeId", "closedSize",
                    "seq", "extraFees"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame = json.loads(ws.recv(timeout=timeout))
    assert isinstance(frame, dict)
    return frame


# ------------------------------------------------------------------------------------------------ Binance


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def binance(clock: Clock) -> Iterator[BinanceEmulator]:
    with BinanceEmulator(CONFIG, api_key=KEY, api_secret=SECRET, price_interval=0, clock=clock) as emu:
        yield emu


@pytest.fixture
def client(binance: BinanceEmulator) -> Iterator[Client]:
    sdk = binance_client(binance.endpoints, KEY, SECRET)
    yield sdk
    sdk.close_connection()


def binance_error(call: Callable[[], object]) -> int:
    with pytest.raises(BinanceAPIException) as info:
        call()
    return int(info.value.code)


def market(client: Client, side: str, qty: str) -> None:
    client.futures_create_order(symbol=BTC, side=side, type="MARKET", quantity=qty)


def test_user_trades_rows_are_the_engine_fills_ascending(binance: BinanceEmulator, client: Client) -> None:
    market(client, "BUY", "0.02")
    binance.engine.set_price(BTC, Decimal("61000"))
    market(client, "SELL", "0.01")
    rows = client.futures_account_trades(symbol=BTC)
    fills = binance.engine.fills(BTC)
    assert [r["id"] for r in rows] == [f.trade_id for f in fills] == sorted(r["id"] for r in rows)
    assert all(set(r) == USER_TRADE_FIELDS for r in rows)
    buy, sell = rows
    assert (buy["side"], buy["buyer"], buy["maker"], buy["positionSide"], buy["qty"]) == (
        "BUY", True, False, "BOTH", "0.02")
    assert (sell["side"], sell["buyer"]) == ("SELL", False)
    assert [Decimal(sell[k]) for k in ("price", "realizedPnl", "quoteQty")] == [61000, 10, 610]
    assert Decimal(sell["commission"]) == Decimal("610") * CONFIG.taker_fee
    assert sell["commissionAsset"] == "USDT"
    assert all(isinstance(r[k], str) for r in rows for k in ("commission", "price", "qty", "realizedPnl"))
    assert sell["orderId"] == fills[1].order_id and sell["time"] == T0
    assert client.futures_account_trades(symbol="ETHUSDT") == []
    assert client.futures_account_trades(symbol=BTC, orderId=sell["orderId"]) == [sell]


def test_user_trades_windows_limits_and_from_id(binance: BinanceEmulator, client: Client,
                                                clock: Clock) -> None:
    for offset in (0, DAY, 8 * DAY, 9 * DAY):
        clock.now = T0 + offset
        market(client, "BUY", "0.001")
    ids = [f.trade_id for f in binance.engine.fills(BTC)]
    clock.now = T0 + 10 * DAY
    # neither bound: the last 7 days; startTime only: 7 days from it; endTime only: 7 days up to it
    assert [r["id"] for r in client.futures_account_trades(symbol=BTC)] == ids[2:]
    assert [r["id"] for r in client.futures_account_trades(symbol=BTC, startTime=T0)] == ids[:2]
    assert [r["id"] for r in client.futures_account_trades(symbol=BTC, endTime=T0 + 8 * DAY)] == ids[1:3]
    # startTime pages forward from the oldest; without it the most recent `limit` come back
    assert [r["id"] for r in client.futures_account_trades(symbol=BTC, startTime=T0, limit=1)] == ids[:1]
    assert [r["id"] for r in client.futures_account_trades(symbol=BTC, limit=1)] == ids[3:]
    # fromId: that trade and later ones, any age
    assert [r["id"] for r in client.futures_account_trades(symbol=BTC, fromId=ids[1])] == ids[1:]
    assert [r["id"] for r in client.futures_account_trades(symbol=BTC, fromId=ids[1], limit=2)] == ids[1:3]
    assert binance_error(lambda: client.futures_account_trades(
        symbol=BTC, fromId=ids[0], startTime=T0)) == -1128
    assert binance_error(lambda: client.futures_account_trades(
        symbol=BTC, startTime=T0, endTime=T0 + 7 * DAY + 1)) == -1127
    assert client.futures_account_trades(symbol=BTC, startTime=T0, endTime=T0 + 7 * DAY) != []
    assert binance_error(lambda: client.futures_account_trades(symbol=BTC, limit=1001)) == -1130
    assert binance_error(lambda: client.futures_account_trades()) == -1102
    assert binance_error(lambda: client.futures_account_trades(symbol="XRPUSDT")) == -1121


@pytest.fixture
def private(binance: BinanceEmulator, client: Client) -> Iterator[ClientConnection]:
    key = client.futures_stream_get_listen_key()
    with connect(f"{binance.endpoints.ws}/private/ws?listenKey={key}", open_timeout=5) as ws:
        yield ws


@pytest.mark.parametrize(("kind", "fee"), [("liquidation", CONFIG.taker_fee), ("adl", Decimal(0))])
def test_binance_forced_close_is_a_calculated_fill(
    binance: BinanceEmulator, client: Client, private: ClientConnection, kind: str, fee: Decimal
) -> None:
    market(client, "BUY", "0.05")
    for _ in range(3):  # NEW, TRADE, ACCOUNT_UPDATE of the opening order
        recv(private)
    order = binance.engine.liquidate(BTC, 0, Decimal("55000"), kind=kind)
    new, calculated, account = recv(private), recv(private), recv(private)
    client_id = "adl_autoclose" if kind == "adl" else new["o"]["c"]
    assert client_id.startswith("autoclose-") or kind == "adl"
    assert (new["o"]["x"], new["o"]["X"], new["o"]["o"], new["o"]["c"]) == (
        "NEW", "NEW", "LIQUIDATION", client_id)
    o = calculated["o"]
    assert (o["x"], o["X"], o["o"], o["c"], o["S"], o["i"]) == (
        "CALCULATED", "FILLED", "LIQUIDATION", client_id, "SELL", order.order_id)
    assert (o["l"], o["z"]) == ("0.05", "0.05")
    assert [Decimal(o[k]) for k in ("L", "ap", "rp")] == [55000, 55000, -250]
    assert Decimal(o["n"]) == Decimal("2750") * fee and o["N"] == "USDT" and o["t"] > 0
    assert account["e"] == "ACCOUNT_UPDATE"
    [slot] = account["a"]["P"]
    assert (slot["pa"], Decimal(slot["cr"])) == ("0", Decimal("-250"))
    assert Decimal(account["a"]["B"][0]["wb"]) == binance.engine.wallet().wallet_balance
    trades = client.futures_account_trades(symbol=BTC)
    assert (trades[-1]["id"], trades[-1]["orderId"], trades[-1]["realizedPnl"]) == (o["t"], o["i"], o["rp"])
    assert binance.engine.position(BTC, 0).size == 0


# -------------------------------------------------------------------------------------------------- Bybit


@pytest.fixture
def bybit(clock: Clock) -> Iterator[BybitEmulator]:
    with BybitEmulator(CONFIG, api_key=KEY, api_secret=SECRET, price_interval=0, clock=clock) as emu:
        yield emu


@pytest.fixture
def http(bybit: BybitEmulator) -> HTTP:
    return bybit_http(bybit.endpoints, KEY, SECRET)


def bybit_order(http: HTTP, side: str, qty: str) -> None:
    http.place_order(category="linear", symbol=BTC, side=side, orderType="Market", qty=qty)


def executions(http: HTTP, **params: Any) -> dict[str, Any]:
    result = http.get_executions(category="linear", **params)["result"]
    assert isinstance(result, dict)
    return result


def test_execution_list_rows_newest_first_without_exec_pnl(bybit: BybitEmulator, http: HTTP,
                                                           clock: Clock) -> None:
    bybit_order(http, "Buy", "0.02")
    clock.now += 1000
    bybit.engine.set_price(BTC, Decimal("61000"))
    bybit_order(http, "Sell", "0.01")
    result = executions(http, symbol=BTC)
    rows = result["list"]
    assert result["category"] == "linear" and result["nextPageCursor"] == ""
    assert all(set(r) == EXECUTION_FIELDS for r in rows)
    closing, opening = rows
    assert [int(r["execTime"]) for r in rows] == [T0 + 1000, T0]
    assert (closing["side"], closing["execType"], closing["execQty"], closing["closedSize"]) == (
        "Sell", "Trade", "0.01", "0.01")
    assert (opening["side"], opening["execPrice"], opening["closedSize"], opening["leavesQty"]) == (
        "Buy", "60000", "0", "0")
    assert closing["seq"] == bybit.engine.position(BTC, 0).seq > opening["seq"]
    assert executions(http, symbol="ETHUSDT")["list"] == []
    assert executions(http, orderId=opening["orderId"], symbol="ETHUSDT")["list"] == [opening]
    assert executions(http, execType="BustTrade")["list"] == []


def test_execution_list_cursor_pages_are_stable_while_fills_arrive(bybit: BybitEmulator, http: HTTP,
                                                                   clock: Clock) -> None:
    for _ in range(5):
        clock.now += 10
        bybit_order(http, "Buy", "0.001")
    expected = [r["execId"] for r in executions(http, symbol=BTC)["list"]]
    first = executions(http, symbol=BTC, limit=2)
    assert [r["execId"] for r in first["list"]] == expected[:2] and first["nextPageCursor"]
    clock.now += 10
    bybit_order(http, "Buy", "0.001")  # a newer fill between two pages does not shift the next page
    seen = [r["execId"] for r in first["list"]]
    cursor = first["nextPageCursor"]
    while cursor:
        page = executions(http, symbol=BTC, limit=2, cursor=cursor)
        seen += [r["execId"] for r in page["list"]]
        cursor = page["nextPageCursor"]
    assert seen == expected


def test_execution_list_windows_and_limits(bybit: BybitEmulator, http: HTTP, clock: Clock) -> None:
    for offset in (0, DAY, 8 * DAY, 9 * DAY):
        clock.now = T0 + offset
        bybit_order(http, "Buy", "0.001")
    clock.now = T0 + 10 * DAY

    def times(**params: Any) -> list[int]:
        return [int(r["execTime"]) - T0 for r in executions(http, symbol=BTC, **params)["list"]]

    assert times() == [9 * DAY, 8 * DAY]
    assert times(startTime=T0) == [DAY, 0]
    assert times(endTime=T0 + 8 * DAY) == [8 * DAY, DAY]
    assert times(startTime=T0, endTime=T0 + 7 * DAY) == [DAY, 0]
    for bad in ({"startTime": T0, "endTime": T0 + 7 * DAY + 1}, {"limit": 101}, {"limit": 0},
                {"cursor": "garbage"}):
        with pytest.raises(InvalidRequestError) as info:
            executions(http, symbol=BTC, **bad)
        assert info.value.status_code == 10001
    assert executions(http, symbol=BTC)["list"][0]["execTime"] == str(T0 + 9 * DAY)
    assert http.get_executions(category="spot")["result"]["list"] == []


@pytest.mark.parametrize(("kind", "exec_type", "create_type"), [
    ("liquidation", "BustTrade", "CreateByTakeOver_PassThrough"),
    ("adl", "AdlTrade", "CreateByAdl_PassThrough"),
])
def test_bybit_forced_close_pushes_and_lists_its_execution(
    bybit: BybitEmulator, http: HTTP, kind: str, exec_type: str, create_type: str
) -> None:
    from tests.emulator.test_bybit_emulator import Socket, auth_message

    sock = Socket(bybit.endpoints.ws + "/v5/private")
    try:
        sock.send(auth_message())
        assert sock.next()["success"] is True
        sock.send({"op": "subscribe", "args": ["order", "execution", "position", "wallet"]})
        assert sock.next()["success"] is True
        bybit_order(http, "Sell", "0.05")
        bybit.engine.liquidate(BTC, 0, Decimal("65000"), kind=kind)
        frames = [sock.expect(lambda f: f.get("topic") == "wallet") for _ in range(2)]
        balance = bybit.engine.wallet().wallet_balance
        assert Decimal(frames[1]["data"][0]["totalWalletBalance"]) == balance
        forced = sock.frames[-4:]
        assert [f["topic"] for f in forced] == ["order", "execution", "position", "wallet"]
        order, execution, position = (f["data"][0] for f in forced[:3])
        assert (order["orderStatus"], order["createType"], order["orderType"], order["side"]) == (
            "Filled", create_type, "Market", "Buy")
        assert (execution["execType"], execution["execPrice"]) == (exec_type, "65000")
        assert execution["execPnl"] == "-250"
        assert execution["closedSize"] == "0.05"
        assert (position["size"], position["side"], position["seq"]) == ("0", "", execution["seq"])
        listed = executions(http, symbol=BTC, execType=exec_type)["list"]
        assert [r["execId"] for r in listed] == [execution["execId"]] and "execPnl" not in listed[0]
    finally:
        sock.close()


def test_liquidate_needs_a_position_and_a_known_kind(bybit: BybitEmulator) -> None:
    with pytest.raises(EngineError) as info:
        bybit.engine.liquidate(BTC, 0, Decimal("60000"))
    assert info.value.code == "no_position"
    with pytest.raises(EngineError) as info:
        bybit.engine.liquidate(BTC, 0, Decimal("60000"), kind="margin_call")
    assert info.value.code == "bad_kind"
