"""DEBUG logging of the real SDK stack against the emulator: urllib3 prints signed Binance URLs,
websockets the listenKey URL, pybit's ``log_requests`` the key and signature headers.  The same
records reach two handlers: the bare one shows them (so this test can fail), the one with
``gridbot.RedactingFilter`` shows none of them."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

import gridbot
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from tests.e2e.helpers import KEY, SECRET, Recorder, engine_config, make_stream, wait_until

LEAKS = {
    "binance": [r"signature=([0-9a-f]{64})", r"listenKey=([A-Za-z0-9]{16,})"],
    "bybit": [r"'X-BAPI-SIGN': '([0-9a-f]{64})'", r"'X-BAPI-API-KEY': '([^']+)'"],
}


class Captured:
    """Three handlers on the root logger, in this order: gridbot's own records, all records bare, all
    records through the filter (which rewrites a record in place, so it comes last)."""

    def __init__(self) -> None:
        self.own, self.bare, self.filtered = io.StringIO(), io.StringIO(), io.StringIO()
        self.handlers = [logging.StreamHandler(out) for out in (self.own, self.bare, self.filtered)]
        self.handlers[0].addFilter(logging.Filter("gridbot"))
        self.handlers[2].addFilter(gridbot.RedactingFilter())
        for handler in self.handlers:
            handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    capture = Captured()
    root = logging.getLogger()
    caplog.set_level(logging.DEBUG)  # root at DEBUG, restored afterwards
    for handler in capture.handlers:
        root.addHandler(handler)
    try:
        yield capture
    finally:
        for handler in capture.handlers:
            root.removeHandler(handler)


def run_stream(exchange: str, emulator: Any) -> None:
    recorder = Recorder()
    stream = make_stream(exchange, emulator, recorder)
    stream.start(timeout=20)
    try:
        wait_until(lambda: len(recorder.all()) > 3, what="events flowing")
    finally:
        stream.stop(timeout=10)


def bybit_client_with_request_logging(emulator: Any) -> None:
    """What a user's own pybit order client logs with ``log_requests=True``."""
    from pybit.unified_trading import HTTP

    http = HTTP(api_key=KEY, api_secret=SECRET, log_requests=True)
    http.endpoint = emulator.endpoints.rest
    try:
        assert http.get_wallet_balance(accountType="UNIFIED")["retCode"] == 0
    finally:
        http.client.close()


@pytest.mark.parametrize("exchange", ["binance", "bybit"])
def test_debug_logs_through_the_filter_show_no_signature_listen_key_or_key(
    exchange: str, captured: Captured
) -> None:
    cls: Any = BinanceEmulator if exchange == "binance" else BybitEmulator
    emulator = cls(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0.05)
    emulator.start()
    try:
        run_stream(exchange, emulator)
        if exchange == "bybit":
            bybit_client_with_request_logging(emulator)
    finally:
        emulator.stop()
    for handler in captured.handlers:
        handler.flush()
    own, bare, filtered = captured.own.getvalue(), captured.bare.getvalue(), captured.filtered.getvalue()
    assert "stream connected" in own  # gridbot's own lines, at DEBUG: none shows what the libraries leak
    for pattern in LEAKS[exchange]:
        leaked = set(re.findall(pattern, bare))
        assert leaked, f"the bare handler shows no {pattern!r}: the test would prove nothing"
        assert not [value for value in leaked if value in filtered], pattern
        assert not [value for value in leaked if value in own], pattern
    assert KEY not in filtered + own and SECRET not in bare + filtered
    assert filtered.count("<redacted>") >= 2
    assert len(filtered.splitlines()) == len(bare.splitlines())  # nothing dropped
