"""The ``gridbot`` command: ``gridbot demo`` (the grid on loopback exchanges) and ``gridbot watch``.

``demo`` starts the Binance and/or Bybit emulator on 127.0.0.1 with fast prices, points an unmodified
SDK-backed :class:`~gridbot.ExchangeStream` at each, runs a :class:`~gridbot.grid.GridStrategy` per
symbol, and at the end proves two things against the emulator's own books: the realised PnL summed
from the stream's cumulative-PnL deltas equals the ledger's, and nobody polled a state endpoint.

``watch`` prints the normalized events of a real account; keys come only from the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol

from gridbot import __version__
from gridbot._gateways import BinanceGateway, BybitGateway, OrderGateway
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, GridbotError
from gridbot.events import Event, PositionUpdate, StatusUpdate
from gridbot.grid import GridConfig, GridStrategy, GridView, fan_out
from gridbot.stream import ExchangeStream

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

Exchange = Literal["binance", "bybit"]
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
KEY_ENV, SECRET_ENV = "GRIDBOT_API_KEY", "GRIDBOT_API_SECRET"
DEMO_KEY, DEMO_SECRET = "test-key", "test-secret"


# ---------------------------------------------------------------------------------------------- parsing


def _symbols(text: str) -> list[str]:
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    if not 1 <= len(symbols) <= 3 or len(set(symbols)) != len(symbols):
        raise argparse.ArgumentTypeError("give one to three distinct symbols, comma-separated")
    unknown = [s for s in symbols if s not in DEMO_MARKETS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"the demo knows {', '.join(DEMO_MARKETS)}; not {', '.join(unknown)}")
    return symbols


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridbot", description="Live futures account state for grid strategies: demo and watch.")
    parser.add_argument("--version", action="version", version=f"gridbot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log gridbot's INFO messages to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the grid strategy on emulated exchanges (offline)")
    demo.add_argument("--exchange", choices=("binance", "bybit", "both"), default="both")
    demo.add_argument("--symbols", type=_symbols, default=["BTCUSDT", "ETHUSDT"],
                      help="one to three of " + ", ".join(DEMO_MARKETS) + " (default BTCUSDT,ETHUSDT)")
    demo.add_argument("--duration", type=_positive, default=20.0, help="seconds of trading (default 20)")
    demo.add_argument("--seed", type=int, default=None, help="make the emulated prices deterministic")
    demo.add_argument("--faults", action="store_true",
                      help="drop the sockets and expire the Binance listenKey mid-run, to show the resync")
    demo.add_argument("--mode", choices=("one-way", "hedge"), default="one-way",
                      help="position mode: one-way (default) or hedge (buy levels long, sell levels short)")
    demo.add_argument("--levels", type=int, default=3, help="grid levels on each side (default 3)")
    demo.add_argument("--step", type=Decimal, default=Decimal("0.1"),
                      help="distance between levels in percent (default 0.1)")
    demo.add_argument("--json", action="store_true", help="print the result as JSON on the last line")

    watch = commands.add_parser(
        "watch", help="print the live events of a real account",
        description=f"Keys come from the environment ({KEY_ENV}, {SECRET_ENV}), never from arguments.")
    watch.add_argument("--exchange", choices=("binance", "bybit"), required=True)
    watch.add_argument("--symbol", required=True)
    watch.add_argument("--testnet", action="store_true", help="the exchange's testnet")
    watch.add_argument("--demo", action="store_true", help="demo trading (Bybit; Binance's demo hosts)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    if args.command == "watch":
        return watch(args.exchange, args.symbol, testnet=args.testnet, demo=args.demo)
    return demo(DemoOptions(
        exchanges=("binance", "bybit") if args.exchange == "both" else (args.exchange,),
        symbols=tuple(args.symbols), duration=args.duration, seed=args.seed, faults=args.faults,
        hedge=args.mode == "hedge", levels=args.levels, step_pct=args.step, as_json=args.json,
    ))


def _configure_logging(verbose: bool) -> None:
    """The application's one logging setup: warnings (or INFO with -v) to stderr, stdout stays clean."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose:
        logging.getLogger("gridbot").setLevel(logging.INFO)
    else:
        # The SDKs' socket libraries log every lost socket at ERROR; the adapters already report
        # (and handle) each one as a gridbot warning.
        for name in ("websocket", "binance.ws"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


# ------------------------------------------------------------------------------------------------ watch


def watch(exchange: Exchange, symbol: str, *, testnet: bool = False, demo: bool = False,
          out: Callable[[str], None] | None = None) -> int:
    """Print normalized events until Ctrl-C.  2: keys missing; 3: keys rejected; 1: cannot connect."""
    say = out or _print
    api_key, api_secret = os.environ.get(KEY_ENV, ""), os.environ.get(SECRET_ENV, "")
    if not api_key or not api_secret:
        _err(f"gridbot watch: set {KEY_ENV} and {SECRET_ENV} in the environment "
             "(keys are never accepted as command-line arguments)")
        return EXIT_USAGE

    def show(event: Event) -> None:
        say(format_event(event))

    stream = ExchangeStream(exchange, api_key=api_key, api_secret=api_secret, testnet=testnet, demo=demo,
                            on_status=show)
    stream.subscribe(symbol, on_position=show, on_wallet=show, on_order=show, on_ticker=show, on_fill=show)
    try:
        stream.start(timeout=30.0)
    except AuthenticationError as exc:
        _err(f"gridbot watch: {exchange} rejected the API key: {exc}")
        return EXIT_REJECTED
    except GridbotError as exc:
        _err(f"gridbot watch: could not connect to {exchange}: {exc}")
        return EXIT_FAILED
    try:
        _wait_for_interrupt()
    except KeyboardInterrupt:
        _err("gridbot watch: stopping")
    finally:
        stream.stop()
    return EXIT_OK


def _wait_for_interrupt() -> None:
    """Block the main thread until Ctrl-C (short waits, so the signal is handled promptly)."""
    idle = threading.Event()
    while not idle.wait(0.5):
        pass


def format_event(event: Event) -> str:
    """One line per event: its type and fields (Decimals as plain numbers; ``raw`` left out)."""
    parts = [type(event).__name__, event.exchange]
    for field in dataclasses.fields(event):
        if field.name in ("exchange", "raw"):
            continue
        value = getattr(event, field.name)
        if value is None or value == "" or (field.name == "is_snapshot" and not value):
            continue
        parts.append(f"{field.name}={value}")
    return " ".join(parts)


def _print(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- demo


@dataclass(frozen=True)
class Market:
    """An emulated market: start price, tick, quantity per grid order, random-walk volatility per step."""

    start_price: Decimal
    tick_size: Decimal
    qty_step: Decimal
    order_qty: Decimal
    volatility: float


DEMO_MARKETS: dict[str, Market] = {
    "BTCUSDT": Market(Decimal("60000"), Decimal("0.1"), Decimal("0.001"), Decimal("0.01"), 0.0006),
    "ETHUSDT": Market(Decimal("3000"), Decimal("0.01"), Decimal("0.01"), Decimal("0.2"), 0.0007),
    "SOLUSDT": Market(Decimal("150"), Decimal("0.01"), Decimal("0.1"), Decimal("4"), 0.0008),
}
PRICE_INTERVAL = 0.05          # seconds between emulated price steps
CATCH_UP_TIMEOUT = 30.0        # seconds the grid may keep trading after --duration until the stream caught up
DRAIN_TIMEOUT = 15.0           # seconds to wait for the last events after placing stops
STOP_TIMEOUT = 10.0
_NON_STATE_SUFFIXES = ("/ping", "/time", "/exchangeInfo")


@dataclass(frozen=True)
class DemoOptions:
    exchanges: tuple[Exchange, ...]
    symbols: tuple[str, ...]
    duration: float = 20.0
    seed: int | None = None
    faults: bool = False
    hedge: bool = False
    levels: int = 3
    step_pct: Decimal = Decimal("0.1")
    as_json: bool = False


class _Emulator(Protocol):
    """What the demo uses of BinanceEmulator / BybitEmulator."""

    @property
    def endpoints(self) -> Endpoints: ...
    @property
    def engine(self) -> Any: ...
    @property
    def faults(self) -> Any: ...
    @property
    def rest_calls(self) -> dict[str, int]: ...
    def start(self, timeout: float = ...) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


def is_state_call(call: str) -> bool:
    """Whether an emulator ``"METHOD /path"`` key reads account state (a GET that is not a ping,
    a clock, exchange info or public market data)."""
    method, _, path = call.partition(" ")
    return method == "GET" and not path.endswith(_NON_STATE_SUFFIXES) and not path.startswith("/v5/market/")


def _state_calls(calls: dict[str, int]) -> int:
    return sum(n for call, n in calls.items() if is_state_call(call))


@dataclass(frozen=True)
class Settled:
    """A moment when the stream had delivered every fill the emulator made (per-slot cumulative
    realised PnL seen == the engine's), with the figures of both sides read inside that moment."""

    realised_pnl: Decimal
    ledger_realised_pnl: Decimal
    closes: int
    open_tp_ids: tuple[str, ...]
    open_tp_orders_on_exchange: int


class ExchangeRun:
    """One exchange of the demo: emulator, stream, gateway and one grid per symbol."""

    def __init__(self, exchange: Exchange, options: DemoOptions) -> None:
        self.exchange: Exchange = exchange
        self.options = options
        self.emulator: _Emulator = _make_emulator(exchange, options)
        self.grids: list[GridStrategy] = []
        self.stream: ExchangeStream | None = None
        self.messages: deque[str] = deque()
        self._faults: deque[tuple[float, str]] = deque()
        self.resync_count = 0
        self._started_at = 0.0
        self._state_calls_at_start = 0
        self._stream_calls_at_start = 0
        self._events_mark = (0.0, 0)
        self.events_per_second = 0.0

    # ---- lifecycle

    def start(self) -> None:
        self.emulator.start()
        endpoints = self.emulator.endpoints
        gateway = _make_gateway(self.exchange, endpoints)
        # The emulated account is fresh: every slot starts at 0 realised PnL.
        self.grids = [GridStrategy(self._grid_config(symbol), gateway, exchange=self.exchange,
                                   realised_baseline=Decimal(0))
                      for symbol in self.options.symbols]
        stream = ExchangeStream(self.exchange, api_key=DEMO_KEY, api_secret=DEMO_SECRET, endpoints=endpoints,
                                on_status=fan_out(self._on_status, *(g.on_status for g in self.grids)))
        for grid in self.grids:
            grid.attach(stream)
        self.stream = stream
        stream.start(timeout=30.0)
        self._started_at = time.monotonic()
        self._state_calls_at_start = _state_calls(self.emulator.rest_calls)
        self._stream_calls_at_start = stream.stats.rest_calls
        self._events_mark = (self._started_at, stream.stats.events)

    def _grid_config(self, symbol: str) -> GridConfig:
        market = DEMO_MARKETS[symbol]
        return GridConfig(symbol=symbol, qty=market.order_qty, levels=self.options.levels,
                          step_pct=self.options.step_pct, tick_size=market.tick_size,
                          hedge=self.options.hedge)

    def _on_status(self, status: StatusUpdate) -> None:
        if status.state == "resynced":
            self.resync_count += 1
        self.messages.append(f"{self.exchange}: stream {status.state} ({status.detail})")

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop(timeout=STOP_TIMEOUT)
        self.emulator.stop()

    # ---- faults

    def schedule_faults(self, duration: float) -> None:
        """Queue the faults of :data:`FAULT_SCHEDULE` that this exchange has, at their times."""
        self._faults = deque((at * duration, fault) for at, fault in FAULT_SCHEDULE
                             if fault != "expire_listen_key" or self.exchange == "binance")

    def inject_due_faults(self, elapsed: float) -> None:
        """Inject the next fault once it is due and the stream is live again after the previous
        one: one outage at a time, so each shows its own reconnect and resync."""
        if not self._faults or elapsed < self._faults[0][0] or not self._live():
            return
        _, fault = self._faults.popleft()
        getattr(self.emulator.faults, fault)()
        self.messages.append(f"{self.exchange}: fault injected: {fault}")

    def _live(self) -> bool:
        return (self.stream is not None and self.stream.connected
                and not any(grid.paused for grid in self.grids))

    # ---- the end

    def wind_down(self) -> None:
        """Stop placing and cancel the resting entries; take-profits stay to protect the positions."""
        for grid in self.grids:
            grid.stop_placing()
        for grid in self.grids:
            grid.cancel_entries()

    def settle(self, timeout: float, tick: Callable[[], None] | None = None) -> Settled | None:
        """Wait until the stream is live and has delivered everything the emulator did; None on
        timeout.  ``tick`` runs while waiting (the display)."""
        deadline = last_tick = time.monotonic()
        deadline += timeout
        while True:
            settled = self._settled()
            now = time.monotonic()
            if settled is not None or now >= deadline:
                return settled
            if tick is not None and now - last_tick >= 0.1:
                tick()
                last_tick = now
            time.sleep(0.02)

    def _settled(self) -> Settled | None:
        if not self._live():
            return None
        engine = self.emulator.engine
        fills_before = len(engine.ledger)
        snapshot = self._snapshot()
        for grid in self.grids:
            for position in engine.positions(grid.config.symbol):
                seen = grid.last_cum_realised(position.position_idx)
                if (seen if seen is not None else Decimal(0)) != self._engine_cum(position):
                    return None
        if len(engine.ledger) != fills_before:
            return None
        return snapshot

    def _snapshot(self) -> Settled:
        return Settled(
            realised_pnl=sum((g.realised_pnl() for g in self.grids), Decimal(0)),
            ledger_realised_pnl=self.ledger_realised_pnl(),
            closes=sum(len(g.closes) for g in self.grids),
            open_tp_ids=tuple(sorted(i for g in self.grids for i in g.open_tp_ids())),
            open_tp_orders_on_exchange=self.open_closing_orders(),
        )

    def _engine_cum(self, position: Any) -> Decimal:
        """The engine's cumulative realised PnL of a slot in the exchange's own semantics."""
        value = position.cum_realised_gross if self.exchange == "binance" else position.cum_realised_net
        return Decimal(value)

    def ledger_realised_pnl(self) -> Decimal:
        """Binance ``cr`` is before fees; Bybit ``cumRealisedPnl`` is net of every fee."""
        engine = self.emulator.engine
        gross = Decimal(engine.realised_gross())
        return gross if self.exchange == "binance" else gross - Decimal(engine.fees_paid())

    # ---- reading

    def open_closing_orders(self) -> int:
        """How many orders that can only reduce a position the emulator holds open: what
        ``open_tp_ids`` should count, read from the emulator's books (not from the stream)."""
        return sum(1 for order in self.emulator.engine.open_orders() if _reduces(order))

    def state_rest_calls_after_start(self) -> int:
        """State reads the emulator saw since start() returned, minus the stream's own resyncs."""
        assert self.stream is not None
        seen = _state_calls(self.emulator.rest_calls) - self._state_calls_at_start
        by_stream = self.stream.stats.rest_calls - self._stream_calls_at_start
        return seen - by_stream

    def sample_rate(self) -> None:
        assert self.stream is not None
        now, events = time.monotonic(), self.stream.stats.events
        then, before = self._events_mark
        if now - then >= 0.5:
            self.events_per_second = (events - before) / (now - then)
            self._events_mark = (now, events)

    def views(self) -> list[GridView]:
        return [grid.view() for grid in self.grids]

    def result(self, settled: Settled | None) -> dict[str, Any]:
        assert self.stream is not None
        stats = self.stream.stats
        settled_in_time = settled is not None
        if settled is None:  # report what we have; the comparison will show the difference
            settled = self._snapshot()
        return {
            "closes": settled.closes,
            "realised_pnl": plain(settled.realised_pnl),
            "ledger_realised_pnl": plain(settled.ledger_realised_pnl),
            "open_tp_ids": list(settled.open_tp_ids),
            "open_tp_orders_on_exchange": settled.open_tp_orders_on_exchange,
            "state_rest_calls_after_start": self.state_rest_calls_after_start(),
            "resyncs": stats.resyncs,
            "reconnects": stats.reconnects,
            "events": stats.events,
            "order_errors": sum(g.order_errors for g in self.grids),
            "netted_take_profits": sum(g.netted for g in self.grids),
            "fill_pnl_mismatches": [
                {"symbol": m.symbol, "position_idx": m.position_idx,
                 "from_cum_realised": str(m.from_cum_realised), "from_fills": str(m.from_fills),
                 "after_reconnect": m.after_gap}
                for g in self.grids for m in g.cross_check.mismatches()
            ],
            "settled": settled_in_time,
        }


def _reduces(order: Any) -> bool:
    if order.reduce_only:
        return True
    return (order.position_idx, order.side) in ((1, "Sell"), (2, "Buy"))


def plain(value: Decimal) -> str:
    """A Decimal as a plain number without trailing zeros, so equal values print equal
    ("5.4777790" and "5.47777900" are both "5.477779")."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _make_emulator(exchange: Exchange, options: DemoOptions) -> _Emulator:
    from gridbot.emulator.engine import EngineConfig, SymbolConfig

    seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(4), "big")
    symbols = tuple(
        SymbolConfig(s, m.start_price, tick_size=m.tick_size, qty_step=m.qty_step, volatility=m.volatility)
        for s, m in ((s, DEMO_MARKETS[s]) for s in options.symbols)
    )
    config = EngineConfig(symbols=symbols, seed=seed, hedge_mode=options.hedge)
    if exchange == "binance":
        from gridbot.emulator.binance import BinanceEmulator

        return BinanceEmulator(config, api_key=DEMO_KEY, api_secret=DEMO_SECRET,
                               price_interval=PRICE_INTERVAL)
    from gridbot.emulator.bybit import BybitEmulator

    return BybitEmulator(config, api_key=DEMO_KEY, api_secret=DEMO_SECRET, price_interval=PRICE_INTERVAL)


def _make_gateway(exchange: Exchange, endpoints: Endpoints) -> OrderGateway:
    if exchange == "binance":
        return BinanceGateway.connect(DEMO_KEY, DEMO_SECRET, endpoints=endpoints)
    return BybitGateway.connect(DEMO_KEY, DEMO_SECRET, endpoints=endpoints)


# The fault schedule: (earliest time as a fraction of the duration, fault); each waits until the stream
# is live again after the previous one.  Before the middle of the run, so that the slots trade again
# after the last resync: on Binance, PnL realised while disconnected reaches the stream only with the
# slot's next ACCOUNT_UPDATE (the REST snapshot has no ``cr``).
FAULT_SCHEDULE: tuple[tuple[float, str], ...] = (
    (0.2, "drop_private"),
    (0.3, "drop_public"),
    (0.4, "expire_listen_key"),
)


def demo(options: DemoOptions) -> int:
    """Run the demo; 0 when it ran and its books agree, 1 when it failed to start or they disagree."""
    runs = [ExchangeRun(exchange, options) for exchange in options.exchanges]
    try:
        for run in runs:
            try:
                run.start()
            except (GridbotError, OSError, RuntimeError) as exc:
                _err(f"gridbot demo: the {run.exchange} demo failed to start: {exc}")
                return EXIT_FAILED
        results = _trade(runs, options)
    except KeyboardInterrupt:
        _err("gridbot demo: interrupted")
        return EXIT_INTERRUPTED
    finally:
        _stop_all(runs)
    return _report(results, options)


def _stop_all(runs: list[ExchangeRun]) -> None:
    """Stop the runs side by side: each stream's stop has its own bounded budget."""

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
        thread.join()


def _trade(runs: list[ExchangeRun], options: DemoOptions) -> dict[str, dict[str, Any]]:
    display = _Display(runs, live=sys.stdout.isatty())
    if options.faults:
        for run in runs:
            run.schedule_faults(options.duration)
    start = time.monotonic()
    with display:
        while (elapsed := time.monotonic() - start) < options.duration:
            for run in runs:
                run.inject_due_faults(elapsed)
            display.update(elapsed)
            time.sleep(0.1)
        def tick() -> None:
            display.update(time.monotonic() - start)

        # Still trading: wait for a moment when the stream is live and caught up with the books.
        # After an outage a Binance slot's PnL arrives only with its next ACCOUNT_UPDATE, which
        # only further trading brings.
        for run in runs:
            run.settle(CATCH_UP_TIMEOUT, tick)
        for run in runs:
            run.wind_down()
        settled = {run.exchange: run.settle(DRAIN_TIMEOUT, tick) for run in runs}
        tick()
    return {run.exchange: run.result(settled[run.exchange]) for run in runs}


def _report(results: dict[str, dict[str, Any]], options: DemoOptions) -> int:
    from rich.console import Console

    console = Console(highlight=False)
    console.print(_summary_table(results))
    failed = False
    for exchange, result in results.items():
        if Decimal(result["realised_pnl"]) != Decimal(result["ledger_realised_pnl"]):
            failed = True
            _err(f"gridbot demo: {exchange}: realised PnL from the stream {result['realised_pnl']} != "
                 f"ledger {result['ledger_realised_pnl']}")
        if result["state_rest_calls_after_start"] != 0:
            failed = True
            _err(f"gridbot demo: {exchange}: {result['state_rest_calls_after_start']} state REST calls "
                 "after start that the stream did not make")
        if result["closes"] == 0:
            _err(f"gridbot demo: {exchange}: no take-profit closed in {options.duration:g} s")
    if options.as_json:
        _print(json.dumps(results, sort_keys=True))
    return EXIT_FAILED if failed else EXIT_OK


def _summary_table(results: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="gridbot demo: summary")
    table.add_column("")
    for exchange in results:
        table.add_column(exchange, justify="right")
    rows = ("closes", "realised_pnl", "ledger_realised_pnl", "open_tp_ids", "open_tp_orders_on_exchange",
            "state_rest_calls_after_start",
            "resyncs", "reconnects", "events", "order_errors", "netted_take_profits", "fill_pnl_mismatches")
    for row in rows:
        table.add_row(row.replace("_", " "), *(_cell(row, result[row]) for result in results.values()))
    return table


def _cell(row: str, value: Any) -> str:
    if row == "fill_pnl_mismatches":
        if not value:
            return "none"
        after = sum(1 for m in value if m["after_reconnect"])
        return f"{len(value)} slot(s)" + (f", {after} after a reconnect" if after else "")
    return str(len(value)) if isinstance(value, list) else str(value)


# --------------------------------------------------------------------------------------------- display


class _Display:
    """Live rich view on a terminal; plain lines once a second otherwise."""

    def __init__(self, runs: list[ExchangeRun], live: bool) -> None:
        self._runs = runs
        self._live: Any = None
        self._last_line = -1.0
        if live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(), refresh_per_second=4, transient=False)

    def __enter__(self) -> _Display:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc_info)

    def update(self, elapsed: float) -> None:
        for run in self._runs:
            run.sample_rate()
        messages = [m for run in self._runs for m in _drain(run.messages)]
        if self._live is not None:
            for message in messages:
                self._live.console.print(message)
            self._live.update(_live_view(self._runs, elapsed))
            return
        for message in messages:
            _print(f"[{elapsed:5.1f}s] {message}")
        if elapsed - self._last_line >= 1.0:
            self._last_line = elapsed
            for run in self._runs:
                _print(f"[{elapsed:5.1f}s] {_plain_line(run)}")


