"""Fill backfill: the fills a gap may have swallowed, fetched by REST at the resync.

Per symbol the stream knows when it went live (``start()`` or ``subscribe()`` while running) and the
exchange time of the newest fill it delivered.  When the private socket goes down or reports a gap,
that point is frozen as the gap's start (fills delivered after it, e.g. on the reconnected socket
before the resync runs, must not move it); the resync asks the exchange for every fill from there
(less a margin: Binance does not order its pushes across event types) to now, and the pipeline
delivers those it has not delivered yet (dedupe by trade id), oldest first.  Fills older than the
moment the symbol went live are never replayed.

Pure bookkeeping plus one loop over the adapter; runs on the stream's worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from gridbot._pipeline import Pipeline
from gridbot.events import Event, FillUpdate, OrderUpdate

__all__ = ["REORDER_MARGIN_MS", "FillFetcher", "FillWatermarks", "backfill_fills"]

# How far before the gap's start the fetch begins: pushes of different kinds (and clocks) disagree
# by far less; duplicates of the overlap are dropped by trade id.
REORDER_MARGIN_MS = 5_000
# End of the fetch window past the local clock, for a local clock behind the exchange's.
CLOCK_MARGIN_MS = 5_000


class FillFetcher(Protocol):
    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """Every fill of ``symbol`` with ``since_ms <= time <= until_ms`` (the adapter pages and
        splits the window as its exchange requires)."""


@dataclass(frozen=True, slots=True)
class Backfilled:
    """What one backfill found: fills to deliver, oldest first, how many rows were fetched, and the
    local time the fetch began (every fill up to it has been seen)."""

    fills: list[FillUpdate]
    fetched: int
    checked_at: int


class FillWatermarks:
    """When each symbol went live, and where the current gap's backfill starts."""

    __slots__ = ("_checked_until", "_gap_from", "_live_since")

    def __init__(self) -> None:
        self._live_since: dict[str, int] = {}
        self._checked_until: dict[str, int] = {}  # a backfill covered every fill up to here
        self._gap_from: dict[str, int] | None = None

    def went_live(self, symbol: str, at_ms: int) -> None:
        self._live_since.setdefault(symbol, at_ms)

    def forget(self, symbol: str) -> None:
        self._live_since.pop(symbol, None)
        self._checked_until.pop(symbol, None)
        if self._gap_from is not None:
            self._gap_from.pop(symbol, None)

    def live_since(self, symbol: str) -> int | None:
        return self._live_since.get(symbol)

    def open_gap(self, pipeline: Pipeline) -> None:
        """The private stream may be missing fills from now on; a gap already open keeps its start."""
        if self._gap_from is None:
            self._gap_from = {symbol: self._resume_point(symbol, pipeline) for symbol in self._live_since}

    def resume_gap(self, starts: dict[str, int]) -> None:
        """Open a gap with known starts (a journal's cursors after a restart: a long disconnect)."""
        if starts:
            self._gap_from = {**(self._gap_from or {}), **starts}

    def close_gap(self, symbols: Sequence[str], now_ms: int) -> None:
        """The gap's fills of ``symbols`` were backfilled up to ``now_ms``: a later gap starts there at
        the earliest (a quiet symbol is not searched from the moment it went live again)."""
        self._gap_from = None
        for symbol in symbols:
            if symbol in self._live_since:
                self._checked_until[symbol] = max(self._checked_until.get(symbol, 0), now_ms)

    def window_start(self, symbol: str, pipeline: Pipeline) -> int:
        """Exchange time from which ``symbol``'s fills are fetched."""
        if self._gap_from is not None and symbol in self._gap_from:
            start = self._gap_from[symbol]
        else:
            start = self._resume_point(symbol, pipeline)
        return max(self._live_since.get(symbol, start), start - REORDER_MARGIN_MS)

    def _resume_point(self, symbol: str, pipeline: Pipeline) -> int:
        start = max(self._live_since.get(symbol, 0), self._checked_until.get(symbol, 0))
        last = pipeline.last_fill_time(symbol)
        return start if last is None else max(start, last)


def backfill_fills(
    fetcher: FillFetcher, pipeline: Pipeline, marks: FillWatermarks, symbols: Sequence[str], now_ms: int
) -> Backfilled:
    """Fetch every subscribed symbol's fills since its window start and keep the undelivered ones.

    Nothing is accepted here: the caller offers each fill to the pipeline as it delivers it, so a
    failing request (raised to the caller, who retries the resync) leaves the pipeline untouched.
    Fills older than the moment their symbol went live are left out (never replayed).
    """
    fills: list[FillUpdate] = []
    fetched = 0
    for symbol in symbols:
        if marks.live_since(symbol) is None:  # subscribed while the stream was starting
            marks.went_live(symbol, now_ms)
            continue
        since = marks.window_start(symbol, pipeline)
        rows = fetcher.fetch_fills(symbol, since, now_ms + CLOCK_MARGIN_MS)
        fetched += len(rows)
        not_before = marks.live_since(symbol) or 0
        fills.extend(row for row in rows if row.symbol == symbol and row.timestamp >= not_before
                     and not pipeline.delivered_fill(row))
    fills.sort(key=lambda fill: fill.timestamp)  # stable: each symbol's rows keep the adapter's order
    return Backfilled(fills, fetched, now_ms)


def unseen_orders(fills: Sequence[FillUpdate], pipeline: Pipeline) -> list[OrderUpdate]:
    """The orders of backfilled fills the stream never delivered a state of (placed and finished inside
    the gap), as query keys for ``Adapter.fetch_orders``: only ``symbol`` and ``order_id`` (and the
    fill's side, quantity and slot) mean anything; these are never delivered themselves."""
    keys: dict[tuple[str, str], OrderUpdate] = {}
    for fill in fills:
        key = (fill.symbol, fill.order_id)
        if key in keys or pipeline.knows_order(*key):
            continue
        keys[key] = OrderUpdate(
            exchange=fill.exchange, timestamp=fill.timestamp, is_snapshot=True, symbol=fill.symbol,
            order_id=fill.order_id, client_order_id="", side=fill.side, order_type="Market", status="New",
            price=_ZERO, qty=fill.qty, filled_qty=_ZERO, avg_price=_ZERO, trigger_price=None,
            reduce_only=False, position_idx=fill.position_idx, is_take_profit=False,
        )
    return list(keys.values())


def with_slots(fills: list[FillUpdate], orders: Sequence[Event]) -> list[FillUpdate]:
    """Fills whose slot was unknown (0) get their order's ``position_idx`` once the order was fetched
    (Bybit executions carry none)."""
    slots = {o.order_id: o.position_idx for o in orders if isinstance(o, OrderUpdate)}
    return [replace(f, position_idx=slots[f.order_id]) if f.position_idx == 0 and slots.get(f.order_id)
            else f for f in fills]


_ZERO = Decimal(0)
