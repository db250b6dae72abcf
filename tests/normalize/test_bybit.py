"""Golden tests of gridbot.normalize.bybit against the official (and observed) Bybit v5 payloads.

Every file in tests/fixtures/bybit/ is claimed below (see test_every_fixture_is_covered).  The docs have
no linear ticker delta with prices, no linear TP/conditional order and no open linear position: those cases
are built from the docs' field tables and are named ``test_synthetic_*``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gridbot.errors import NormalizationError
from gridbot.events import AccountUpdate, FillUpdate, OrderUpdate, PositionUpdate, TickerUpdate, WalletUpdate
from gridbot.normalize import Ignored, bybit
from gridbot.normalize.bybit import (
    TickerMerger,
    fills_from_rest,
    orders_from_rest,
    parse_private_message,
    positions_from_rest,
    wallets_from_rest,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"
D = Decimal
F = TypeVar("F", bound=Callable[..., Any])


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


GOLDEN: set[str] = set()


def golden(*names: str) -> Callable[[F], F]:
    """Marks the test that checks these fixture files field by field (collected at import time)."""

    def register(test: F) -> F:
        GOLDEN.update(names)
        return test

    return register


def events(msg: Any) -> list[Any]:
    result = parse_private_message(msg)
    assert isinstance(result, list), result
    return result


# Requests gridbot (pybit) sends: not inputs.  Their shape is checked, and echoing one back is harmless.
REQUEST_FIXTURES = {
    "auth.request.json": "auth",
    "ping.request.json": "ping",
    "subscribe.request.json": "subscribe",
    "unsubscribe.request.json": "unsubscribe",
    "private.position.subscribe.request.json": "subscribe",
    "private.order.subscribe.request.json": "subscribe",
    "private.execution.subscribe.request.json": "subscribe",
    "private.wallet.subscribe.request.json": "subscribe",
}

# Answers on either socket: op frames give Ignored(op), op-less answers Ignored("ack").
IGNORED_FIXTURES = {
    "auth.response.success.json": "auth",
    "auth.response.failure.observed.json": "auth",
    "pong.private.json": "pong",
    "pong.public_linear.json": "ping",
    "pong.public_spot.json": "ping",
    "pong.public_option.json": "pong",
    "subscribe.response.private.json": "subscribe",
    "subscribe.response.public_linear.json": "subscribe",
    "subscribe.response.public_spot.json": "subscribe",
    "subscribe.response.public_option.json": "ack",
    "subscribe.response.failure.observed.json": "subscribe",
}


def test_every_fixture_is_covered() -> None:
    files = {path.name for path in FIXTURES.glob("*.json")}
    claimed = set(REQUEST_FIXTURES) | set(IGNORED_FIXTURES) | GOLDEN
    assert files - claimed == set(), "fixtures without a test"
    assert claimed - files == set(), "tests naming fixtures that do not exist"


@pytest.mark.parametrize("name", sorted(REQUEST_FIXTURES))
def test_request_fixture_shape(name: str) -> None:
    request = load(name)
    assert request["op"] == REQUEST_FIXTURES[name]
    if request["op"] != "ping":
        assert isinstance(request["args"], list) and request["args"]
    assert parse_private_message(request) == Ignored(REQUEST_FIXTURES[name])


@pytest.mark.parametrize("name", sorted(IGNORED_FIXTURES))
def test_control_frames_are_ignored_on_both_sockets(name: str) -> None:
    frame = load(name)
    expected = Ignored(IGNORED_FIXTURES[name])
    assert parse_private_message(frame) == expected
    assert TickerMerger().apply(frame) == expected


# ---------------------------------------------------------------------------------------------- positions


@golden("private.position.stream.json")
def test_position_docs_flat_hedge_short_slot() -> None:
    msg = load("private.position.stream.json")
    [position] = events(msg)
    assert position == PositionUpdate(
        exchange="bybit",
        timestamp=1697682317038,
        is_snapshot=False,
        symbol="BTCUSDT",
        position_idx=2,
        side="",
        size=D("0"),
        entry_price=D("0"),
        mark_price=D("28184.5"),
        unrealised_pnl=D("0"),
        cum_realised_pnl=D("-25.06579337"),
        seq=8327597863,
    )
    assert position.raw is msg["data"][0]


@golden("private.position.linear.flat.observed.json")
def test_position_observed_categorised_topic() -> None:
    msg = load("private.position.linear.flat.observed.json")
    [position] = events(msg)
    assert position == PositionUpdate(
        exchange="bybit",
        timestamp=1717818863076,  # the row's updatedTime, not the message's creationTime
        symbol="ETHUSDT",
        position_idx=0,
        side="",
        size=D("0"),
        entry_price=D("0"),
        mark_price=D("3342.31"),
        unrealised_pnl=D("0"),
        cum_realised_pnl=D("-323.44165063"),
        seq=213418534265,
    )
    assert str(position.cum_realised_pnl) == "-323.44165063"


def _open_position_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = copy.deepcopy(load("private.position.stream.json")["data"][0])
    row.update(
        positionIdx=0,
        side="Buy",
        size="0.5",
        entryPrice="28000.5",
        markPrice="28184.5",
        unrealisedPnl="92",
        cumRealisedPnl="-25.06579337",
    )
    row.update(changes)
    return row


def _position_msg(*rows: dict[str, Any], topic: str = "position") -> dict[str, Any]:
    return {"id": "synthetic", "topic": topic, "creationTime": 1697682317044, "data": list(rows)}


def test_synthetic_open_linear_long_position() -> None:
    [position] = events(_position_msg(_open_position_row()))
    assert position == PositionUpdate(
        exchange="bybit",
        timestamp=1697682317038,
        symbol="BTCUSDT",
        position_idx=0,
        side="Buy",
        size=D("0.5"),
        entry_price=D("28000.5"),
        mark_price=D("28184.5"),
        unrealised_pnl=D("92"),
        cum_realised_pnl=D("-25.06579337"),
        seq=8327597863,
    )


def test_synthetic_hedge_mode_both_slots() -> None:
    long_row = _open_position_row(positionIdx=1, side="Buy", size="0.3", entryPrice="28000")
    short_row = _open_position_row(
        positionIdx=2, side="Sell", size="0.2", entryPrice="28500", unrealisedPnl="63.2"
    )
    long, short = events(_position_msg(long_row, short_row))
    assert (long.position_idx, long.side, long.size, long.entry_price) == (1, "Buy", D("0.3"), D("28000"))
    assert (short.position_idx, short.side, short.size, short.entry_price) == (
        2,
        "Sell",
        D("0.2"),
        D("28500"),
    )
    assert short.unrealised_pnl == D("63.2")

    def order(idx: int, side: str) -> OrderUpdate:
        row = _order_row(positionIdx=idx, side=side, reduceOnly=False)
        [update] = events({"topic": "order", "creationTime": 1, "data": [row]})
        assert isinstance(update, OrderUpdate)
        return update

    # Hedge mode: a Sell on the long slot and a Buy on the short slot can only reduce.
    assert order(1, "Sell").reduce_only is True
    assert order(2, "Buy").reduce_only is True
    assert order(1, "Buy").reduce_only is False
    assert order(2, "Sell").reduce_only is False
    assert order(0, "Sell").reduce_only is False


def test_synthetic_partial_close() -> None:
    """Long 0.5 → 0.2: a reduce-only Sell of 0.3 fills; position, order and fill agree."""
    before = events(_position_msg(_open_position_row()))[0]
    after_row = _open_position_row(size="0.2", cumRealisedPnl="-13.46579337", curRealisedPnl="11.6")
    after = events(_position_msg(after_row))[0]
    assert (after.side, after.size, after.entry_price) == ("Buy", D("0.2"), D("28000.5"))
    assert after.cum_realised_pnl - before.cum_realised_pnl == D("11.6")

    order_row = _order_row(
        side="Sell",
        qty="0.5",
        cumExecQty="0.3",
        avgPrice="28040.5",
        orderStatus="PartiallyFilled",
        reduceOnly=True,
    )
    [order] = events({"topic": "order.linear", "creationTime": 1, "data": [order_row]})
    assert (order.status, order.filled_qty, order.qty, order.reduce_only) == (
        "PartiallyFilled",
        D("0.3"),
        D("0.5"),
        True,
    )

    exec_row = copy.deepcopy(load("private.execution.stream.json")["data"][0])
    exec_row.update(execQty="0.3", closedSize="0.3", execPrice="28040.5", execPnl="12", execFee="4.626")
    [fill] = events({"topic": "execution", "creationTime": 1, "data": [exec_row]})
    assert (fill.qty, fill.realised_pnl, fill.fee) == (D("0.3"), D("12"), D("4.626"))


def test_synthetic_position_side_none_and_flat_side_are_empty() -> None:
    [none_side] = events(_position_msg(_open_position_row(side="None", size="0", entryPrice="")))
    assert (none_side.side, none_side.size, none_side.entry_price) == ("", D("0"), D("0"))
    # A flat slot is flat whatever side the wire names.
    [stale_side] = events(_position_msg(_open_position_row(side="Sell", size="0")))
    assert stale_side.side == ""


def test_synthetic_position_empty_fields() -> None:
    row = _open_position_row(markPrice="", unrealisedPnl="", cumRealisedPnl="", updatedTime="")
    del row["entryPrice"]
    row["avgPrice"] = "27999"
    [position] = events(_position_msg(row))
    assert position.mark_price is None
    assert position.unrealised_pnl == D("0")
    assert position.cum_realised_pnl is None
    assert position.entry_price == D("27999")  # entryPrice absent: avgPrice
    assert position.timestamp == 1697682317044  # updatedTime empty: the message's creationTime
    del row["cumRealisedPnl"]
    assert events(_position_msg(row))[0].cum_realised_pnl is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("side", "Long"),
        ("size", "abc"),
        ("size", "-1"),
        ("positionIdx", 3),
        ("entryPrice", "NaN"),
        ("size", 0.5),
    ],
)
def test_synthetic_bad_position_values_raise_with_the_message(field: str, value: Any) -> None:
    msg = _position_msg(_open_position_row(**{field: value}))
    with pytest.raises(NormalizationError) as caught:
        parse_private_message(msg)
    assert caught.value.raw is msg


def test_synthetic_open_position_without_entry_price_raises() -> None:
    row = _open_position_row(entryPrice="")
    with pytest.raises(NormalizationError, match="entry price"):
        parse_private_message(_position_msg(row))


# ---------------------------------------------------------------------------------------------- orders


def _order_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = copy.deepcopy(load("private.order.linear.filled.observed.json")["data"][0])
    row.update(changes)
    return row


def _order_msg(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"topic": "order", "id": "synthetic", "creationTime": 1763095434847, "data": list(rows)}


@golden("private.order.linear.filled.observed.json")
def test_order_observed_filled_hedge_short() -> None:
    msg = load("private.order.linear.filled.observed.json")
    [order] = events(msg)
    assert order == OrderUpdate(
        exchange="bybit",
        timestamp=1763095434846,
        symbol="ESPORTSUSDT",
        order_id="8e91f790-0d27-4c26-92ec-d3467da90d07",
        client_order_id="1763090785843843",
        side="Sell",
        order_type="Limit",
        status="Filled",
        price=D("0.33656"),
        qty=D("34"),
        filled_qty=D("34"),
        avg_price=D("0.33656"),
        trigger_price=None,
        reduce_only=False,  # a Sell on the short slot opens
        position_idx=2,
        is_take_profit=False,
        linked_order_id=None,
    )
    assert order.raw is msg["data"][0]


@golden("private.order.linear.cancelled.observed.json")
def test_order_observed_cancelled() -> None:
    [order] = events(load("private.order.linear.cancelled.observed.json"))
    assert order == OrderUpdate(
        exchange="bybit",
        timestamp=1727433749095,
        symbol="SOLUSDT",
        order_id="f38c5e38-46ef-4a8a-b115-fd3392d4f144",
        client_order_id="",
        side="Buy",
        order_type="Limit",
        status="Cancelled",
        price=D("99"),
        qty=D("0.1"),
        filled_qty=D("0"),
        avg_price=D("0"),  # "" on the wire
        trigger_price=None,
        reduce_only=False,
        position_idx=0,
        is_take_profit=False,
    )


@golden("private.order.stream.json")
def test_order_docs_example_is_an_option_order_and_is_skipped() -> None:
    msg = load("private.order.stream.json")
    assert msg["data"][0]["category"] == "option"
    assert parse_private_message(msg) == []


def test_synthetic_take_profit_untriggered_then_filled() -> None:
    tp = {
        "orderId": "tp-1",
        "orderLinkId": "",
        "side": "Sell",
        "positionIdx": 0,
        "orderType": "Market",
        "price": "0",
        "qty": "34",
        "triggerPrice": "0.35",
        "stopOrderType": "TakeProfit",
        "createType": "CreateByTakeProfit",
        "reduceOnly": True,
        "closeOnTrigger": True,
    }
    untriggered = _order_row(
        **tp, orderStatus="Untriggered", cumExecQty="0", avgPrice="", updatedTime="1763095440000"
    )
    filled = _order_row(
        **tp, orderStatus="Filled", cumExecQty="34", avgPrice="0.3501", updatedTime="1763095450000"
    )
    [first] = events(_order_msg(untriggered))
    [last] = events(_order_msg(filled))
    for order in (first, last):
        assert (order.order_id, order.is_take_profit, order.reduce_only) == ("tp-1", True, True)
        assert (order.order_type, order.trigger_price, order.price) == ("Market", D("0.35"), D("0"))
    assert (first.status, first.filled_qty, first.avg_price, first.timestamp) == (
        "Untriggered",
        D("0"),
        D("0"),
        1763095440000,
    )
    assert (last.status, last.filled_qty, last.avg_price, last.timestamp) == (
        "Filled",
        D("34"),
        D("0.3501"),
        1763095450000,
    )


@pytest.mark.parametrize(
    ("stop_order_type", "create_type", "expected"),
    [
        ("TakeProfit", "CreateByUser", True),
        ("PartialTakeProfit", "CreateByUser", True),
        ("", "CreateByTakeProfit", True),  # the order a TP placed when it triggered
        ("", "CreateByPartialTakeProfit", True),
        ("StopLoss", "CreateByStopLoss", False),
        ("Stop", "CreateByStopOrder", False),
        ("UNKNOWN", "CreateByUser", False),
    ],
)
def test_synthetic_take_profit_detection(stop_order_type: str, create_type: str, expected: bool) -> None:
    [order] = events(_order_msg(_order_row(stopOrderType=stop_order_type, createType=create_type)))
    assert order.is_take_profit is expected


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        ("Created", "New"),
        ("New", "New"),
        ("PartiallyFilled", "PartiallyFilled"),
        ("Untriggered", "Untriggered"),
        ("Triggered", "Triggered"),
        ("Filled", "Filled"),
        ("Cancelled", "Cancelled"),
        ("PartiallyFilledCanceled", "Cancelled"),
        ("Rejected", "Rejected"),
        ("Deactivated", "Deactivated"),
    ],
)
def test_synthetic_order_status_map(wire: str, status: str) -> None:
    [order] = events(_order_msg(_order_row(orderStatus=wire)))
    assert order.status == status


@pytest.mark.parametrize("wire", ["Expired", "Active", "filled", "", None])
def test_synthetic_unknown_order_status_raises_with_the_message(wire: Any) -> None:
    """Bybit's v5 enum has no Expired (nor the pre-v5 Active): an unlisted value is an error, not a guess."""
    msg = _order_msg(_order_row(orderStatus=wire))
    with pytest.raises(NormalizationError, match="orderStatus") as caught:
        parse_private_message(msg)
    assert caught.value.raw is msg


