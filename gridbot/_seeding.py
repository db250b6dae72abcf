"""Seeding: apply a REST snapshot (and the fills a gap swallowed) through the pipeline.

Runs on the stream worker only, inside a seed or resync window (:mod:`gridbot._worker`): nothing
else touches the pipeline or the decoders meanwhile, so whatever the sockets pushed before is
already judged and whatever they push meanwhile waits in the inbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from gridbot._account import AccountBatch
from gridbot._backfill import FillWatermarks, backfill_fills, unseen_orders, with_slots
from gridbot._dispatch import DispatchQueue
from gridbot._pipeline import Pipeline
from gridbot.adapters._base import Adapter
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.stats import Counters

__all__ = ["Seeder", "now_ms", "together"]

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The markers around a pushed message's events are always these two (immutable: shared, not allocated
# per frame - fewer objects for the collector while a backlog is queued).
_START = AccountBatch(start=True)
_PUSH_END = AccountBatch(start=False)


def together(exchange: str, events: list[Any], *, timestamp: int, is_snapshot: bool) -> list[Any]:
    """On Binance, whose account view gridbot computes, events that change the account together go
    inside batch markers, so the view is computed once, on the whole change."""
    if exchange != "binance" or len(events) <= 1:
        return events
    end = _PUSH_END if timestamp == 0 and not is_snapshot \
        else AccountBatch(start=False, timestamp=timestamp, is_snapshot=is_snapshot)
    return [_START, *events, end]


class Seeder:
    """Fetches snapshots, backfills and final order states, and queues what the pipeline accepts.

    ``before_put`` runs before anything is queued (the worker flushes the events of frames it
    handled earlier, so the queue keeps arrival order).
    """

    def __init__(self, exchange: str, adapter: Adapter, pipeline: Pipeline, fill_marks: FillWatermarks,
                 queue: DispatchQueue, counters: Counters, before_put: Callable[[], None],
                 seed: Callable[[Sequence[Event]], list[Event]]) -> None:
        self._exchange = exchange
        self._adapter = adapter
        self._pipeline = pipeline
        self._fill_marks = fill_marks
        self._queue = queue
        self._counters = counters
        self._before_put = before_put
        self._seed = seed  # the private decoder's: REST events learned from (order slots) and completed

    def apply_snapshot(self, symbols: list[str], *, include_wallet: bool, backfill: bool = False) -> int:
        """Fetch and deliver a snapshot of ``symbols``; with ``backfill``, then the fills the gap may
        have swallowed.  Everything is fetched before anything is delivered where possible, so a
        failing request leaves little to retry.  Returns the number of fills backfilled."""
        events = self._seed(self._adapter.fetch_snapshot(symbols, include_wallet=include_wallet))
        found = backfill_fills(self._adapter, self._pipeline, self._fill_marks, symbols, now_ms()) \
            if backfill else None
        config = self._adapter.fetch_account_config(symbols, full=include_wallet)
        reconciled = self._pipeline.reconcile(events, symbols)
        changed: list[Any] = list(reconciled.events)
        if config is not None:
            changed.append(config)
        self._before_put()
        self._queue.put_many(together(self._exchange, changed, timestamp=now_ms(), is_snapshot=True))
        if reconciled.vanished_orders:
            self._finish_vanished(reconciled.vanished_orders)
        if found is None:
            return 0
        fills = [f for f in self._seed(found.fills) if isinstance(f, FillUpdate)]
        unseen = unseen_orders(fills, self._pipeline)
        if unseen:  # placed and finished inside the gap: on_order learns how they ended, before the fills
            final_states = self._seed(self._adapter.fetch_orders(unseen))
            for event in final_states:
                if self._pipeline.accept(event):
                    self._queue.put(event)
            fills = with_slots(fills, final_states)
        delivered = 0
        for fill in fills:
            if self._pipeline.accept_fill(fill):
                self._queue.put(fill)
                delivered += 1
        self._fill_marks.close_gap(symbols, found.checked_at)
        if delivered:
            self._counters.add("backfilled_fills", delivered)
            logger.info("%s: %d fill(s) made during the gap delivered from REST (%d fetched)",
                        self._exchange, delivered, found.fetched)
        return delivered

    def _finish_vanished(self, orders: list[OrderUpdate]) -> None:
        """Orders that were open before the gap and are not any more: fetch how they ended."""
        final_states = self._seed(self._adapter.fetch_orders(orders))
        found = {(e.symbol, e.order_id) for e in final_states if isinstance(e, OrderUpdate)}
        for event in final_states:
            if self._pipeline.accept(event):
                self._queue.put(event)
        for order in orders:
            if (order.symbol, order.order_id) not in found:
                logger.warning("%s: order %s %s left the open orders while disconnected; its final "
                               "state could not be fetched", self._exchange, order.symbol, order.order_id)
