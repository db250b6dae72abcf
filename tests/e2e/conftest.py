"""Fixtures the parametrized end-to-end modules share: one test, both exchanges.

``exchange`` runs a test once per exchange (narrow it with ``pytest.mark.parametrize("exchange",
["binance"], indirect=True)``); ``emulator`` is that exchange's loopback emulator with no random walk
(prices stay where the test sets them), built from ``emulator_classes`` (a module overrides that
fixture to use emulator subclasses with test seams).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from tests.e2e.helpers import KEY, SECRET, Recorder, engine_config


@pytest.fixture(params=["binance", "bybit"])
def exchange(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator_classes() -> dict[str, type[Any]]:
    return {"binance": BinanceEmulator, "bybit": BybitEmulator}


@pytest.fixture
def emulator(exchange: str, emulator_classes: dict[str, type[Any]]) -> Iterator[Any]:
    emu = emulator_classes[exchange](engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()
