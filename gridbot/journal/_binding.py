"""What an ExchangeStream does with its journal; the stream calls these from a few small hooks.

- ``open`` (in ``start()``, before any thread): open the file (a path is owned by the stream and
  closed by ``stop()``), claim it for this exchange, then hand the pipeline and the fill watermarks
  the previous run's bookkeeping, and queue that run's last state — positions, open orders,
  wallets, flagged ``restored=True`` — ahead of the seed.  The seed then runs like a resync after a
  long disconnect: slots and orders that changed are delivered fresh, orders that ended while down
  get their final state, and fills from the journal's cursor on are backfilled.
- ``accepted`` (worker, via :class:`JournalQueue`): a fill on its way to the callbacks.
- ``publish`` (worker, after each inbox item): the stream's backfill bound per symbol.
- ``delivered`` (dispatcher, after the callbacks ran): journal the event.
- ``close`` (``stop()``): commit what was delivered, release the journal.

Journaling after the callbacks makes them at least once across a crash: what a process delivered
but had not committed when it died is fetched and delivered again by the next start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace

from gridbot._account import Delivered
from gridbot._backfill import FillWatermarks
from gridbot._dispatch import DispatchQueue, ForgetSymbol
from gridbot._pipeline import Pipeline
from gridbot.events import AccountUpdate, Event, FillUpdate
from gridbot.journal._cursors import FillCursors
from gridbot.journal._journal import Journal
from gridbot.stats import Counters

__all__ = ["JournalQueue", "StreamJournal"]

logger = logging.getLogger(__name__)

JournalArg = Journal | str | os.PathLike[str]


class StreamJournal:
    """One stream's use of one journal."""

    def __init__(self, journal: JournalArg, exchange: str) -> None:
        if not isinstance(journal, (Journal, str, os.PathLike)):
            raise TypeError(f"journal must be a gridbot.Journal or a file path, not {type(journal).__name__}")
        self._given = journal
        self._exchange = exchange
        self.journal: Journal | None = None
        self._owned = False
        self._cursors: FillCursors | None = None
        self.restored_events = 0
        self._account: AccountUpdate | None = None

    def open(self, pipeline: Pipeline, marks: FillWatermarks, queue: DispatchQueue,
             symbols: Sequence[str]) -> bool:
        """Open, claim and restore (see the module docstring); True when there is a cursor to
        backfill from, i.e. the seed must fetch the fills made while the process was down."""
        if isinstance(self._given, Journal):
            journal = self._given
        else:
            journal = Journal(self._given)
            self._owned = True
        try:
            journal.attach(self._exchange)
        except BaseException:
            if self._owned:
                journal.close()
            raise
        self.journal = journal
        self._cursors = journal.track_fills(self._exchange)
        restored = journal.restore(self._exchange)
        states: list[Event] = [*restored.positions, *restored.open_orders, *restored.wallets]
        for state in states:
            pipeline.accept(state)
        for fill in restored.fills:
            pipeline.accept_fill(fill)
        wanted = set(symbols)
        deliver: list[Event] = [p for p in restored.positions if p.symbol in wanted]
        deliver.extend(o for o in restored.open_orders if o.symbol in wanted)
        deliver.extend(restored.wallets)
        for event in deliver:
            queue.put(replace(event, restored=True))
        self.restored_events = len(deliver)
        gaps = {s: at for s, at in restored.backfill_from.items() if s in wanted}
        for symbol in gaps:
            marks.went_live(symbol, restored.live_since[symbol])
        marks.resume_gap(gaps)
        if deliver or gaps:
            logger.info("%s: journal %s restored %d event(s); fills are backfilled from its cursor for %s",
                        self._exchange, journal.path, len(deliver), ", ".join(sorted(gaps)) or "no symbol")
        return bool(gaps)

    def accepted(self, fill: FillUpdate) -> None:
        if self._cursors is not None:
            self._cursors.accepted(fill)

    def publish(self, marks: FillWatermarks, pipeline: Pipeline, symbols: Sequence[str]) -> None:
        if self._cursors is None:
            return
        bounds: dict[str, tuple[int, int]] = {}
        for symbol in symbols:
            live = marks.live_since(symbol)
            if live is not None:
                bounds[symbol] = (live, marks.window_start(symbol, pipeline))
        self._cursors.publish(bounds)

    def delivered(self, event: object, account: AccountUpdate | None) -> None:
        """After the callbacks of ``event`` ran; ``account`` is the book's latest account view (Binance
        computes it while delivering, so it never passes through the queue)."""
        journal = self.journal
        if journal is None:
            return
        journal.record(event)
        if account is not None and account is not self._account:
            self._account = account
            if account is not event:
                journal.record(account)

    def close(self, timeout: float) -> None:
        """Commit what was delivered and release the journal (closing it when the stream opened it)."""
        journal, self.journal = self.journal, None
        if journal is None:
            return
        try:
            if not journal.flush(timeout):
                logger.warning("%s: the journal did not commit within %.1f s; the next start fetches "
                               "the rest again", self._exchange, timeout)
            journal.detach(self._exchange)
            if self._owned:
                journal.close(timeout)
        except Exception:
            logger.exception("%s: closing the journal %s failed", self._exchange, journal.path)


class JournalQueue(DispatchQueue):
    """The dispatch queue of a journaled stream: notes each fill put on it as in flight."""

    def __init__(self, counters: Counters, binding: StreamJournal) -> None:
        super().__init__(counters)
        self._binding = binding

    def put(self, event: Delivered | ForgetSymbol) -> None:
        if isinstance(event, FillUpdate):
            self._binding.accepted(event)
        super().put(event)
