"""Unknown symbols end to end, real SDKs against the loopback emulators: ``start()`` with one good and one
unknown symbol succeeds, the good one gets its events, the unknown one is named in one WARNING with the
exchange's words, counted in ``stats.rejected_symbols`` and unsubscribed; likewise for a ``subscribe()``
of an unknown symbol while running."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import gridbot
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.events import PositionUpdate, TickerUpdate
from tests.e2e.helpers import KEY, SECRET, SYMBOL, WAIT, Recorder, engine_config, wait_until

UNKNOWN = "NOPEUSDT"
LATER_UNKNOWN = "GONEUSDT"
EXPECTED_WORDS = {"binance": "Invalid symbol.", "bybit": "not listed"}
EMULATORS: dict[str, Any] = {"binance": BinanceEmulator, "bybit": BybitEmulator}


@pytest.fixture(params=["binance", "bybit"])
def exchange(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    emulator = EMULATORS[request.param](engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0.05)
    emulator.start()
    try:
        yield request.param, emulator
    finally:
        emulator.stop()


def rejections(caplog: pytest.LogCaptureFixture, symbol: str) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [message for message in messages if symbol in message and "rejected" in message]


def test_unknown_symbols_are_dropped_and_the_others_stream(exchange: tuple[str, Any],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    name, emulator = exchange
    rec, bad = Recorder(), Recorder()
    stream = gridbot.ExchangeStream(name, api_key=KEY, api_secret=SECRET,  # type: ignore[arg-type]
                                    endpoints=emulator.endpoints)
    stream.subscribe(SYMBOL, on_position=rec, on_ticker=rec)
    stream.subscribe(UNKNOWN, on_position=bad, on_ticker=bad)
    caplog.set_level(logging.WARNING)
    stream.start(timeout=WAIT)
    try:
        rec.wait(TickerUpdate, symbol=SYMBOL)
        assert stream.connected and stream.stats.rejected_symbols == 1
        [warning] = rejections(caplog, UNKNOWN)
        assert EXPECTED_WORDS[name] in warning
        assert UNKNOWN not in repr(stream) and SYMBOL in repr(stream)

        stream.subscribe(LATER_UNKNOWN.lower(), on_position=bad, on_ticker=bad)
        wait_until(lambda: stream.stats.rejected_symbols == 2, what="the later symbol rejected")
        [warning] = rejections(caplog, LATER_UNKNOWN)
        assert EXPECTED_WORDS[name] in warning
        wait_until(lambda: LATER_UNKNOWN not in repr(stream), what="the later symbol unsubscribed")

        mark = rec.mark()
        rec.wait(TickerUpdate, since=mark, symbol=SYMBOL)  # the good symbol streams on
        assert stream.connected
        assert bad.all() == [] and not rec.of(PositionUpdate, symbol=UNKNOWN)
    finally:
        stream.stop(timeout=10.0)


def test_bybit_ticker_refusal_reaches_the_stream_without_rest(caplog: pytest.LogCaptureFixture) -> None:
    """``snapshot=False`` makes no REST read, so no listing check: Bybit's refusal of the ticker topic
    (real pybit socket, at open and while running) is what drops the symbol, the same way."""
    emulator = BybitEmulator(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0.05)
    emulator.start()
    rec = Recorder()
    stream = gridbot.ExchangeStream("bybit", api_key=KEY, api_secret=SECRET, endpoints=emulator.endpoints,
                                    snapshot=False)
    try:
        stream.subscribe(SYMBOL, on_ticker=rec)
        stream.subscribe(UNKNOWN, on_ticker=rec)
        caplog.set_level(logging.WARNING)
        stream.start(timeout=WAIT)
        wait_until(lambda: rejections(caplog, UNKNOWN) != [], what="the refused symbol dropped")
        [warning] = rejections(caplog, UNKNOWN)
        assert "handler not found" in warning  # the exchange's words
        assert stream.stats.rejected_symbols == 1
        stream.subscribe(LATER_UNKNOWN, on_ticker=rec)
        wait_until(lambda: stream.stats.rejected_symbols == 2, what="the later symbol dropped")
        wait_until(lambda: LATER_UNKNOWN not in repr(stream) and UNKNOWN not in repr(stream),
                   what="both unsubscribed")
        rec.wait(TickerUpdate, symbol=SYMBOL)
        assert stream.connected
    finally:
        stream.stop(timeout=10.0)
        emulator.stop()
