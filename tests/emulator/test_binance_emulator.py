"""The loopback Binance USDⓈ-M server, driven by the real python-binance ``Client`` (REST) and a plain
``websockets`` client (sockets), as the SDK's ThreadedWebsocketManager would connect."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from binance import Client
from binance.exceptions import BinanceAPIException
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from gridbot.endpoints import Endpoints
from tests.emulator.sdk_clients import binance_client
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(60)

KEY, SECRET = "test-key", "test-secret"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
CONFIG = EngineConfig(
    symbols=(
        SymbolConfig("BTCUSDT", Decimal("60000"), volatility=0.0),
        SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01"), volatility=0.0),
    )
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_client(endpoints: Endpoints, key: str = KEY, secret: str = SECRET) -> Client:
    return binance_client(endpoints, key, secret)


def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=timeout))
    assert isinstance(message, dict)
    return message


def recv_events(ws: ClientConnection, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    return [recv(ws, timeout) for _ in range(count)]


def assert_silent(ws: ClientConnection, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        ws.recv(timeout=seconds)


def decimals(row: dict[str, Any], *names: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(row[name]) for name in names)


def kind(frame: dict[str, Any]) -> str:
    """A frame's type plus its execution/algo status, e.g. "ORDER_TRADE_UPDATE/TRADE"."""
    event = frame["e"]
    if event == "ORDER_TRADE_UPDATE":
        return f"{event}/{frame['o']['x']}"
    if event == "ALGO_UPDATE":
        return f"{event}/{frame['o']['X']}"
    return str(event)


@pytest.fixture
def emu() -> Iterator[BinanceEmulator]:
    with BinanceEmulator(CONFIG, api_key=KEY, api_secret=SECRET, price_interval=0.05) as server:
        yield server


@pytest.fixture
def client(emu: BinanceEmulator) -> Iterator[Client]:
    sdk = make_client(emu.endpoints)
    yield sdk
    sdk.close_connection()


@pytest.fixture
def private(emu: BinanceEmulator, client: Client) -> Iterator[ClientConnection]:
    key = client.futures_stream_get_listen_key()
    with connect(f"{emu.endpoints.ws}/private/ws?listenKey={key}", open_timeout=5) as ws:
        yield ws


def api_error(call: Callable[[], object]) -> BinanceAPIException:
    with pytest.raises(BinanceAPIException) as info:
        call()
    return info.value


# ------------------------------------------------------------------------------------------ public REST


def test_sdk_pings_the_emulator_when_constructed(emu: BinanceEmulator) -> None:
    rest = emu.endpoints.rest

    class LoopbackClient(Client):  # type: ignore[misc]  # python-binance ships no type hints
        API_URL = rest + "/api"
        FUTURES_URL = rest + "/fapi"

    client = LoopbackClient(KEY, SECRET)  # ping=True: GET /api/v3/ping inside __init__
    try:
        before = int(time.time() * 1000)
        assert client.get_server_time()["serverTime"] >= before
        assert client.futures_ping() == {}
        assert client.futures_time()["serverTime"] >= before
    finally:
        client.close_connection()
    calls = emu.rest_calls
    assert calls["GET /api/v3/ping"] == 1
    assert calls["GET /api/v3/time"] == 1
    assert calls["GET /fapi/v1/ping"] == 1
    assert calls["GET /fapi/v1/time"] == 1


def test_rest_calls_counts_each_request_and_is_a_copy(emu: BinanceEmulator, client: Client) -> None:
    client.futures_position_information()
    client.futures_position_information()
    client.futures_account_balance()
    client.futures_get_open_orders()
    calls = emu.rest_calls
    assert calls["GET /fapi/v3/positionRisk"] == 2
    assert calls["GET /fapi/v3/balance"] == 1
    assert calls["GET /fapi/v1/openOrders"] == 1
    calls["GET /fapi/v3/balance"] = 99
    assert emu.rest_calls["GET /fapi/v3/balance"] == 1


# ------------------------------------------------------------------------------------------------ auth


def test_bad_signature_is_1022(emu: BinanceEmulator) -> None:
    wrong = make_client(emu.endpoints, secret="not-the-secret")
    try:
        error = api_error(wrong.futures_account_balance)
    finally:
        wrong.close_connection()
    assert (error.status_code, error.code) == (400, -1022)
    assert error.message == "Signature for this request is not valid."