@pytest.mark.parametrize(("field", "value"), [("orderType", "UNKNOWN"), ("side", "None"), ("qty", "1,5")])
def test_synthetic_bad_order_values_raise(field: str, value: str) -> None:
    msg = _order_msg(_order_row(**{field: value}))
    with pytest.raises(NormalizationError) as caught:
        parse_private_message(msg)
    assert caught.value.raw is msg


def test_synthetic_duplicate_filled_pushes_normalize_identically() -> None:
    msg = load("private.order.linear.filled.observed.json")
    first = events(msg)
    again = events(copy.deepcopy(msg))
    assert first == again
    assert hash(first[0]) == hash(again[0])
    assert first[0].raw is not again[0].raw


def test_synthetic_close_on_trigger_is_reduce_only_and_zero_trigger_is_none() -> None:
    [order] = events(_order_msg(_order_row(positionIdx=0, closeOnTrigger=True, triggerPrice="0")))
    assert order.reduce_only is True
    assert order.trigger_price is None
    [plain] = events(_order_msg(_order_row(positionIdx=0, reduceOnly=True, triggerPrice="0.00")))
    assert (plain.reduce_only, plain.trigger_price) == (True, None)


def test_synthetic_order_without_updated_time_uses_message_time() -> None:
    row = _order_row()
    del row["updatedTime"]
    [order] = events(_order_msg(row))
    assert order.timestamp == 1763095434847


