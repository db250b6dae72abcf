"""What ``gridbot demo`` shows while it runs and at the end.

On a terminal: a live view sized for 80x24 (a header, per exchange a status line, a balance line and
one row per symbol, then the latest log lines).  Log records are routed *into* the view while it is
live: a handler writing to the terminal behind rich's back would garble the frames.  Otherwise one
plain progress line per exchange and second.  Numbers are quantized for display only: prices to the
symbol's tick, sizes to its quantity step, balances to 0.01 and PnL to 0.0001.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any, TextIO

from gridbot.cli._demo_run import DEMO_MARKETS, DemoOptions, ExchangeRun, plain
from gridbot.events import PositionUpdate
from gridbot.grid import GridView

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["Display", "ViewLogHandler", "money", "pnl", "price", "qty", "summary_table"]

LOG_LINES = 4             # log lines kept in the live view
_CENT = Decimal("0.01")
_PNL = Decimal("0.0001")
_DASH = "-"


# ------------------------------------------------------------------------------------------ numbers


def _quantize(value: Decimal, exponent: Decimal) -> str:
    text = format(value.quantize(exponent, rounding=ROUND_HALF_EVEN), "f")
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.00"


def price(symbol: str, value: Decimal | None) -> str:
    """A price at the symbol's tick size ("-" when unknown)."""
    if value is None:
        return _DASH
    market = DEMO_MARKETS.get(symbol)
    return _quantize(value, market.tick_size) if market else plain(value)


def qty(symbol: str, value: Decimal) -> str:
    """A quantity at the symbol's quantity step."""
    market = DEMO_MARKETS.get(symbol)
    return _quantize(value, market.qty_step) if market else plain(value)


def money(value: Decimal | None) -> str:
    """A balance in the quote coin, to the cent ("-" when the exchange sends none)."""
    return _DASH if value is None else _quantize(value, _CENT)


def pnl(value: Decimal | None) -> str:
    """A PnL figure, signed, to 0.0001."""
    if value is None:
        return _DASH
    text = _quantize(value, _PNL)
    return text if text.startswith("-") else "+" + text


def rate(value: Decimal | None) -> str:
    """A ratio as a percentage ("-" when the exchange sends none, as Binance for the MM rate)."""
    return _DASH if value is None else _quantize(value * 100, _CENT) + "%"


# ------------------------------------------------------------------------------------------ logging


class ViewLogHandler(logging.Handler):
    """Keeps the latest formatted log records for the live view instead of writing them out."""

    def __init__(self, lines: deque[str]) -> None:
        super().__init__()
        self._lines = lines
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record).splitlines()[0])
        except Exception:  # noqa: BLE001 - logging.Handler's contract: report through handleError
            self.handleError(record)


