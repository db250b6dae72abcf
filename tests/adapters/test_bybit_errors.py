"""Bybit's one error map: codes, and SDK causes that carry no signed request, key header or secret."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal as D
from typing import Any

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError

from gridbot._credentials import Credentials
from gridbot.adapters.bybit._errors import AUTH_RET_CODES, check_ret_code, scrub_chain, translate
from gridbot.adapters.bybit._gateway import BybitGateway
from gridbot.adapters.bybit._rest import BybitRest
from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from gridbot.endpoints import Endpoints
from gridbot.errors import (
    AuthenticationError,
    ConnectError,
    GridbotError,
    OrderRejected,
    ReduceOnlyRejected,
)
from gridbot.stats import Counters

KEY = "k3y-abcdef123456"
SECRET = "s3cret-0123456789abcdef"
FORBIDDEN = (KEY, SECRET, "X-BAPI-SIGN", "X-BAPI-API-KEY")
CREDENTIALS = Credentials(KEY, SECRET)


def invalid(code: int, message: str = "refused") -> InvalidRequestError:
    return InvalidRequestError(request="POST /v5/order/create: {}", message=message, status_code=code,
                               time="00:00:00", resp_headers={})


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend((current.__cause__, current.__context__))


def texts(exc: BaseException) -> Iterator[str]:
    """What an error tracker shows of an exception chain: reprs, attributes, frame locals."""
    for current in chain(exc):
        yield repr(current)
        yield str(current)
        yield from (repr(value) for value in vars(current).values())
        tb = current.__traceback__
        while tb is not None:
            yield from (repr(value) for value in tb.tb_frame.f_locals.values())
            tb = tb.tb_next


def assert_clean(exc: BaseException) -> None:
    leaks = [(word, text[:200]) for text in texts(exc) for word in FORBIDDEN if word in text]
    assert leaks == []


@pytest.mark.parametrize("code", sorted(AUTH_RET_CODES))
@pytest.mark.parametrize("orders", [False, True])
def test_the_seven_documented_key_codes_are_authentication_errors(code: int, orders: bool) -> None:
    error = translate(invalid(code), "x", CREDENTIALS.redact, orders=orders)
    assert type(error) is AuthenticationError
    assert str(code) in str(error)


def test_order_refusals_keep_their_code() -> None:
    reduce_only = translate(invalid(110017), "place", CREDENTIALS.redact, orders=True)
    other = translate(invalid(110007), "place", CREDENTIALS.redact, orders=True)
    assert type(reduce_only) is ReduceOnlyRejected and reduce_only.code == 110017
    assert type(other) is OrderRejected and other.code == 110007
    assert type(translate(invalid(110007), "seed", CREDENTIALS.redact)) is GridbotError


def test_http_failures_and_ret_codes_in_answers() -> None:
    unauthorized = FailedRequestError(request="GET /v5/x: a=1", message="no", status_code=401, time="t",
                                      resp_headers=None)
    assert type(translate(unauthorized, "x", CREDENTIALS.redact)) is AuthenticationError
    limited = FailedRequestError(request="GET /v5/x: a=1", message="slow", status_code=403, time="t",
                                 resp_headers=None)
    assert type(translate(limited, "x", CREDENTIALS.redact)) is ConnectError
    with pytest.raises(AuthenticationError, match="33004"):
        check_ret_code({"retCode": 33004, "retMsg": "expired"}, "x", CREDENTIALS.redact)
    with pytest.raises(GridbotError, match="unexpected response type"):
        check_ret_code([], "x", CREDENTIALS.redact)
    answer = {"retCode": 0, "result": {}}
    assert check_ret_code(answer, "x", CREDENTIALS.redact) == answer


def test_scrub_replaces_a_prepared_request_and_drops_the_response() -> None:
    request = requests.Request("GET", "http://h/v5/position/list?symbol=BTCUSDT",
                               headers={"X-BAPI-API-KEY": KEY, "X-BAPI-SIGN": "f00d"}).prepare()
    response = requests.Response()
    response.request = request
    try:
        try:
            raise OSError(f"boom with {SECRET} and sign=f00d")
        except OSError as inner:
            raise requests.ConnectionError(inner, request=request, response=response) from inner
    except requests.ConnectionError as caught:
        outer = caught
    scrub_chain(outer, CREDENTIALS.redact)
    request_line: object = outer.request  # a str now, where requests types a Request
    assert request_line == "GET /v5/position/list"
    assert outer.response is None
    assert_clean(outer)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_host_raises_a_clean_connect_error(closed_port: int) -> None:
    """Real pybit + requests: the ConnectionError holds the signed PreparedRequest until scrubbed."""
    endpoints = Endpoints(f"http://127.0.0.1:{closed_port}", f"ws://127.0.0.1:{closed_port}")
    rest = BybitRest(CREDENTIALS, testnet=False, demo=False, endpoints=endpoints, counters=Counters())
    with pytest.raises(ConnectError) as caught:
        rest.snapshot(["BTCUSDT"], include_wallet=False)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert_clean(caught.value)


@pytest.fixture
def emulator() -> Iterator[Any]:
    config = EngineConfig(symbols=(SymbolConfig("BTCUSDT", D("60000")),), seed=3)
    with BybitEmulator(config, price_interval=60, api_key=KEY, api_secret=SECRET) as server:
        yield server


def test_rejected_keys_raise_a_clean_authentication_error(emulator: Any) -> None:
    gateway = BybitGateway.connect(KEY, SECRET[::-1], endpoints=emulator.endpoints)
    with pytest.raises(AuthenticationError, match="10004") as caught:
        gateway.place_market("BTCUSDT", "Buy", D("0.010"), position_idx=0, reduce_only=False,
                             client_order_id="")
    assert isinstance(caught.value.__cause__, InvalidRequestError)
    assert_clean(caught.value)


def test_a_refused_order_raises_a_clean_order_rejected(emulator: Any) -> None:
    gateway = BybitGateway.connect(KEY, SECRET, endpoints=emulator.endpoints)
    with pytest.raises(ReduceOnlyRejected) as caught:
        gateway.place_limit("BTCUSDT", "Sell", D("0.010"), D("61000.0"), position_idx=0, reduce_only=True,
                            client_order_id="gb-1")
    assert_clean(caught.value)
