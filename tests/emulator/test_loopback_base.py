"""What both loopback exchanges share (gridbot/emulator/_base.py), checked on each of them."""

from __future__ import annotations

import threading

import pytest
import requests

from gridbot.emulator._base import LoopbackEmulator
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import PriceEvent

PING = {BinanceEmulator: "/fapi/v1/ping", BybitEmulator: "/v5/market/time"}


@pytest.mark.parametrize("kind", [BinanceEmulator, BybitEmulator])
def test_lifecycle_endpoints_and_rest_counts(kind: type[LoopbackEmulator]) -> None:
    emulator = kind(price_interval=0)
    with pytest.raises(RuntimeError, match=f"{kind.__name__} is not running; call start"):
        _ = emulator.endpoints
    with emulator as running:
        assert running is emulator
        emulator.start()  # idempotent
        endpoints = emulator.endpoints
        path = PING[kind]
        assert requests.get(endpoints.rest + path, timeout=5).status_code == 200
        assert requests.get(endpoints.rest + path, timeout=5).status_code == 200
        assert emulator.rest_calls == {f"GET {path}": 2}
    with pytest.raises(RuntimeError):
        _ = emulator.endpoints
    emulator.stop()  # idempotent


@pytest.mark.parametrize("kind", [BinanceEmulator, BybitEmulator])
def test_price_interval_is_checked_and_drives_the_walk(kind: type[LoopbackEmulator]) -> None:
    with pytest.raises(ValueError, match="price_interval"):
        kind(price_interval=-1)
    with kind(price_interval=0) as emulator:
        with pytest.raises(ValueError, match="price_interval"):
            emulator.price_interval = float("nan")
        assert emulator.price_interval == 0
        stepped = threading.Event()
        emulator.engine.add_listener(lambda event: stepped.set() if isinstance(event, PriceEvent) else None)
        emulator.price_interval = 0.01  # starts the walk while running
        assert stepped.wait(5), "the price loop did not step"
