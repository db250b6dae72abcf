"""The Bybit emulator answers finished orders: ``order/realtime`` by id and ``GET /v5/order/history``
(what gridbot's resync asks for orders that left the open orders while it was disconnected)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from pybit.unified_trading import HTTP

from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from tests.emulator.sdk_clients import bybit_http

KEY, SECRET, SYMBOL = "k-finished", "s-finished", "BTCUSDT"


@pytest.fixture
def emu() -> Iterator[BybitEmulator]:
    config = EngineConfig(symbols=(SymbolConfig(SYMBOL, Decimal("60000")),))
    emulator = BybitEmulator(config, api_key=KEY, api_secret=SECRET, price_interval=0)
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def http(emu: BybitEmulator) -> HTTP:
    return bybit_http(emu.endpoints, KEY, SECRET)


def place(http: HTTP, link_id: str, price: str) -> str:
    answer = http.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty="0.01",
                              price=price, orderLinkId=link_id)
    return str(answer["result"]["orderId"])


def test_realtime_by_id_answers_a_finished_order_and_the_open_list_does_not(emu: BybitEmulator,
                                                                            http: HTTP) -> None:
    order_id = place(http, "will-fill", "59000")
    emu.engine.set_price(SYMBOL, Decimal("58990"))
    rows = http.get_open_orders(category="linear", symbol=SYMBOL, orderId=order_id)["result"]["list"]
    assert [(r["orderId"], r["orderStatus"], r["cumExecQty"]) for r in rows] == [(order_id, "Filled", "0.01")]
    by_link = http.get_open_orders(category="linear", orderLinkId="will-fill")["result"]["list"]
    assert [r["orderId"] for r in by_link] == [order_id]
    assert http.get_open_orders(category="linear", settleCoin="USDT")["result"]["list"] == []


def test_history_lists_finished_orders_newest_first_with_cursor_pages(emu: BybitEmulator, http: HTTP) -> None:
    first = place(http, "first", "50000")
    second = place(http, "second", "50001")
    open_one = place(http, "still-open", "50002")
    http.cancel_order(category="linear", symbol=SYMBOL, orderId=first)
    http.cancel_order(category="linear", symbol=SYMBOL, orderId=second)

    page = http.get_order_history(category="linear", symbol=SYMBOL, limit=1)["result"]
    assert [(r["orderId"], r["orderStatus"]) for r in page["list"]] == [(second, "Cancelled")]
    assert page["nextPageCursor"]
    rest = http.get_order_history(category="linear", symbol=SYMBOL, limit=1,
                                  cursor=page["nextPageCursor"])["result"]
    assert [r["orderId"] for r in rest["list"]] == [first] and rest["nextPageCursor"] == ""

    one = http.get_order_history(category="linear", orderId=first)["result"]["list"]
    assert [r["orderLinkId"] for r in one] == ["first"]
    assert http.get_order_history(category="linear", orderId=open_one)["result"]["list"] == []
