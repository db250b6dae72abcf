"""Golden tests of the Binance USDⓈ-M normalizer against the official examples in tests/fixtures/binance,
plus synthetic cases (each labelled "synthetic") for behaviour the examples do not show."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot.errors import NormalizationError
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, TickerUpdate, WalletUpdate
from gridbot.normalize import Ignored, ListenKeyExpired
from gridbot.normalize.binance import (
    EXCHANGE,
    algo_orders_from_rest,
    fills_from_rest,
    finished_algo_order_from_rest,
    orders_from_rest,
    parse_market_message,
    parse_user_message,
    positions_from_rest,
    wallets_from_rest,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
D = Decimal

# Every fixture file must appear here and have a golden test below (checked by the first test).
GOLDEN_FIXTURES = {
    "account_config_update.json",
    "account_update.json",
    "algo_update.json",
    "combined_stream_mark_price.json",
    "listen_key_expired.json",
    "margin_call.json",
    "mark_price_update.json",
    "mark_price_update_all_market.json",
    "order_trade_update.json",
    "rest_balance.json",
    "rest_listen_key.json",
    "rest_open_algo_orders.json",
    "rest_position_risk_v3.json",
    "rest_user_trades.json",
    "trade_lite.json",
    # account view: golden tests in tests/test_margin.py and tests/normalize/test_binance_account.py
    "leverage_bracket_faq_btcusdt.json",
    "rest_account_v2.json",
    "rest_leverage_bracket.json",
    "rest_leverage_bracket_symbol.json",
}


def load(name: str) -> Any:
    """A fresh copy of one fixture (tests may mutate it to build synthetic variants)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def position(**fields: Any) -> PositionUpdate:
    base: dict[str, Any] = dict(exchange="binance", mark_price=None, cum_realised_pnl=None)
    return PositionUpdate(**{**base, **fields})


def order(**fields: Any) -> OrderUpdate:
    base: dict[str, Any] = dict(exchange="binance", trigger_price=None, linked_order_id=None)
    return OrderUpdate(**{**base, **fields})


def events_of(msg: Any) -> list[Any]:
    result = parse_user_message(msg)
    assert isinstance(result, list), result
    return result


def test_every_fixture_file_has_a_golden_test() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == GOLDEN_FIXTURES
    assert EXCHANGE == "binance"


# --------------------------------------------------------------------------- golden: user data stream


def test_account_update_golden() -> None:
    msg = load("account_update.json")
    events = events_of(msg)
    common = dict(timestamp=1564745798938, symbol="BTCUSDT")
    assert events == [
        position(**common, position_idx=0, side="", size=D("0"), entry_price=D("0"),
                 unrealised_pnl=D("0"), cum_realised_pnl=D("200")),
        position(**common, position_idx=1, side="Buy", size=D("20"), entry_price=D("6563.665"),
                 unrealised_pnl=D("2850.212"), cum_realised_pnl=D("0")),
        position(**common, position_idx=2, side="Sell", size=D("10"), entry_price=D("6563.86"),
                 unrealised_pnl=D("-1423.156"), cum_realised_pnl=D("-45.04")),
        WalletUpdate(exchange="binance", timestamp=1564745798938, coin="USDT",
                     wallet_balance=D("122624.12345678"), available_balance=None, equity=None),
        WalletUpdate(exchange="binance", timestamp=1564745798938, coin="BUSD",
                     wallet_balance=D("1"), available_balance=None, equity=None),
    ]
    # raw is the row each event was built from; nothing is a snapshot; Decimals keep the wire string.
    rows = msg["a"]["P"] + msg["a"]["B"]
    assert [e.raw for e in events] == rows
    assert not any(e.is_snapshot for e in events)
    assert str(events[1].entry_price) == "6563.66500"


def test_order_trade_update_golden() -> None:
    msg = load("order_trade_update.json")
    events = events_of(msg)
    # x is NEW: an order, no fill.  TRAILING_STOP_MARKET is a Market type; a SELL on the LONG slot can
    # only reduce, so reduce_only is True although R is false (hedge mode forbids the flag).
    assert events == [
        order(timestamp=1568879465650, symbol="BTCUSDT", order_id="8886774", client_order_id="TEST",
              side="Sell", order_type="Market", status="New", price=D("0"), qty=D("0.001"),
              filled_qty=D("0"), avg_price=D("0"), trigger_price=D("7103.04"), reduce_only=True,
              position_idx=1, is_take_profit=False),
    ]
    assert events[0].raw is msg
    assert isinstance(events[0].order_id, str)


