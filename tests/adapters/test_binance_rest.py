# ruff: noqa: F811 - the fixtures are imported from tests.adapters.binance_fakes and named as parameters
"""BinanceAdapter's REST layer over a faked python-binance ``Client``: snapshot, order look-ups, fill
backfill, symbol checks, and answers of the wrong shape."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from gridbot.adapters.binance import _rest as rest_mod
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.normalize.binance import algo_orders_from_rest, orders_from_rest
from gridbot.stats import Counters
from tests.adapters.binance_fakes import (  # noqa: F401 - pytest fixtures
    FAKE_ENDPOINTS,
    KEY,
    OPEN_ORDER_ROW,
    REST,
    SECRET,
    WS,
    FakeClient,
    FakeSdk,
    FakeSocket,
    RecordingSink,
    api_error,
    fixture,
    make_adapter,
    new_threads,
    sdk,
    sink,
    threads_before,
)

# --------------------------------------------------------------------------- REST


def test_fetch_snapshot_calls_filters_and_counts(sdk: FakeSdk, make_adapter: Any) -> None:
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)

    events = adapter.fetch_snapshot(["ADAUSDT", "BTCUSDT", "BNBUSDT"], include_wallet=True)

    assert [name for name, _ in sdk.seed_rest.calls] == ["positions", "balance", "open_orders",
                                                         "open_algo_orders"]
    assert counters.snapshot().rest_calls == 4
    assert all(e.is_snapshot for e in events)
    positions = [e for e in events if isinstance(e, PositionUpdate)]
    assert {p.symbol for p in positions} == {"ADAUSDT"}  # the fixture's only wanted symbol
    assert [w.coin for w in events if isinstance(w, WalletUpdate)] == ["USDT"]
    orders = [e for e in events if isinstance(e, OrderUpdate)]
    assert [(o.symbol, o.order_id) for o in orders] == [("BTCUSDT", "1917641"), ("BNBUSDT", "2148627")]
    assert sdk.seed_rest.timestamp_offset == 7  # type: ignore[attr-defined]  # the manager's measured clock offset is used to sign

    adapter.fetch_snapshot(["BTCUSDT"], include_wallet=False)
    assert counters.snapshot().rest_calls == 7


@pytest.mark.parametrize(("error", "expected"), [
    (api_error(400, -1022, "Signature for this request is not valid."), AuthenticationError),
    (api_error(401, -2014, "API-key format invalid."), AuthenticationError),
    (api_error(400, -1021, "Timestamp for this request is outside of the recvWindow."), GridbotError),
    (requests.ConnectionError("Max retries exceeded"), ConnectError),
    (requests.Timeout("read timed out"), ConnectError),
])
def test_fetch_snapshot_translates_errors(sdk: FakeSdk, make_adapter: Any, error: Exception,
                                          expected: type[GridbotError]) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["positions"] = error
    with pytest.raises(expected) as caught:
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=True)
    assert type(caught.value) is expected
    assert caught.value.__cause__ is error


def test_fetch_orders_queries_regular_and_algo_orders(sdk: FakeSdk, make_adapter: Any) -> None:
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)
    filled = {**OPEN_ORDER_ROW, "status": "FILLED", "executedQty": "0.40"}
    algo_row = {**fixture("rest_open_algo_orders.json")[0], "algoStatus": "CANCELED"}
    regular, gone = orders_from_rest([OPEN_ORDER_ROW, {**OPEN_ORDER_ROW, "orderId": 404}])
    algo = algo_orders_from_rest(
        fixture("rest_open_algo_orders.json"))[0]

    def query_order(symbol: str, orderId: str) -> Any:
        if orderId == "404":
            raise api_error(400, -2013, "Order does not exist.")
        return filled

    sdk.answers["order"] = query_order
    sdk.answers["algo_order"] = algo_row

    events = adapter.fetch_orders([regular, gone, algo])

    assert [(e.order_id, e.status) for e in events if isinstance(e, OrderUpdate)] == [
        ("1917641", "Filled"), ("2148627", "Cancelled")]
    assert sdk.seed_rest.calls[-3:] == [("order", {"symbol": "BTCUSDT", "orderId": "1917641"}),
                                        ("order", {"symbol": "BTCUSDT", "orderId": "404"}),
                                        ("algo_order", {"algoId": "2148627"})]
    assert counters.snapshot().rest_calls == 3


def test_rest_before_open_is_refused(sdk: FakeSdk, make_adapter: Any) -> None:
    with pytest.raises(GridbotError, match="not open"):
        make_adapter().fetch_snapshot(["BTCUSDT"], include_wallet=True)


# --------------------------------------------------------------------------- bad answers, backfill, silence


@pytest.mark.parametrize("answer", ["positions", "open_orders", "open_algo_orders", "balance"])
def test_a_list_without_objects_fails_the_snapshot_instead_of_meaning_empty(
        sdk: FakeSdk, make_adapter: Any, answer: str) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers[answer] = ["a", "b"]
    with pytest.raises(GridbotError, match="not objects"):
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=True)
    sdk.answers[answer] = {"code": 0}
    with pytest.raises(GridbotError, match="not a list"):
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=True)


def trade_row(trade_id: int, time_ms: int, symbol: str = "BTCUSDT") -> dict[str, Any]:
    row: dict[str, Any] = dict(fixture("rest_user_trades.json")[0])
    row.update(id=trade_id, time=time_ms, symbol=symbol, positionSide="BOTH", orderId=trade_id * 10)
    return row


def test_fetch_fills_pages_with_from_id_and_keeps_the_window(sdk: FakeSdk, make_adapter: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_mod, "_TRADES_LIMIT", 3)
    history = [trade_row(i, 1_000 + i) for i in range(1, 9)]  # ids 1..8 at 1001..1008

    def trades(**params: Any) -> list[dict[str, Any]]:
        if "fromId" in params:
            rows = [r for r in history if r["id"] >= params["fromId"]]
        else:
            rows = [r for r in history if params["startTime"] <= r["time"] <= params["endTime"]]
        return list(reversed(rows[: params["limit"]]))  # the docs state no order: newest first here

    sdk.answers["trades"] = trades
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)
    before = counters.snapshot().rest_calls
    fills = adapter.fetch_fills("BTCUSDT", 1_002, 1_007)
    assert [f.trade_id for f in fills] == ["2", "3", "4", "5", "6", "7"]
    assert all(f.is_snapshot and f.exec_type == "Trade" for f in fills)
    calls = [params for name, params in sdk.seed_rest.calls if name == "trades"]
    assert calls[0] == {"symbol": "BTCUSDT", "startTime": 1_002, "endTime": 1_007, "limit": 3}
    assert calls[1] == {"symbol": "BTCUSDT", "fromId": 5, "limit": 3}
    assert calls[2] == {"symbol": "BTCUSDT", "fromId": 8, "limit": 3}  # page 2 was full; 3 passes the end
    assert counters.snapshot().rest_calls - before == 3


def test_fetch_fills_splits_long_windows_into_seven_days(sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.answers["trades"] = lambda **params: []
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    week = 7 * 24 * 3600 * 1000
    assert adapter.fetch_fills("BTCUSDT", 0, 2 * week + 5) == []
    windows = [(p["startTime"], p["endTime"]) for name, p in sdk.seed_rest.calls if name == "trades"]
    assert windows == [(0, week - 1), (week, 2 * week - 1), (2 * week, 2 * week + 5)]
    assert all(end - start < week for start, end in windows)


def test_fetch_fills_rejects_a_malformed_answer(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["trades"] = [1, 2]
    with pytest.raises(GridbotError):
        adapter.fetch_fills("BTCUSDT", 0, 10)


# --------------------------------------------------------------------------- check_symbols


def listing_row(symbol: str, contract: str = "PERPETUAL", status: str = "TRADING") -> dict[str, Any]:
    return {"symbol": symbol, "pair": symbol, "contractType": contract, "status": status}


def test_check_symbols_names_what_binance_does_not_trade_as_a_perpetual(sdk: FakeSdk,
                                                                       make_adapter: Any) -> None:
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["exchange_info"] = {"symbols": [
        listing_row("BTCUSDT"), listing_row("BTCUSDT_260327", contract="CURRENT_QUARTER"),
        listing_row("OLDUSDT", status="SETTLING")]}
    before = counters.snapshot().rest_calls

    rejected = adapter.check_symbols(["BTCUSDT", "btcusdt_260327", "OLDUSDT", "NOPEUSDT"])

    assert rejected == {
        "BTCUSDT_260327": "contractType CURRENT_QUARTER, not PERPETUAL",
        "OLDUSDT": "status SETTLING, not TRADING",
        "NOPEUSDT": "Invalid symbol. (not in GET /fapi/v1/exchangeInfo)",
    }
    assert adapter.check_symbols(["NOPEUSDT", "BTCUSDT"]) == {"NOPEUSDT": rejected["NOPEUSDT"]}
    assert [name for name, _ in sdk.seed_rest.calls].count("exchange_info") == 1  # one listing, reused
    assert counters.snapshot().rest_calls == before + 1


def test_check_symbols_refuses_an_answer_without_a_listing(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["exchange_info"] = {"code": 0}
    with pytest.raises(GridbotError, match="without a symbols list"):
        adapter.check_symbols(["BTCUSDT"])
    sdk.answers["exchange_info"] = requests.ConnectionError("down")
    with pytest.raises(ConnectError):
        adapter.check_symbols(["BTCUSDT"])