def _drain(messages: deque[str]) -> list[str]:
    out = []
    while messages:
        out.append(messages.popleft())
    return out


def _position_text(positions: Sequence[PositionUpdate]) -> str:
    open_positions = [p for p in positions if p.size > 0]
    if not open_positions:
        return "flat"
    return " ".join(f"{'long' if p.side == 'Buy' else 'short'} {p.size} @ {p.entry_price:.2f} "
                    f"uPnL {p.unrealised_pnl:.2f}" for p in open_positions)


def _opt(value: Decimal | None) -> str:
    """A figure the exchange may not send (Binance pushes no MM rate): "-" until known."""
    return "-" if value is None else str(value)


def _plain_line(run: ExchangeRun) -> str:
    parts = []
    for view in run.views():
        state = " PAUSED" if view.paused else ""
        parts.append(f"{view.symbol} mark {_opt(view.mark_price)} {_position_text(view.positions)} "
                     f"TPs {len(view.open_tp_ids)} closes {view.closes} "
                     f"realised {view.realised_pnl:.4f}{state}")
    views = run.views()
    wallet = views[0] if views else None
    wallet_text = f"wallet {_opt(wallet.wallet_balance)} MM rate {_opt(wallet.mm_rate)}" if wallet else ""
    return (f"{run.exchange}: " + " | ".join(parts) + f" | {wallet_text} | {run.events_per_second:.0f} ev/s, "
            f"state REST {run.state_rest_calls_after_start()}")


