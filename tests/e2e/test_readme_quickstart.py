"""The README's callback quickstart, run as written against each emulator: its risk check (AccountState)
lets it trade, and it places its grid buy on either exchange."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from tests.e2e.helpers import KEY, SECRET, START_PRICE, WAIT, engine_config, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    [code] = [b for b in blocks if "GRIDBOT_EXCHANGE" in b]
    return str(code)


@pytest.fixture(params=["binance", "bybit"])
def emulator(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    kind = BinanceEmulator if request.param == "binance" else BybitEmulator
    emu = kind(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0.2)
    try:
        emu.start()
        yield request.param, emu
    finally:
        emu.stop()


@pytest.mark.timeout(120)
def test_the_quickstart_trades_on_either_exchange(emulator: tuple[str, Any]) -> None:
    exchange, emu = emulator
    env = {**os.environ, "GRIDBOT_EXCHANGE": exchange, "GRIDBOT_API_KEY": KEY, "GRIDBOT_API_SECRET": SECRET,
           "GRIDBOT_REST_URL": emu.endpoints.rest, "GRIDBOT_WS_URL": emu.endpoints.ws}
    process = subprocess.Popen([sys.executable, "-c", quickstart_code()], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        def placed() -> list[Any]:
            assert process.poll() is None, process.communicate()
            return [o for o in emu.engine.open_orders() if o.client_order_id.startswith("quickstart-")]

        [order] = wait_until(placed, timeout=WAIT, what=f"the quickstart's buy on {exchange}")
        assert order.side == "Buy" and order.qty == Decimal("0.001")
        assert order.price is not None and order.price < START_PRICE * Decimal("0.995")  # ~1 % under the mark
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # KeyboardInterrupt: its finally stops the stream
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    assert "stream connected" in out, (out, err)
    assert KEY not in err and SECRET not in out + err