def test_bad_api_key_is_2015_on_signed_calls_and_listen_key(emu: BinanceEmulator) -> None:
    wrong = make_client(emu.endpoints, key="someone-else")
    try:
        for call in (wrong.futures_position_information, wrong.futures_stream_get_listen_key):
            error = api_error(call)
            assert (error.status_code, error.code) == (401, -2015)
            assert error.message == "Invalid API-key, IP, or permissions for action."
    finally:
        wrong.close_connection()


def test_stale_timestamp_is_1021_and_missing_params_1102(client: Client) -> None:
    client.timestamp_offset = -70_000  # older than the SDK's 10 s recvWindow
    assert api_error(client.futures_account_balance).code == -1021
    client.timestamp_offset = 0
    error = api_error(lambda: client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET"))
    assert error.code == -1102
    assert "'quantity'" in error.message
    assert api_error(lambda: client.futures_cancel_order(symbol="BTCUSDT")).code == -1102


# ------------------------------------------------------------------------------------------ listen key


def test_listen_key_lifecycle_keepalive_and_60_minute_expiry() -> None:
    now = [1_700_000_000_000]
    with BinanceEmulator(CONFIG, price_interval=0.05, clock=lambda: now[0]) as emu:
        client = make_client(emu.endpoints)
        try:
            key = client.futures_stream_get_listen_key()
            assert len(key) == 64 and key.isalnum()
            assert client.futures_stream_get_listen_key() == key  # an active key is returned again
            with connect(f"{emu.endpoints.ws}/private/ws?listenKey={key}", open_timeout=5) as ws:
                now[0] += 59 * 60_000
                assert client.futures_stream_keepalive(key) == {"listenKey": key}
                now[0] += 59 * 60_000  # 118 min after creation, 59 after the keepalive: still valid
                emu.engine.place_order(symbol="BTCUSDT", side="Buy", order_type="Market",
                                       qty=Decimal("0.001"))
                assert recv(ws)["e"] == "ORDER_TRADE_UPDATE"
                now[0] += 2 * 60_000
                frames = [recv(ws) for _ in range(3)]  # TRADE and ACCOUNT_UPDATE already queued, then expiry
                expired = frames[-1]
                assert expired == {"e": "listenKeyExpired", "E": str(now[0]), "listenKey": key}
                with pytest.raises(ConnectionClosedOK):
                    ws.recv(timeout=5)
            assert api_error(lambda: client.futures_stream_keepalive(key)).code == -1125
            fresh = client.futures_stream_get_listen_key()
            assert fresh != key
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{emu.endpoints.ws}/private/ws?listenKey={key}", open_timeout=5)
            assert refused.value.response.status_code == 400
        finally:
            client.close_connection()


def test_listen_key_delete_closes_its_socket(emu: BinanceEmulator, client: Client) -> None:
    key = client.futures_stream_get_listen_key()
    with connect(f"{emu.endpoints.ws}/ws/{key}", open_timeout=5) as ws:  # the legacy path works too
        assert client.futures_stream_close(key) == {}
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)
    assert emu.listen_key is None


def test_listen_key_requires_an_api_key(emu: BinanceEmulator) -> None:
    anonymous = Client(ping=False)
    anonymous.FUTURES_URL = emu.endpoints.rest + "/fapi"
    try:
        error = api_error(anonymous.futures_stream_get_listen_key)
    finally:
        anonymous.close_connection()
    assert (error.status_code, error.code) == (401, -2014)


# ---------------------------------------------------------------------------------------- seed shapes


