"""Accuracy of the computed Binance account view over a demo run: stream vs the exchange's own figures.

Run: ``python benchmarks/account_accuracy.py [--duration 60] [--seed 1] [--symbols BTCUSDT,ETHUSDT]
[--mode one-way|hedge]``

The demo's grids trade on the loopback Binance emulator (random-walk prices, real python-binance) for
``--duration`` seconds.  Two records are kept:

- exchange side: at every change inside the emulator's engine (each price step, fill, position, wallet
  and leverage event) the figures its ``GET /fapi/v2/account`` serves at that moment --
  ``totalMaintMargin``, ``totalMarginBalance`` and their ratio -- keyed by the state they were computed
  from (every open slot's size, side, entry and mark, and the wallet balance);
- stream side: every ``AccountUpdate`` gridbot delivers, keyed by the state the stream had delivered
  at that moment (``stream.book``: positions valued at the merged mark, and the wallet).

Each update whose state the engine also went through is compared; the script prints how many were
compared, the largest differences, and fails (exit 1) if one exceeds the tolerance -- the engine rounds
each slot's margin to 8 decimals as Binance does, gridbot keeps them exact.  An update whose state the
engine never had at one instant is counted apart: the engine moves every symbol's price in one step, but
Binance sends each symbol's mark as its own message, so between two of them the stream holds one
symbol's new mark with the other's previous one (same positions, same wallet).  Any other unmatched
state fails the run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from decimal import Decimal
from typing import Any

from gridbot import ExchangeStream
from gridbot.cli._demo_run import (
    DEMO_KEY,
    DEMO_MARKETS,
    DEMO_SECRET,
    PRICE_INTERVAL,
    DemoOptions,
    _make_gateway,
)
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from gridbot.events import AccountUpdate
from gridbot.grid import GridConfig, GridStrategy

MM_TOLERANCE = Decimal("1E-7")
RATE_TOLERANCE = Decimal("1E-9")

Key = tuple[Any, ...]


def engine_key(engine: Any) -> Key:
    slots = tuple(sorted((p.symbol, p.position_idx, p.size, p.side, p.entry_price, p.mark_price)
                         for p in engine.positions() if p.size > 0))
    return slots, engine.wallet().wallet_balance


def stream_key(book: Any) -> Key | None:
    view = book.snapshot()
    wallet = view.wallet("USDT")
    if wallet is None or wallet.wallet_balance is None:
        return None
    slots = tuple(sorted((p.symbol, p.position_idx, p.size, p.side, p.entry_price, p.mark_price)
                         for p in view.positions if p.size > 0))
    return slots, wallet.wallet_balance


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # state -> (totalMaintMargin, totalMarginBalance)
        self.expected: dict[Key, tuple[Decimal, Decimal]] = {}
        self.delivered: list[tuple[Key | None, AccountUpdate]] = []

    def on_engine(self, engine: Any) -> None:
        wallet = engine.wallet()
        with self.lock:
            self.expected[engine_key(engine)] = (wallet.maintenance_margin, wallet.margin_balance)

    def on_account(self, account: AccountUpdate, book: Any) -> None:
        with self.lock:
            self.delivered.append((stream_key(book), account))


def make_emulator(options: DemoOptions) -> BinanceEmulator:
    """The demo's markets, prices on a seeded random walk every PRICE_INTERVAL seconds."""
    symbols = tuple(SymbolConfig(s, m.start_price, tick_size=m.tick_size, qty_step=m.qty_step,
                                 volatility=m.volatility)
                    for s, m in ((s, DEMO_MARKETS[s]) for s in options.symbols))
    config = EngineConfig(symbols=symbols, seed=options.seed or 1, hedge_mode=options.hedge)
    return BinanceEmulator(config, api_key=DEMO_KEY, api_secret=DEMO_SECRET, price_interval=PRICE_INTERVAL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--mode", choices=("one-way", "hedge"), default="one-way")
    args = parser.parse_args()

    options = DemoOptions(exchanges=("binance",), symbols=tuple(args.symbols.split(",")),
                          duration=args.duration, seed=args.seed, hedge=args.mode == "hedge")
    emulator = make_emulator(options)
    recorder = Recorder()
    engine = emulator.engine
    engine.add_listener(lambda _event: recorder.on_engine(engine))
    recorder.on_engine(engine)
    emulator.start()
    try:
        gateway = _make_gateway("binance", emulator.endpoints)
        stream = ExchangeStream("binance", api_key=DEMO_KEY, api_secret=DEMO_SECRET,
                                endpoints=emulator.endpoints)
        grids = []
        for symbol in options.symbols:
            market = DEMO_MARKETS[symbol]
            grid = GridStrategy(GridConfig(symbol=symbol, qty=market.order_qty, levels=options.levels,
                                           step_pct=options.step_pct, tick_size=market.tick_size,
                                           hedge=options.hedge),
                                gateway, exchange="binance", realised_baseline=Decimal(0))
            grid.attach(stream)
            grids.append(grid)
        # The account view is account-wide: one more subscription (a symbol's callbacks are replaced, so
        # the first grid's are passed again, with the recorder added to on_account).
        first = grids[0]

        def on_account(account: AccountUpdate) -> None:
            first.on_account(account)
            recorder.on_account(account, stream.book)

        stream.subscribe(first.config.symbol, on_position=first.on_position, on_wallet=first.on_wallet,
                         on_order=first.on_order, on_ticker=first.on_ticker, on_fill=first.on_fill,
                         on_account=on_account)
        with stream:
            time.sleep(args.duration)
            for grid in grids:
                grid.stop_placing()
                grid.cancel_entries()
            time.sleep(2.0)
        fills = len(engine.fills())
    finally:
        emulator.stop()
    print(f"fills during the run: {fills}")
    return report(recorder, args)


def report(recorder: Recorder, args: argparse.Namespace) -> int:
    worst_mm = worst_rate = worst_balance = Decimal(0)
    compared = unmatched = between_ticks = unknown = 0
    without_marks = {_without_marks(k) for k in recorder.expected}
    for key, account in recorder.delivered:
        if account.maintenance_margin is None or account.mm_rate is None or account.margin_balance is None:
            unknown += 1
            continue
        expected = recorder.expected.get(key) if key is not None else None
        if expected is None:
            if key is not None and _without_marks(key) in without_marks:
                between_ticks += 1
            else:
                unmatched += 1
            continue
        maintenance, balance = expected
        rate = maintenance / balance if balance > 0 else Decimal(0)
        compared += 1
        worst_mm = max(worst_mm, abs(account.maintenance_margin - maintenance))
        worst_balance = max(worst_balance, abs(account.margin_balance - balance))
        worst_rate = max(worst_rate, abs(account.mm_rate - rate))
    print(f"binance demo, {args.duration:g} s, symbols {args.symbols}, {args.mode} mode, seed {args.seed}")
    print(f"account updates delivered:              {len(recorder.delivered)}")
    print(f"compared with the exchange's figures:   {compared}")
    print(f"  marks of symbols from two price steps: {between_ticks}")
    print(f"  in any other state the engine never had: {unmatched}")
    print(f"  with a figure unknown (None):         {unknown}")
    print(f"largest |maintenance_margin - totalMaintMargin|:    {worst_mm}")
    print(f"largest |margin_balance - totalMarginBalance|:      {worst_balance}")
    print(f"largest |mm_rate - totalMaintMargin / totalMarginBalance|: {worst_rate}")
    ok = (compared > 0 and unmatched == 0 and worst_mm <= MM_TOLERANCE and worst_rate <= RATE_TOLERANCE
          and worst_balance == 0)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def _without_marks(key: Key) -> Key:
    slots, wallet = key
    return tuple(slot[:5] for slot in slots), wallet


if __name__ == "__main__":
    sys.exit(main())