def test_algo_update_golden() -> None:
    msg = load("algo_update.json")
    assert events_of(msg) == [
        order(timestamp=1750515742297, symbol="BNBUSDT", order_id="2148719",
              client_order_id="Q5xaq5EGKgXXa0fD7fs0Ip", side="Sell", order_type="Limit", status="Cancelled",
              price=D("750"), qty=D("0.01"), filled_qty=D("0"), avg_price=D("0"), trigger_price=D("750"),
              reduce_only=False, position_idx=0, is_take_profit=True, linked_order_id=None),
    ]
    assert events_of(msg)[0].raw is msg


def test_listen_key_expired_golden_with_string_e() -> None:
    msg = load("listen_key_expired.json")
    assert isinstance(msg["E"], str)
    assert parse_user_message(msg) == ListenKeyExpired(1736996475556)


def test_listen_key_expired_int_e_is_the_same() -> None:
    # synthetic: the docs send E as a string; accept the usual int as well.
    msg = load("listen_key_expired.json")
    msg["E"] = 1736996475556
    assert parse_user_message(msg) == ListenKeyExpired(1736996475556)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("margin_call.json", "MARGIN_CALL"),
        ("trade_lite.json", "TRADE_LITE"),
        ("account_config_update.json", "ACCOUNT_CONFIG_UPDATE"),
    ],
)
def test_events_gridbot_does_not_use_are_ignored(name: str, kind: str) -> None:
    assert parse_user_message(load(name)) == Ignored(kind)


def test_unknown_event_type_is_ignored() -> None:
    # synthetic: a future event type must not be an error.
    assert parse_user_message({"e": "STRATEGY_UPDATE", "E": 1}) == Ignored("STRATEGY_UPDATE")


# --------------------------------------------------------------------------- golden: market stream

BTC_TICKER = TickerUpdate(
    exchange="binance", timestamp=1562305380000, symbol="BTCUSDT", mark_price=D("11794.15"),
    last_price=None, index_price=D("11784.62659091"), funding_rate=D("0.00038167"),
    next_funding_time=1562306400000,
)


def test_mark_price_update_golden() -> None:
    msg = load("mark_price_update.json")
    tickers = parse_market_message(msg)
    assert tickers == [BTC_TICKER]
    assert isinstance(tickers, list) and tickers[0].raw is msg


def test_combined_stream_mark_price_golden() -> None:
    msg = load("combined_stream_mark_price.json")
    tickers = parse_market_message(msg)
    assert tickers == [BTC_TICKER]
    assert isinstance(tickers, list) and tickers[0].raw is msg["data"]


def test_mark_price_all_market_golden() -> None:
    tickers = parse_market_message(load("mark_price_update_all_market.json"))
    assert tickers == [
        TickerUpdate(exchange="binance", timestamp=1562305380000, symbol="BTCUSDT",
                     mark_price=D("11185.87786614"), last_price=None, index_price=D("11784.62659091"),
                     funding_rate=D("0.0003"), next_funding_time=1562306400000),
    ]


def test_mark_price_without_funding_gives_none() -> None:
    # synthetic: a delivery contract has no funding: r "" and T 0.
    msg = load("mark_price_update.json")
    msg.update(r="", T=0)
    [ticker] = parse_market_message(msg)  # type: ignore[misc]
    assert ticker.funding_rate is None and ticker.next_funding_time is None
    assert ticker.mark_price == D("11794.15")


def test_market_acks_and_other_kinds() -> None:
    # synthetic: WebSocket API answers and other streams.
    assert parse_market_message({"result": None, "id": 1}) == Ignored("ack")
    assert parse_market_message({"e": "24hrTicker", "E": 1, "s": "BTCUSDT"}) == Ignored("24hrTicker")
    with pytest.raises(NormalizationError) as err:
        parse_market_message({"error": {"code": 2, "msg": "Invalid request"}, "id": 3})
    assert err.value.raw == {"error": {"code": 2, "msg": "Invalid request"}, "id": 3}
    with pytest.raises(NormalizationError):
        parse_market_message({"s": "BTCUSDT"})
    with pytest.raises(NormalizationError):
        parse_market_message("not json")