# ---------------------------------------------------------------------------------------------- executions


@golden("private.execution.stream.json")
def test_execution_docs_closing_fill() -> None:
    msg = load("private.execution.stream.json")
    [fill] = events(msg)
    assert fill == FillUpdate(
        exchange="bybit",
        timestamp=1746270400353,  # execTime
        symbol="BTCUSDT",
        order_id="9aac161b-8ed6-450d-9cab-c5cc67c21784",
        trade_id="0ab1bdf7-4219-438b-b30a-32ec863018f7",
        side="Sell",
        price=D("95900.1"),
        qty=D("0.5"),
        fee=D("26.3725275"),
        fee_asset="USDT",
        realised_pnl=D("0.05"),
        is_maker=False,
        position_idx=0,  # the stream substitutes the order's positionIdx
        seq=140612148849382,
    )
    assert fill.raw is msg["data"][0]


@pytest.mark.parametrize("exec_type", ["Funding", "Delivery", "Settle", "UNKNOWN"])
def test_synthetic_non_trade_executions_are_skipped(exec_type: str) -> None:
    msg = load("private.execution.stream.json")
    msg["data"][0]["execType"] = exec_type
    assert parse_private_message(msg) == []


def test_synthetic_execution_maker_without_pnl_or_fee_currency() -> None:
    msg = load("private.execution.stream.json")
    row = msg["data"][0]
    row.update(isMaker=True, execPnl="", feeCurrency="", execFee="-0.001")
    msg["topic"] = "execution.linear"
    [fill] = events(msg)
    assert (fill.is_maker, fill.realised_pnl, fill.fee_asset, fill.fee) == (True, D("0"), "", D("-0.001"))
    del row["execPnl"]
    assert events(msg)[0].realised_pnl is None  # absent is "not sent", not zero
    row["isMaker"] = "false"
    with pytest.raises(NormalizationError, match="isMaker"):
        parse_private_message(msg)