@contextmanager
def _logging_into(lines: deque[str]) -> Iterator[None]:
    """Route the root logger's output into ``lines`` for the duration (and restore its handlers)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = ViewLogHandler(lines)
    handler.setLevel(max((h.level for h in saved), default=logging.NOTSET))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved


# ------------------------------------------------------------------------------------------ display


class Display:
    """The live view on a terminal; plain lines once a second on ``out`` otherwise."""

    def __init__(self, runs: list[ExchangeRun], options: DemoOptions, *, out: TextIO, live: bool) -> None:
        self._runs = runs
        self._options = options
        self._out = out
        self._lines: deque[str] = deque(maxlen=LOG_LINES)
        self._live: Any = None
        self._logging: Any = None
        self._last_line = -1.0
        self._elapsed = 0.0
        self.phase = "trading"
        if live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=out, highlight=False), refresh_per_second=4,
                              transient=False, auto_refresh=False, redirect_stdout=False,
                              redirect_stderr=False)

    def __enter__(self) -> Display:
        if self._live is not None:
            self._logging = _logging_into(self._lines)
            self._logging.__enter__()
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            try:
                self._live.update(self.render(), refresh=True)
                self._live.__exit__(*exc_info)
            finally:
                self._logging.__exit__(*exc_info)

    def update(self, elapsed: float) -> None:
        self._elapsed = elapsed
        for run in self._runs:
            run.sample_rate()
        messages = [m for run in self._runs for m in _drain(run.messages)]
        if self._live is not None:
            self._lines.extend(messages)
            self._live.update(self.render(), refresh=True)
            return
        for message in messages:
            self._write(f"[{elapsed:5.1f}s] {message}")
        if elapsed - self._last_line >= 1.0:
            self._last_line = elapsed
            for run in self._runs:
                self._write(f"[{elapsed:5.1f}s] {plain_line(run)}")

    def _write(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        options = self._options
        header = Text.assemble(
            ("gridbot demo", "bold"),
            f"  {self._elapsed:4.1f}/{options.duration:g} s  {self.phase}  "
            f"{'hedge' if options.hedge else 'one-way'}"
            f"{'  faults' if options.faults else ''}"
            f"{'' if options.seed is None else f'  seed {options.seed}'}",
            no_wrap=True, overflow="ellipsis")
        parts: list[RenderableType] = [header]
        parts.extend(_exchange_table(run) for run in self._runs)
        parts.append(Text("log", style="dim"))
        for line in self._lines:
            parts.append(Text(line, no_wrap=True, overflow="ellipsis", style="yellow"))
        return Group(*parts)


def _drain(messages: deque[str]) -> list[str]:
    out = []
    while messages:
        out.append(messages.popleft())
    return out


def _stream_state(run: ExchangeRun, views: Sequence[GridView]) -> str:
    if run.stream is None:
        return "starting"
    state = run.stream.status().state
    if state in ("stopped", "failed"):
        return state
    if state != "connected" or any(view.paused for view in views):
        return "reconnecting"
    if views and not any(view.placing for view in views):
        return "winding down"
    return "live"


def _exchange_table(run: ExchangeRun) -> RenderableType:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    views = run.views()
    state = _stream_state(run, views)
    style = "green" if state == "live" else "yellow"
    title = Text.assemble((f"{run.exchange:<8}", "bold"), (f"{state:<13}", style),
                          f"{run.events_per_second:4.0f} ev/s  resyncs {run.resync_count}  "
                          f"state REST {run.state_rest_calls_after_start()}", no_wrap=True)
    wallet = views[0] if views else None
    balances = Text(
        f"  wallet {money(wallet.wallet_balance if wallet else None)}  "
        f"margin {money(wallet.margin_balance if wallet else None)}  "
        f"available {money(wallet.available_balance if wallet else None)}  "
        f"MM rate {rate(wallet.mm_rate if wallet else None)}", no_wrap=True, overflow="ellipsis")
    # Columns separated by the box's one-space divider only: the widest realistic row is ~77 columns.
    table = Table(box=box.SIMPLE_HEAD, padding=0, pad_edge=False, show_edge=False)
    for name, justify in (("symbol", "left"), ("mark", "right"), ("position", "right"), ("entry", "right"),
                          ("uPnL", "right"), ("TPs", "right"), ("closes", "right"), ("realised", "right"),
                          ("last", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for view in views:
        open_positions = [p for p in view.positions if p.size > 0]
        last = view.recent_closes[-1].delta if view.recent_closes else None
        table.add_row(
            view.symbol, price(view.symbol, view.mark_price), position_text(view.symbol, open_positions),
            _entry_text(view.symbol, open_positions),
            pnl(sum((p.unrealised_pnl for p in open_positions), Decimal(0))) if open_positions else _DASH,
            str(len(view.open_tp_ids)), str(view.closes), pnl(view.realised_pnl), pnl(last),
        )
    return Group(title, balances, table)


def position_text(symbol: str, positions: Sequence[PositionUpdate]) -> str:
    """Signed sizes: "+0.020" long, "-0.010" short, "flat"; both slots in hedge mode."""
    if not positions:
        return "flat"
    return " ".join(("+" if p.side == "Buy" else "-") + qty(symbol, p.size) for p in positions)


def _entry_text(symbol: str, positions: Sequence[PositionUpdate]) -> str:
    if len(positions) != 1:
        return _DASH
    return price(symbol, positions[0].entry_price)


def plain_line(run: ExchangeRun) -> str:
    """One progress line of an exchange, for logs and pipes."""
    views = run.views()
    parts = []
    for view in views:
        open_positions = [p for p in view.positions if p.size > 0]
        state = " PAUSED" if view.paused else ""
        held = position_text(view.symbol, open_positions)
        if open_positions:
            upnl = sum((p.unrealised_pnl for p in open_positions), Decimal(0))
            entry = _entry_text(view.symbol, open_positions)
            held += ("" if entry == _DASH else f" @ {entry}") + f" uPnL {pnl(upnl)}"
        parts.append(f"{view.symbol} mark {price(view.symbol, view.mark_price)} {held} "
                     f"TPs {len(view.open_tp_ids)} closes {view.closes} "
                     f"realised {pnl(view.realised_pnl)}{state}")
    wallet = views[0] if views else None
    wallet_text = (f"wallet {money(wallet.wallet_balance)} margin {money(wallet.margin_balance)} "
                   f"available {money(wallet.available_balance)} MM rate {rate(wallet.mm_rate)}"
                   if wallet else "")
    return (f"{run.exchange}: " + " | ".join(parts) + f" | {wallet_text} | {run.events_per_second:.0f} ev/s, "
            f"state REST {run.state_rest_calls_after_start()}")


# ------------------------------------------------------------------------------------------ summary

SUMMARY_ROWS = ("closes", "realised_pnl", "ledger_realised_pnl", "open_tp_ids", "open_tp_orders_on_exchange",
                "state_rest_calls_after_start", "resyncs", "reconnects", "events", "order_errors",
                "netted_take_profits", "fill_pnl_mismatches")
# With --journal: fills made while the stream was down that the restart backfilled, the ledger's PnL
# realised meanwhile (it reached the grids: realised pnl == ledger), and the journal's realised PnL.
JOURNAL_ROWS = ("journal_restored_fills", "journal_pnl_while_down", "journal_realised_pnl")


def summary_table(results: dict[Any, dict[str, Any]]) -> RenderableType:
    """The end-of-run table: one column per exchange (rows explained in ``gridbot demo --help``)."""
    from rich.table import Table

    table = Table(title="gridbot demo: summary")
    table.add_column("", no_wrap=True)
    for exchange in results:
        table.add_column(str(exchange), justify="right")
    journaled = all("journal_realised_pnl" in result for result in results.values())
    for row in (*SUMMARY_ROWS, *(JOURNAL_ROWS if journaled else ())):
        table.add_row(row.replace("_", " "), *(_cell(row, result[row]) for result in results.values()))
    return table


def _cell(row: str, value: Any) -> str:
    if row == "fill_pnl_mismatches":
        if not value:
            return "none"
        after = sum(1 for m in value if m["after_reconnect"])
        if after == len(value):
            return f"{after} after reconnect"
        return f"{len(value)} ({after} after reconnect)"
    if row in ("realised_pnl", "ledger_realised_pnl", "journal_pnl_while_down", "journal_realised_pnl"):
        return pnl(Decimal(value))
    return str(len(value)) if isinstance(value, list) else str(value)
