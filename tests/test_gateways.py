"""Order gateways: SDK calls and error translation (mocked clients), then against the loopback exchanges."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from typing import Any
from unittest.mock import MagicMock

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from gridbot._credentials import Credentials
from gridbot._gateways import (
    BinanceGateway,
    BybitGateway,
    OrderRejected,
    ReduceOnlyRejected,
    binance_rest_client,
    bybit_rest_client,
)
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError

SIGNED_URL = "http://127.0.0.1:1/fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature=deadbeefcafe"


def binance_client() -> MagicMock:
    """python-binance's REST client, faked: only the methods the real ``Client`` has can be called."""
    return MagicMock(spec=Client)


def bybit_session() -> MagicMock:
    """pybit's ``HTTP`` session, faked the same way."""
    return MagicMock(spec=HTTP)


def binance_error(code: int, msg: str, status: int = 400) -> BinanceAPIException:
    body = f'{{"code": {code}, "msg": "{msg}"}}'
    return BinanceAPIException(MagicMock(spec=requests.Response), status, body)


def bybit_error(code: int, msg: str) -> InvalidRequestError:
    return InvalidRequestError(request="POST /v5/order/create: {}", message=msg, status_code=code,
                               time="00:00:00", resp_headers={})


# ------------------------------------------------------------------------------------------- Binance


def test_binance_one_way_limit_sends_reduce_only() -> None:
    client = binance_client()
    client.futures_create_order.return_value = {"orderId": 8001}
    order_id = BinanceGateway(client).place_limit("BTCUSDT", "Sell", D("0.010"), D("60100.0"), position_idx=0,
                                                  reduce_only=True, client_order_id="gb-1")
    assert order_id == "8001"
    client.futures_create_order.assert_called_once_with(
        symbol="BTCUSDT", side="SELL", quantity="0.010", positionSide="BOTH", newClientOrderId="gb-1",
        reduceOnly="true", type="LIMIT", timeInForce="GTC", price="60100.0")


@pytest.mark.parametrize(("idx", "side"), [(1, "LONG"), (2, "SHORT")])
def test_binance_hedge_mode_sends_position_side_and_never_reduce_only(idx: int, side: str) -> None:
    client = binance_client()
    client.futures_create_order.return_value = {"orderId": 1}
    BinanceGateway(client).place_market("ETHUSDT", "Buy", D("0.2"), position_idx=idx, reduce_only=True,
                                        client_order_id="")
    client.futures_create_order.assert_called_once_with(
        symbol="ETHUSDT", side="BUY", quantity="0.2", positionSide=side, type="MARKET")


def test_binance_cancel_sends_the_numeric_order_id() -> None:
    client = binance_client()
    BinanceGateway(client).cancel("BTCUSDT", "8001000003")
    client.futures_cancel_order.assert_called_once_with(symbol="BTCUSDT", orderId=8001000003)


@pytest.mark.parametrize(("error", "expected"), [
    (binance_error(-2015, "Invalid API-key, IP, or permissions for action."), AuthenticationError),
    (binance_error(-1022, "Signature for this request is not valid."), AuthenticationError),
    (binance_error(-2019, "Margin is insufficient."), OrderRejected),
    (binance_error(-2022, "ReduceOnly Order is rejected."), ReduceOnlyRejected),
    (requests.ConnectionError(f"Max retries exceeded with url: {SIGNED_URL}"), ConnectError),
])
def test_binance_errors_are_translated_without_the_request(error: Exception,
                                                           expected: type[Exception]) -> None:
    client = binance_client()
    client.futures_create_order.side_effect = error
    with pytest.raises(expected) as caught:
        BinanceGateway(client).place_limit("BTCUSDT", "Buy", D("1"), D("1"), position_idx=0,
                                           reduce_only=False, client_order_id="x")
    cause = caught.value.__cause__  # the SDK exception, kept for the traceback but scrubbed
    assert cause is error
    assert "deadbeefcafe" not in str(caught.value) and "deadbeefcafe" not in str(cause)
    assert getattr(cause, "request", None) is None and getattr(cause, "response", None) is None


def test_binance_rejection_keeps_the_exchange_code() -> None:
    client = binance_client()
    client.futures_cancel_order.side_effect = binance_error(-2011, "Unknown order sent.")
    with pytest.raises(OrderRejected) as caught:
        BinanceGateway(client).cancel("BTCUSDT", "1")
    assert caught.value.code == -2011
    assert "Unknown order sent." in str(caught.value)


def test_binance_gateway_errors_never_show_the_keys() -> None:
    client = binance_client()
    response = MagicMock(spec=requests.Response, text='{"code": -2015, "msg": "Invalid API-key very-secret"}')
    response.request = MagicMock(spec=requests.PreparedRequest, url=f"{SIGNED_URL}&apiKey=key-id")
    client.futures_cancel_order.side_effect = BinanceAPIException(response, 401, response.text)
    gateway = BinanceGateway(client, Credentials("key-id", "very-secret"))
    with pytest.raises(AuthenticationError) as caught:
        gateway.cancel("BTCUSDT", "1")
    cause = caught.value.__cause__
    assert isinstance(cause, BinanceAPIException) and cause.request is None and cause.response is None
    for text in (str(caught.value), str(cause), repr(cause.args)):
        assert "very-secret" not in text and "key-id" not in text


def test_binance_client_masks_its_secret() -> None:
    client = binance_rest_client("key-id", "very-secret")
    gateway = BinanceGateway(client, Credentials("key-id", "very-secret"))
    assert "very-secret" not in repr(gateway) + repr(client) + repr(vars(client)) + repr(vars(gateway))
    assert client.API_SECRET == "very-secret"  # what the SDK reads when it signs