# ---------------------------------------------------------------------------------------------- wallet


@golden("private.wallet.stream.json")
def test_wallet_docs_one_coin() -> None:
    msg = load("private.wallet.stream.json")
    [wallet, account] = events(msg)
    # The coin row carries only the coin's own figures, in BTC.
    assert wallet == WalletUpdate(
        exchange="bybit",
        timestamp=1700034722104,
        coin="BTC",
        wallet_balance=D("0.00102964"),
        available_balance=None,
        equity=D("0.00102964"),
    )
    assert wallet.raw is msg["data"][0]["coin"][0]
    # The account-wide USD figures are the AccountUpdate.
    assert account == AccountUpdate(
        exchange="bybit",
        timestamp=1700034722104,
        margin_coin="USD",
        wallet_balance=D("9684.46297164"),
        unrealised_pnl=D("0"),
        margin_balance=D("9684.46297164"),
        initial_margin=D("0"),
        maintenance_margin=D("0"),
        available_balance=D("9556.6056555"),
        mm_rate=D("0"),
        computed=False,
    )
    assert account.raw["totalEquity"] == "10262.91335023" and "coin" not in account.raw


def test_synthetic_wallet_several_coins_and_empty_fields() -> None:
    msg = load("private.wallet.stream.json")
    account = msg["data"][0]
    account.update(totalAvailableBalance="", accountMMRate="0.0153", totalMaintenanceMargin="148.2")
    account["coin"].append({"coin": "USDT", "equity": "", "walletBalance": "1000.5"})
    btc, usdt, totals = events(msg)
    assert (btc.coin, usdt.coin) == ("BTC", "USDT")
    assert btc.available_balance is None and usdt.available_balance is None
    assert (usdt.wallet_balance, usdt.equity) == (D("1000.5"), None)
    assert isinstance(totals, AccountUpdate)
    assert (totals.available_balance, totals.mm_rate, totals.maintenance_margin) == (
        None, D("0.0153"), D("148.2"))


