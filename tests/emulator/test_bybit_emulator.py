"""The loopback Bybit v5 server, driven by the real pybit HTTP client and raw WebSocket clients.

Shapes are checked against the official/observed payloads in tests/fixtures/bybit.  The docs have no
linear conditional-order or ticker-delta example: those expectations (stopOrderType TakeProfit,
createType CreateByTakeProfit, delta carrying only changed fields) are synthetic, built from the docs'
field tables and DESIGN.md §3.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from tests.emulator.sdk_clients import bybit_http
from tests.helpers import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bybit"
KEY, SECRET = "test-key", "test-secret"
SYMBOL = "BTCUSDT"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# ------------------------------------------------------------------------------------------ fixtures


def config(**kwargs: Any) -> EngineConfig:
    symbols = (SymbolConfig(symbol=SYMBOL, start_price=Decimal("60000")),
               SymbolConfig(symbol="ETHUSDT", start_price=Decimal("3000"), tick_size=Decimal("0.01")))
    return EngineConfig(symbols=symbols, **kwargs)


@pytest.fixture
def emu() -> Iterator[BybitEmulator]:
    """No price loop: prices move only through engine.set_price, so every assertion is exact."""
    emulator = BybitEmulator(config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def http_for(emu: BybitEmulator, *, key: str = KEY, secret: str = SECRET) -> HTTP:
    return bybit_http(emu.endpoints, key, secret)


class Socket:
    """A raw client: reads frames into a list so tests can wait for one matching a predicate."""

    def __init__(self, url: str) -> None:
        self.conn: ClientConnection = connect(url, open_timeout=5, ping_interval=None, close_timeout=1,
                                              legacy=True)
        self.frames: list[Any] = []
        self._read = 0

    def send(self, obj: Any) -> None:
        self.conn.send(json.dumps(obj))

    def next(self, timeout: float = 5.0) -> Any:
        frame = json.loads(self.conn.recv(timeout=timeout))
        self.frames.append(frame)
        return frame

    def expect(self, predicate: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.01, deadline - time.monotonic()))
            if predicate(frame):
                return frame

    def nothing_for(self, seconds: float) -> bool:
        try:
            self.next(seconds)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.conn.close()


def auth_message(key: str = KEY, secret: str = SECRET, expires_in_ms: int = 1000) -> dict[str, Any]:
    expires = int(time.time() * 1000) + expires_in_ms
    signature = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    return {"op": "auth", "args": [key, expires, signature]}


@pytest.fixture
def private(emu: BybitEmulator) -> Iterator[Socket]:
    sock = Socket(emu.endpoints.ws + "/v5/private")
    sock.send(auth_message())
    assert sock.next()["success"] is True
    sock.send({"op": "subscribe", "req_id": "sub-1", "args": ["position", "order", "execution", "wallet"]})
    conn_id = sock.frames[0]["conn_id"]
    ack = {"success": True, "ret_msg": "", "op": "subscribe", "conn_id": conn_id, "req_id": "sub-1"}
    assert sock.next() == ack
    yield sock
    sock.close()


@pytest.fixture
def public(emu: BybitEmulator) -> Iterator[Socket]:
    sock = Socket(emu.endpoints.ws + "/v5/public/linear")
    sock.send({"op": "subscribe", "req_id": "t1", "args": [f"tickers.{SYMBOL}"]})
    assert sock.next()["success"] is True
    assert sock.next()["type"] == "snapshot"
    yield sock
    sock.close()


def topic_is(topic: str, **fields: Any) -> Callable[[Any], bool]:
    def match(frame: Any) -> bool:
        if frame.get("topic") != topic:
            return False
        row = frame["data"][0] if isinstance(frame["data"], list) else frame["data"]
        return all(row.get(k) == v for k, v in fields.items())
    return match


def row(frame: Any) -> dict[str, Any]:
    return frame["data"][0]  # type: ignore[no-any-return]


def open_long(emu: BybitEmulator, http: HTTP, qty: str = "0.01") -> str:
    result = http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Market", qty=qty)
    return result["result"]["orderId"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------- REST


def test_signed_rest_through_pybit_and_counters(emu: BybitEmulator) -> None:
    http = http_for(emu)
    assert http.get_server_time()["retCode"] == 0
    positions = http.get_positions(category="linear", symbol=SYMBOL)
    http.get_positions(category="linear", symbol=SYMBOL)
    http.get_wallet_balance(accountType="UNIFIED")
    assert positions["retMsg"] == "OK"
    assert set(positions) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert emu.rest_calls == {"GET /v5/market/time": 1, "GET /v5/position/list": 2,
                              "GET /v5/account/wallet-balance": 1}
    counts = emu.rest_calls
    counts["GET /v5/market/time"] = 99  # a copy
    assert emu.rest_calls["GET /v5/market/time"] == 1


def test_bad_key_is_10003_and_bad_sign_is_10004(emu: BybitEmulator) -> None:
    with pytest.raises(InvalidRequestError) as bad_key:
        http_for(emu, key="other-key").get_positions(category="linear", symbol=SYMBOL)
    assert bad_key.value.status_code == 10003 and bad_key.value.message == "API key is invalid."
    with pytest.raises(InvalidRequestError) as bad_sign:
        http_for(emu, secret="wrong-secret").get_wallet_balance(accountType="UNIFIED")
    assert bad_sign.value.status_code == 10004 and bad_sign.value.message.startswith("error sign!")
    with pytest.raises(InvalidRequestError) as bad_post_sign:
        http_for(emu, secret="wrong-secret").place_order(category="linear", symbol=SYMBOL, side="Buy",
                                                         orderType="Market", qty="0.01")
    assert bad_post_sign.value.status_code == 10004
    assert emu.engine.open_orders() == [] and emu.engine.positions() == []


def signed_get(emu: BybitEmulator, path: str, query: str, timestamp: int) -> dict[str, Any]:
    recv_window = "5000"
    text = f"{timestamp}{KEY}{recv_window}{query}"
    sign = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    headers = {"X-BAPI-API-KEY": KEY, "X-BAPI-TIMESTAMP": str(timestamp), "X-BAPI-RECV-WINDOW": recv_window,
               "X-BAPI-SIGN": sign, "X-BAPI-SIGN-TYPE": "2"}
    response = requests.get(f"{emu.endpoints.rest}{path}?{query}", headers=headers, timeout=5)
    return response.json()  # type: ignore[no-any-return]


def test_timestamp_outside_recv_window_is_10002(emu: BybitEmulator) -> None:
    now = int(time.time() * 1000)
    assert signed_get(emu, "/v5/position/list", "category=linear&symbol=BTCUSDT", now)["retCode"] == 0
    stale = signed_get(emu, "/v5/position/list", "category=linear&symbol=BTCUSDT", now - 60_000)
    ahead = signed_get(emu, "/v5/position/list", "category=linear&symbol=BTCUSDT", now + 60_000)
    assert stale["retCode"] == 10002 and ahead["retCode"] == 10002
    assert "recv_window" in stale["retMsg"]


def test_seed_shapes_cover_the_documented_fields(emu: BybitEmulator) -> None:
    http = http_for(emu)
    position = http.get_positions(category="linear", symbol=SYMBOL)["result"]
    documented = fixture("rest.position_list.response.json")["result"]
    assert set(documented) <= set(position) and position["category"] == "linear"
    flat = position["list"][0]
    assert set(documented["list"][0]) <= set(flat)
    assert (flat["symbol"], flat["positionIdx"], flat["side"], flat["size"], flat["cumRealisedPnl"]) == (
        SYMBOL, 0, "", "0", "0")

    wallet = http.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
    documented_wallet = fixture("rest.wallet_balance.response.json")["result"]["list"][0]
    assert set(documented_wallet) <= set(wallet)
    assert set(documented_wallet["coin"][0]) <= set(wallet["coin"][0])
    assert (wallet["accountType"], wallet["totalWalletBalance"], wallet["totalAvailableBalance"],
            wallet["totalEquity"], wallet["accountMMRate"], wallet["coin"][0]["coin"]) == (
        "UNIFIED", "10000", "10000", "10000", "0", "USDT")

    http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty="0.01",
                     price="59000", orderLinkId="grid-1")
    orders = http.get_open_orders(category="linear", settleCoin="USDT")["result"]
    documented_order = fixture("rest.order_realtime.response.json")["result"]["list"][0]
    assert set(documented_order) <= set(orders["list"][0])
    assert {k: orders["list"][0][k] for k in ("orderLinkId", "orderStatus", "price", "qty", "stopOrderType",
                                               "createType", "avgPrice", "cumExecQty", "reduceOnly")} == {
        "orderLinkId": "grid-1", "orderStatus": "New", "price": "59000", "qty": "0.01",
        "stopOrderType": "UNKNOWN", "createType": "CreateByUser", "avgPrice": "0", "cumExecQty": "0",
        "reduceOnly": False}


def test_position_list_by_settle_coin_lists_open_positions_only(emu: BybitEmulator) -> None:
    http = http_for(emu)
    assert http.get_positions(category="linear", settleCoin="USDT")["result"]["list"] == []
    open_long(emu, http)
    listed = http.get_positions(category="linear", settleCoin="USDT")["result"]["list"]
    assert [(p["symbol"], p["side"], p["size"], p["avgPrice"]) for p in listed] == [
        (SYMBOL, "Buy", "0.01", "60000")]


def test_rejections_use_bybit_ret_codes(emu: BybitEmulator) -> None:
    http = http_for(emu)

    def code_of(call: Callable[[], Any]) -> int:
        with pytest.raises(InvalidRequestError) as err:
            call()
        return err.value.status_code  # type: ignore[no-any-return]

    assert code_of(lambda: http.place_order(category="linear", symbol=SYMBOL, side="Sell", orderType="Market",
                                            qty="0.01", reduceOnly=True)) == 110017
    assert code_of(lambda: http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit",
                                            qty="100", price="59000")) == 110007
    assert code_of(lambda: http.cancel_order(category="linear", symbol=SYMBOL,
                                             orderId="00000000-0000-4000-8000-000000000000")) == 110001
    assert code_of(lambda: http.place_order(category="linear", symbol="NOPEUSDT", side="Buy",
                                            orderType="Market", qty="0.01")) == 10001
    assert code_of(lambda: http.switch_position_mode(category="linear", coin="USDT", mode=0)) == 110025
    assert code_of(lambda: http.set_trading_stop(category="linear", symbol=SYMBOL, positionIdx=0,
                                                 takeProfit="61000")) == 10001  # zero position
    order_id = http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty="0.01",
                                price="59000")["result"]["orderId"]
    assert code_of(lambda: http.switch_position_mode(category="linear", coin="USDT", mode=3)) == 110028
    http.cancel_order(category="linear", symbol=SYMBOL, orderId=order_id)
    assert code_of(lambda: http.cancel_order(category="linear", symbol=SYMBOL, orderId=order_id)) == 110001
    open_long(emu, http)
    assert code_of(lambda: http.switch_position_mode(category="linear", coin="USDT", mode=3)) == 110024
    assert code_of(lambda: http.set_trading_stop(category="linear", symbol=SYMBOL, positionIdx=0,
                                                 takeProfit="59000")) == 10001  # TP below last for a long


def test_hedge_mode_switch_and_position_idx(emu: BybitEmulator) -> None:
    http = http_for(emu)
    assert http.switch_position_mode(category="linear", coin="USDT", mode=3)["retCode"] == 0
    assert emu.engine.hedge_mode is True
    slots = http.get_positions(category="linear", symbol=SYMBOL)["result"]["list"]
    assert [p["positionIdx"] for p in slots] == [1, 2]
    with pytest.raises(InvalidRequestError) as err:
        open_long(emu, http)  # positionIdx 0 in hedge mode
    assert err.value.status_code == 10001 and "position idx" in err.value.message
    http.place_order(category="linear", symbol=SYMBOL, side="Sell", orderType="Market", qty="0.02",
                     positionIdx=2)
    slots = http.get_positions(category="linear", symbol=SYMBOL)["result"]["list"]
    assert [(p["positionIdx"], p["side"], p["size"]) for p in slots] == [(1, "", "0"), (2, "Sell", "0.02")]


# ----------------------------------------------------------------------------------- private socket


def test_auth_success_and_failures(emu: BybitEmulator) -> None:
    ok = Socket(emu.endpoints.ws + "/v5/private")
    ok.send(auth_message())
    answer = ok.next()
    assert set(answer) == set(fixture("auth.response.success.json")) and answer["success"] is True
    ok.close()
    failure_keys = set(fixture("auth.response.failure.observed.json"))
    for message in (auth_message(secret="wrong"), auth_message(key="other"), auth_message(expires_in_ms=-1)):
        sock = Socket(emu.endpoints.ws + "/v5/private")
        sock.send(message)
        failed = sock.next()
        assert set(failed) == failure_keys
        assert (failed["success"], failed["ret_msg"], failed["op"]) == (False, "Params Error", "auth")
        sock.send({"op": "subscribe", "req_id": "x", "args": ["order"]})
        assert sock.next()["success"] is False  # still unauthenticated, socket still open
        sock.close()


def test_subscribe_ack_echoes_req_id_after_a_delay(emu: BybitEmulator) -> None:
    sock = Socket(emu.endpoints.ws + "/v5/private")
    sock.send(auth_message())
    sock.next()
    sent = time.monotonic()
    sock.send({"op": "subscribe", "req_id": "abc-123", "args": ["order"]})
    ack = sock.next()
    assert time.monotonic() - sent >= BybitEmulator.SUBSCRIBE_ACK_DELAY
    assert ack["req_id"] == "abc-123" and ack["op"] == "subscribe" and ack["success"] is True
    assert set(fixture("subscribe.response.private.json")) <= set(ack)
    sock.send({"op": "subscribe", "req_id": "again", "args": ["order"]})
    assert sock.next()["success"] is False
    sock.send({"op": "unsubscribe", "req_id": "u1", "args": ["order"]})
    assert sock.next() == {**ack, "op": "unsubscribe", "req_id": "u1"}
    sock.close()


def test_limit_order_fill_pushes_order_execution_position_wallet(emu: BybitEmulator, private: Socket) -> None:
    http = http_for(emu)
    order_id = http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty="0.02",
                                price="59000", orderLinkId="buy-1")["result"]["orderId"]
    new = row(private.expect(topic_is("order")))
    assert (new["orderId"], new["orderStatus"], new["orderLinkId"], new["cumExecQty"], new["avgPrice"]) == (
        order_id, "New", "buy-1", "0", "")
    assert set(row(fixture("private.order.linear.filled.observed.json"))) <= set(new)

    emu.engine.set_price(SYMBOL, Decimal("58900"))
    filled = row(private.expect(topic_is("order")))
    execution = row(private.expect(topic_is("execution")))
    position = row(private.expect(topic_is("position")))
    wallet = row(private.expect(topic_is("wallet")))
    assert [f["topic"] for f in private.frames[-4:]] == ["order", "execution", "position", "wallet"]
    assert (filled["orderId"], filled["orderStatus"], filled["cumExecQty"], filled["avgPrice"],
            filled["cumExecFee"]) == (order_id, "Filled", "0.02", "59000", "0.236")
    assert set(row(fixture("private.execution.stream.json"))) <= set(execution)
    assert (execution["orderId"], execution["execType"], execution["execPrice"], execution["execQty"],
            execution["execFee"], execution["execPnl"], execution["isMaker"], execution["feeRate"]) == (
        order_id, "Trade", "59000", "0.02", "0.236", "0", True, "0.0002")
    assert isinstance(execution["seq"], int) and execution["execTime"].isdigit()
    assert set(row(fixture("private.position.stream.json"))) <= set(position)
    assert (position["side"], position["size"], position["entryPrice"], position["cumRealisedPnl"],
            position["category"]) == ("Buy", "0.02", "59000", "-0.236", "linear")
    assert set(row(fixture("private.wallet.stream.json"))) <= set(wallet)
    assert wallet["totalWalletBalance"] == "9999.764" and wallet["accountType"] == "UNIFIED"

    # close at a profit: realised PnL is reported pre-fee per execution, net of all fees on the position
    http.place_order(category="linear", symbol=SYMBOL, side="Sell", orderType="Limit", qty="0.02",
                     price="59500", reduceOnly=True)
    emu.engine.set_price(SYMBOL, Decimal("59600"))
    closing = row(private.expect(topic_is("execution")))
    flat = row(private.expect(topic_is("position")))
    assert (closing["execPnl"], closing["closedSize"], closing["isMaker"]) == ("10", "0.02", True)
    engine_slot = emu.engine.position(SYMBOL, 0)
    assert Decimal(flat["cumRealisedPnl"]) == engine_slot.cum_realised_net == Decimal("9.526")
    assert (flat["side"], flat["size"]) == ("", "0") and flat["seq"] > position["seq"]
    assert execution["seq"] < closing["seq"]
    rest = http.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]
    assert rest["cumRealisedPnl"] == flat["cumRealisedPnl"] and rest["seq"] == flat["seq"]


def test_take_profit_keeps_one_order_id_until_filled(emu: BybitEmulator, private: Socket) -> None:
    http = http_for(emu)
    open_long(emu, http)
    private.expect(topic_is("wallet"))
    assert http.set_trading_stop(category="linear", symbol=SYMBOL, positionIdx=0, takeProfit="61000",
                                 tpslMode="Full")["retCode"] == 0
    untriggered = row(private.expect(topic_is("order")))
    assert {k: untriggered[k] for k in ("orderStatus", "stopOrderType", "createType", "triggerPrice",
                                        "reduceOnly", "orderType", "side", "qty", "triggerDirection")} == {
        "orderStatus": "Untriggered", "stopOrderType": "TakeProfit", "createType": "CreateByTakeProfit",
        "triggerPrice": "61000", "reduceOnly": True, "orderType": "Market", "side": "Sell", "qty": "0.01",
        "triggerDirection": 1}
    tp_id = untriggered["orderId"]
    seeded = http.get_open_orders(category="linear", settleCoin="USDT")["result"]["list"]
    assert [(o["orderId"], o["orderStatus"], o["stopOrderType"]) for o in seeded] == [
        (tp_id, "Untriggered", "TakeProfit")]
    assert http.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]["takeProfit"] == "61000"
    with pytest.raises(InvalidRequestError) as same:
        http.set_trading_stop(category="linear", symbol=SYMBOL, positionIdx=0, takeProfit="61000")
    assert same.value.status_code == 34040

    emu.engine.set_price(SYMBOL, Decimal("61000"))
    triggered = row(private.expect(topic_is("order")))
    filled = row(private.expect(topic_is("order")))
    execution = row(private.expect(topic_is("execution")))
    flat = row(private.expect(topic_is("position")))
    assert (triggered["orderId"], triggered["orderStatus"]) == (tp_id, "Triggered")
    assert (filled["orderId"], filled["orderStatus"], filled["cumExecQty"], filled["stopOrderType"],
            filled["createType"]) == (tp_id, "Filled", "0.01", "TakeProfit", "CreateByTakeProfit")
    assert (execution["orderId"], execution["stopOrderType"], execution["execPnl"]) == (
        tp_id, "TakeProfit", "10")
    assert flat["size"] == "0"
    private.expect(topic_is("wallet"))
    assert private.nothing_for(0.1)  # the engine's own closing event of the conditional is not shown twice
    assert http.get_open_orders(category="linear", settleCoin="USDT")["result"]["list"] == []


def test_reduce_only_tp_is_deactivated_when_the_position_closes(emu: BybitEmulator, private: Socket) -> None:
    http = http_for(emu)
    open_long(emu, http)
    http.set_trading_stop(category="linear", symbol=SYMBOL, positionIdx=0, takeProfit="62000")
    tp_id = row(private.expect(topic_is("order", orderStatus="Untriggered")))["orderId"]
    http.place_order(category="linear", symbol=SYMBOL, side="Sell", orderType="Market", qty="0.01",
                     reduceOnly=True)
    ended = row(private.expect(topic_is("order", orderId=tp_id)))
    assert (ended["orderStatus"], ended["cancelType"]) == ("Deactivated", "CancelByTpSlTsClear")


def test_conditional_order_create_and_cancel(emu: BybitEmulator, private: Socket) -> None:
    http = http_for(emu)
    created = http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Market", qty="0.01",
                               triggerPrice="61000", triggerDirection=1, orderLinkId="breakout")["result"]
    shown = row(private.expect(topic_is("order")))
    assert (shown["orderId"], shown["orderStatus"], shown["stopOrderType"], shown["createType"],
            shown["triggerPrice"]) == (created["orderId"], "Untriggered", "Stop", "CreateByUser", "61000")
    with pytest.raises(InvalidRequestError) as wrong_way:
        http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Market", qty="0.01",
                         triggerPrice="59000", triggerDirection=1)
    assert wrong_way.value.status_code == 110092
    assert http.cancel_order(category="linear", symbol=SYMBOL, orderLinkId="breakout")["result"] == created
    cancelled = row(private.expect(topic_is("order")))
    assert (cancelled["orderId"], cancelled["orderStatus"], cancelled["cancelType"]) == (
        created["orderId"], "Cancelled", "CancelByUser")


def test_triggered_limit_conditional_rests_and_cancels_under_its_own_id(emu: BybitEmulator,
                                                                         private: Socket) -> None:
    http = http_for(emu)
    stop_id = http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty="0.01",
                               price="60500", triggerPrice="61000", triggerDirection=1)["result"]["orderId"]
    assert row(private.expect(topic_is("order")))["orderStatus"] == "Untriggered"
    emu.engine.set_price(SYMBOL, Decimal("61000"))
    statuses = [row(private.expect(topic_is("order"))) for _ in range(2)]
    assert [(o["orderId"], o["orderStatus"]) for o in statuses] == [(stop_id, "Triggered"), (stop_id, "New")]
    listed = http.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"]
    assert [(o["orderId"], o["orderStatus"], o["stopOrderType"], o["price"]) for o in listed] == [
        (stop_id, "New", "Stop", "60500")]
    answer = http.cancel_order(category="linear", symbol=SYMBOL, orderId=stop_id)
    assert answer["result"]["orderId"] == stop_id
    cancelled = row(private.expect(topic_is("order")))
    assert (cancelled["orderId"], cancelled["orderStatus"]) == (stop_id, "Cancelled")
    assert private.nothing_for(0.1)
    assert http.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"] == []


def test_frames_follow_engine_order_under_concurrent_callers(emu: BybitEmulator, private: Socket) -> None:
    def trade(side: str) -> None:
        for _ in range(10):
            emu.engine.place_order(symbol=SYMBOL, side=side, order_type="Market", qty=Decimal("0.001"))

    threads = [threading.Thread(target=trade, args=(side,)) for side in ("Buy", "Sell")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    positions = [row(private.expect(topic_is("position"))) for _ in range(20)]
    seqs = [p["seq"] for p in positions]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    assert positions[-1]["size"] == "0"


def test_private_ping_pong_shape(emu: BybitEmulator, private: Socket) -> None:
    private.send({"op": "ping"})
    pong = private.next()
    assert set(pong) == set(fixture("pong.private.json")) - {"req_id"}
    assert pong["op"] == "pong" and pong["args"][0].isdigit()
    private.send({"req_id": "p1", "op": "ping"})
    assert set(private.next()) == set(fixture("pong.private.json"))


# ------------------------------------------------------------------------------------ public socket


def test_tickers_snapshot_then_delta_with_changed_fields_only(emu: BybitEmulator) -> None:
    sock = Socket(emu.endpoints.ws + "/v5/public/linear")
    sock.send({"op": "subscribe", "req_id": "tick", "args": [f"tickers.{SYMBOL}"]})
    ack = sock.next()
    assert set(ack) == set(fixture("subscribe.response.public_linear.json")) and ack["req_id"] == "tick"
    snapshot = sock.next()
    documented = fixture("public.tickers.linear_perpetual.snapshot.json")
    assert set(documented) == set(snapshot) and snapshot["type"] == "snapshot"
    assert set(documented["data"]) <= set(snapshot["data"])
    data = snapshot["data"]
    assert (data["lastPrice"], data["markPrice"], data["fundingRate"]) == ("60000", "60000", "0.0001")

    emu.engine.set_price(SYMBOL, Decimal("60100"))
    delta = sock.next()
    assert delta["type"] == "delta" and delta["cs"] > snapshot["cs"] and isinstance(delta["ts"], int)
    assert delta["data"]["symbol"] == SYMBOL and delta["data"]["lastPrice"] == "60100"
    assert {"fundingRate", "nextFundingTime", "volume24h", "prevPrice24h"}.isdisjoint(delta["data"])
    emu.engine.set_price(SYMBOL, Decimal("60100"))  # unchanged: no delta (only tickDirection moves to Zero)
    zero = sock.next()
    assert zero["data"] == {"symbol": SYMBOL, "tickDirection": "ZeroPlusTick"}

    sock.send({"op": "subscribe", "req_id": "bad", "args": ["tickers.NOPEUSDT"]})
    refused = sock.next()
    assert refused["success"] is False and "tickers.NOPEUSDT" in refused["ret_msg"]
    sock.close()


def test_price_loop_pushes_deltas_at_its_cadence() -> None:
    with BybitEmulator(config(), price_interval=0.05) as emu:
        sock = Socket(emu.endpoints.ws + "/v5/public/linear")
        sock.send({"op": "subscribe", "args": [f"tickers.{SYMBOL}"]})
        sock.next()
        sock.next()
        deltas = [sock.expect(lambda f: f.get("type") == "delta", timeout=5) for _ in range(3)]
        assert [d["cs"] for d in deltas] == sorted({d["cs"] for d in deltas})
        emu.price_interval = 0  # the walk stops
        sock.close()


def test_public_ping_pong_shape(emu: BybitEmulator, public: Socket) -> None:
    public.send({"op": "ping"})
    pong = public.next()
    assert set(pong) == set(fixture("pong.public_linear.json"))
    assert (pong["success"], pong["ret_msg"], pong["op"], pong["req_id"]) == (True, "pong", "ping", "")


# -------------------------------------------------------------------------------------------- faults


def test_drop_private_and_public(emu: BybitEmulator, private: Socket, public: Socket) -> None:
    emu.faults.drop_private()
    with pytest.raises(ConnectionClosed):
        private.next(timeout=5)
    public.send({"op": "ping"})
    assert public.next()["ret_msg"] == "pong"  # the other channel is untouched
    emu.faults.drop_public()
    with pytest.raises(ConnectionClosed):
        public.next(timeout=5)


def test_send_raw(emu: BybitEmulator, private: Socket) -> None:
    emu.faults.send_raw("private", '{"topic":"bogus","data":[]}')
    assert private.next() == {"topic": "bogus", "data": []}
    with pytest.raises(ValueError):
        emu.faults.send_raw("spot", "{}")


def test_duplicate_and_reorder(emu: BybitEmulator, private: Socket) -> None:
    http = http_for(emu)
    emu.faults.duplicate_next("private", 1)
    open_long(emu, http)
    first, second = private.next(), private.next()
    assert first == second and row(first)["orderStatus"] == "New"
    topics = [private.next()["topic"] for _ in range(4)]
    assert topics == ["order", "execution", "position", "wallet"]

    emu.faults.reorder_next("private")
    open_long(emu, http)
    topics = [private.next()["topic"] for _ in range(5)]
    assert topics == ["order", "order", "execution", "position", "wallet"]
    assert [row(f)["orderStatus"] for f in private.frames[-5:-3]] == ["Filled", "New"]


def test_pause_holds_and_resume_delivers_in_order(emu: BybitEmulator, private: Socket) -> None:
    emu.faults.pause("private")
    open_long(emu, http_for(emu))
    private.send({"op": "ping"})
    assert private.nothing_for(0.15)
    emu.faults.resume("private")
    topics = [private.next().get("topic", "pong") for _ in range(6)]
    assert topics == ["order", "order", "execution", "position", "wallet", "pong"]


def test_silence_is_a_half_dead_socket(emu: BybitEmulator, private: Socket) -> None:
    assert private.conn.ping().wait(2)  # protocol pings are answered normally
    emu.faults.silence("private", True)
    private.send({"op": "ping"})
    pong_waiter = private.conn.ping()
    open_long(emu, http_for(emu))
    assert private.nothing_for(0.2)
    assert not pong_waiter.wait(0.05)  # protocol pongs withheld too, socket still open
    emu.faults.silence("private", False)
    private.send({"op": "ping"})
    assert private.next()["op"] == "pong"  # what was sent while silent is gone for good


def test_reject_auth_fails_ws_auth_and_signed_rest(emu: BybitEmulator) -> None:
    emu.faults.reject_auth(True)
    sock = Socket(emu.endpoints.ws + "/v5/private")
    sock.send(auth_message())
    assert sock.next()["success"] is False
    sock.close()
    with pytest.raises(InvalidRequestError) as err:
        http_for(emu).get_wallet_balance(accountType="UNIFIED")
    assert err.value.status_code == 10003
    assert http_for(emu).get_server_time()["retCode"] == 0  # public endpoints unaffected
    emu.faults.reject_auth(False)
    assert http_for(emu).get_wallet_balance(accountType="UNIFIED")["retCode"] == 0


def test_rest_delay_and_rest_fail(emu: BybitEmulator) -> None:
    http = http_for(emu)
    emu.faults.rest_delay("/v5/position/list", 0.2)
    started = time.monotonic()
    http.get_positions(category="linear", symbol=SYMBOL)
    assert time.monotonic() - started >= 0.2
    emu.faults.rest_delay("/v5/position/list", 0)

    emu.faults.rest_fail("/v5/order/realtime", 503, 10016, "Server error", times=2)
    for _ in range(2):
        with pytest.raises(FailedRequestError) as failed:
            http.get_open_orders(category="linear", settleCoin="USDT")
        assert failed.value.status_code == 503
    assert http.get_open_orders(category="linear", settleCoin="USDT")["retCode"] == 0
    emu.faults.rest_fail("/v5/account/wallet-balance", 200, 10016, "Server error")
    with pytest.raises(InvalidRequestError) as invalid:
        http.get_wallet_balance(accountType="UNIFIED")
    assert invalid.value.status_code == 10016
    assert emu.rest_calls["GET /v5/order/realtime"] == 3


def test_refuse_ws(emu: BybitEmulator) -> None:
    emu.faults.refuse_ws(True)
    with pytest.raises(InvalidStatus) as refused:
        connect(emu.endpoints.ws + "/v5/private", open_timeout=5, legacy=True)
    assert refused.value.response.status_code == 503
    emu.faults.refuse_ws(False)
    Socket(emu.endpoints.ws + "/v5/private").close()


# ------------------------------------------------------------------------------ pybit's own WebSocket


def test_pybit_websockets_run_against_the_emulator(emu: BybitEmulator, mocker: Any) -> None:
    """pybit raises on its socket thread for an early ack or an unknown topic: check it stays up."""
    from pybit import unified_trading

    mocker.patch.object(unified_trading, "PRIVATE_WSS", emu.endpoints.ws + "/v5/private")
    mocker.patch.object(unified_trading, "PUBLIC_WSS", emu.endpoints.ws + "/v5/public/{CHANNEL_TYPE}")
    orders: list[dict[str, Any]] = []
    tickers: list[dict[str, Any]] = []
    options: dict[str, Any] = {"testnet": False, "ping_interval": 1, "ping_timeout": 0.5, "retries": 3}
    private_ws = unified_trading.WebSocket(channel_type="private", api_key=KEY, api_secret=SECRET, **options)
    public_ws = unified_trading.WebSocket(channel_type="linear", **options)
    try:
        wait_until(lambda: private_ws.auth)
        private_ws.order_stream(orders.append)
        public_ws.ticker_stream(SYMBOL, tickers.append)
        wait_until(lambda: tickers)
        wait_until(lambda: emu.subscriptions("private") == [{"order"}])  # pushes start after the ack
        open_long(emu, http_for(emu))
        wait_until(lambda: len(orders) == 2)
        emu.engine.set_price(SYMBOL, Decimal("60050"))
        wait_until(lambda: tickers[-1]["data"]["lastPrice"] == "60050")
        assert [o["data"][0]["orderStatus"] for o in orders] == ["New", "Filled"]
        assert tickers[-1]["data"]["fundingRate"] == "0.0001"  # pybit merged the delta into its snapshot
        assert private_ws.is_connected() and public_ws.is_connected()
    finally:
        private_ws.exit()
        public_ws.exit()
