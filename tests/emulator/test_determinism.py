"""A seed is a seed: the same seed and the same inputs give the same engine history, and ``gridbot demo
--seed N --json`` (no faults: lockstep) prints the same summary run after run."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from gridbot.emulator.engine import Engine, EngineConfig, SymbolConfig

CONFIG = EngineConfig(symbols=(SymbolConfig("BTCUSDT", Decimal("60000"), volatility=0.002),
                               SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01"),
                                            volatility=0.002)), seed=3)


def _history(seed: int) -> tuple[Any, ...]:
    """Prices after every step and the fills of a fixed grid of resting orders, on a step clock."""
    steps = iter(range(10_000))
    engine = Engine(EngineConfig(symbols=CONFIG.symbols, seed=seed), lambda: 1_700_000_000_000 + next(steps))
    for offset in (-300, -150, 150, 300):
        side = "Buy" if offset < 0 else "Sell"
        engine.place_order(symbol="BTCUSDT", side=side, order_type="Limit", qty=Decimal("0.01"),
                           price=Decimal(60000 + offset))
    prices = []
    for _ in range(300):
        engine.step()
        prices.append(tuple(engine.prices(s).last for s in engine.symbols))
    return tuple(prices), engine.fills(), engine.ledger, engine.wallet()


def test_the_same_seed_and_inputs_give_the_same_engine_history() -> None:
    first, second = _history(3), _history(3)
    assert first == second
    assert first[1], "the walk should have crossed some of the orders"
    assert _history(4)[0] != first[0]


def _demo(seed: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "gridbot", "demo", "--seed", str(seed), "--duration", "4",
                           "--json"], capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


@pytest.mark.timeout(400)
def test_the_demo_summary_repeats_for_a_seed() -> None:
    runs = [_demo(3) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    for exchange in ("binance", "bybit"):
        assert runs[0][exchange]["settled"] is True and runs[0][exchange]["closes"] > 0


def test_a_lockstep_whose_stream_stops_catching_up_steps_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridbot.cli import _demo_run

    monkeypatch.setattr(_demo_run, "STEP_TIMEOUT", 0.05)
    run = _demo_run.ExchangeRun("bybit", _demo_run.DemoOptions(exchanges=("bybit",), symbols=("BTCUSDT",),
                                                               seed=1))
    engine = run.emulator.engine
    twin = Engine(EngineConfig(symbols=engine.config.symbols, seed=1), lambda: 0)
    for _ in range(5):  # never started: nothing is delivered, so the first half-step gives up waiting
        run.step()
        twin.step()
    assert engine.prices("BTCUSDT").last == twin.prices("BTCUSDT").last
    assert [m for m in run.messages if "did not catch up" in m] == [
        "bybit: the stream did not catch up with a price step within 0.05 s: stepping on without waiting"]
