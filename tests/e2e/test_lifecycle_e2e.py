"""stop() keeps its budget with a REST call in flight, on both exchanges through the real SDKs, and
start() interrupted by stop() raises; nothing is left running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import gridbot
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from tests.e2e.helpers import KEY, SECRET, Recorder, engine_config, make_stream, wait_until

POSITION_PATH = {"binance": "/fapi/v3/positionRisk", "bybit": "/v5/position/list"}
STOP_TIMEOUT = 3.0


@pytest.fixture(params=["binance", "bybit"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    cls: Any = BinanceEmulator if request.param == "binance" else BybitEmulator
    emu = cls(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    emu.start()
    emu.exchange_name = request.param
    try:
        yield emu
    finally:
        emu.faults.rest_delay(POSITION_PATH[request.param], 0)
        emu.stop()


def gridbot_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith("gridbot-") and "emulator" not in t.name and t.is_alive()]


def test_stop_during_a_slow_resync_keeps_its_budget(emulator: Any) -> None:
    exchange = emulator.exchange_name
    rec = Recorder()
    stream = make_stream(exchange, emulator, rec)
    stream.start(timeout=20)
    emulator.faults.rest_delay(POSITION_PATH[exchange], 30.0)
    before = stream.stats.rest_calls
    emulator.faults.drop_private()
    wait_until(lambda: stream.stats.rest_calls > before, what="the resync's REST request in flight")
    began = time.monotonic()
    stream.stop(timeout=STOP_TIMEOUT)
    assert time.monotonic() - began < STOP_TIMEOUT
    assert gridbot_threads() == []


def test_stop_during_start_makes_start_raise_within_its_budget(emulator: Any) -> None:
    exchange = emulator.exchange_name
    rec = Recorder()
    stream = make_stream(exchange, emulator, rec)
    emulator.faults.rest_delay(POSITION_PATH[exchange], 30.0)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stream.start(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    starter = threading.Thread(target=start)
    starter.start()
    wait_until(lambda: stream.stats.rest_calls > 0, what="the seed's REST request in flight")
    began = time.monotonic()
    stream.stop(timeout=STOP_TIMEOUT)
    starter.join(STOP_TIMEOUT + 2)
    assert time.monotonic() - began < STOP_TIMEOUT + 2 and not starter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], gridbot.GridbotError) and "stop()" in str(errors[0])
    assert gridbot_threads() == [] and not stream.connected