def test_binance_client_is_pointed_at_the_endpoints_per_instance() -> None:
    from binance.client import Client

    client = binance_rest_client("k", "s", endpoints=Endpoints("http://127.0.0.1:9/", "ws://127.0.0.1:9"))
    assert (client.API_URL, client.FUTURES_URL) == ("http://127.0.0.1:9/api", "http://127.0.0.1:9/fapi")
    assert Client.FUTURES_URL.startswith("https://fapi.binance")


def test_side_and_slot_are_validated() -> None:
    with pytest.raises(ValueError):
        BinanceGateway(binance_client()).place_market("BTCUSDT", "BUY", D("1"), position_idx=0,
                                                      reduce_only=False, client_order_id="")
    with pytest.raises(ValueError):
        BybitGateway(bybit_session()).place_market("BTCUSDT", "Buy", D("1"), position_idx=3,
                                                   reduce_only=False, client_order_id="")


# --------------------------------------------------------------------------------------------- Bybit


def test_bybit_limit_order_parameters() -> None:
    session = bybit_session()
    session.place_order.return_value = {"retCode": 0, "result": {"orderId": "abc-1", "orderLinkId": "gb-2"}}
    order_id = BybitGateway(session).place_limit("BTCUSDT", "Buy", D("0.010"), D("59000.0"), position_idx=1,
                                                 reduce_only=False, client_order_id="gb-2")
    assert order_id == "abc-1"
    session.place_order.assert_called_once_with(
        category="linear", symbol="BTCUSDT", side="Buy", qty="0.010", positionIdx=1, reduceOnly=False,
        orderLinkId="gb-2", orderType="Limit", timeInForce="GTC", price="59000.0")


def test_bybit_cancel() -> None:
    session = bybit_session()
    BybitGateway(session).cancel("BTCUSDT", "abc-1")
    session.cancel_order.assert_called_once_with(category="linear", symbol="BTCUSDT", orderId="abc-1")


@pytest.mark.parametrize(("error", "expected"), [
    (bybit_error(10003, "API key is invalid."), AuthenticationError),
    (bybit_error(10004, "error sign!"), AuthenticationError),
    (bybit_error(110017, "Reduce-only rule not satisfied"), ReduceOnlyRejected),
    (bybit_error(110007, "Insufficient available balance"), OrderRejected),
    (FailedRequestError(request="x", message="HTTP status code is not 200.", status_code=502, time="t",
                        resp_headers={}), ConnectError),
    (requests.ReadTimeout("read timed out"), ConnectError),
])
def test_bybit_errors_are_translated(error: Exception, expected: type[Exception]) -> None:
    session = bybit_session()
    session.place_order.side_effect = error
    with pytest.raises(expected):
        BybitGateway(session).place_market("BTCUSDT", "Sell", D("1"), position_idx=0, reduce_only=True,
                                           client_order_id="")


def test_bybit_session_is_pointed_at_the_endpoints() -> None:
    session = bybit_rest_client("k", "s", endpoints=Endpoints("http://127.0.0.1:9", "ws://127.0.0.1:9"))
    assert session.endpoint == "http://127.0.0.1:9"


def test_gateway_repr_shows_no_keys() -> None:
    gateway = BybitGateway(bybit_rest_client("key-id", "very-secret"))
    assert "very-secret" not in repr(gateway) and "key-id" not in repr(gateway)


# ------------------------------------------------------------------------------ against the emulators

CONFIG = EngineConfig(symbols=(SymbolConfig("BTCUSDT", D("60000")),), seed=3)


@pytest.fixture(params=["binance", "bybit"])
def exchange(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    emulator_type: Any = BinanceEmulator if request.param == "binance" else BybitEmulator
    emulator = emulator_type(CONFIG, price_interval=60)
    gateway_type: Any = BinanceGateway if request.param == "binance" else BybitGateway
    with emulator:
        yield emulator, gateway_type


def test_orders_reach_the_loopback_exchange_and_are_cancelled(exchange: tuple[Any, Any]) -> None:
    emulator, gateway_type = exchange
    gateway = gateway_type.connect("test-key", "test-secret", endpoints=emulator.endpoints)
    order_id = gateway.place_limit("BTCUSDT", "Buy", D("0.010"), D("59000.0"), position_idx=0,
                                   reduce_only=False, client_order_id="gb-test-1")
    [order] = emulator.engine.open_orders()
    assert (order.client_order_id, order.side, order.qty, order.price, order.position_idx) == (
        "gb-test-1", "Buy", D("0.010"), D("59000.0"), 0)
    gateway.cancel("BTCUSDT", order_id)
    assert emulator.engine.open_orders() == []
    with pytest.raises(ReduceOnlyRejected):  # nothing to reduce
        gateway.place_limit("BTCUSDT", "Sell", D("0.010"), D("61000.0"), position_idx=0, reduce_only=True,
                            client_order_id="gb-test-2")
    assert not any(call.startswith("GET ") and "/time" not in call for call in emulator.rest_calls)


def test_wrong_keys_are_an_authentication_error(exchange: tuple[Any, Any]) -> None:
    emulator, gateway_type = exchange
    gateway = gateway_type.connect("test-key", "wrong-secret", endpoints=emulator.endpoints)
    with pytest.raises(AuthenticationError) as caught:
        gateway.place_market("BTCUSDT", "Buy", D("0.010"), position_idx=0, reduce_only=False,
                             client_order_id="")
    assert "wrong-secret" not in str(caught.value)
    assert emulator.engine.open_orders() == [] and emulator.engine.positions() == []