# --------------------------------------------------------------------------- golden: REST seed


def test_rest_position_risk_v3_golden() -> None:
    rows = load("rest_position_risk_v3.json")
    positions = positions_from_rest(rows)
    assert positions == [
        position(timestamp=1720736417660, is_snapshot=True, symbol="ADAUSDT", position_idx=0, side="Buy",
                 size=D("30"), entry_price=D("0.385"), mark_price=D("0.4104759"),
                 unrealised_pnl=D("0.764277"), cum_realised_pnl=None),
    ]
    assert positions[0].is_snapshot is True and positions[0].raw is rows[0]


def test_rest_balance_golden() -> None:
    rows = load("rest_balance.json")
    wallets = wallets_from_rest(rows)
    # available_balance comes from availableBalance; crossWalletBalance is not used.
    assert wallets == [
        WalletUpdate(exchange="binance", timestamp=1617939110373, is_snapshot=True, coin="USDT",
                     wallet_balance=D("122607.35137903"), available_balance=D("23.72469206"),
                     equity=None),
    ]
    assert wallets[0].raw is rows[0]


def test_rest_open_algo_orders_golden() -> None:
    rows = load("rest_open_algo_orders.json")
    orders = algo_orders_from_rest(rows)
    assert orders == [
        order(timestamp=1750514941540, is_snapshot=True, symbol="BNBUSDT", order_id="2148627",
              client_order_id="MRumok0dkhrP4kCm12AHaB", side="Sell", order_type="Limit", status="Untriggered",
              price=D("750"), qty=D("0.01"), filled_qty=D("0"), avg_price=D("0"), trigger_price=D("750"),
              reduce_only=False, position_idx=0, is_take_profit=True, linked_order_id=None),
    ]
    assert orders[0].raw is rows[0]


def test_rest_listen_key_fixture_holds_a_key_and_is_no_event() -> None:
    body = load("rest_listen_key.json")
    assert isinstance(body["listenKey"], str) and len(body["listenKey"]) == 64
    with pytest.raises(NormalizationError):  # no "e": not a user-data push
        parse_user_message(body)


# --------------------------------------------------------------------------- synthetic: positions


def account_update(
    *rows: dict[str, Any], balances: tuple[dict[str, Any], ...] = (), t: int = 1_700_000_000_000
) -> dict[str, Any]:
    """synthetic: an ACCOUNT_UPDATE in the documented shape with the given P and B rows."""
    account = {"m": "ORDER", "B": list(balances), "P": list(rows)}
    return {"e": "ACCOUNT_UPDATE", "E": t + 1, "T": t, "a": account}


def prow(pa: str, ps: str = "BOTH", ep: str = "100.0", cr: str = "0", up: str = "0") -> dict[str, Any]:
    return {"s": "ETHUSDT", "pa": pa, "ep": ep, "bep": ep, "cr": cr, "up": up, "mt": "cross", "iw": "0",
            "ps": ps}


def test_hedge_mode_both_slots() -> None:
    # synthetic: hedge mode, long and short slots open at once, then the short slot closed.
    long_row, short_row = prow("0.5", "LONG", up="1.5"), prow("-0.3", "SHORT", ep="101", up="-0.3")
    events = events_of(account_update(long_row, short_row))
    assert [(e.position_idx, e.side, e.size) for e in events] == [(1, "Buy", D("0.5")), (2, "Sell", D("0.3"))]
    [closed] = events_of(account_update(prow("0", "SHORT", ep="0", cr="2.1")))
    assert (closed.position_idx, closed.side, closed.size) == (2, "", D("0"))
    assert closed.cum_realised_pnl == D("2.1")


def test_one_way_flip_long_to_short() -> None:
    # synthetic: one-way mode; a sell of 0.03 against a 0.01 long leaves a 0.02 short.
    [long] = events_of(account_update(prow("0.010", ep="2000"), t=1))
    [short] = events_of(account_update(prow("-0.020", ep="2010", cr="0.1"), t=2))
    assert (long.position_idx, long.side, long.size, long.timestamp) == (0, "Buy", D("0.01"), 1)
    assert (short.position_idx, short.side, short.size, short.timestamp) == (0, "Sell", D("0.02"), 2)
    assert short.size >= 0 and short.entry_price == D("2010")