def test_seed_endpoints_have_the_documented_fields(emu: BinanceEmulator, client: Client) -> None:
    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                quantity="0.002", price="59000", newClientOrderId="grid-1")
    tp = client.futures_create_order(symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT_MARKET",
                                     stopPrice="61000", quantity="0.01", reduceOnly="true")

    [position] = client.futures_position_information()
    assert set(position) == set(fixture("rest_position_risk_v3.json")[0])
    assert (position["symbol"], position["positionSide"]) == ("BTCUSDT", "BOTH")
    assert position["positionAmt"] == "0.01"
    assert Decimal(position["entryPrice"]) == Decimal("60000")

    [balance] = client.futures_account_balance()
    assert set(balance) == set(fixture("rest_balance.json")[0])
    fee = Decimal("60000") * Decimal("0.01") * CONFIG.taker_fee
    assert Decimal(balance["balance"]) == CONFIG.wallet_balance - fee

    [algo] = client.futures_get_open_orders(conditional=True)
    assert set(algo) == set(fixture("rest_open_algo_orders.json")[0])
    assert algo["algoId"] == tp["algoId"] and isinstance(algo["algoId"], int)
    assert (algo["orderType"], algo["algoStatus"], algo["actualOrderId"]) == ("TAKE_PROFIT_MARKET", "NEW", "")
    assert Decimal(algo["triggerPrice"]) == Decimal("61000") and algo["reduceOnly"] is True

    [order] = client.futures_get_open_orders(symbol="BTCUSDT")
    documented = {"avgPrice", "clientOrderId", "cumQuote", "executedQty", "orderId", "origQty", "origType",
                  "price", "reduceOnly", "side", "positionSide", "status", "stopPrice", "closePosition",
                  "symbol", "time", "timeInForce", "type", "updateTime", "workingType", "priceProtect",
                  "priceMatch", "selfTradePreventionMode", "goodTillDate"}
    assert documented <= set(order)
    assert (order["clientOrderId"], order["status"], order["type"], order["price"]) == (
        "grid-1", "NEW", "LIMIT", "59000")
    assert isinstance(order["orderId"], int)
    queried = client.futures_get_order(symbol="BTCUSDT", origClientOrderId="grid-1")
    assert queried["orderId"] == order["orderId"]
    assert client.futures_get_algo_order(algoId=tp["algoId"])["clientAlgoId"] == tp["clientAlgoId"]


def test_position_risk_lists_only_symbols_with_a_position_or_order(client: Client) -> None:
    assert client.futures_position_information() == []
    client.futures_create_order(symbol="ETHUSDT", side="SELL", type="LIMIT", timeInForce="GTC",
                                quantity="0.1", price="3100")
    [row] = client.futures_position_information()
    assert (row["symbol"], row["positionAmt"], row["entryPrice"]) == ("ETHUSDT", "0", "0")


# ------------------------------------------------------------------------------------- trading streams


def test_limit_fill_pushes_new_trade_and_account_update(
    emu: BinanceEmulator, client: Client, private: ClientConnection
) -> None:
    ack = client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                      quantity="0.01", price="59000")
    new = recv(private)
    assert kind(new) == "ORDER_TRADE_UPDATE/NEW"
    assert new["o"]["i"] == ack["orderId"] and new["o"]["c"] == ack["clientOrderId"]
    assert (new["o"]["X"], new["o"]["o"], new["o"]["ps"], new["o"]["t"]) == ("NEW", "LIMIT", "BOTH", 0)

    emu.engine.set_price("BTCUSDT", Decimal("58900"))
    trade, account = recv_events(private, 2)
    assert kind(trade) == "ORDER_TRADE_UPDATE/TRADE"
    o = trade["o"]
    assert (o["X"], o["m"], o["N"]) == ("FILLED", True, "USDT")
    assert decimals(o, "L", "l", "z", "ap", "rp") == (Decimal("59000"), Decimal("0.01"), Decimal("0.01"),
                                                      Decimal("59000"), Decimal(0))
    assert Decimal(o["n"]) == Decimal("59000") * Decimal("0.01") * CONFIG.maker_fee
    assert isinstance(o["t"], int) and o["t"] > 0
    assert account["e"] == "ACCOUNT_UPDATE" and account["a"]["m"] == "ORDER"
    [slot] = account["a"]["P"]
    assert (slot["s"], slot["ps"]) == ("BTCUSDT", "BOTH")
    assert decimals(slot, "pa", "ep", "cr") == (Decimal("0.01"), Decimal("59000"), Decimal(0))
    [usdt] = account["a"]["B"]
    assert usdt["a"] == "USDT" and Decimal(usdt["wb"]) == emu.engine.wallet().wallet_balance

    # the take-profit: a reduce-only LIMIT SELL that realises (59500 - 59000) * 0.01 = 5 before fees
    client.futures_create_order(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC",
                                quantity="0.01", price="59500", reduceOnly="true")
    assert recv(private)["o"]["R"] is True
    emu.engine.set_price("BTCUSDT", Decimal("59600"))
    trade, account = recv_events(private, 2)
    assert (trade["o"]["x"], trade["o"]["S"], Decimal(trade["o"]["rp"])) == ("TRADE", "SELL", Decimal("5"))
    [slot] = account["a"]["P"]
    assert (slot["pa"], slot["up"], Decimal(slot["cr"])) == ("0", "0", Decimal("5"))


