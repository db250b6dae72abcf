"""The hand-written SDK fakes stand in for real classes: every SDK-facing method and attribute they offer
must exist on the class they replace, with parameters it accepts, so an SDK upgrade that renames or drops
one fails here instead of leaving the adapter tests green against an API that is gone.

The fakes are stateful simulators (a registry of sockets, scripted answers), which ``MagicMock(spec=...)``
cannot express; this module is their ``spec=``.
"""
from __future__ import annotations

import inspect
import socket
from typing import Any

import binance
import pybit.unified_trading
import pytest
import websocket

from tests.adapters.binance_fakes import FakeAsyncClient, FakeClient
from tests.adapters.test_bybit_adapter import FakeApp, FakeCore, FakeHTTP, FakeRaw

# What a fake offers only to the tests that drive it (scripting, inspection), never to gridbot.
TEST_CONTROLS = {"feed", "push", "drop", "sent_ops", "respond", "dispose"}


def sdk_facing_methods(fake: type) -> list[str]:
    own = {name for klass in fake.__mro__ if klass.__module__.startswith("tests.") for name in vars(klass)}
    return sorted(name for name in own if callable(getattr(fake, name)) and not name.startswith("_")
                  and name not in TEST_CONTROLS)


def accepts(real: Any, fake: Any) -> bool:
    """The real callable takes as many positional parameters as the fake declares and every keyword-only
    one by name (``**kwargs`` takes any).  Builtins without a signature are checked for existence only."""
    try:
        real_sig = inspect.signature(real)
    except ValueError:
        return True
    real_params = [p for p in real_sig.parameters.values() if p.name != "self"]
    fake_params = [p for p in inspect.signature(fake).parameters.values() if p.name != "self"]
    kinds = inspect.Parameter
    positional = (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    if any(p.kind is kinds.VAR_POSITIONAL for p in real_params):
        positional_room = len(fake_params)
    else:
        positional_room = sum(p.kind in positional for p in real_params)
    wanted_positional = sum(p.kind in positional for p in fake_params)
    takes_any_keyword = any(p.kind is kinds.VAR_KEYWORD for p in real_params)
    names = {p.name for p in real_params}
    keyword_only = [p.name for p in fake_params if p.kind is kinds.KEYWORD_ONLY]
    keywords_ok = takes_any_keyword or all(name in names for name in keyword_only)
    return wanted_positional <= positional_room and keywords_ok


PAIRS = [
    (FakeClient, binance.Client),
    (FakeAsyncClient, binance.AsyncClient),
    (FakeHTTP, pybit.unified_trading.HTTP),
    (FakeApp, websocket.WebSocketApp),
    (FakeCore, websocket.WebSocket),
    (FakeRaw, socket.socket),
]


@pytest.mark.parametrize(("fake", "real"), PAIRS, ids=[fake.__name__ for fake, _ in PAIRS])
def test_every_sdk_facing_method_of_a_fake_exists_on_the_real_class(fake: type, real: type) -> None:
    methods = sdk_facing_methods(fake)
    assert methods, f"{fake.__name__} offers nothing to check"
    missing = [name for name in methods if not callable(getattr(real, name, None))]
    assert missing == [], f"{fake.__name__} fakes {missing}, which {real.__qualname__} does not have"
    refused = [name for name in methods if not accepts(getattr(real, name), getattr(fake, name))]
    assert refused == [], f"{real.__qualname__} refuses the parameters {fake.__name__} declares: {refused}"


def test_the_fake_app_takes_the_callbacks_and_attributes_of_a_websocket_app() -> None:
    real = websocket.WebSocketApp("ws://127.0.0.1:1/")
    init = inspect.signature(websocket.WebSocketApp).parameters
    for name in ("on_open", "on_message", "on_error", "on_close", "on_pong"):
        assert name in init  # the adapter passes these by name; FakeApp receives them as **callbacks
    for attribute in ("sock", "keep_running", "url"):
        assert hasattr(real, attribute), attribute


def test_the_check_fails_for_a_fake_that_drifted() -> None:
    class DriftedHTTP(FakeHTTP):
        def get_positions_v6(self, **params: Any) -> Any:
            return {}

    assert "get_positions_v6" in sdk_facing_methods(DriftedHTTP)
    assert not callable(getattr(pybit.unified_trading.HTTP, "get_positions_v6", None))
