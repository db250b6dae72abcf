"""The stream worker: seeds and resyncs, and owns the frames while it does.

One gridbot thread per stream runs :meth:`StreamWorker.run`: it follows the sockets' link reports,
runs the REST seed and every resync (:mod:`gridbot._seeding`), and handles the frames that arrived
meanwhile in order, handing their events to the dispatch queue in batches.  When it has nothing to
do it gives the frames back to the SDK threads, which then decode, deduplicate and queue them
themselves with the same code (:class:`gridbot._inbox.FrameGate`).  Nothing can end the worker but
the stop marker: an item that fails is logged and counted, and a broken loop fails the stream loudly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from gridbot._account import AccountConfig
from gridbot._backfill import FillWatermarks
from gridbot._dispatch import DispatchQueue, Subscriptions
from gridbot._inbox import (
    ForgetSymbolItem,
    Frame,
    FrameGate,
    InboxItem,
    Link,
    SeedSymbol,
    Stop,
    SymbolRejected,
)
from gridbot._pipeline import Pipeline
from gridbot._seeding import Seeder, now_ms, together
from gridbot.adapters._base import Adapter, Channel
from gridbot.book import StateBook
from gridbot.errors import AuthenticationError, ConnectError, GridbotError, NormalizationError
from gridbot.events import StatusUpdate
from gridbot.journal._binding import StreamJournal
from gridbot.normalize import Decoder, Ignored, ListenKeyExpired
from gridbot.stats import Counters

__all__ = ["StreamWorker"]

logger = logging.getLogger(__name__)

StatusState = Literal["connected", "reconnecting", "resynced", "stopped", "failed"]

_RESYNC_BACKOFF_FIRST = 0.5
# A gap reported while the socket is up waits this long before its resync: python-binance reports the
# error that precedes its own reconnect as a gap, and the reconnect resyncs anyway (one outage, one resync).
_GAP_GRACE = 0.5
_RESYNC_BACKOFF_MAX = 30.0
_RAW_LOG_CHARS = 500
# Inbox items the worker handles before it hands their events to the dispatcher in one batch, and
# events the dispatcher takes per wake-up: fewer thread switches under load, bounded added latency.
BATCH = 32


class StreamWorker:
    """The worker's state and loop; the stream builds one and runs :meth:`run` on a gridbot thread."""

    def __init__(self, exchange: str, *, adapter_factory: Callable[[FrameGate], Adapter],
                 decoder_factory: Callable[[Channel], Decoder],
                 pipeline: Pipeline, fill_marks: FillWatermarks, dispatch_queue: DispatchQueue,
                 book: StateBook, counters: Counters, subscriptions: Subscriptions,
                 journal: StreamJournal | None, snapshot: bool, stop_event: threading.Event,
                 on_fatal: Callable[[str], None], on_rejected: Callable[[str], None]) -> None:
        self.exchange = exchange
        self._pipeline = pipeline
        self._fill_marks = fill_marks
        self._queue = dispatch_queue
        self._book = book
        self._counters = counters
        self._subscriptions = subscriptions
        self._journal = journal
        self._snapshot = snapshot
        self._stop_event = stop_event
        self._on_fatal = on_fatal
        self._on_rejected = on_rejected  # the stream's unsubscribe: drops a refused subscription
        self._listed: set[str] = set()  # symbols check_symbols accepted: not asked again
        self.inbox: queue.SimpleQueue[InboxItem] = queue.SimpleQueue()
        self._decoders: dict[Channel, Decoder] = {"private": decoder_factory("private"),
                                                  "public": decoder_factory("public")}
        self.gate = FrameGate(self.inbox, self._handle_inline)
        self.adapter = adapter_factory(self.gate)
        self._seeder = Seeder(exchange, self.adapter, pipeline, fill_marks, dispatch_queue, counters,
                              before_put=self._flush_outbox, seed=self._decoders["private"].seed)
        self.discard_after: float | None = None  # stop()'s budget: past it, drain without work
        self.backfill_at_seed = False  # a journal's cursors: the seed backfills what a restart missed
        self.seed_done = threading.Event()
        self.seed_error: BaseException | None = None
        self.reconnecting = False
        self._links_up: dict[Channel, bool] = {"private": True, "public": True}
        self._resync_needed = False
        self._resync_due: float | None = None
        self._resync_backoff = _RESYNC_BACKOFF_FIRST
        self._outbox: list[Any] = []  # events of the frames in the current batch

    # ------------------------------------------------------------------ what other threads hand over

    def seed_symbol_later(self, symbol: str) -> None:
        self.gate.to_worker(SeedSymbol(symbol))

    def forget_symbol_later(self, symbol: str) -> None:
        self.gate.to_worker(ForgetSymbolItem(symbol))

    def request_stop(self, discard_after: float) -> None:
        """Handle what is queued until ``discard_after`` (monotonic), drop the rest, then end."""
        self.discard_after = discard_after
        self.gate.to_worker(Stop())

    def seal(self) -> None:
        """The stream failed for good: nothing reads the inbox any more, so nothing may fill it."""
        self.gate.seal()
        self.seed_done.set()

    def emit_status(self, state: StatusState, detail: str) -> None:
        logger.info("%s stream %s: %s", self.exchange, state, detail)
        self._queue.put(StatusUpdate(exchange=self.exchange, timestamp=now_ms(), state=state, detail=detail))

    # ------------------------------------------------------------------ the loop

    def run(self, start_deadline: float) -> None:
        try:
            self._initial_seed(start_deadline)
            if self.seed_error is None:
                self._work_loop()
        except BaseException:
            logger.exception("%s: the stream worker failed; the stream cannot go on", self.exchange)
            self.seed_error = self.seed_error or GridbotError(f"{self.exchange}: worker failed")
            self._on_fatal("internal error in the stream worker (see the log)")
        finally:
            self.seed_done.set()

    def internal_error(self, what: str) -> None:
        """A fault of gridbot's own (a bug): logged with its traceback and counted; the thread goes on."""
        self._counters.add("internal_errors")
        logger.exception("%s: internal error while %s; the stream goes on", self.exchange, what)

    def _work_loop(self) -> None:
        while True:
            if self._journal is not None:  # the backfill bound the journal may persist, before each wait
                self._journal.publish(self._fill_marks, self._pipeline, self._subscriptions.symbols())
            if self._resync_due is None:
                self.gate.release()  # idle: frames are handled on the SDK threads until the next item
            try:
                item = self.inbox.get(timeout=self._until_resync())
            except queue.Empty:
                item = None
            if item is not None and not self._work_batch(item):
                return
            if self._resync_due is not None and time.monotonic() >= self._resync_due:
                try:
                    self._resync()
                except Exception:  # noqa: BLE001 - retried like a failed REST resync
                    self.internal_error("resyncing")
                    self._schedule_resync(self._resync_backoff)

    def _work_batch(self, item: InboxItem) -> bool:
        """Handle ``item`` and up to ``BATCH`` items already waiting; the events of consecutive frames
        reach the dispatch queue together, and anything else is handled after them.  False at the
        stop marker."""
        handled = 0
        try:
            while True:
                if isinstance(item, Stop):
                    return False
                if self.discard_after is None or time.monotonic() <= self.discard_after:
                    try:
                        if isinstance(item, Frame):
                            self._handle_frame(item)
                        else:
                            self._flush_outbox()
                            self._handle(item)
                    except Exception:  # noqa: BLE001 - one item must not end the worker
                        self.internal_error(f"handling {type(item).__name__}")
                # else: stop() budget spent: drain without work until the stop marker
                handled += 1
                if handled >= BATCH:
                    return True
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    return True
        finally:
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        if self._outbox:
            self._queue.put_many(self._outbox)
            self._outbox = []

    def _until_resync(self) -> float | None:
        if self._resync_due is None:
            return None
        return max(0.0, self._resync_due - time.monotonic())

    def _handle(self, item: InboxItem) -> None:
        if isinstance(item, Frame):
            self._handle_frame(item)
        elif isinstance(item, Link):
            self._handle_link(item)
        elif isinstance(item, SeedSymbol):
            self._seed_symbol(item.symbol)
        elif isinstance(item, ForgetSymbolItem):
            self._pipeline.forget_symbol(item.symbol)
            self._fill_marks.forget(item.symbol)
            for decoder in self._decoders.values():
                decoder.forget(item.symbol)
            self._listed.discard(item.symbol)
        elif isinstance(item, SymbolRejected):
            self._reject_symbol(item.symbol, item.detail)

    # ------------------------------------------------------------------ frames

    def _handle_frame(self, frame: Frame) -> None:
        """A frame that waited in the inbox (the worker owns the stream)."""
        self._outbox.extend(self._frame_events(frame.channel, frame.payload))

    def _handle_inline(self, channel: Channel, payload: Any) -> None:
        """A frame on its SDK thread, under the gate's lock (the worker does not own the stream):
        the same work as :meth:`_handle_frame`; nothing may reach the SDK thread."""
        try:
            events = self._frame_events(channel, payload)
            if events:
                self._queue.put_many(events)
                if self._journal is not None:  # the backfill bound follows the fills as they pass
                    self._journal.publish(self._fill_marks, self._pipeline, self._subscriptions.symbols())
        except Exception:  # noqa: BLE001 - a fault of gridbot's own must not reach the SDK thread
            self.internal_error(f"handling a {channel} frame")

    def _frame_events(self, channel: Channel, payload: Any) -> list[Any]:
        """Decode a frame and keep what the pipeline accepts (bad frames are logged and counted)."""
        self._book._message_seen(channel)
        try:
            decoded = self._decoders[channel].decode(payload)
        except NormalizationError as exc:
            self._bad_message(channel, payload, str(exc))
            return []
        except Exception:
            logger.exception("%s %s: decoding failed; raw=%.*r", self.exchange, channel,
                             _RAW_LOG_CHARS, payload)
            self._counters.add("bad_messages")
            return []
        if isinstance(decoded, Ignored):
            return []
        if isinstance(decoded, ListenKeyExpired):
            logger.info("%s: listenKey expired at %d; the adapter renews it and gridbot resyncs",
                        self.exchange, decoded.timestamp)
            return []
        accept = self._pipeline.accept
        accepted = [e for e in decoded if isinstance(e, AccountConfig) or accept(e)]
        return together(self.exchange, accepted, timestamp=0, is_snapshot=False)

    def _bad_message(self, channel: Channel, payload: Any, reason: str) -> None:
        self._counters.add("bad_messages")
        logger.error("%s %s: dropped a message that could not be normalized: %s; raw=%.*r",
                     self.exchange, channel, reason, _RAW_LOG_CHARS, payload)

    # ------------------------------------------------------------------ links and resyncs

    def _handle_link(self, link: Link) -> None:
        self._book._socket_changed(link.channel, link.state, link.detail)
        if link.state in ("down", "gap"):  # what follows comes from a new connection, or after a hole
            self._decoders[link.channel].reset()
        if link.state == "failed":
            logger.error("%s %s socket failed: %s", self.exchange, link.channel, link.detail)
            self.emit_status("failed", f"{link.channel}: {link.detail}")
            return
        if link.state == "down":
            self._link_down(link)
        elif link.state == "gap":
            logger.warning("%s %s: possible gap in the stream: %s", self.exchange, link.channel, link.detail)
            if link.channel == "private" and self._snapshot:  # snapshot=False: no REST read, ever
                self._fill_marks.open_gap(self._pipeline)
                self._resync_needed = True
                if all(self._links_up.values()) and self._resync_due is None:
                    self._schedule_resync(_GAP_GRACE)
        elif link.state == "up":
            self._link_up(link)

    def _link_down(self, link: Link) -> None:
        was_up = self._links_up[link.channel]
        self._links_up[link.channel] = False
        if link.channel == "private":
            self._fill_marks.open_gap(self._pipeline)
            self._resync_needed = True
            self._resync_due = None  # resync once the socket is back, not against a dying one
        if was_up and not self.reconnecting:
            self.reconnecting = True
            self.emit_status("reconnecting", f"{link.channel}: {link.detail}")

    def _link_up(self, link: Link) -> None:
        if not self._links_up[link.channel]:
            self._counters.add("reconnects")
        self._links_up[link.channel] = True
        if not all(self._links_up.values()):
            return
        if self._resync_needed and self._snapshot:
            self._schedule_resync(0.0)
        elif self.reconnecting:
            self.reconnecting = False
            self._resync_needed = False
            self.emit_status("connected", f"{link.channel}: {link.detail}")

    def _schedule_resync(self, delay: float) -> None:
        self._resync_due = time.monotonic() + delay

    def _resync(self) -> None:
        """Fetch the snapshot and the gap's fills after a reconnect or gap; retried with backoff on
        failure (what a failed attempt delivered is not delivered again: the pipeline drops it)."""
        self._resync_due = None
        self.gate.claim()  # already the owner (a due resync keeps it): made explicit
        began = time.monotonic()
        try:
            symbols = self._listed_symbols()
            backfilled = self._seeder.apply_snapshot(symbols, include_wallet=True, backfill=True)
        except GridbotError as exc:
            if self._stop_event.is_set():  # stop() cut the request: nothing to report
                logger.debug("%s: resync ended by stop(): %s", self.exchange, exc)
                return
            logger.warning("%s: resync failed (%s); retrying in %.1f s",
                           self.exchange, exc, self._resync_backoff)
            self._schedule_resync(self._resync_backoff)
            self._resync_backoff = min(self._resync_backoff * 2, _RESYNC_BACKOFF_MAX)
            return
        self._resync_backoff = _RESYNC_BACKOFF_FIRST
        self._resync_needed = False
        self.reconnecting = False
        self._counters.add("resyncs")
        took_ms = (time.monotonic() - began) * 1000
        logger.info("%s: resync took %.0f ms; %d fill(s) backfilled", self.exchange, took_ms, backfilled)
        self.emit_status("resynced", f"snapshot of {len(symbols)} symbol(s) applied, "
                                     f"{backfilled} fill(s) backfilled, in {took_ms:.0f} ms")

    # ------------------------------------------------------------------ seeding

    def _initial_seed(self, deadline: float) -> None:
        """The first snapshot; retried until ``start()``'s deadline, except for rejected keys."""
        if not self._snapshot:
            self.seed_done.set()
            return
        backoff = _RESYNC_BACKOFF_FIRST
        while True:
            try:
                self._seeder.apply_snapshot(self._listed_symbols(), include_wallet=True,
                                            backfill=self.backfill_at_seed)
                break
            except AuthenticationError as exc:
                self.seed_error = exc
                break
            except GridbotError as exc:
                if time.monotonic() + backoff >= deadline or self._stop_event.is_set():
                    self.seed_error = ConnectError(f"{self.exchange}: the REST seed failed: {exc}")
                    self.seed_error.__cause__ = exc
                    break
                logger.warning("%s: REST seed failed (%s); retrying", self.exchange, exc)
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, _RESYNC_BACKOFF_MAX)
        self.seed_done.set()

    def _seed_symbol(self, symbol: str) -> None:
        if self._subscriptions.get(symbol) is None:
            return
        self._fill_marks.went_live(symbol, now_ms())
        try:
            if symbol not in self._listed_symbols([symbol]):
                return  # the exchange does not list it: rejected, unsubscribed
            self._seeder.apply_snapshot([symbol], include_wallet=False)
        except GridbotError as exc:
            if self._stop_event.is_set():  # stop() cut the request: nothing to report
                logger.debug("%s: seeding %s ended by stop(): %s", self.exchange, symbol, exc)
                return
            logger.warning("%s: seeding %s failed (%s); a full resync follows", self.exchange, symbol, exc)
            self._resync_needed = True
            self._schedule_resync(self._resync_backoff)

    # ------------------------------------------------------------------ unknown symbols

    def _listed_symbols(self, symbols: list[str] | None = None) -> list[str]:
        """``symbols`` (default: every subscribed one) without those the exchange does not list: symbols
        not checked before are checked by REST, and each rejected one is dropped (:meth:`_reject_symbol`)."""
        symbols = self._subscriptions.symbols() if symbols is None else symbols
        new = [symbol for symbol in symbols if symbol not in self._listed]
        if not new:
            return symbols
        rejected = self.adapter.check_symbols(new)
        for symbol, detail in rejected.items():
            self._reject_symbol(symbol, detail)
        self._listed.update(symbol for symbol in new if symbol not in rejected)
        return [symbol for symbol in symbols if symbol not in rejected]

    def _reject_symbol(self, symbol: str, detail: str) -> None:
        """The exchange does not trade ``symbol`` (its REST listing, or a socket's refusal): one WARNING,
        counted, and the subscription removed (callbacks and ticker); the other symbols go on."""
        if self._subscriptions.get(symbol) is None:
            return  # unsubscribed meanwhile, or already rejected
        logger.warning("%s: the exchange rejected symbol %s (%s); its subscription is removed",
                       self.exchange, symbol, detail)
        self._counters.add("rejected_symbols")  # after the log line: a reader of the count finds it
        self._on_rejected(symbol)