def test_partial_close_moves_cum_realised_pnl() -> None:
    # synthetic: a TP closes 0.02 of a 0.03 long; cr grows by the realised PnL, pa shrinks.
    [before] = events_of(account_update(prow("0.030", ep="2000", cr="5")))
    [after] = events_of(account_update(prow("0.010", ep="2000", cr="7.5")))
    assert (before.size, before.cum_realised_pnl) == (D("0.03"), D("5"))
    assert (after.size, after.side, after.cum_realised_pnl) == (D("0.01"), "Buy", D("7.5"))


def test_missing_cr_is_none_and_wallet_cw_is_not_available_balance() -> None:
    # synthetic: `cr` absent; a balance row whose cw must not become available_balance.
    row = prow("1")
    del row["cr"]
    pos, wallet = events_of(account_update(row, balances=({"a": "USDT", "wb": "10", "cw": "7", "bc": "0"},)))
    assert isinstance(pos, PositionUpdate) and pos.cum_realised_pnl is None
    assert isinstance(wallet, WalletUpdate)
    assert (wallet.wallet_balance, wallet.available_balance) == (D("10"), None)


def test_empty_account_update_gives_no_events() -> None:
    # synthetic: a funding fee changes nothing we track when P and B are empty.
    assert events_of(account_update()) == []


# --------------------------------------------------------------------------- synthetic: orders and fills


def trade_update(**fields: Any) -> dict[str, Any]:
    """synthetic: the documented ORDER_TRADE_UPDATE turned into a filled grid LIMIT order, then ``fields``."""
    msg: dict[str, Any] = load("order_trade_update.json")
    msg["o"].update(
        c="grid-1", S="BUY", o="LIMIT", ot="LIMIT", q="0.010", p="2000.00", ap="2000.00", sp="0",
        x="TRADE", X="FILLED", i=8886775, l="0.010", z="0.010", L="2000.00", N="USDT", n="0.00800000",
        T=1700000000123, t=109100866, m=True, R=False, ps="BOTH", rp="0",
    )
    msg["o"].update(fields)
    return msg


def test_trade_gives_order_and_fill() -> None:
    msg = trade_update(rp="1.25")
    update, fill = events_of(msg)
    assert update == order(
        timestamp=1700000000123, symbol="BTCUSDT", order_id="8886775", client_order_id="grid-1", side="Buy",
        order_type="Limit", status="Filled", price=D("2000"), qty=D("0.01"), filled_qty=D("0.01"),
        avg_price=D("2000"), reduce_only=False, position_idx=0, is_take_profit=False,
    )
    assert fill == FillUpdate(
        exchange="binance", timestamp=1700000000123, symbol="BTCUSDT", order_id="8886775",
        trade_id="109100866", side="Buy", price=D("2000"), qty=D("0.01"), fee=D("0.008"), fee_asset="USDT",
        realised_pnl=D("1.25"), is_maker=True, position_idx=0,
    )
    assert fill.raw is msg and update.raw is msg


def test_fill_without_fee_fields_defaults_to_zero() -> None:
    # synthetic: n, N and rp "may be absent" (fixtures README).
    msg = trade_update()
    for key in ("n", "N", "rp"):
        del msg["o"][key]
    _, fill = events_of(msg)
    assert (fill.fee, fill.fee_asset, fill.realised_pnl) == (D("0"), "", D("0"))


def test_order_time_falls_back_to_top_level_t() -> None:
    # synthetic: without o.T the transaction time T is used, without T the event time E.
    msg = trade_update(x="NEW", X="NEW")
    del msg["o"]["T"]
    assert events_of(msg)[0].timestamp == msg["T"]
    del msg["T"]
    assert events_of(msg)[0].timestamp == msg["E"]


def test_duplicate_filled_pushes_normalize_identically() -> None:
    # synthetic: Binance may push the same FILLED update twice; both give equal events.
    first, second = events_of(trade_update()), events_of(trade_update())
    assert first == second and [hash(e) for e in first] == [hash(e) for e in second]


@pytest.mark.parametrize(
    ("wire", "expected"),
    [("NEW", "New"), ("PARTIALLY_FILLED", "PartiallyFilled"), ("FILLED", "Filled"), ("CANCELED", "Cancelled"),
     ("EXPIRED", "Expired"), ("EXPIRED_IN_MATCH", "Expired")],
)
def test_order_status_map(wire: str, expected: str) -> None:
    # synthetic
    assert events_of(trade_update(x="NEW", X=wire))[0].status == expected