def _live_view(runs: list[ExchangeRun], elapsed: float) -> Any:
    from rich.console import Group
    from rich.table import Table

    tables = []
    for run in runs:
        views = run.views()
        wallet = views[0] if views else None
        title = (f"{run.exchange}  t={elapsed:4.1f}s  {run.events_per_second:.0f} events/s  "
                 f"resyncs {run.resync_count}  "
                 f"state REST calls since start {run.state_rest_calls_after_start()}")
        if wallet is not None:
            title += (f"\nwallet {_opt(wallet.wallet_balance)}  available {_opt(wallet.available_balance)}"
                      f"  MM rate {_opt(wallet.mm_rate)}")
        table = Table(title=title, title_justify="left", expand=True)
        for column in ("symbol", "mark", "position", "open TP ids", "closes", "realised", "last closes (PnL)",
                       "state"):
            table.add_column(column)
        for view in views:
            last = " ".join(f"{c.delta:+.4f}" for c in view.recent_closes[-3:])
            table.add_row(
                view.symbol, _opt(view.mark_price), _position_text(view.positions),
                ", ".join(view.open_tp_ids[-3:]) + (" ..." if len(view.open_tp_ids) > 3 else ""),
                str(view.closes), f"{view.realised_pnl:.4f}", last,
                "paused" if view.paused else ("trading" if view.placing else "winding down"),
            )
        tables.append(table)
    return Group(*tables)
