"""``gridbot demo``: the grid strategy on loopback exchanges, offline.

Starts the Binance and/or Bybit emulator on 127.0.0.1 with fast prices, points an unmodified SDK-backed
:class:`~gridbot.ExchangeStream` at each, runs a :class:`~gridbot.grid.GridStrategy` per symbol, and at
the end proves two things against the emulator's own books: the realised PnL summed from the stream's
cumulative-PnL deltas equals the ledger's, and nobody polled a state endpoint.

Output: a live view on a terminal (log lines shown inside it), plain progress lines otherwise, then a
summary table.  With ``--json`` stdout carries exactly one JSON document and everything else goes to
stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TextIO

from gridbot.cli._base import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Command,
    UsageError,
    bounded_int,
    decimal_in,
    err,
    positive_float,
    say,
)
from gridbot.cli._demo_run import (
    CATCH_UP_TIMEOUT,
    DEMO_MARKETS,
    DRAIN_TIMEOUT,
    PRICE_INTERVAL,
    DemoOptions,
    ExchangeRun,
    is_state_call,
    plain,
)
from gridbot.cli._display import Display, summary_table
from gridbot.errors import GridbotError
from gridbot.events import Exchange
from gridbot.journal import Journal

__all__ = ["COMMAND", "DemoOptions", "demo", "is_state_call", "plain"]

logger = logging.getLogger(__name__)

MAX_LEVELS = 50


def _symbols(text: str) -> list[str]:
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not 1 <= len(symbols) <= 3 or len(set(symbols)) != len(symbols):
        raise argparse.ArgumentTypeError("give one to three distinct symbols, comma-separated")
    unknown = [s for s in symbols if s not in DEMO_MARKETS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"the demo knows {', '.join(DEMO_MARKETS)}; not {', '.join(unknown)}")
    return symbols


_symbols.__name__ = "symbol list"


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exchange", choices=("binance", "bybit", "both"), default="both",
                        help="which emulated exchange(s) to trade on (default both, side by side)")
    parser.add_argument("--symbols", type=_symbols, default=["BTCUSDT", "ETHUSDT"], metavar="LIST",
                        help="one to three of " + ", ".join(DEMO_MARKETS) + ", comma-separated "
                             "(default BTCUSDT,ETHUSDT)")
    parser.add_argument("--duration", type=positive_float, default=20.0, metavar="SECONDS",
                        help="seconds of trading before winding down (default 20)")
    parser.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=None,
                        help="seed of the emulated price walk, for a repeatable run")
    parser.add_argument("--faults", action="store_true",
                        help="drop the private and public sockets and expire the Binance listenKey "
                             "mid-run, one at a time, to show the reconnect and resync")
    parser.add_argument("--mode", choices=("one-way", "hedge"), default="one-way",
                        help="position mode: one-way (default) or hedge (buy levels long, sell levels short)")
    parser.add_argument("--levels", type=bounded_int(1, MAX_LEVELS), default=3, metavar="N",
                        help=f"grid levels on each side of the start price, 1 to {MAX_LEVELS} (default 3)")
    parser.add_argument("--step", type=decimal_in(Decimal(0), Decimal(10)), default=Decimal("0.1"),
                        metavar="PERCENT",
                        help="distance between neighbouring levels, in percent of the start price; "
                             "a take-profit sits one step back towards the start (default 0.1)")
    parser.add_argument("--journal", metavar="PATH",
                        help="journal the streams to a new SQLite file and restart them on it midway (the "
                             "account keeps trading while they are down); the summary shows what the "
                             "restart brought back")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON document on stdout (progress and the table "
                             "go to stderr)")


def _run(args: argparse.Namespace) -> int:
    missing = [name for name in ("rich", "aiohttp") if importlib.util.find_spec(name) is None]
    if missing:  # the [demo] extra: a production install (pip install gridbot) does not pull them
        err(f"gridbot demo: needs {' and '.join(missing)}, from the demo extra: pip install 'gridbot[demo]' "
            "(in a checkout: pip install -e '.[demo]')")
        return EXIT_FAILED
    if args.step * args.levels >= 100:
        raise UsageError(f"--levels {args.levels} x --step {args.step} % reaches 100 %: the lowest buy "
                         "level would be at or below zero")
    if args.journal is not None and os.path.exists(args.journal):
        raise UsageError(f"--journal {args.journal} exists: the demo's emulated exchanges start fresh, so "
                         "its journal must too (remove it or choose another path)")
    return demo(DemoOptions(
        exchanges=("binance", "bybit") if args.exchange == "both" else (args.exchange,),
        symbols=tuple(args.symbols), duration=args.duration, seed=args.seed, faults=args.faults,
        hedge=args.mode == "hedge", levels=args.levels, step_pct=args.step, as_json=args.json,
        journal=args.journal,
    ))


COMMAND = Command(
    name="demo",
    help="run the grid strategy on emulated exchanges (offline, no keys)",
    description=(
        "Run a small grid strategy on loopback Binance and Bybit emulators, through the real SDKs and\n"
        "gridbot.ExchangeStream, then check the stream's books against the emulator's.\n\n"
        "The grid: --levels buy orders below the start price and as many sell orders above, --step\n"
        "percent apart; each filled entry gets a reduce-only take-profit (TP) one step back towards the\n"
        "start; when the TP fills the level is armed again.  State comes only from the stream."),
    epilog=(
        "summary rows:\n"
        "  closes                      take-profits that filled (round trips)\n"
        "  realised pnl                sum of the stream's cumulative-realised-PnL changes (Binance: before\n"
        "                              fees; Bybit: net of opening and closing fees)\n"
        "  ledger realised pnl         the same figure from the emulator's own ledger: must be equal\n"
        "  open tp ids                 take-profits the stream reports open at the end\n"
        "  open tp orders on exchange  closing orders the emulator holds open: must equal the row above\n"
        "  state rest calls after start\n"
        "                              state reads nobody but the stream's resyncs made: must be 0\n"
        "  resyncs, reconnects         REST re-seeds after an outage; sockets reconnected\n"
        "  events                      events the stream delivered\n"
        "  order errors                orders the exchange refused\n"
        "  netted take profits         one-way TPs not needed because netting had closed the exposure\n"
        "  fill pnl mismatches         slots whose fills and cumulative PnL disagree: should be none\n"
        "                              (fills made while disconnected are backfilled at the resync)\n"
        "  journal restored fills      with --journal: fills made while the stream was down, backfilled\n"
        "                              by the restart from the journal's cursor\n"
        "  journal pnl while down      the ledger's PnL realised meanwhile (it reached the grids: see\n"
        "                              realised pnl)\n"
        "  journal realised pnl        the journal's own realised PnL: must equal the ledger\n"
        "  (--json adds margin_balance, available_balance, mm_rate: the account view at the end, as the\n"
        "  live view shows it; Bybit sends it, gridbot computes Binance's; null where undefined)\n\n"
        "exit codes: 0 the books agree, 1 failed to start or the books disagree, 2 usage, 130 Ctrl-C"),
    configure=_configure,
    run=_run,
)


def demo(options: DemoOptions) -> int:
    """Run the demo; 0 when it ran and its books agree, 1 when it failed to start or they disagree."""
    try:
        journal = Journal(options.journal) if options.journal is not None else None
    except GridbotError as exc:
        err(f"gridbot demo: {exc}")
        return EXIT_FAILED
    runs = [ExchangeRun(exchange, options, journal) for exchange in options.exchanges]
    try:
        for run in runs:
            try:
                run.start()
            except (GridbotError, OSError, RuntimeError) as exc:
                err(f"gridbot demo: the {run.exchange} demo failed to start: {exc}")
                return EXIT_FAILED
        results = _trade(runs, options)
    except KeyboardInterrupt:
        err("gridbot demo: interrupted")
        return EXIT_INTERRUPTED
    finally:
        _stop_all(runs)
        if journal is not None:
            journal.close()
    return _report(results, options)


def _stop_all(runs: list[ExchangeRun], tick: Callable[[], None] | None = None) -> None:
    """Stop the runs side by side: each stream's stop has its own bounded budget.  ``tick`` runs
    while waiting (the display).  Idempotent: a run already stopped is left alone."""

    def stop(run: ExchangeRun) -> None:
        try:
            run.stop()
        except Exception:
            logger.exception("gridbot demo: stopping the %s demo failed", run.exchange)

    threads = [threading.Thread(target=stop, args=(run,), name=f"gridbot-demo-stop-{run.exchange}")
               for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.1)
            if tick is not None:
                tick()


def _progress_stream(options: DemoOptions) -> TextIO:
    """Where progress goes: stderr when stdout is reserved for the JSON document."""
    return sys.stderr if options.as_json else sys.stdout


def _trade(runs: list[ExchangeRun], options: DemoOptions) -> dict[Exchange, dict[str, Any]]:
    out = _progress_stream(options)
    display = Display(runs, options, out=out, live=out.isatty())
    if options.faults:
        for run in runs:
            run.schedule_faults(options.duration)
    start = time.monotonic()

    def tick() -> None:
        display.update(time.monotonic() - start)

    with display:
        if not options.lockstep:
            while time.monotonic() - start < options.duration:
                for run in runs:
                    run.inject_due_faults(time.monotonic() - start)
                    if run.restart_due(time.monotonic() - start):
                        run.restart()
                tick()
                time.sleep(0.1)
        else:  # lockstep: --duration of emulated prices, one step per PRICE_INTERVAL, whatever the wall time
            last_tick = start
            for run in runs:
                run.await_snapshots()
            for _ in range(round(options.duration / PRICE_INTERVAL)):
                for run in runs:
                    run.step()
                if time.monotonic() - last_tick >= 0.1:
                    tick()
                    last_tick = time.monotonic()
        # Still trading: wait for a moment when the stream is live and caught up with the books.
        # After an outage a Binance slot's PnL arrives only with its next ACCOUNT_UPDATE, which
        # only further trading brings.
        display.phase = "catching up"
        for run in runs:
            run.settle(CATCH_UP_TIMEOUT, tick)
        display.phase = "winding down"
        for run in runs:
            run.wind_down()
        settled = {run.exchange: run.settle(DRAIN_TIMEOUT, tick) for run in runs}
        results = {run.exchange: run.result(settled[run.exchange]) for run in runs}
        # Stopped inside the view, so what the shutdown logs (an SDK slow to close under load) is
        # shown in its log lines instead of between the last frame and the summary.
        display.phase = "stopping"
        _stop_all(runs, tick)
        display.phase = "done"
        tick()
    return results


def _report(results: dict[Exchange, dict[str, Any]], options: DemoOptions) -> int:
    from rich.console import Console

    console = Console(file=_progress_stream(options), highlight=False)
    console.print(summary_table(results))
    failed = False
    for exchange, result in results.items():
        if Decimal(result["realised_pnl"]) != Decimal(result["ledger_realised_pnl"]):
            failed = True
            err(f"gridbot demo: {exchange}: realised PnL from the stream {result['realised_pnl']} != "
                f"ledger {result['ledger_realised_pnl']}")
        if result["state_rest_calls_after_start"] != 0:
            failed = True
            err(f"gridbot demo: {exchange}: {result['state_rest_calls_after_start']} state REST calls "
                "after start that the stream did not make")
        if "journal_realised_pnl" in result and (
                Decimal(result["journal_realised_pnl"]) != Decimal(result["ledger_realised_pnl"])):
            failed = True
            err(f"gridbot demo: {exchange}: the journal's realised PnL {result['journal_realised_pnl']} != "
                f"ledger {result['ledger_realised_pnl']}")
        if result["closes"] == 0:
            err(f"gridbot demo: {exchange}: no take-profit closed in {options.duration:g} s")
    if options.as_json:
        say(json.dumps(results, sort_keys=True))
    return EXIT_FAILED if failed else EXIT_OK