@pytest.mark.parametrize(
    ("wire", "expected"),
    [("LIMIT", "Limit"), ("TAKE_PROFIT", "Limit"), ("STOP", "Limit"), ("MARKET", "Market"),
     ("STOP_MARKET", "Market"), ("TAKE_PROFIT_MARKET", "Market"), ("TRAILING_STOP_MARKET", "Market"),
     ("LIQUIDATION", "Market"), ("SOME_NEW_MARKET", "Market")],
)
def test_order_type_map(wire: str, expected: str) -> None:
    # synthetic
    assert events_of(trade_update(x="NEW", X="NEW", o=wire))[0].order_type == expected


@pytest.mark.parametrize(
    ("fields", "reduce_only"),
    [
        ({"ps": "BOTH", "S": "SELL", "R": False}, False),
        ({"ps": "BOTH", "S": "SELL", "R": True}, True),
        ({"ps": "BOTH", "S": "SELL", "R": False, "cp": True}, True),
        ({"ps": "LONG", "S": "SELL"}, True),
        ({"ps": "LONG", "S": "BUY"}, False),
        ({"ps": "SHORT", "S": "BUY"}, True),
        ({"ps": "SHORT", "S": "SELL"}, False),
    ],
)
def test_reduce_only_flag_and_hedge_rule(fields: dict[str, Any], reduce_only: bool) -> None:
    # synthetic
    assert events_of(trade_update(x="NEW", X="NEW", **fields))[0].reduce_only is reduce_only


def test_take_profit_from_order_type_or_original_type() -> None:
    # synthetic: the child a TP algo order places is a LIMIT whose original type is TAKE_PROFIT.
    assert events_of(trade_update(x="NEW", X="NEW", o="LIMIT", ot="TAKE_PROFIT"))[0].is_take_profit is True
    assert events_of(trade_update(x="NEW", X="NEW", o="TAKE_PROFIT_MARKET", ot="x"))[0].is_take_profit is True
    assert events_of(trade_update(x="NEW", X="NEW", o="STOP", ot="STOP"))[0].is_take_profit is False


# --------------------------------------------------------------------------- synthetic: algo orders


def algo_update(status: str, ai: str = "", aq: str = "0.00000", t: int = 1750515742297) -> dict[str, Any]:
    """synthetic: the documented ALGO_UPDATE (a TP SELL on the long slot) with another status."""
    msg: dict[str, Any] = load("algo_update.json")
    msg["T"], msg["E"] = t, t + 6
    msg["o"].update(X=status, ai=ai, aq=aq, ap="751.0" if aq != "0.00000" else "0.00000", ps="LONG")
    del msg["o"]["rm"]
    return msg


def test_algo_take_profit_lifecycle_with_child_fill_first() -> None:
    # synthetic: NEW -> (child fill arrives first) -> TRIGGERED (ai set) -> FINISHED.
    [new] = events_of(algo_update("NEW", t=1))
    child_order, child_fill = events_of(trade_update(
        i=8886800, c="Q5xaq5EGKgXXa0fD7fs0Ip", S="SELL", o="LIMIT", ot="TAKE_PROFIT", ps="LONG",
        p="750", L="751.0", ap="751.0", q="0.01", z="0.01", l="0.01", m=False, T=3, rp="0.42",
    ))
    [triggered] = events_of(algo_update("TRIGGERED", ai="8886800", t=2))
    [finished] = events_of(algo_update("FINISHED", ai="8886800", aq="0.01", t=4))

    assert (new.order_id, new.status, new.linked_order_id) == ("2148719", "Untriggered", None)
    assert new.is_take_profit is True and new.reduce_only is True  # a SELL on the LONG slot
    assert (child_order.order_id, child_order.status) == ("8886800", "Filled")
    assert child_order.is_take_profit is True  # ot TAKE_PROFIT
    assert (child_fill.order_id, child_fill.realised_pnl) == ("8886800", D("0.42"))
    assert (child_fill.position_idx, child_fill.side, child_fill.is_maker) == (1, "Sell", False)
    assert (triggered.order_id, triggered.status) == ("2148719", "Triggered")
    assert triggered.linked_order_id == "8886800"
    assert (finished.status, finished.linked_order_id) == ("Filled", "8886800")
    assert finished.filled_qty == D("0.01")
    assert finished.avg_price == D("751") and finished.timestamp == 4


