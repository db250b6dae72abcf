"""Binance account configuration from the wire (gridbot.normalize.binance_account): golden fixtures."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot._account import AccountConfig
from gridbot._margin import parse_leverage_brackets
from gridbot.errors import NormalizationError
from gridbot.normalize.binance_account import account_config_from_push, account_config_from_rest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_account_config_update_docs_example_is_a_leverage_change() -> None:
    config = account_config_from_push(load("account_config_update.json"))
    assert config == AccountConfig(exchange="binance", timestamp=1611646737476, leverage={"BTCUSDT": 25})
    assert not config.full and config.multi_assets is None


def test_account_config_update_multi_assets_mode() -> None:
    msg = {"e": "ACCOUNT_CONFIG_UPDATE", "E": 1611646737479, "T": 1611646737476, "ai": {"j": True}}
    config = account_config_from_push(msg)
    assert config.multi_assets is True and dict(config.leverage) == {}


@pytest.mark.parametrize("body", [{}, {"ac": {"s": "BTCUSDT", "l": 0}}, {"ac": {"l": 5}},
                                  {"ai": {"j": "yes"}}, {"ac": {"s": "BTCUSDT", "l": 2.5}}])
def test_account_config_update_malformed(body: dict[str, Any]) -> None:
    with pytest.raises(NormalizationError):
        account_config_from_push({"e": "ACCOUNT_CONFIG_UPDATE", "E": 1, "T": 1, **body})


def test_account_v2_docs_example() -> None:
    brackets = parse_leverage_brackets(load("leverage_bracket_faq_btcusdt.json"))
    config = account_config_from_rest(load("rest_account_v2.json"), brackets, ["BTCUSDT"], full=True,
                                      timestamp=42)
    assert config.full and config.is_snapshot and config.timestamp == 42
    assert dict(config.leverage) == {"BTCUSDT": 100}
    assert dict(config.isolated) == {"BTCUSDT": True}
    assert config.multi_assets is False
    assert config.open_elsewhere == frozenset()
    assert list(config.brackets) == ["BTCUSDT"]


def test_open_positions_outside_the_seeded_symbols_are_listed_on_a_full_seed_only() -> None:
    account = load("rest_account_v2.json")
    account["positions"].append({**account["positions"][0], "symbol": "ETHUSDT", "positionAmt": "-0.5",
                                 "isolated": False})
    account["positions"].append({**account["positions"][0], "symbol": "XRPUSDT", "positionAmt": "0"})
    full = account_config_from_rest(account, {}, ["BTCUSDT"], full=True, timestamp=1)
    assert full.open_elsewhere == frozenset({"ETHUSDT"})
    assert "ETHUSDT" not in full.leverage
    partial = account_config_from_rest(account, {}, ["BTCUSDT"], full=False, timestamp=1)
    assert partial.open_elsewhere == frozenset()


@pytest.mark.parametrize("mutate", [
    lambda a: a.pop("positions"),
    lambda a: a["positions"][0].pop("symbol"),
    lambda a: a["positions"][0].update(leverage="x"),
])
def test_account_v2_malformed(mutate: Any) -> None:
    account = load("rest_account_v2.json")
    mutate(account)
    with pytest.raises(NormalizationError):
        account_config_from_rest(account, {}, ["BTCUSDT"], full=True, timestamp=1)


def test_decimal_fields_are_exact() -> None:
    brackets = parse_leverage_brackets(load("leverage_bracket_faq_btcusdt.json"))
    assert brackets["BTCUSDT"].brackets[0].maint_margin_ratio == Decimal("0.004")