def test_synthetic_wallet_without_coin_rows_still_gives_the_account() -> None:
    msg = load("private.wallet.stream.json")
    msg["data"][0]["coin"] = []
    [totals] = events(msg)
    assert isinstance(totals, AccountUpdate) and totals.margin_balance == D("9684.46297164")


def test_synthetic_wallet_account_bad_number_raises() -> None:
    msg = load("private.wallet.stream.json")
    msg["data"][0]["accountMMRate"] = "abc"
    with pytest.raises(NormalizationError, match="accountMMRate"):
        parse_private_message(msg)


# ---------------------------------------------------------------------------------------------- categories


def test_synthetic_option_and_inverse_rows_are_ignored() -> None:
    option = _open_position_row(category="option", symbol="ETH-30DEC22-1400-C")
    inverse = _open_position_row(category="inverse", symbol="BTCUSD")
    linear = _open_position_row()
    [position] = events(_position_msg(option, linear, inverse))
    assert position.symbol == "BTCUSDT"
    spot_fill = load("private.execution.stream.json")
    spot_fill["data"][0]["category"] = "spot"
    assert parse_private_message(spot_fill) == []


@pytest.mark.parametrize("topic", ["greeks", "execution.fast", "order.spot", "dcp", "tickers.BTCUSDT"])
def test_unknown_private_topics_are_ignored(topic: str) -> None:
    assert parse_private_message({"topic": topic, "data": []}) == Ignored(topic)


def test_malformed_frames_raise() -> None:
    with pytest.raises(NormalizationError, match="neither a topic nor an op"):
        parse_private_message({"data": []})
    with pytest.raises(NormalizationError, match="data list"):
        parse_private_message({"topic": "order", "data": {}})
    bad_row = {"topic": "order", "creationTime": 1, "data": ["not a row"]}
    with pytest.raises(NormalizationError) as caught:
        parse_private_message(bad_row)
    assert caught.value.raw is bad_row


# ---------------------------------------------------------------------------------------------- tickers


@golden("public.tickers.linear_perpetual.snapshot.json")
def test_ticker_docs_perpetual_snapshot() -> None:
    msg = load("public.tickers.linear_perpetual.snapshot.json")
    ticker = TickerMerger().apply(msg)
    assert ticker == TickerUpdate(
        exchange="bybit",
        timestamp=1760325052630,
        symbol="BTCUSDT",
        mark_price=D("66666.60"),
        last_price=D("66666.60"),
        index_price=D("115418.19"),
        funding_rate=D("-0.005"),
        next_funding_time=1760342400000,
    )
    assert isinstance(ticker, TickerUpdate) and ticker.raw is msg
    assert str(ticker.mark_price) == "66666.60"


@golden("public.tickers.linear_futures.snapshot.json")
def test_ticker_docs_futures_snapshot_has_no_funding() -> None:
    ticker = TickerMerger().apply(load("public.tickers.linear_futures.snapshot.json"))
    assert ticker == TickerUpdate(
        exchange="bybit",
        timestamp=1760409119857,
        symbol="BTC-26DEC25",
        mark_price=D("121144.63"),
        last_price=D("109401.50"),
        index_price=D("114132.51"),
        funding_rate=None,
        next_funding_time=None,
    )