@pytest.mark.parametrize(
    ("status", "aq", "expected"),
    [("NEW", "0", "Untriggered"), ("TRIGGERING", "0", "Triggered"), ("TRIGGERED", "0", "Triggered"),
     ("FINISHED", "0.004", "Filled"), ("FINISHED", "0", "Cancelled"), ("CANCELED", "0", "Cancelled"),
     ("REJECTED", "0", "Rejected"), ("EXPIRED", "0", "Expired")],
)
def test_algo_status_map(status: str, aq: str, expected: str) -> None:
    # synthetic
    assert events_of(algo_update(status, aq=aq))[0].status == expected


def test_algo_link_only_once_triggered_and_non_empty() -> None:
    # synthetic: TRIGGERING has no child yet; an empty ai is never a link.
    assert events_of(algo_update("TRIGGERING"))[0].linked_order_id is None
    assert events_of(algo_update("TRIGGERED", ai=""))[0].linked_order_id is None
    assert events_of(algo_update("CANCELED", ai="77"))[0].linked_order_id is None


def test_rest_algo_row_triggered_links_actual_order() -> None:
    # synthetic: an open algo order seen after it triggered.
    row = load("rest_open_algo_orders.json")[0]
    row.update(algoStatus="TRIGGERED", actualOrderId="8886800", updateTime=0, createTime=5)
    [update] = algo_orders_from_rest([row])
    assert (update.status, update.linked_order_id, update.timestamp) == ("Triggered", "8886800", 0)


# --------------------------------------------------------------------------- synthetic: REST openOrders

# synthetic: GET /fapi/v1/openOrders rows in the documented shape (no official fixture is stored).
OPEN_ORDERS = [
    {   # a one-way grid take-profit: reduce-only LIMIT SELL
        "avgPrice": "0.00000", "clientOrderId": "grid-tp-1", "cumQuote": "0", "executedQty": "0",
        "orderId": 1917641, "origQty": "0.010", "origType": "LIMIT", "price": "2050.00", "reduceOnly": True,
        "side": "SELL", "positionSide": "BOTH", "status": "NEW", "stopPrice": "0", "closePosition": False,
        "symbol": "ETHUSDT", "time": 1700000000000, "timeInForce": "GTC", "type": "LIMIT",
        "updateTime": 1700000000500, "workingType": "CONTRACT_PRICE", "priceProtect": False,
        "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
    },
    {   # hedge mode: the flag is forbidden, a BUY on the SHORT slot only reduces; partly filled
        "avgPrice": "1950.50", "clientOrderId": "grid-tp-2", "cumQuote": "9.7525", "executedQty": "0.005",
        "orderId": 1917642, "origQty": "0.010", "origType": "LIMIT", "price": "1950.50", "reduceOnly": False,
        "side": "BUY", "positionSide": "SHORT", "status": "PARTIALLY_FILLED", "stopPrice": "0",
        "closePosition": False, "symbol": "ETHUSDT", "time": 1700000000100, "timeInForce": "GTC",
        "type": "LIMIT", "workingType": "CONTRACT_PRICE", "priceProtect": False, "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE", "goodTillDate": 0,
    },
    {   # the child of a triggered TAKE_PROFIT algo order
        "avgPrice": "0", "clientOrderId": "tp-child", "cumQuote": "0", "executedQty": "0", "orderId": 1917643,
        "origQty": "0.020", "origType": "TAKE_PROFIT", "price": "2100", "reduceOnly": True, "side": "SELL",
        "positionSide": "BOTH", "status": "NEW", "stopPrice": "2099.5", "closePosition": False,
        "symbol": "ETHUSDT", "timeInForce": "GTC", "type": "LIMIT", "workingType": "CONTRACT_PRICE",
        "priceProtect": False, "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
    },
]


