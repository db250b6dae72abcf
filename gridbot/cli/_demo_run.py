"""One exchange of ``gridbot demo``: its loopback emulator, an SDK-backed stream pointed at it, an order
gateway and a grid per symbol; fault injection; and the proof, read inside one settled moment, that the
stream's realised PnL equals the emulator's ledger and that nothing polled a state endpoint."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Protocol

from gridbot.adapters._orders import OrderGateway
from gridbot.endpoints import Endpoints
from gridbot.events import Exchange, StatusUpdate
from gridbot.grid import GridConfig, GridStrategy, GridView, fan_out
from gridbot.journal import Journal
from gridbot.stream import ExchangeStream

__all__ = ["DEMO_MARKETS", "FAULT_SCHEDULE", "DemoOptions", "ExchangeRun", "Market", "Settled",
           "is_state_call", "plain"]

DEMO_KEY, DEMO_SECRET = "test-key", "test-secret"


@dataclass(frozen=True)
class Market:
    """An emulated market: start price, tick, quantity per grid order, random-walk volatility per step."""

    start_price: Decimal
    tick_size: Decimal
    qty_step: Decimal
    order_qty: Decimal
    volatility: float


DEMO_MARKETS: Final[Mapping[str, Market]] = MappingProxyType({
    "BTCUSDT": Market(Decimal("60000"), Decimal("0.1"), Decimal("0.001"), Decimal("0.01"), 0.0006),
    "ETHUSDT": Market(Decimal("3000"), Decimal("0.01"), Decimal("0.01"), Decimal("0.2"), 0.0007),
    "SOLUSDT": Market(Decimal("150"), Decimal("0.01"), Decimal("0.1"), Decimal("4"), 0.0008),
})
PRICE_INTERVAL = 0.05          # seconds between emulated price steps
CATCH_UP_TIMEOUT = 30.0        # seconds the grid may keep trading after --duration until the stream caught up
DRAIN_TIMEOUT = 15.0           # seconds to wait for the last events after placing stops
STOP_TIMEOUT = 10.0
RESTART_AT = 0.4               # with --journal: when each stream is restarted, as a fraction of --duration
RESTART_DOWNTIME = 2.0         # seconds the account trades with no stream running (--journal)
STEP_TIMEOUT = 10.0            # lockstep: seconds one price step may take to reach the grid and its reactions
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
    journal: str | None = None  # a new journal file: the run restarts its streams on it midway

    @property
    def lockstep(self) -> bool:
        """Seeded, reproducible stepping; --faults and --journal run in real time (outages and restarts
        leave a Binance slot's PnL unknown until its next ACCOUNT_UPDATE, which lockstep would wait for)."""
        return not self.faults and self.journal is None


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


# The stream's symbol checks: no account state, but counted in its ``stats.rest_calls`` like its reads.
_SYMBOL_LISTINGS = frozenset({"GET /fapi/v1/exchangeInfo", "GET /v5/market/instruments-info"})


def _state_calls(calls: dict[str, int]) -> int:
    """State reads plus the stream's symbol checks: what ``stats.rest_calls`` accounts for."""
    return sum(n for call, n in calls.items() if is_state_call(call) or call in _SYMBOL_LISTINGS)


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

    def __init__(self, exchange: Exchange, options: DemoOptions, journal: Journal | None = None) -> None:
        self.exchange: Exchange = exchange
        self.options = options
        self.journal = journal
        self.restarted = False
        self.restored_fills = 0
        self.pnl_while_down = Decimal(0)
        self._earlier_stream_calls = 0
        # Without faults the run is in lockstep: the demo steps the prices itself and delivers the stream's
        # events on its own thread until the grid has reacted, so a seed replays the same run.
        self.lockstep = options.lockstep
        self._stalled = False
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
        self._stopped = False

    # ---- lifecycle

    def start(self) -> None:
        self.emulator.start()
        endpoints = self.emulator.endpoints
        gateway = _make_gateway(self.exchange, endpoints)
        # The emulated account is fresh: every slot starts at 0 realised PnL.
        self.grids = [GridStrategy(self._grid_config(symbol), gateway, exchange=self.exchange,
                                   realised_baseline=Decimal(0))
                      for symbol in self.options.symbols]
        stream = self._open_stream()
        self._started_at = time.monotonic()
        self._state_calls_at_start = _state_calls(self.emulator.rest_calls)
        self._stream_calls_at_start = stream.stats.rest_calls
        self._events_mark = (self._started_at, stream.stats.events)

    def _open_stream(self) -> ExchangeStream:
        stream = ExchangeStream(self.exchange, api_key=DEMO_KEY, api_secret=DEMO_SECRET,
                                endpoints=self.emulator.endpoints, journal=self.journal,
                                on_status=fan_out(self._on_status, *(g.on_status for g in self.grids)),
                                dispatch="manual" if self.lockstep else "thread")
        for grid in self.grids:
            grid.attach(stream)
        self.stream = stream
        stream.start(timeout=30.0)
        return stream

    def restart_due(self, elapsed: float) -> bool:
        """With --journal, once: at RESTART_AT of the run (emulated time in lockstep), the stream live."""
        return (self.journal is not None and not self.restarted and self._live()
                and elapsed >= RESTART_AT * self.options.duration)

    def restart(self) -> None:
        """Stop the stream, let the account trade with nobody listening, then start a new stream on
        the same journal: the previous state comes back ``restored``, the fills made meanwhile are
        backfilled from the journal's cursor, and the PnL realised meanwhile reaches the grids."""
        assert self.stream is not None
        old = self.stream
        old.stop(timeout=STOP_TIMEOUT)
        self._earlier_stream_calls += old.stats.rest_calls - self._stream_calls_at_start
        for grid in self.grids:
            grid.cross_check.note_gap()
        ledger_before = self.ledger_realised_pnl()
        self.messages.append(f"{self.exchange}: stream stopped; trading {RESTART_DOWNTIME:g} s without it")
        time.sleep(RESTART_DOWNTIME)  # real time: the emulator's prices walk, resting orders fill
        stream = self._open_stream()
        self.pnl_while_down = self.ledger_realised_pnl() - ledger_before
        self.restored_fills = stream.stats.backfilled_fills
        self._stream_calls_at_start = 0  # the new stream's seed is the stream's own, like any resync
        self._events_mark = (time.monotonic(), 0)
        self.restarted = True
        self.messages.append(f"{self.exchange}: restarted on the journal: {self.restored_fills} fill(s) "
                             f"made while down backfilled")

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
        """Stop the stream, then the emulator; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
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

    # ---- lockstep

    def await_snapshots(self) -> None:
        """Bybit sends a ticker snapshot on subscribe: deliver it before the first step, so that it never
        shares the queue with (and is conflated into) that step's update.  Binance sends none."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while (self.exchange == "bybit" and self.stream is not None and time.monotonic() < deadline
               and any(self.stream.book.mark_price(g.config.symbol) is None for g in self.grids)):
            self.pump()
            time.sleep(0.001)
        self.pump()

    def step(self) -> None:
        """One seeded price step in two halves - the prices, then the fills they cause - each followed by
        delivering until the stream and the grid's reactions (orders placed on this thread, their updates)
        have caught up with the emulator; bounded by STEP_TIMEOUT.  The halves keep the public and the
        private socket from racing each other inside one step."""
        engine = self.emulator.engine
        for half in (lambda: engine.step(match=False), engine.match):
            half()
            if self._stalled:  # a stream that stopped catching up: step on, delivering what came
                self.pump()
                continue
            deadline = time.monotonic() + STEP_TIMEOUT
            while not self._caught_up():
                if time.monotonic() >= deadline:
                    self._stalled = True
                    self.messages.append(f"{self.exchange}: the stream did not catch up with a price step "
                                         f"within {STEP_TIMEOUT:g} s: stepping on without waiting")
                    break
                time.sleep(0.001)

    def pump(self) -> int:
        """Run the queued callbacks on this thread (lockstep streams dispatch manually)."""
        if self.lockstep and self.stream is not None:
            return self.stream.dispatch_pending()
        return 0

    def _caught_up(self) -> bool:
        if self.pump() or self.stream is None:
            return False
        engine, book = self.emulator.engine, self.stream.book
        for grid in self.grids:
            symbol = grid.config.symbol
            if book.mark_price(symbol) != engine.prices(symbol).last:
                return False
            regular = sum(1 for order in engine.open_orders(symbol) if not order.is_conditional)
            if len(book.open_orders(symbol)) != regular:
                return False
            for position in engine.positions(symbol):
                seen = book.position(symbol, position.position_idx)
                if (seen.size if seen is not None else Decimal(0)) != position.size:
                    return False
        return self._settled() is not None

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
            settled = self._settled() if not self.lockstep or self._caught_up() else None
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
        # The stream delivers while this runs: the figures read before the check must still hold after
        # it, or the check may have passed on an update the snapshot did not include.
        return snapshot if self._snapshot() == snapshot else None

    def _snapshot(self) -> Settled:
        return Settled(
            realised_pnl=sum((g.realised_pnl() for g in self.grids), Decimal(0)),
            ledger_realised_pnl=self.ledger_realised_pnl(),
            closes=sum(g.close_count for g in self.grids),
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
        by_stream = self.stream.stats.rest_calls - self._stream_calls_at_start + self._earlier_stream_calls
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
            **self._account_figures(),
            **self._journal_figures(),
        }

    def _journal_figures(self) -> dict[str, Any]:
        """With --journal: what the restart brought back, and the journal's own realised PnL."""
        if self.journal is None:
            return {}
        self.journal.flush()
        return {"journal_restored_fills": self.restored_fills,
                "journal_pnl_while_down": plain(self.pnl_while_down),
                "journal_realised_pnl": plain(self.journal.realised_pnl(exchange=self.exchange))}

    def _account_figures(self) -> dict[str, Any]:
        """The account view at the end (account-wide: every grid has the same), as plain strings."""
        account = self.grids[0].account if self.grids else None
        figures = {"margin_balance": account.margin_balance if account else None,
                   "available_balance": account.available_balance if account else None,
                   "mm_rate": account.mm_rate if account else None}
        return {name: None if value is None else plain(value) for name, value in figures.items()}


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
    interval = 0 if options.lockstep else PRICE_INTERVAL  # lockstep: ExchangeRun.step moves the prices
    if exchange == "binance":
        from gridbot.emulator.binance import BinanceEmulator

        return BinanceEmulator(config, api_key=DEMO_KEY, api_secret=DEMO_SECRET, price_interval=interval)
    from gridbot.emulator.bybit import BybitEmulator

    return BybitEmulator(config, api_key=DEMO_KEY, api_secret=DEMO_SECRET, price_interval=interval)


def _make_gateway(exchange: Exchange, endpoints: Endpoints) -> OrderGateway:
    # Imported here: the gateways load the SDKs, which `gridbot --help` or `gridbot journal` never need.
    from gridbot._gateways import BinanceGateway, BybitGateway

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


