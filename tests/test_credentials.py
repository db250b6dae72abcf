"""Credentials: masked secret, whole-token redaction, and SDK exception chains scrubbed of request data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import requests
from binance.exceptions import BinanceAPIException
from urllib3.exceptions import MaxRetryError

from gridbot._credentials import Credentials

KEY, SECRET = "key-0123456789", "secret-abcdef"
SIGNED = f"/fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature=deadbeefcafe&apiKey={KEY}"


def test_scrub_drops_requests_and_redacts_every_message_of_the_chain() -> None:
    credentials = Credentials(KEY, SECRET)
    try:
        try:
            raise MaxRetryError(pool=object(), url=SIGNED)  # type: ignore[arg-type]
        except MaxRetryError as inner:
            prepared = requests.Request("GET", f"http://h{SIGNED}", headers={"X-MBX-APIKEY": KEY}).prepare()
            raise requests.ConnectionError(inner, request=prepared) from inner
    except requests.ConnectionError as caught:
        outer = caught

    assert credentials.scrub(outer) is outer
    inner_exc = outer.__cause__
    assert isinstance(inner_exc, MaxRetryError)
    assert outer.request is None and outer.response is None
    assert getattr(inner_exc, "pool", None) is None
    for exc in (outer, inner_exc):
        text = str(exc) + repr(exc.args) + str(getattr(exc, "url", ""))
        assert "deadbeefcafe" not in text and KEY not in text and "<redacted>" in text


def test_scrub_drops_the_response_of_a_binance_api_error() -> None:
    text = json.dumps({"code": -2015, "msg": f"Invalid API-key {KEY}"})
    response = SimpleNamespace(text=text, request=SimpleNamespace(url=f"http://h{SIGNED}",
                                                                  headers={"X-MBX-APIKEY": KEY}))
    error = BinanceAPIException(response, 401, text)
    Credentials(KEY, SECRET).scrub(error)
    assert error.response is None and error.request is None
    assert KEY not in str(error) and error.code == -2015


def test_scrub_leaves_clean_exceptions_alone_and_survives_odd_ones() -> None:
    credentials = Credentials(KEY, SECRET)
    plain = OSError(111, "Connection refused")
    credentials.scrub(plain)
    assert plain.args == (111, "Connection refused") and plain.errno == 111

    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    odd = Odd("x")
    assert credentials.scrub(odd) is odd  # logged at DEBUG, never raised