def test_rest_open_orders() -> None:
    # synthetic
    orders = orders_from_rest(OPEN_ORDERS)
    common = dict(is_snapshot=True, symbol="ETHUSDT", order_type="Limit", reduce_only=True)
    assert orders == [
        order(**common, timestamp=1700000000500, order_id="1917641", client_order_id="grid-tp-1", side="Sell",
              status="New", price=D("2050"), qty=D("0.01"), filled_qty=D("0"), avg_price=D("0"),
              position_idx=0, is_take_profit=False),
        order(**common, timestamp=1700000000100, order_id="1917642", client_order_id="grid-tp-2", side="Buy",
              status="PartiallyFilled", price=D("1950.5"), qty=D("0.01"), filled_qty=D("0.005"),
              avg_price=D("1950.5"), position_idx=2, is_take_profit=False),
        order(**common, timestamp=0, order_id="1917643", client_order_id="tp-child", side="Sell",
              status="New", price=D("2100"), qty=D("0.02"), filled_qty=D("0"), avg_price=D("0"),
              trigger_price=D("2099.5"), position_idx=0, is_take_profit=True),
    ]
    assert [o.raw for o in orders] == OPEN_ORDERS


# --------------------------------------------------------------------------- synthetic: errors


def test_unknown_order_status_raises_with_raw() -> None:
    # synthetic
    msg = trade_update(x="NEW", X="NEW_ADL")
    with pytest.raises(NormalizationError, match=r"'X'.*NEW_ADL") as err:
        parse_user_message(msg)
    assert err.value.raw is msg


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (trade_update(x="NEW", X="NEW", o="ICEBERG"), "'o'"),
        (trade_update(x="NEW", X="NEW", S="HOLD"), "'S'"),
        (trade_update(x="NEW", X="NEW", ps="MIDDLE"), "'ps'"),
        (algo_update("PAUSED"), "'X'"),
        (account_update(prow("1", "UP")), "'ps'"),
    ],
)
def test_unknown_enum_values_raise_naming_the_field(msg: dict[str, Any], field: str) -> None:
    # synthetic
    with pytest.raises(NormalizationError, match=field) as err:
        parse_user_message(msg)
    assert err.value.raw is msg


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", "", None])
def test_bad_number_raises(bad: Any) -> None:
    # synthetic
    msg = account_update(prow("1", up=bad))
    with pytest.raises(NormalizationError, match="'up'") as err:
        parse_user_message(msg)
    assert err.value.raw is msg


def test_float_money_is_refused() -> None:
    # synthetic: a float on the wire (e.g. from a lossy JSON decoder) must never become money.
    with pytest.raises(NormalizationError, match="'pa'"):
        parse_user_message(account_update(prow(1.5)))  # type: ignore[arg-type]
    with pytest.raises(NormalizationError, match="'p'"):
        parse_market_message({**load("mark_price_update.json"), "p": 11794.15})
    with pytest.raises(NormalizationError, match="'balance'"):
        wallets_from_rest([{**load("rest_balance.json")[0], "balance": 1.0}])


def test_missing_fields_raise_normalization_error() -> None:
    # synthetic: a missing field is a NormalizationError naming it, never a bare KeyError.
    msg = trade_update()
    del msg["o"]["S"]
    with pytest.raises(NormalizationError, match="'S'"):
        parse_user_message(msg)
    with pytest.raises(NormalizationError, match="'positionAmt'"):
        positions_from_rest([{"symbol": "BTCUSDT"}])
    with pytest.raises(NormalizationError):
        orders_from_rest(["not a row"])  # type: ignore[list-item]
    with pytest.raises(NormalizationError, match="'a'"):
        parse_user_message({"e": "ACCOUNT_UPDATE", "E": 1})


def test_messages_without_event_type_or_not_mappings_raise() -> None:
    # synthetic
    with pytest.raises(NormalizationError):
        parse_user_message({"E": 1})
    with pytest.raises(NormalizationError):
        parse_user_message(["ACCOUNT_UPDATE"])  # type: ignore[arg-type]


# Synthetic: the documented openAlgoOrders row as GET /fapi/v1/algoOrder returns it once FINISHED, and the
# GET /fapi/v1/order row of the order it triggered (field names from the docs; values made up).
def _finished_algo_row() -> dict[str, Any]:
    row = dict(load("rest_open_algo_orders.json")[0])
    row.update(algoStatus="FINISHED", actualOrderId="8389765", updateTime=1750515000000)
    return row