@golden("public.tickers.linear.snapshot.observed.json", "public.tickers.linear.delta.observed.json")
def test_ticker_observed_snapshot_then_bid_ask_delta() -> None:
    merger = TickerMerger()
    snapshot = merger.apply(load("public.tickers.linear.snapshot.observed.json"))
    assert snapshot == TickerUpdate(
        exchange="bybit",
        timestamp=1709202837189,
        symbol="NKNUSDT",
        mark_price=D("0.13946"),
        last_price=D("0.13947"),
        index_price=D("0.13909"),
        funding_rate=D("0.00137968"),
        next_funding_time=1709222400000,
    )
    # The observed delta only moves ask1: nothing gridbot uses changed.
    assert merger.apply(load("public.tickers.linear.delta.observed.json")) == Ignored("unchanged")
    # ...and it lost nothing: the next price delta still carries every snapshot field.
    moved = merger.apply(
        {"topic": "tickers.NKNUSDT", "type": "delta", "data": {"markPrice": "0.1395"}, "ts": 2}
    )
    assert moved == TickerUpdate(
        exchange="bybit",
        timestamp=2,
        symbol="NKNUSDT",
        mark_price=D("0.1395"),
        last_price=D("0.13947"),
        index_price=D("0.13909"),
        funding_rate=D("0.00137968"),
        next_funding_time=1709222400000,
    )


def _delta(symbol: str = "BTCUSDT", ts: int = 1760325052730, **data: Any) -> dict[str, Any]:
    return {
        "topic": f"tickers.{symbol}",
        "type": "delta",
        "data": {"symbol": symbol, **data},
        "cs": 1,
        "ts": ts,
    }


def test_synthetic_ticker_delta_without_mark_keeps_previous_mark() -> None:
    merger = TickerMerger()
    merger.apply(load("public.tickers.linear_perpetual.snapshot.json"))
    ticker = merger.apply(_delta(lastPrice="66670.1", fundingRate="-0.0049"))
    assert isinstance(ticker, TickerUpdate)
    assert ticker.mark_price == D("66666.60")
    assert (ticker.last_price, ticker.funding_rate) == (D("66670.1"), D("-0.0049"))
    assert (ticker.index_price, ticker.next_funding_time) == (D("115418.19"), 1760342400000)
    assert ticker.timestamp == 1760325052730


def test_synthetic_ticker_delta_before_snapshot_merges_onto_empty() -> None:
    merger = TickerMerger()
    assert merger.apply(_delta(bid1Price="1")) == Ignored("unchanged")
    ticker = merger.apply(_delta(markPrice="66000"))
    assert ticker == TickerUpdate(
        exchange="bybit",
        timestamp=1760325052730,
        symbol="BTCUSDT",
        mark_price=D("66000"),
        last_price=None,
        index_price=None,
        funding_rate=None,
        next_funding_time=None,
    )


def test_synthetic_pybit_style_repeated_snapshot_is_unchanged_until_a_price_moves() -> None:
    """pybit merges deltas itself and relabels every frame "snapshot": only real changes emit."""
    merger = TickerMerger()
    frame = load("public.tickers.linear_perpetual.snapshot.json")
    assert isinstance(merger.apply(frame), TickerUpdate)
    frame["data"]["bid1Price"] = "66666.50"
    assert merger.apply(frame) == Ignored("unchanged")
    frame["data"]["nextFundingTime"] = "1760371200000"
    ticker = merger.apply(frame)
    assert isinstance(ticker, TickerUpdate) and ticker.next_funding_time == 1760371200000


def test_synthetic_ticker_snapshot_replaces_state_and_symbols_are_separate() -> None:
    merger = TickerMerger()
    merger.apply(load("public.tickers.linear_perpetual.snapshot.json"))
    merger.apply(_delta(symbol="ETHUSDT", markPrice="2500"))
    replaced = merger.apply(
        {
            "topic": "tickers.BTCUSDT",
            "type": "snapshot",
            "data": {"markPrice": "1", "nextFundingTime": "0"},
            "ts": 5,
        }
    )
    assert isinstance(replaced, TickerUpdate)
    assert (replaced.mark_price, replaced.last_price, replaced.next_funding_time) == (D("1"), None, None)
    eth = merger.apply(_delta(symbol="ETHUSDT", lastPrice="2501"))
    assert isinstance(eth, TickerUpdate) and (eth.mark_price, eth.last_price) == (D("2500"), D("2501"))


def test_synthetic_ticker_reset() -> None:
    merger = TickerMerger()
    snapshot = load("public.tickers.linear_perpetual.snapshot.json")
    merger.apply(snapshot)
    merger.apply(_delta(symbol="ETHUSDT", markPrice="2500"))
    assert merger.apply(snapshot) == Ignored("unchanged")
    merger.reset("BTCUSDT")
    assert isinstance(merger.apply(snapshot), TickerUpdate)
    assert merger.apply(_delta(symbol="ETHUSDT", markPrice="2500")) == Ignored("unchanged")
    merger.reset()
    after = merger.apply(_delta(symbol="ETHUSDT", lastPrice="2501"))
    assert isinstance(after, TickerUpdate) and after.mark_price is None
    merger.reset("NEVERSEEN")  # harmless