def test_sell_side_position_amount_is_negative(
    emu: BinanceEmulator, client: Client, private: ClientConnection
) -> None:
    client.futures_create_order(symbol="ETHUSDT", side="SELL", type="MARKET", quantity="0.5")
    frames = recv_events(private, 3)
    assert [kind(f) for f in frames] == [
        "ORDER_TRADE_UPDATE/NEW", "ORDER_TRADE_UPDATE/TRADE", "ACCOUNT_UPDATE"]
    assert frames[2]["a"]["P"][0]["pa"] == "-0.5"
    assert frames[1]["o"]["m"] is False  # a market order takes


def test_algo_take_profit_triggers_its_order(
    emu: BinanceEmulator, client: Client, private: ClientConnection
) -> None:
    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    recv_events(private, 3)
    tp = client.futures_create_order(symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT_MARKET",
                                     stopPrice="60500", quantity="0.01", reduceOnly="true")
    assert tp["algoStatus"] == "NEW" and tp["clientAlgoId"].startswith("x-Cb7ytekJ")
    new = recv(private)
    assert kind(new) == "ALGO_UPDATE/NEW"
    assert (new["o"]["aid"], new["o"]["caid"], new["o"]["ai"], new["o"]["tp"]) == (
        tp["algoId"], tp["clientAlgoId"], "", "60500")

    emu.engine.set_price("BTCUSDT", Decimal("60600"))
    frames = recv_events(private, 6)
    assert [kind(f) for f in frames] == [
        "ALGO_UPDATE/TRIGGERING",
        "ORDER_TRADE_UPDATE/NEW",
        "ALGO_UPDATE/TRIGGERED",
        "ORDER_TRADE_UPDATE/TRADE",
        "ACCOUNT_UPDATE",
        "ALGO_UPDATE/FINISHED",
    ]
    child_new, triggered, child_trade, account, finished = frames[1:]
    child_id = child_new["o"]["i"]
    assert isinstance(child_id, int) and child_id != tp["algoId"]
    assert (child_new["o"]["o"], child_new["o"]["ot"], child_new["o"]["sp"]) == (
        "MARKET", "TAKE_PROFIT_MARKET", "60500")
    assert triggered["o"]["ai"] == str(child_id)
    assert child_trade["o"]["i"] == child_id
    assert decimals(child_trade["o"], "rp", "L") == (Decimal("6"), Decimal("60600"))
    assert Decimal(account["a"]["P"][0]["cr"]) == Decimal("6")
    assert finished["o"]["ai"] == str(child_id)
    assert decimals(finished["o"], "aq", "ap") == (Decimal("0.01"), Decimal("60600"))
    assert client.futures_get_open_orders(conditional=True) == []
    assert client.futures_get_algo_order(algoId=tp["algoId"])["algoStatus"] == "FINISHED"


def test_cancels_and_ioc_expiry(emu: BinanceEmulator, client: Client, private: ClientConnection) -> None:
    order = client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                        quantity="0.01", price="59000")
    recv(private)
    cancelled = client.futures_cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert cancelled["status"] == "CANCELED"
    assert (recv(private)["o"]["x"], client.futures_get_open_orders()) == ("CANCELED", [])

    ioc = client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
                                      quantity="0.01", price="59000", newOrderRespType="RESULT")
    assert ioc["status"] == "EXPIRED"
    assert [f["o"]["x"] for f in recv_events(private, 2)] == ["NEW", "EXPIRED"]

    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    recv_events(private, 3)
    algo = client.futures_create_order(symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice="59000",
                                       quantity="0.01", reduceOnly="true")
    recv(private)
    answer = client.futures_cancel_order(symbol="BTCUSDT", algoId=algo["algoId"])
    assert answer == {"algoId": algo["algoId"], "clientAlgoId": algo["clientAlgoId"], "code": "200",
                      "msg": "success"}
    assert kind(recv(private)) == "ALGO_UPDATE/CANCELED"


