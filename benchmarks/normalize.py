"""Normalizer throughput on one core: messages per second per event kind, both exchanges.

Run: ``python benchmarks/normalize.py [seconds-per-case]`` (default 1.0).

Baseline in the same run: ``json.loads`` of the same frame, which is the work each SDK already does
for every frame before gridbot sees it.  ``x json`` is how many times longer normalizing takes than
that decode, so the figure says what gridbot adds per frame on top of the raw SDK.
Goal (issue 2): at least 150,000 msgs/s for ticker and position messages.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import _binance_messages as bn
import _bybit_messages as by

from gridbot.normalize import binance, bybit

GOAL = 150_000


def rate(handle: Callable[[Any], object], messages: Sequence[Any], seconds: float) -> float:
    """Messages per second, cycling through ``messages`` for about ``seconds`` after a warm-up."""
    count = len(messages)
    for i in range(1000):
        handle(messages[i % count])
    handled, batch = 0, 5_000
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for i in range(batch):
            handle(messages[i % count])
        handled += batch
        elapsed = time.perf_counter() - start
    return handled / elapsed


def cases() -> list[tuple[str, str, Callable[[Any], object], list[Any], bool]]:
    """(exchange, kind, handler, messages, has the 150k goal)."""
    merger = bybit.TickerMerger()
    return [
        ("binance", "position (ACCOUNT_UPDATE)", binance.parse_user_message,
         [bn.ACCOUNT_UPDATE_POSITION_ONLY], True),
        ("binance", "position + balance", binance.parse_user_message, [bn.ACCOUNT_UPDATE], False),
        ("binance", "order + fill", binance.parse_user_message, [bn.ORDER_TRADE_UPDATE], False),
        ("binance", "algo order", binance.parse_user_message, [bn.ALGO_UPDATE], False),
        ("binance", "ticker (markPrice)", binance.parse_market_message, [bn.MARK_PRICE], True),
        ("bybit", "position", bybit.parse_private_message, [by.POSITION], True),
        ("bybit", "order", bybit.parse_private_message, [by.ORDER], False),
        ("bybit", "fill (execution)", bybit.parse_private_message, [by.EXECUTION], False),
        ("bybit", "wallet", bybit.parse_private_message, [by.WALLET], False),
        ("bybit", "ticker snapshot", merger.apply,
         [by.ticker_snapshot("66666.60"), by.ticker_snapshot("66667.10")], True),
        ("bybit", "ticker delta", merger.apply,
         [by.ticker_delta(markPrice="66666.6"), by.ticker_delta(markPrice="66667.1")], True),
    ]


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    print(f"gridbot normalizers, one core, {seconds:g} s per case; "
          f"goal {GOAL:,} msgs/s for ticker and position")
    print(f"{'exchange':<8} {'kind':<26} {'msgs/s':>10} {'json.loads/s':>13} {'x json':>7}  goal")
    missed = 0
    for exchange, kind, handle, messages, has_goal in cases():
        frames = [json.dumps(m) for m in messages]
        ours = rate(handle, messages, seconds)
        sdk = rate(json.loads, frames, seconds)
        verdict = ("ok" if ours >= GOAL else "MISSED") if has_goal else "-"
        missed += verdict == "MISSED"
        print(f"{exchange:<8} {kind:<26} {ours:>10,.0f} {sdk:>13,.0f} {sdk / ours:>7.2f}  {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
