"""A restart is a long disconnect: the consumer process is SIGKILLed at random moments while the
account trades, restarted on the same journal, and in the end the journal holds every ledger fill
exactly once and its realised PnL equals the ledger's (Binance: gross, as ``cr``; Bybit: net of fees,
as ``cumRealisedPnl``).  Callbacks saw every fill at least once, and never twice within one process.

Real SDKs, a real SQLite file, a real subprocess killed with SIGKILL.  GRIDBOT_CRASH_ROUNDS sets the
number of kills per exchange (default 4, kept short for CI).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.bybit._wire import _IdBook
from gridbot.emulator.engine import Engine, EngineError
from gridbot.journal import Journal
from tests.e2e.helpers import engine_config, wait_until
from tests.journal.consumer import KEY, SECRET

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "BTCUSDT"
ROUNDS = int(os.environ.get("GRIDBOT_CRASH_ROUNDS", "4"))

Emulator = BinanceEmulator | BybitEmulator


class Trader:
    """Market orders of random size and side at a randomly walking price, from a background thread."""

    def __init__(self, engine: Engine, rng: random.Random) -> None:
        self._engine = engine
        self._rng = rng
        self._price = Decimal("60000")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crash-test-trader", daemon=True)
        self.errors: list[str] = []

    def trade(self) -> None:
        step = Decimal(self._rng.randint(-120, 120)) / 10
        self._price = max(Decimal("50000"), self._price + step)
        self._engine.set_price(SYMBOL, self._price)
        qty = Decimal(self._rng.randint(1, 5)) / 1000
        try:
            self._engine.place_order(symbol=SYMBOL, side=self._rng.choice(("Buy", "Sell")),
                                     order_type="Market", qty=qty)
        except EngineError as exc:
            self.errors.append(str(exc))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(0.02, 0.12)):
            self.trade()


class Consumer:
    """One run of tests/journal/consumer.py."""

    def __init__(self, exchange: str, emulator: Emulator, journal: Path, log: Path) -> None:
        endpoints = emulator.endpoints
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.journal.consumer", exchange, endpoints.rest, endpoints.ws,
             str(journal), str(log), SYMBOL],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.live = threading.Event()
        self._watcher = threading.Thread(target=self._watch_stdout, daemon=True)
        self._watcher.start()

    def _watch_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "live":
                self.live.set()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._watcher.join(10)  # stdout ends with the process
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, stderr
        return stderr

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").split("\n")
        return [json.loads(line) for line in lines[:-1]]  # a SIGKILL may leave half a last line


@pytest.fixture(params=["binance", "bybit"])
def exchange(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator(exchange: str) -> Iterator[Emulator]:
    kind = BinanceEmulator if exchange == "binance" else BybitEmulator
    with kind(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0) as emu:
        yield emu


def wire_trade_id(exchange: str, trade_id: int) -> str:
    """The id the exchange's wire carries for an engine trade (Bybit: a UUID-shaped execId)."""
    return str(trade_id) if exchange == "binance" else _IdBook.exec_id(trade_id)


def expected_pnl(exchange: str, engine: Engine) -> Decimal:
    gross = engine.realised_gross(SYMBOL)
    return gross if exchange == "binance" else gross - engine.fees_paid(SYMBOL)


def test_sigkill_loop_keeps_every_fill_once_and_pnl_exact(exchange: str, emulator: Emulator,
                                                          tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    journal_path = tmp_path / "journal.sqlite"
    engine = emulator.engine
    trader = Trader(engine, rng)
    runs: list[Consumer] = []

    def run() -> Consumer:
        consumer = Consumer(exchange, emulator, journal_path, tmp_path / f"run{len(runs)}.log")
        runs.append(consumer)
        return consumer

    first = run()
    assert first.live.wait(60), "the first consumer never went live"

    def journal_began() -> bool:
        # The journal begins with its first committed baseline: a Bybit slot's cumRealisedPnl from
        # the seed; Binance's REST has none (the seed's wallet is the first commit there).
        with Journal(journal_path, readonly=True) as journal:
            return bool(journal.positions() if exchange == "bybit" else journal.wallets())

    wait_until(journal_began, what="the first consumer's seed in the journal")
    trader.start()
    try:
        for _ in range(ROUNDS):
            consumer = runs[-1]
            consumer.live.wait(60)
            time.sleep(rng.uniform(0.0, 1.5))  # anywhere: seeding, restoring, delivering, committing
            consumer.kill()
            for _ in range(rng.randint(1, 3)):  # and trade while nobody listens
                trader.trade()
            run()
        final = runs[-1]
        assert final.live.wait(60), f"the last consumer never went live (seed {seed})"
        time.sleep(1.0)  # trade live for a moment: Binance reports a slot's cr with its next update
    finally:
        trader.stop()
    trader.trade()  # one last update after the trader stopped, so every slot's cr is current
    ledger_ids = {wire_trade_id(exchange, entry.trade_id) for entry in engine.ledger}
    want_pnl = expected_pnl(exchange, engine)

    def caught_up() -> bool:
        with Journal(journal_path, readonly=True) as journal:
            ids = [f.trade_id for f in journal.fills(SYMBOL)]
            return set(ids) == ledger_ids and journal.realised_pnl() == want_pnl

    try:
        wait_until(caught_up, timeout=45, what=f"the journal to hold the ledger (seed {seed})")
    except AssertionError:
        with Journal(journal_path, readonly=True) as journal:
            ids = {f.trade_id for f in journal.fills(SYMBOL)}
            pytest.fail(f"seed {seed}: missing fills {sorted(ledger_ids - ids)}, "
                        f"extra {sorted(ids - ledger_ids)}; "
                        f"journal pnl {journal.realised_pnl()} != ledger {want_pnl}; "
                        f"positions {journal.positions()}; stderr {final.stop()[-3000:]}")
    finally:
        stderr = final.stop() if final.process.returncode is None else ""
    with Journal(journal_path, readonly=True) as journal:
        journaled = [f.trade_id for f in journal.fills(SYMBOL)]
        assert len(journaled) == len(set(journaled)) == len(ledger_ids), f"seed {seed}"
        assert journal.realised_pnl() == want_pnl, f"seed {seed}"
    seen: set[str] = set()
    for consumer in runs:
        fills = [e["trade_id"] for e in consumer.events() if e["kind"] == "fill"]
        assert len(fills) == len(set(fills)), f"a fill delivered twice within one process (seed {seed})"
        seen.update(fills)
    assert seen >= ledger_ids, f"fills never delivered to a callback: {ledger_ids - seen} (seed {seed})"
    restored = [e for c in runs[1:] for e in c.events() if e["restored"]]
    assert any(e["kind"] == "position" for e in restored), "no restart delivered the journal's state"
    assert "Traceback" not in stderr, stderr