def test_closing_the_position_cancels_its_reduce_only_algo(
    emu: BinanceEmulator, client: Client, private: ClientConnection
) -> None:
    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    tp = client.futures_create_order(symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT", stopPrice="61000",
                                     price="61000", timeInForce="GTC", quantity="0.01", reduceOnly="true")
    recv_events(private, 4)
    client.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.01")
    frames = recv_events(private, 4)
    cancelled = frames[-1]
    assert kind(cancelled) == "ALGO_UPDATE/CANCELED"
    assert (cancelled["o"]["aid"], cancelled["o"]["rm"]) == (tp["algoId"], "Reduce Only reject")


def test_rejections_carry_binance_codes(emu: BinanceEmulator, client: Client) -> None:
    def order(**params: str) -> BinanceAPIException:
        return api_error(lambda: client.futures_create_order(symbol="BTCUSDT", **params))

    assert order(side="SELL", type="MARKET", quantity="0.01", reduceOnly="true").code == -2022
    assert order(side="BUY", type="MARKET", quantity="100").code == -2019
    assert order(side="BUY", type="MARKET", quantity="0.01", positionSide="LONG").code == -4061
    assert order(side="BUY", type="LIMIT", quantity="0.01", price="59000").code == -1102  # no timeInForce
    assert order(side="BUY", type="LIMIT", timeInForce="GTX", quantity="0.01", price="61000").code == -5022
    assert order(side="BUY", type="MARKET", quantity="0.0001").code == -1111
    assert order(side="SELL", type="TAKE_PROFIT_MARKET", stopPrice="59000", quantity="0.01").code == -2021
    assert api_error(lambda: client.futures_create_order(symbol="NOPEUSDT", side="BUY", type="MARKET",
                                                         quantity="1")).code == -1121
    direct = api_error(lambda: client._request_futures_api(
        "post", "order", True, data={"symbol": "BTCUSDT", "side": "SELL", "type": "TAKE_PROFIT_MARKET",
                                     "stopPrice": "61000", "quantity": "0.01"}))
    assert direct.code == -4120
    assert api_error(lambda: client.futures_cancel_order(symbol="BTCUSDT", orderId=1)).code == -2013
    assert emu.engine.open_orders() == []


def test_hedge_mode(emu: BinanceEmulator, client: Client, private: ClientConnection) -> None:
    assert client.futures_get_position_mode() == {"dualSidePosition": False}
    assert client.futures_change_position_mode(dualSidePosition="true") == {"code": 200, "msg": "success"}
    assert client.futures_get_position_mode() == {"dualSidePosition": True}
    assert api_error(lambda: client.futures_change_position_mode(dualSidePosition="true")).code == -4059

    def order(**params: str) -> BinanceAPIException:
        return api_error(lambda: client.futures_create_order(symbol="BTCUSDT", type="MARKET", quantity="0.01",
                                                             **params))

    assert order(side="BUY").code == -4061  # BOTH in hedge mode
    assert order(side="BUY", positionSide="LONG", reduceOnly="true").code == -1106
    assert order(side="SELL", positionSide="LONG").code == -2022  # closing a flat long
    client.futures_create_order(symbol="BTCUSDT", side="BUY", positionSide="LONG", type="MARKET",
                                quantity="0.01")
    client.futures_create_order(symbol="BTCUSDT", side="SELL", positionSide="SHORT", type="MARKET",
                                quantity="0.02")
    frames = recv_events(private, 6)
    slots = [(f["a"]["P"][0]["ps"], f["a"]["P"][0]["pa"]) for f in frames if f["e"] == "ACCOUNT_UPDATE"]
    assert slots == [("LONG", "0.01"), ("SHORT", "-0.02")]
    rows = {r["positionSide"]: r["positionAmt"] for r in client.futures_position_information()}
    assert rows == {"LONG": "0.01", "SHORT": "-0.02"}
    assert api_error(lambda: client.futures_change_position_mode(dualSidePosition="false")).code == -4068


# ---------------------------------------------------------------------------------------- market data


