"""Binance margin arithmetic (gridbot._margin): golden numbers from Binance's liquidation-price FAQ
(https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93, EXCHANGE-FACTS §5), the
leverageBracket docs examples, and the tier edges."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot._margin import (
    SymbolBrackets,
    available_for_order,
    bracket_for,
    initial_margin,
    maintenance_amounts,
    maintenance_margin,
    margin_balance,
    mm_rate,
    parse_leverage_brackets,
    unrealised_pnl,
    wire_decimal,
)
from gridbot.errors import NormalizationError

D = Decimal
FIXTURES = Path(__file__).parent / "fixtures" / "binance"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def faq() -> SymbolBrackets:
    return parse_leverage_brackets(load("leverage_bracket_faq_btcusdt.json"))["BTCUSDT"]


# ------------------------------------------------------------------ the FAQ's worked numbers


def test_faq_264000_is_in_the_one_percent_tier(faq: SymbolBrackets) -> None:
    bracket = bracket_for(faq, D("264000"))
    assert bracket is not None and bracket.maint_margin_ratio == D("0.01")


def test_faq_maintenance_amount_at_500000_is_1300(faq: SymbolBrackets) -> None:
    bracket = bracket_for(faq, D("500000"))
    assert bracket is not None and bracket.cum == D("1300")
    # "the Maintenance Amount on Level 5 = 250,000 * (1% - 0.5%) + 50 USDT = 1,300 USDT"
    assert maintenance_amounts(faq.brackets) == (D("0"), D("50"), D("1300"))
    assert maintenance_amounts(faq.brackets) == tuple(b.cum for b in faq.brackets)


def test_faq_maintenance_margin_at_500000(faq: SymbolBrackets) -> None:
    assert maintenance_margin(D("500000"), faq) == D("3700")  # 500,000 * 0.01 - 1,300
    assert maintenance_margin(D("-500000"), faq) == D("3700")  # shorts: |notional|


# ------------------------------------------------------------------ tier edges: floor < |notional| <= cap


@pytest.mark.parametrize(
    ("notional", "tier", "mm"),
    [
        ("0", 1, "0"),
        ("0.00000001", 1, "0.00000000004"),
        ("50000", 1, "200"),            # exactly at the first cap: still tier 1 (0.4 %)
        ("50000.00000001", 2, "200.00000000005"),  # just above: tier 2, continuous thanks to cum
        ("250000", 2, "1200"),          # exactly at the second cap
        ("250000.01", 3, "1200.0001"),
        ("1000000", 3, "8700"),         # exactly at the last cap
    ],
)
def test_tier_edges(faq: SymbolBrackets, notional: str, tier: int, mm: str) -> None:
    bracket = bracket_for(faq, D(notional))
    assert bracket is not None and bracket.bracket == tier
    assert maintenance_margin(D(notional), faq) == D(mm)


def test_above_the_last_cap_is_unknown_not_the_last_tier(faq: SymbolBrackets) -> None:
    assert bracket_for(faq, D("1000000.01")) is None
    assert maintenance_margin(D("1000000.01"), faq) is None


# ------------------------------------------------------------------ parsing the leverageBracket answer


def test_docs_list_answer_numbers_go_through_str() -> None:
    [(symbol, parsed)] = parse_leverage_brackets(load("rest_leverage_bracket.json")).items()
    assert symbol == "ETHUSDT"
    [bracket] = parsed.brackets
    # 0.0065 as a float is 0.006499999999999999...; through str it is the JSON literal.
    assert bracket.maint_margin_ratio == D("0.0065") and str(bracket.maint_margin_ratio) == "0.0065"
    assert (bracket.notional_floor, bracket.notional_cap, bracket.cum) == (D("0"), D("10000"), D("0"))
    assert (bracket.bracket, bracket.initial_leverage) == (1, 75)
    assert parsed.notional_coef == D("1.5")


def test_docs_single_object_answer() -> None:
    parsed = parse_leverage_brackets(load("rest_leverage_bracket_symbol.json"))
    assert list(parsed) == ["ETHUSDT"]


def test_an_adjusted_bracket_multiplier_gives_no_maintenance_margin() -> None:
    # The docs do not say whether floors/caps already include notionalCoef: no guess.
    parsed = parse_leverage_brackets(load("rest_leverage_bracket.json"))["ETHUSDT"]
    assert parsed.ambiguous and maintenance_margin(D("5000"), parsed) is None
    unadjusted = {**load("rest_leverage_bracket_symbol.json"), "notionalCoef": 1}
    plain = parse_leverage_brackets(unadjusted)["ETHUSDT"]
    assert not plain.ambiguous and maintenance_margin(D("5000"), plain) == D("32.5")


def test_string_numbers_are_accepted() -> None:
    # The portfolio-margin twin of the endpoint sends "notionalCoef": "4.0" as a string.
    payload = load("rest_leverage_bracket_symbol.json")
    payload["brackets"][0]["maintMarginRatio"] = "0.0065"
    payload["notionalCoef"] = "4.0"
    parsed = parse_leverage_brackets(payload)["ETHUSDT"]
    assert parsed.brackets[0].maint_margin_ratio == D("0.0065") and parsed.notional_coef == D("4")


def test_tiers_are_sorted_by_floor() -> None:
    payload = load("leverage_bracket_faq_btcusdt.json")
    payload["brackets"].reverse()
    parsed = parse_leverage_brackets(payload)["BTCUSDT"]
    assert [b.bracket for b in parsed.brackets] == [1, 2, 3]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p["brackets"][1].update(notionalFloor=60000), "not contiguous"),
        (lambda p: p["brackets"][0].update(notionalCap=0), "cap"),
        (lambda p: p["brackets"][0].update(maintMarginRatio=True), "maintMarginRatio"),
        (lambda p: p["brackets"][0].pop("cum"), "cum"),
        (lambda p: p["brackets"][0].update(bracket=1.5), "bracket"),
        (lambda p: p["brackets"][0].update(maintMarginRatio="NaN"), "finite"),
        (lambda p: p.pop("symbol"), "symbol"),
        (lambda p: p.update(brackets=[]), "no brackets"),
    ],
)
def test_malformed_answers_raise(mutate: Any, match: str) -> None:
    payload = load("leverage_bracket_faq_btcusdt.json")
    mutate(payload)
    with pytest.raises(NormalizationError, match=match):
        parse_leverage_brackets(payload)


def test_wire_decimal() -> None:
    assert wire_decimal(0.1, "x", {}) == D("0.1")
    assert wire_decimal(1e-05, "x", {}) == D("0.00001")
    assert wire_decimal(75, "x", {}) == D(75)
    assert wire_decimal("12.50", "x", {}) == D("12.50")
    for bad in (None, True, "", "abc", float("inf"), [1]):
        with pytest.raises(NormalizationError):
            wire_decimal(bad, "x", {})


# ------------------------------------------------------------------ the other documented formulas


def test_margin_balance_rate_initial_margin_and_available() -> None:
    balance = margin_balance(D("10000"), D("-250"))
    assert balance == D("9750")
    assert mm_rate(D("3700"), balance) == D("3700") / D("9750")
    assert mm_rate(D("0"), D("100")) == 0
    assert mm_rate(D("10"), D("0")) is None and mm_rate(D("10"), D("-5")) is None  # undefined: no number
    assert initial_margin(D("-60000"), 20) == D("3000")
    with pytest.raises(ValueError):
        initial_margin(D("1"), 0)
    assert available_for_order(D("1000"), D("-100"), D("300")) == D("600")
    assert available_for_order(D("1000"), D("-100"), D("300"), D("50")) == D("550")
    assert available_for_order(D("100"), D("-100"), D("300")) == D("0")  # max(0, ...)


def test_unrealised_pnl_signs() -> None:
    assert unrealised_pnl("Buy", D("2"), D("100"), D("110")) == D("20")
    assert unrealised_pnl("Sell", D("2"), D("100"), D("110")) == D("-20")
    assert unrealised_pnl("", D("0"), D("0"), D("110")) == D("0")