def test_synthetic_ticker_state_is_per_instance() -> None:
    first, second = TickerMerger(), TickerMerger()
    first.apply(load("public.tickers.linear_perpetual.snapshot.json"))
    ticker = second.apply(_delta(lastPrice="1"))
    assert isinstance(ticker, TickerUpdate) and ticker.mark_price is None


def test_synthetic_bad_ticker_leaves_state_untouched() -> None:
    merger = TickerMerger()
    merger.apply(load("public.tickers.linear_perpetual.snapshot.json"))
    bad = _delta(markPrice="oops")
    with pytest.raises(NormalizationError, match="markPrice") as caught:
        merger.apply(bad)
    assert caught.value.raw is bad
    ticker = merger.apply(_delta(lastPrice="66670"))
    assert isinstance(ticker, TickerUpdate) and ticker.mark_price == D("66666.60")
    with pytest.raises(NormalizationError, match="frame type"):
        merger.apply({"topic": "tickers.BTCUSDT", "data": {}, "ts": 1})
    with pytest.raises(NormalizationError, match="malformed"):
        merger.apply({"topic": "tickers.BTCUSDT", "type": "delta", "data": [], "ts": 1})


def test_ticker_merger_ignores_other_public_topics() -> None:
    assert TickerMerger().apply({"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "data": {}}) == Ignored(
        "orderbook.1.BTCUSDT"
    )


# ---------------------------------------------------------------------------------------------- REST seed


@golden("rest.position_list.response.json")
def test_rest_positions_docs_example_is_inverse_and_skipped() -> None:
    response = load("rest.position_list.response.json")
    assert response["result"]["category"] == "inverse"
    assert positions_from_rest(response) == []


def test_synthetic_rest_positions_linear_open_and_flat() -> None:
    response = load("rest.position_list.response.json")
    response["result"]["category"] = "linear"
    open_row = response["result"]["list"][0]
    open_row.update(symbol="BTCUSDT", size="0.3", avgPrice="27464.5", unrealisedPnl="-2.1")
    flat_row = dict(open_row, positionIdx=0, symbol="ETHUSDT", side="", size="0", avgPrice="0", markPrice="")
    flat_row.update(cumRealisedPnl="-323.44", updatedTime="")
    response["result"]["list"].append(flat_row)
    short, flat = positions_from_rest(response)
    assert short == PositionUpdate(
        exchange="bybit",
        timestamp=1697673600012,
        is_snapshot=True,
        symbol="BTCUSDT",
        position_idx=0,
        side="Sell",
        size=D("0.3"),
        entry_price=D("27464.5"),
        mark_price=D("28224.50"),
        unrealised_pnl=D("-2.1"),
        cum_realised_pnl=D("-0.00096902"),
        seq=5723621632,
    )
    assert short.raw is open_row
    assert (flat.side, flat.size, flat.entry_price, flat.mark_price) == ("", D("0"), D("0"), None)
    assert flat.cum_realised_pnl == D("-323.44")  # the realised-PnL baseline
    assert (flat.timestamp, flat.is_snapshot) == (1697684980172, True)  # no updatedTime: the response time


@golden("rest.order_realtime.response.json")
def test_rest_orders_docs_example() -> None:
    response = load("rest.order_realtime.response.json")
    [order] = orders_from_rest(response)
    assert order == OrderUpdate(
        exchange="bybit",
        timestamp=1684738540561,
        is_snapshot=True,
        symbol="ETHUSDT",
        order_id="fd4300ae-7847-404e-b947-b46980a4d140",
        client_order_id="test-000005",
        side="Buy",
        order_type="Limit",
        status="New",
        price=D("1600.00"),
        qty=D("0.10"),
        filled_qty=D("0.00"),
        avg_price=D("0"),
        trigger_price=None,  # "0.00"
        reduce_only=False,  # a Buy on the long slot opens
        position_idx=1,
        is_take_profit=False,  # takeProfit is set on the order, but the order itself is no TP
    )
    assert order.raw is response["result"]["list"][0]


def test_synthetic_rest_orders_include_conditional_take_profit() -> None:
    response = load("rest.order_realtime.response.json")
    tp = dict(
        response["result"]["list"][0],
        orderId="tp-2",
        side="Sell",
        orderStatus="Untriggered",
        orderType="Market",
        price="0",
        triggerPrice="1700.00",
        stopOrderType="TakeProfit",
        createType="CreateByTakeProfit",
    )
    option_row = dict(response["result"]["list"][0], orderId="opt", category="option")
    response["result"]["list"] += [tp, option_row]
    regular, take_profit = orders_from_rest(response)
    assert regular.order_id == "fd4300ae-7847-404e-b947-b46980a4d140"
    assert (take_profit.order_id, take_profit.status, take_profit.is_take_profit) == (
        "tp-2",
        "Untriggered",
        True,
    )
    assert (take_profit.trigger_price, take_profit.reduce_only, take_profit.is_snapshot) == (
        D("1700.00"),
        True,
        True,
    )


@golden("rest.wallet_balance.response.json")
def test_rest_wallet_docs_example() -> None:
    response = load("rest.wallet_balance.response.json")
    [wallet, account] = wallets_from_rest(response)
    assert wallet == WalletUpdate(
        exchange="bybit",
        timestamp=1690872862481,  # the response's time
        is_snapshot=True,
        coin="BTC",
        wallet_balance=D("0"),
        available_balance=None,
        equity=D("0"),
    )
    assert wallet.raw is response["result"]["list"][0]["coin"][0]
    assert account == AccountUpdate(
        exchange="bybit",
        timestamp=1690872862481,
        is_snapshot=True,
        margin_coin="USD",
        wallet_balance=D("3.00326056"),
        unrealised_pnl=D("0"),
        margin_balance=D("3.00326056"),
        initial_margin=D("0"),
        maintenance_margin=D("0"),
        available_balance=D("3.00326056"),
        mm_rate=D("0"),
        computed=False,
    )


@pytest.mark.parametrize("seed", [positions_from_rest, orders_from_rest, wallets_from_rest])
def test_rest_error_responses_raise(seed: Callable[[Any], list[Any]]) -> None:
    response = {"retCode": 10003, "retMsg": "API key is invalid.", "result": {}, "time": 1}
    with pytest.raises(NormalizationError, match="10003") as caught:
        seed(response)
    assert caught.value.raw is response
    with pytest.raises(NormalizationError, match="list"):
        seed({"retCode": 0, "result": {"list": None}, "time": 1})


def test_module_constants() -> None:
    assert bybit.EXCHANGE == "bybit"
    assert set(bybit.__all__) == {
        "EXCHANGE",
        "TickerMerger",
        "fills_from_rest",
        "orders_from_rest",
        "parse_private_message",
        "positions_from_rest",
        "wallets_from_rest",
    }


# ---------------------------------------------------------------------------------------------- forced closes


@pytest.mark.parametrize(("exec_type", "marked"), [("BustTrade", "Liquidation"), ("AdlTrade", "Adl")])
def test_synthetic_forced_close_executions_are_marked_fills(exec_type: str, marked: str) -> None:
    msg = load("private.execution.stream.json")
    msg["data"][0]["execType"] = exec_type
    [fill] = events(msg)
    assert (fill.exec_type, fill.realised_pnl) == (marked, D("0.05"))
    assert fill.trade_id == "0ab1bdf7-4219-438b-b30a-32ec863018f7"


def test_trade_execution_is_marked_trade() -> None:
    [fill] = events(load("private.execution.stream.json"))
    assert fill.exec_type == "Trade" and fill.is_snapshot is False


# ---------------------------------------------------------------------------------------------- REST backfill


@golden("rest.execution_list.response.json")
def test_rest_execution_list_docs_example() -> None:
    response = load("rest.execution_list.response.json")
    [fill] = fills_from_rest(response)
    assert fill == FillUpdate(
        exchange="bybit",
        timestamp=1672282722429,
        is_snapshot=True,
        symbol="ETHPERP",
        order_id="8c065341-7b52-4ca9-ac2c-37e31ac55c94",
        trade_id="e0cbe81d-0f18-5866-9415-cf319b5dab3b",
        side="Buy",
        price=D("1190.15"),
        qty=D("0.1"),
        fee=D("0.071409"),
        fee_asset="",
        realised_pnl=None,  # the REST row has no execPnl: None, never an error
        is_maker=False,
        position_idx=0,
        seq=4688002127,
    )
    assert fill.raw is response["result"]["list"][0]


def test_synthetic_rest_execution_list_oldest_first_forced_kept_funding_skipped() -> None:
    response = load("rest.execution_list.response.json")
    row = response["result"]["list"][0]
    rows = [
        dict(row, execId="c", execTime="300", seq=9),
        dict(row, execId="f", execTime="250", execType="Funding"),
        dict(row, execId="b2", execTime="200", seq=8, execType="BustTrade"),
        dict(row, execId="b1", execTime="200", seq=7, execType="AdlTrade"),
        dict(row, execId="a", execTime="100", seq=5, execPnl="1.5"),
    ]
    response["result"]["list"] = rows
    fills = fills_from_rest(response)
    assert [(f.trade_id, f.exec_type) for f in fills] == [
        ("a", "Trade"), ("b1", "Adl"), ("b2", "Liquidation"), ("c", "Trade")]
    assert fills[0].realised_pnl == D("1.5")


def test_rest_execution_list_bad_answers_raise() -> None:
    response = load("rest.execution_list.response.json")
    for broken in (
        dict(response, retCode=10001),
        dict(response, result={"list": "nope"}),
        dict(response, result={"category": "linear", "list": ["a", "b"]}),
        dict(response, result={"category": "linear", "list": [{"execType": "Trade"}]}),
    ):
        with pytest.raises(NormalizationError):
            fills_from_rest(broken)
