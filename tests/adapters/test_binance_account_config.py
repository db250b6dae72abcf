"""BinanceAdapter.fetch_account_config and ACCOUNT_CONFIG_UPDATE decoding, over the mocked SDK of
test_binance_adapter (python-binance's Client replaced, its answers scripted)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import requests

from gridbot._account import AccountConfig
from gridbot.adapters.binance import _rest as rest_mod
from gridbot.errors import AuthenticationError
from gridbot.stats import Counters
from tests.adapters.binance_fakes import (  # noqa: F401 - pytest fixtures
    FakeClient,
    FakeSdk,
    api_error,
    fixture,
    make_adapter,
    sdk,
    sink,
)


class AccountClient(FakeClient):
    def futures_leverage_bracket(self, **params: Any) -> Any:
        return self._call("leverage_bracket", **params)

    def futures_account(self, **params: Any) -> Any:
        return self._call("account", **params)


@pytest.fixture
def account_sdk(sdk: FakeSdk, mocker: Any) -> FakeSdk:  # noqa: F811 - the imported fixture
    mocker.patch.object(rest_mod, "Client", functools.partial(AccountClient, sdk))
    brackets = fixture("leverage_bracket_faq_btcusdt.json")
    sdk.answers["leverage_bracket"] = lambda symbol: {**brackets, "symbol": symbol}
    account = fixture("rest_account_v2.json")
    account["positions"].append({**account["positions"][0], "symbol": "ETHUSDT", "leverage": "5",
                                 "isolated": False})
    sdk.answers["account"] = account
    return sdk


def test_brackets_are_fetched_once_per_symbol_and_the_account_every_seed(
        account_sdk: FakeSdk, make_adapter: Any) -> None:  # noqa: F811
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)

    config = adapter.fetch_account_config(["BTCUSDT"], full=True)
    assert isinstance(config, AccountConfig) and config.full and config.is_snapshot
    assert dict(config.leverage) == {"BTCUSDT": 100} and dict(config.isolated) == {"BTCUSDT": True}
    assert list(config.brackets) == ["BTCUSDT"] and config.multi_assets is False
    calls = [(name, params) for name, params in account_sdk.seed_rest.calls]
    assert calls == [("leverage_bracket", {"symbol": "BTCUSDT"}), ("account", {})]
    assert counters.snapshot().rest_calls == 2

    config = adapter.fetch_account_config(["ETHUSDT"], full=False)  # a symbol added while running
    assert not config.full and dict(config.leverage) == {"ETHUSDT": 5}
    assert list(config.brackets) == ["ETHUSDT"]
    adapter.fetch_account_config(["BTCUSDT", "ETHUSDT"], full=True)  # a resync: no bracket refetch
    names = [name for name, _ in account_sdk.seed_rest.calls]
    assert names == ["leverage_bracket", "account", "leverage_bracket", "account", "account"]
    assert counters.snapshot().rest_calls == 5


def test_a_failed_bracket_fetch_does_not_fail_the_seed_and_is_retried(
        account_sdk: FakeSdk, make_adapter: Any) -> None:  # noqa: F811
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    good = account_sdk.answers["leverage_bracket"]
    account_sdk.answers["leverage_bracket"] = requests.ConnectionError("reset")
    config = adapter.fetch_account_config(["BTCUSDT"], full=True)
    assert dict(config.brackets) == {} and dict(config.leverage) == {"BTCUSDT": 100}
    account_sdk.answers["leverage_bracket"] = good
    config = adapter.fetch_account_config(["BTCUSDT"], full=True)
    assert list(config.brackets) == ["BTCUSDT"]


def test_a_failed_account_fetch_gives_a_config_without_leverage(
        account_sdk: FakeSdk, make_adapter: Any) -> None:  # noqa: F811
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    account_sdk.answers["account"] = api_error(400, -1021, "Timestamp outside of the recvWindow.")
    config = adapter.fetch_account_config(["BTCUSDT"], full=True)
    assert config.full and dict(config.leverage) == {} and list(config.brackets) == ["BTCUSDT"]


def test_rejected_keys_still_raise(account_sdk: FakeSdk, make_adapter: Any) -> None:  # noqa: F811
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    account_sdk.answers["account"] = api_error(401, -2015, "Invalid API-key, IP, or permissions for action.")
    with pytest.raises(AuthenticationError):
        adapter.fetch_account_config(["BTCUSDT"], full=True)