def test_mark_price_combined_stream_and_subscriptions(emu: BinanceEmulator) -> None:
    url = f"{emu.endpoints.ws}/market/stream?streams=btcusdt@markPrice@1s"
    with connect(url, open_timeout=5) as ws:
        frame = recv(ws)
        assert frame["stream"] == "btcusdt@markPrice@1s"
        assert set(frame["data"]) >= {"e", "E", "s", "p", "i", "P", "r", "T"}
        assert (frame["data"]["e"], frame["data"]["s"]) == ("markPriceUpdate", "BTCUSDT")
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@markPrice@1s"], "id": 7}))
        streams: set[str] = set()
        while "ethusdt@markPrice@1s" not in streams:
            message = recv(ws)
            if "id" in message:
                assert message == {"result": None, "id": 7}
            else:
                streams.add(message["stream"])
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
        while (message := recv(ws)).get("id") != 8:
            pass
        assert message["result"] == ["btcusdt@markPrice@1s", "ethusdt@markPrice@1s"]

        emu.price_interval = 30.0  # quiet the cadence; set_price still pushes
        ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@markPrice@1s"], "id": 9}))
        while recv(ws).get("id") != 9:
            pass
        emu.engine.set_price("BTCUSDT", Decimal("61000"))
        emu.engine.set_price("ETHUSDT", Decimal("3100"))
        pushed = recv(ws)
        assert (pushed["stream"], Decimal(pushed["data"]["p"])) == ("ethusdt@markPrice@1s", Decimal("3100"))


def test_raw_market_stream_path(emu: BinanceEmulator) -> None:
    with connect(f"{emu.endpoints.ws}/market/ws/ethusdt@markPrice", open_timeout=5) as ws:
        data = recv(ws)
        assert (data["e"], data["s"]) == ("markPriceUpdate", "ETHUSDT")


def test_price_loop_follows_price_interval(emu: BinanceEmulator) -> None:
    with connect(f"{emu.endpoints.ws}/market/stream?streams=btcusdt@markPrice@1s", open_timeout=5) as ws:
        started = time.monotonic()
        for _ in range(10):
            recv(ws)
        assert time.monotonic() - started < 2.0  # 10 frames at 0.05 s, far faster than the real 1 s


# --------------------------------------------------------------------------------------------- faults


def test_expire_listen_key_fault(emu: BinanceEmulator, client: Client, private: ClientConnection) -> None:
    key = emu.listen_key
    emu.faults.expire_listen_key()
    frame = recv(private)
    assert frame["e"] == "listenKeyExpired" and frame["listenKey"] == key and isinstance(frame["E"], str)
    with pytest.raises(ConnectionClosedOK):
        private.recv(timeout=5)
    assert client.futures_stream_get_listen_key() != key


def test_drop_private_and_public_close_without_a_close_frame(
    emu: BinanceEmulator, private: ClientConnection
) -> None:
    with connect(f"{emu.endpoints.ws}/market/stream?streams=btcusdt@markPrice@1s", open_timeout=5) as public:
        recv(public)
        emu.faults.drop_private()
        with pytest.raises(ConnectionClosedError):
            private.recv(timeout=5)
        recv(public)  # the other channel is untouched
        emu.faults.drop_public()
        with pytest.raises(ConnectionClosedError):
            while True:
                public.recv(timeout=5)


def test_send_raw_delivers_text_verbatim(emu: BinanceEmulator, private: ClientConnection) -> None:
    emu.faults.send_raw("private", "this is not json")
    assert private.recv(timeout=5) == "this is not json"
    emu.faults.send_raw("private", '{"e":"SOMETHING_NEW","E":1}')
    assert recv(private) == {"e": "SOMETHING_NEW", "E": 1}
    with pytest.raises(ValueError):
        emu.faults.send_raw("nope", "x")


def test_duplicate_and_reorder(emu: BinanceEmulator, client: Client, private: ClientConnection) -> None:
    emu.faults.duplicate_next("private")
    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    frames = recv_events(private, 4)
    assert [kind(f) for f in frames] == [
        "ORDER_TRADE_UPDATE/NEW", "ORDER_TRADE_UPDATE/NEW", "ORDER_TRADE_UPDATE/TRADE", "ACCOUNT_UPDATE"]
    assert frames[0] == frames[1]

    emu.faults.reorder_next("private")
    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert [kind(f) for f in recv_events(private, 3)] == [
        "ORDER_TRADE_UPDATE/TRADE", "ORDER_TRADE_UPDATE/NEW", "ACCOUNT_UPDATE"]


