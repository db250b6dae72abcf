"""The demo's view: numbers quantized for display, a layout that fits 80x24, log records kept inside it."""

from __future__ import annotations

import io
import logging
from collections import deque
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from rich.console import Console

from gridbot.cli import _demo_run, _display
from gridbot.events import PositionUpdate
from gridbot.grid import GridView, PnlChange


class FakeStreamForView:
    def status(self) -> Any:
        return SimpleNamespace(state="connected")


class FakeRun:
    """What the display reads of an ExchangeRun."""

    def __init__(self, exchange: str, views: list[Any]) -> None:
        self.exchange = exchange
        self._views = views
        self.stream = FakeStreamForView()
        self.events_per_second = 123.0
        self.resync_count = 2
        self.messages: deque[str] = deque([f"{exchange}: stream resynced (snapshot of 3 symbol(s) applied)"])

    def views(self) -> list[Any]:
        return self._views

    def sample_rate(self) -> None:
        pass

    def state_rest_calls_after_start(self) -> int:
        return 0


def _view(exchange: str, symbol: str, hedge: bool = False) -> Any:
    def slot(idx: int, side: Literal["Buy", "Sell"]) -> PositionUpdate:
        return PositionUpdate(exchange=exchange, timestamp=1, symbol=symbol, position_idx=idx, side=side,
                              size=D("0.123"), entry_price=D("98765.4321"), mark_price=D("99999.99"),
                              unrealised_pnl=D("-1234.567812345"), cum_realised_pnl=D("1"))

    positions = (slot(1, "Buy"), slot(2, "Sell")) if hedge else (slot(0, "Sell"),)
    close = PnlChange(symbol, 0, D("-12.345678912"), D(0), D(2), D(1), 1)
    return GridView(
        exchange=exchange, symbol=symbol, paused=False, placing=True, mark_price=D("99999.999999"),
        positions=positions, open_tp_ids=tuple(str(10**20 + i) for i in range(50)), closes=1234,
        realised_pnl=D("-123.456798765"), recent_closes=(close,), wallet_balance=D("9637.3562253001"),
        available_balance=D("10000"), mm_rate=D("0.0018153"), levels=(), order_errors=0, netted=0,
        mismatches=(),
    )


def _render(runs: list[Any], options: Any) -> list[str]:
    display = _display.Display(runs, options, out=io.StringIO(), live=False)
    display.update(12.3)
    display._lines.extend(f"WARNING a long log line {i} " + "x" * 100 for i in range(_display.LOG_LINES))
    out = io.StringIO()
    Console(file=out, width=80, height=24, color_system=None, force_terminal=False).print(display.render())
    return out.getvalue().splitlines()


@pytest.mark.parametrize("hedge", [False, True])
def test_the_live_view_fits_80x24_with_three_symbols_on_both_exchanges(hedge: bool) -> None:
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    runs = [FakeRun(exchange, [_view(exchange, s, hedge) for s in symbols])
            for exchange in ("binance", "bybit")]
    options = _demo_run.DemoOptions(exchanges=("binance", "bybit"), symbols=symbols, seed=12345,
                                    faults=True, hedge=hedge)
    lines = _render(runs, options)
    assert len(lines) <= 24, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    assert "…" not in text.split("\nlog\n")[0]  # nothing truncated but the log lines
    assert text.count("WARNING a long log line") == _display.LOG_LINES
    assert text.count("bybit") >= 1 and text.count("SOLUSDT") == 2  # the Bybit half is not cut off
    assert "99999.99 " not in text  # BTC mark at its 0.1 tick: 100000.0
    assert "100000.0" in text and "9637.36" in text and "10000.00" in text  # balances to the cent
    assert "-123.4568" in text and "-12.3457" in text  # PnL to 0.0001
    assert "100000000000000000000" not in text  # TP ids are counted, not listed
    assert "50" in text


def test_numbers_are_quantized_for_display_only() -> None:
    assert _display.price("BTCUSDT", D("60000")) == "60000.0"
    assert _display.price("ETHUSDT", D("2990.4")) == "2990.40"
    assert _display.price("BTCUSDT", None) == "-"
    assert _display.qty("ETHUSDT", D("0.6")) == "0.60"
    assert _display.money(D("10000")) == "10000.00" and _display.money(D("9637.3562253001")) == "9637.36"
    assert _display.pnl(D("0")) == "+0.0000" and _display.pnl(D("-0.00001")) == "+0.0000"
    assert _display.pnl(D("-1.23456")) == "-1.2346"
    assert _display.rate(D("0.0018153")) == "0.18%" and _display.rate(None) == "-"


def test_log_records_go_into_the_live_view_not_to_the_terminal() -> None:
    root = logging.getLogger()
    terminal = io.StringIO()
    handler = logging.StreamHandler(terminal)
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        runs: list[Any] = [FakeRun("bybit", [_view("bybit", "BTCUSDT")])]
        options = _demo_run.DemoOptions(exchanges=("bybit",), symbols=("BTCUSDT",))
        display = _display.Display(runs, options, out=io.StringIO(), live=True)
        with display:
            logging.getLogger("gridbot.stream").warning("bybit private: possible gap in the stream")
            display.update(1.0)
            shown = "\n".join(str(line) for line in display._lines)
        logging.getLogger("gridbot.stream").warning("after the view")
    finally:
        root.handlers = saved
    assert "WARNING bybit private: possible gap in the stream" in shown
    assert "bybit: stream resynced" in shown
    assert terminal.getvalue() == "after the view\n"  # nothing reached the terminal while the view was live