def _child_row(executed: str, avg: str, status: str) -> dict[str, Any]:
    return {"orderId": 8389765, "symbol": "BNBUSDT", "status": status, "clientOrderId": "c", "price": "750",
            "avgPrice": avg, "origQty": "0.01", "executedQty": executed, "type": "LIMIT",
            "origType": "TAKE_PROFIT", "side": "SELL", "positionSide": "BOTH", "stopPrice": "0",
            "reduceOnly": True, "updateTime": 1750515000000}


def test_synthetic_finished_algo_with_a_filled_child_is_filled() -> None:
    row = _finished_algo_row()
    order = finished_algo_order_from_rest(row, _child_row("0.01", "750.5", "FILLED"))
    assert (order.order_id, order.status) == ("2148627", "Filled")
    assert (order.filled_qty, order.avg_price) == (D("0.01"), D("750.5"))
    assert order.linked_order_id == "8389765" and order.is_snapshot and order.raw is row


def test_synthetic_finished_algo_whose_child_did_not_fill_is_cancelled() -> None:
    order = finished_algo_order_from_rest(_finished_algo_row(), _child_row("0", "0", "CANCELED"))
    assert (order.status, order.filled_qty) == ("Cancelled", D("0"))


def test_synthetic_finished_algo_without_its_child_row_cannot_claim_a_fill() -> None:
    assert finished_algo_order_from_rest(_finished_algo_row(), None).status == "Cancelled"


# --------------------------------------------------------------------------- forced closes and backfill


def test_calculated_liquidation_gives_a_marked_fill_and_the_order_update() -> None:
    msg = trade_update(x="CALCULATED", o="LIQUIDATION", ot="LIQUIDATION", c="autoclose-1700000000123",
                       S="SELL", rp="-12.5", m=False)
    update, fill = events_of(msg)
    assert (update.status, update.order_type) == ("Filled", "Market")
    assert update.client_order_id == "autoclose-1700000000123"
    assert fill == FillUpdate(
        exchange="binance", timestamp=1700000000123, symbol="BTCUSDT", order_id="8886775",
        trade_id="109100866", side="Sell", price=D("2000"), qty=D("0.01"), fee=D("0.008"), fee_asset="USDT",
        realised_pnl=D("-12.5"), is_maker=False, position_idx=0, exec_type="Liquidation",
    )


def test_calculated_adl_is_marked_adl() -> None:
    [_update, fill] = events_of(trade_update(x="CALCULATED", c="adl_autoclose", o="LIQUIDATION"))
    assert fill.exec_type == "Adl"


def test_calculated_without_trade_id_gets_a_stable_one_and_without_qty_gives_no_fill() -> None:
    msg = trade_update(x="CALCULATED", c="autoclose-9")
    del msg["o"]["t"]
    [_update, fill] = events_of(msg)
    assert fill.trade_id == "calc-8886775-1700000000123"
    assert [type(e) for e in events_of(trade_update(x="CALCULATED", l="0"))] == [OrderUpdate]


def test_other_executions_give_no_fill() -> None:
    for execution in ("NEW", "CANCELED", "EXPIRED", "AMENDMENT"):
        assert [type(e) for e in events_of(trade_update(x=execution, X="NEW"))] == [OrderUpdate]


def test_rest_user_trades_golden() -> None:
    rows = load("rest_user_trades.json")
    [fill] = fills_from_rest(rows)
    assert fill == FillUpdate(
        exchange="binance", timestamp=1569514978020, is_snapshot=True, symbol="BTCUSDT", order_id="25851813",
        trade_id="698759", side="Sell", price=D("7819.01"), qty=D("0.002"), fee=D("-0.07819010"),
        fee_asset="USDT", realised_pnl=D("-0.91539999"), is_maker=False, position_idx=2,
    )
    assert fill.raw is rows[0]


def test_rest_user_trades_sorted_by_id_and_strict() -> None:
    row = load("rest_user_trades.json")[0]
    rows = [dict(row, id=12, time=2), dict(row, id=3, time=9), dict(row, id=10, time=2)]
    assert [f.trade_id for f in fills_from_rest(rows)] == ["3", "10", "12"]
    assert fills_from_rest([dict(row, realizedPnl=None)])[0].realised_pnl is None
    bad_answers: list[list[Any]] = [["a", "b"], [dict(row, maker="false")],
                                    [{k: v for k, v in row.items() if k != "id"}], [dict(row, price=7819.01)]]
    for bad in bad_answers:
        with pytest.raises(NormalizationError):
            fills_from_rest(bad)
