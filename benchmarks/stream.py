"""End-to-end throughput: the same loopback flood consumed by the raw SDK and by ExchangeStream.

Run: ``python benchmarks/stream.py [ticks] [trades]`` (defaults 5000 and 500).

One BybitEmulator (no random walk) serves both consumers, one after the other:

- tickers: ``ticks`` price changes (each a ``tickers.<SYM>`` frame); raw = pybit's ``ticker_stream``
  callback, gridbot = ``on_ticker`` plus the updates it conflated (latest wins, counted in stats);
- trades: ``trades`` market orders (each pushes order, execution, position and wallet frames); raw =
  pybit subscribed to the same four topics, counting its ``execution_stream`` rows; gridbot = ``on_fill``
  (after decode, dedupe and mark merge, with every other callback registered too).

A figure is events per second from the first price change or order to the last event seen.  The
emulator runs in the same process, so the server's own work is in every figure; the ratio says what
gridbot costs on top of the raw SDK (1.0: nothing measurable).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pybit import unified_trading

import gridbot
from gridbot.emulator import BybitEmulator

KEY, SECRET = "test-key", "test-secret"
TIMEOUT = 120.0


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, amount: int = 1) -> None:
        with self._lock:
            self.count += amount


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.001)


def flood_prices(emu: BybitEmulator, symbol: str, ticks: int) -> None:
    base = emu.engine.prices(symbol).last
    step = emu.engine.symbol_config(symbol).tick_size
    for i in range(ticks):
        emu.engine.set_price(symbol, base + step * (1 + i % 2))


def flood_trades(emu: BybitEmulator, symbol: str, trades: int) -> None:
    qty = emu.engine.symbol_config(symbol).qty_step
    for i in range(trades):
        side = "Buy" if i % 2 == 0 else "Sell"
        emu.engine.place_order(symbol=symbol, side=side, order_type="Market", qty=qty)


def timed(flood: Callable[[], None], done: Callable[[], bool], what: str) -> float:
    started = time.perf_counter()
    flood()
    wait_for(done, what)
    return time.perf_counter() - started


def raw_pybit(emu: BybitEmulator, symbol: str, ticks: int, trades: int) -> tuple[float, float]:
    unified_trading.PRIVATE_WSS = emu.endpoints.ws + "/v5/private"
    unified_trading.PUBLIC_WSS = emu.endpoints.ws + "/v5/public/{CHANNEL_TYPE}"
    options: dict[str, Any] = {"testnet": False, "retries": 3}
    public = unified_trading.WebSocket(channel_type="linear", **options)
    private = unified_trading.WebSocket(channel_type="private", api_key=KEY, api_secret=SECRET, **options)
    tickers, fills = Counter(), Counter()
    try:
        public.ticker_stream(symbol, lambda msg: tickers.add())
        wait_for(lambda: private.auth, "pybit auth")
        # the same four topics gridbot subscribes, so both consumers get the same frames
        private.execution_stream(lambda msg: fills.add(len(msg.get("data", ()))))
        private.position_stream(lambda msg: None)
        private.order_stream(lambda msg: None)
        private.wallet_stream(lambda msg: None)
        wait_for(lambda: tickers.count >= 1, "pybit ticker snapshot")
        topics = {"execution", "position", "order", "wallet"}
        wait_for(lambda: any(topics <= s for s in emu.subscriptions("private")), "pybit subscriptions")
        first = tickers.count
        tick_seconds = timed(lambda: flood_prices(emu, symbol, ticks),
                             lambda: tickers.count - first >= ticks, "pybit tickers")
        trade_seconds = timed(lambda: flood_trades(emu, symbol, trades),
                              lambda: fills.count >= trades, "pybit fills")
    finally:
        public.exit()
        private.exit()
    return ticks / tick_seconds, trades / trade_seconds


def through_gridbot(emu: BybitEmulator, symbol: str, ticks: int, trades: int) -> tuple[float, float, int]:
    tickers, fills = Counter(), Counter()
    stream = gridbot.ExchangeStream("bybit", api_key=KEY, api_secret=SECRET, endpoints=emu.endpoints)
    stream.subscribe(symbol, on_ticker=lambda t: tickers.add(), on_fill=lambda f: fills.add(),
                     on_position=lambda p: None, on_order=lambda o: None, on_wallet=lambda w: None)
    with stream:
        wait_for(lambda: tickers.count >= 1, "gridbot ticker snapshot")
        def seen() -> int:  # delivered, or replaced by a newer ticker before delivery
            return tickers.count + stream.stats.conflated

        first = seen()
        tick_seconds = timed(lambda: flood_prices(emu, symbol, ticks),
                             lambda: seen() - first >= ticks, "gridbot tickers")
        trade_seconds = timed(lambda: flood_trades(emu, symbol, trades),
                              lambda: fills.count >= trades, "gridbot fills")
        conflated = stream.stats.conflated
    return ticks / tick_seconds, trades / trade_seconds, conflated


def main() -> None:
    ticks = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    trades = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    with BybitEmulator(api_key=KEY, api_secret=SECRET, price_interval=0) as emu:
        symbol = emu.engine.symbols[0]
        emu.engine.set_hedge_mode(False)
        raw_ticks, raw_trades = raw_pybit(emu, symbol, ticks, trades)
        ours_ticks, ours_trades, conflated = through_gridbot(emu, symbol, ticks, trades)
    print(f"Bybit over loopback, {ticks} price changes and {trades} market orders, one process")
    print(f"{'flow':<26} {'raw pybit/s':>12} {'gridbot/s':>10} {'ratio':>6}")
    rows = (("tickers (events/s)", raw_ticks, ours_ticks), ("fills (events/s)", raw_trades, ours_trades))
    for flow, raw, ours in rows:
        print(f"{flow:<26} {raw:>12,.0f} {ours:>10,.0f} {ours / raw:>6.2f}")
    print(f"gridbot conflated {conflated} of {ticks} tickers (latest wins; positions, orders, fills never)")


if __name__ == "__main__":
    main()