def test_pause_holds_frames_until_resume(
    emu: BinanceEmulator, client: Client, private: ClientConnection
) -> None:
    emu.faults.pause("private")
    client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert_silent(private)
    emu.faults.resume("private")
    assert [kind(f) for f in recv_events(private, 3)] == [
        "ORDER_TRADE_UPDATE/NEW", "ORDER_TRADE_UPDATE/TRADE", "ACCOUNT_UPDATE"]


def test_pause_public_channel(emu: BinanceEmulator) -> None:
    with connect(f"{emu.endpoints.ws}/market/stream?streams=btcusdt@markPrice@1s", open_timeout=5) as ws:
        recv(ws)
        emu.faults.pause("public")
        while True:  # drain what was in flight before the pause took effect
            try:
                ws.recv(timeout=0.3)
            except TimeoutError:
                break
        emu.faults.resume("public")
        assert recv(ws)["stream"] == "btcusdt@markPrice@1s"


def test_reject_auth(emu: BinanceEmulator, client: Client) -> None:
    emu.faults.reject_auth(True)
    assert api_error(client.futures_account_balance).code == -2015
    assert api_error(client.futures_stream_get_listen_key).code == -2015
    assert client.futures_ping() == {}  # public endpoints do not care
    emu.faults.reject_auth(False)
    assert client.futures_account_balance()[0]["asset"] == "USDT"


def test_rest_delay_and_rest_fail(emu: BinanceEmulator, client: Client) -> None:
    emu.faults.rest_delay("/fapi/v3/balance", 0.3)
    started = time.monotonic()
    client.futures_account_balance()
    assert time.monotonic() - started >= 0.3
    emu.faults.rest_delay("/fapi/v3/balance", 0)
    started = time.monotonic()
    client.futures_account_balance()
    assert time.monotonic() - started < 0.3

    emu.faults.rest_fail("/fapi/v3/positionRisk", 503, -1001, "Internal error.", times=2)
    for _ in range(2):
        error = api_error(client.futures_position_information)
        assert (error.status_code, error.code) == (503, -1001)
    assert client.futures_position_information() == []
    assert emu.rest_calls["GET /fapi/v3/positionRisk"] == 3


def test_refuse_ws(emu: BinanceEmulator, client: Client) -> None:
    key = client.futures_stream_get_listen_key()
    emu.faults.refuse_ws(True)
    for path in (f"/private/ws?listenKey={key}", "/market/stream?streams=btcusdt@markPrice@1s"):
        with pytest.raises(InvalidStatus) as refused:
            connect(emu.endpoints.ws + path, open_timeout=5)
        assert refused.value.response.status_code == 503
    emu.faults.refuse_ws(False)
    with connect(f"{emu.endpoints.ws}/private/ws?listenKey={key}", open_timeout=5) as ws:
        emu.engine.place_order(symbol="BTCUSDT", side="Buy", order_type="Market", qty=Decimal("0.001"))
        assert kind(recv(ws)) == "ORDER_TRADE_UPDATE/NEW"


def test_stop_is_idempotent_and_endpoints_need_a_running_server() -> None:
    emu = BinanceEmulator(CONFIG, price_interval=0.05)
    with pytest.raises(RuntimeError):
        _ = emu.endpoints
    emu.start()
    rest = emu.endpoints.rest
    assert rest.startswith("http://127.0.0.1:")
    emu.stop()
    emu.stop()
    wait_until(lambda: emu._server is None)


def test_price_interval_zero_means_no_walk_and_can_be_changed_while_running() -> None:
    import threading

    with pytest.raises(ValueError):
        BinanceEmulator(price_interval=-1)
    with BinanceEmulator(price_interval=0) as still:
        symbol = still.engine.symbols[0]
        start = still.engine.prices(symbol).last
        still.price_interval = 0.01  # the walk starts
        deadline = threading.Event()
        for _ in range(500):
            if still.engine.prices(symbol).last != start:
                break
            deadline.wait(0.01)
        assert still.engine.prices(symbol).last != start
        still.price_interval = 0  # and stops
    assert not [t for t in threading.enumerate() if t.name.startswith("gridbot-emulator") and t.is_alive()]
