"""What a journal costs the stream: events/s delivered with and without ``journal=``, A/B alternated.

Run: ``python benchmarks/journal.py [trades] [rounds]`` (defaults 1500 and 5).

The load generator is its own process: a BybitEmulator (no random walk) that, on command, places
``trades`` market orders as fast as it can (each pushes order, execution, position and wallet frames:
about five delivered events).  This process runs one ExchangeStream per round and mode, alternating
"no journal" and "journal" (a fresh SQLite file, synchronous=NORMAL), and measures:

- delivered/s: events delivered to the callbacks, from the first order to the last fill delivered;
- committed/s (journal only): the same events, until ``journal.flush()`` says they are committed.

It prints each round and the median and range per mode; the ratio of the medians is the cost.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import gridbot
from gridbot.emulator import BybitEmulator

KEY, SECRET = "test-key", "test-secret"
SYMBOL = "BTCUSDT"
TIMEOUT = 180.0


def load_generator(conn: Connection) -> None:
    """The exchange, in its own process: reports its endpoints, then floods orders on command."""
    with BybitEmulator(api_key=KEY, api_secret=SECRET, price_interval=0) as emu:
        emu.engine.set_hedge_mode(False)
        conn.send((emu.endpoints.rest, emu.endpoints.ws))
        qty = emu.engine.symbol_config(SYMBOL).qty_step
        while True:
            command = conn.recv()
            if command is None:
                return
            for i in range(int(command)):
                emu.engine.place_order(symbol=SYMBOL, side="Buy" if i % 2 == 0 else "Sell",
                                       order_type="Market", qty=qty)
            conn.send("placed")


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.001)


def one_round(conn: Connection, endpoints: gridbot.Endpoints, trades: int, journal_dir: Path | None
              ) -> tuple[float, float | None]:
    fills = 0
    lock = threading.Lock()

    def on_fill(_: gridbot.FillUpdate) -> None:
        nonlocal fills
        with lock:
            fills += 1

    journal = gridbot.Journal(journal_dir / "bench.sqlite") if journal_dir is not None else None
    stream = gridbot.ExchangeStream("bybit", api_key=KEY, api_secret=SECRET, endpoints=endpoints,
                                    journal=journal)
    stream.subscribe(SYMBOL, on_fill=on_fill, on_position=lambda p: None, on_order=lambda o: None,
                     on_wallet=lambda w: None, on_account=lambda a: None)
    try:
        stream.start()
        events_before = stream.stats.events
        started = time.perf_counter()
        conn.send(trades)
        wait_for(lambda: fills >= trades, "the fills")
        delivered_s = time.perf_counter() - started
        events = stream.stats.events - events_before
        committed_s = None
        if journal is not None:
            journal.flush(TIMEOUT)
            committed_s = time.perf_counter() - started
        assert conn.recv() == "placed"
    finally:
        stream.stop()
        if journal is not None:
            journal.close()
    return events / delivered_s, None if committed_s is None else events / committed_s


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<24} median {statistics.median(values):>8,.0f}/s   "
            f"range {min(values):>8,.0f} .. {max(values):>8,.0f}")


def main() -> None:
    trades = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    parent, child = multiprocessing.Pipe()
    generator = multiprocessing.Process(target=load_generator, args=(child,), daemon=True)
    generator.start()
    rest, ws = parent.recv()
    endpoints = gridbot.Endpoints(rest=rest, ws=ws)
    plain: list[float] = []
    journaled: list[float] = []
    committed: list[float] = []
    print(f"Bybit over loopback (exchange in its own process), {trades} market orders per round")
    try:
        for n in range(rounds):
            order = (False, True) if n % 2 == 0 else (True, False)  # alternate which mode goes first
            for with_journal in order:
                with tempfile.TemporaryDirectory() as tmp:
                    directory = Path(tmp) if with_journal else None
                    rate, commit_rate = one_round(parent, endpoints, trades, directory)
                if with_journal:
                    journaled.append(rate)
                    committed.append(commit_rate or 0.0)
                    print(f"round {n + 1}: journal    {rate:>8,.0f} delivered/s  "
                          f"{commit_rate:>8,.0f} committed/s")
                else:
                    plain.append(rate)
                    print(f"round {n + 1}: no journal {rate:>8,.0f} delivered/s")
    finally:
        parent.send(None)
        generator.join(10)
    print(summary("no journal, delivered", plain))
    print(summary("journal, delivered", journaled))
    print(summary("journal, committed", committed))
    ratio = statistics.median(journaled) / statistics.median(plain)
    print(f"ratio journal/no journal (medians, delivered): {ratio:.2f}")
    print("fsync policy: synchronous=NORMAL in WAL mode (a commit survives any process crash; see README)")


if __name__ == "__main__":
    main()
