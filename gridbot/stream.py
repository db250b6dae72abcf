"""ExchangeStream: the live state of one futures account, delivered to per-symbol callbacks.

Threads (all started by gridbot, all joined by :meth:`ExchangeStream.stop`):

- the SDK's socket threads only enqueue raw frames into the inbox (never block, never raise);
- the *worker* decodes frames, drops duplicates and stale pushes, seeds and resyncs over REST, and
  puts events on the dispatch queue;
- the *dispatcher* (``dispatch="thread"``) runs the callbacks one at a time; with
  ``dispatch="manual"`` the caller runs them in :meth:`ExchangeStream.dispatch_pending`.

Seeding loses nothing: the sockets are subscribed first and their frames wait in the inbox while
the worker fetches the REST snapshot; per identity, whatever is older than what was already
delivered is dropped (:mod:`gridbot._versions`), pushes and snapshot rows alike.  After every
reconnect or gap the same happens, and the fills the gap swallowed are fetched and delivered
(:mod:`gridbot._backfill`) before the ``resynced`` status.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from gridbot._account import AccountBatch, AccountConfig
from gridbot._backfill import FillWatermarks, backfill_fills, unseen_orders, with_slots
from gridbot._dispatch import (
    AccountCallback,
    Callbacks,
    DispatchQueue,
    FillCallback,
    ForgetSymbol,
    OrderCallback,
    PositionCallback,
    Router,
    Subscriptions,
    TickerCallback,
    WalletCallback,
)
from gridbot._lifecycle import Lifecycle
from gridbot._pipeline import Pipeline
from gridbot.adapters._base import Adapter, Channel, LinkState, Sink
from gridbot.book import StateBook, StreamState, StreamStatus
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError, NormalizationError
from gridbot.events import Event, OrderUpdate, StatusUpdate
from gridbot.journal import Journal
from gridbot.journal._binding import JournalQueue, StreamJournal
from gridbot.normalize import Ignored, ListenKeyExpired
from gridbot.stats import Counters, StreamStats

__all__ = ["ExchangeStream"]

logger = logging.getLogger(__name__)

Exchange = Literal["binance", "bybit"]
DispatchMode = Literal["thread", "manual"]
StatusCallback = Callable[[StatusUpdate], object]

_RESYNC_BACKOFF_FIRST = 0.5
# A gap reported while the socket is up waits this long before its resync: python-binance reports the
# error that precedes its own reconnect as a gap, and the reconnect resyncs anyway (one outage, one resync).
_GAP_GRACE = 0.5
_RESYNC_BACKOFF_MAX = 30.0
_RAW_LOG_CHARS = 500
# Inbox items the worker handles before it hands their events to the dispatcher in one batch, and
# events the dispatcher takes per wake-up: fewer thread switches under load, bounded added latency.
_BATCH = 32


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# Inbox items: what SDK threads and the caller hand to the worker.
class _Frame(NamedTuple):
    """A raw frame (a tuple: the cheapest object an SDK thread can allocate per frame)."""

    channel: Channel
    payload: Any


@dataclass(frozen=True, slots=True)
class _Link:
    channel: Channel
    state: LinkState
    detail: str


@dataclass(frozen=True, slots=True)
class _SeedSymbol:
    symbol: str


@dataclass(frozen=True, slots=True)
class _ForgetSymbol:
    symbol: str


class _Stop:
    pass


_InboxItem = _Frame | _Link | _SeedSymbol | _ForgetSymbol | _Stop


class _InboxSink(Sink):
    """The adapter's view of the inbox: two enqueue calls that cannot block or raise.  Once the
    stream has failed for good nothing reads the inbox any more: :meth:`seal` makes both drop."""

    __slots__ = ("_put", "sealed")

    def __init__(self, inbox: queue.SimpleQueue[_InboxItem]) -> None:
        self._put = inbox.put
        self.sealed = False

    def frame(self, channel: Channel, payload: Any) -> None:
        if not self.sealed:
            self._put(_Frame(channel, payload))

    def link(self, channel: Channel, state: LinkState, detail: str) -> None:
        if not self.sealed:
            self._put(_Link(channel, state, detail))

    def seal(self) -> None:
        self.sealed = True


def _make_adapter(
    exchange: Exchange,
    *,
    api_key: str,
    api_secret: str,
    testnet: bool,
    demo: bool,
    endpoints: Endpoints | None,
    sink: Sink,
    counters: Counters,
) -> Adapter:
    """Build the adapter for ``exchange`` (imported lazily: each pulls in its SDK)."""
    if exchange == "binance":
        from gridbot.adapters.binance import BinanceAdapter

        return BinanceAdapter(
            api_key=api_key, api_secret=api_secret, testnet=testnet, demo=demo,
            endpoints=endpoints, sink=sink, counters=counters,
        )
    from gridbot.adapters.bybit import BybitAdapter

    return BybitAdapter(
        api_key=api_key, api_secret=api_secret, testnet=testnet, demo=demo,
        endpoints=endpoints, sink=sink, counters=counters,
    )


class ExchangeStream:
    """Positions, wallet, orders, fills and prices of one futures account, as callbacks per symbol
    and as a state book (:attr:`book`) a synchronous loop can read without callbacks.

    Callbacks of one stream never run concurrently; events of one kind for one symbol arrive in
    exchange order; a raising callback is counted (``stats.callback_errors``) and logged (the first
    with its traceback, repeats as a periodic count), never fatal.

    Args:
        exchange: ``"binance"`` (USDⓈ-M futures through python-binance) or ``"bybit"`` (v5 linear
            through pybit).
        api_key, api_secret: the account's API keys (read-only permission is enough to watch).  Never
            logged, repr'd or raised.
        testnet: use the exchange's testnet hosts.
        demo: use demo trading (Bybit demo trading; Binance's demo hosts).
        endpoints: replacement REST and WebSocket hosts (a loopback emulator, a proxy); they win over
            ``testnet`` and ``demo``.
        snapshot: seed positions, open orders and the wallet over REST at start and after every
            reconnect (default).  ``False``: only what the sockets push from now on, and nothing is
            recovered after an outage - for streams that must make no REST read at all.
        dispatch: ``"thread"`` (default): callbacks run on a gridbot thread as events arrive.
            ``"manual"``: nothing runs until you call :meth:`dispatch_pending` from your own loop,
            which runs the queued callbacks in your thread (keep calling it until it returns 0 after
            :meth:`stop` to receive the final ``stopped`` status).
        on_status: called with a :class:`~gridbot.events.StatusUpdate` on every connection change
            (``connected``, ``reconnecting``, ``resynced``, ``stopped``, ``failed``).
        journal: a :class:`~gridbot.Journal` or a file path (opened at :meth:`start`, closed by
            :meth:`stop`): every delivered event is journaled after its callbacks ran, and a stream
            started on an existing journal resumes it like a long disconnect - the previous run's
            last state first (``restored=True``), then the seed, the final state of orders that
            ended meanwhile and the fills made meanwhile.

    Raises:
        ValueError: an unknown ``exchange`` or ``dispatch``, or missing keys.
        TypeError: ``on_status`` is not callable, or ``journal`` is neither a Journal nor a path.
    """

    def __init__(
        self,
        exchange: Exchange,
        *,
        api_key: str,
        api_secret: str,
        testnet: bool = False,
        demo: bool = False,
        endpoints: Endpoints | None = None,
        snapshot: bool = True,
        dispatch: DispatchMode = "thread",
        on_status: StatusCallback | None = None,
        journal: Journal | str | os.PathLike[str] | None = None,
    ) -> None:
        if exchange not in ("binance", "bybit"):
            raise ValueError(f"exchange must be 'binance' or 'bybit', not {exchange!r}")
        if dispatch not in ("thread", "manual"):
            raise ValueError(f"dispatch must be 'thread' or 'manual', not {dispatch!r}")
        if not api_key or not api_secret:
            raise ValueError("api_key and api_secret are required")
        self.exchange: Exchange = exchange
        self._snapshot = snapshot
        self._dispatch_mode: DispatchMode = dispatch
        self._froze_heap = False  # start() froze the heap (gc.freeze) and stop() must unfreeze it
        self._counters = Counters()
        self._subscriptions = Subscriptions()
        self._journal = StreamJournal(journal, exchange) if journal is not None else None
        self._queue = DispatchQueue(self._counters) if self._journal is None \
            else JournalQueue(self._counters, self._journal)
        self._backfill_at_seed = False  # a journal's cursors: the seed backfills what a restart missed
        self._book = StateBook()
        self._router = Router(exchange, self._subscriptions, on_status, self._counters, book=self._book)
        self._router.contain_base_exceptions = dispatch == "thread"
        self._pipeline = Pipeline()
        self._fill_marks = FillWatermarks()
        self._inbox: queue.SimpleQueue[_InboxItem] = queue.SimpleQueue()
        self._sink = _InboxSink(self._inbox)
        self._adapter = _make_adapter(
            exchange, api_key=api_key, api_secret=api_secret, testnet=testnet, demo=demo,
            endpoints=endpoints, sink=self._sink, counters=self._counters,
        )
        self._lifecycle = Lifecycle()
        self._deliver_lock = threading.RLock()
        self._stop_event = self._lifecycle.stopping
        self._discard_after: float | None = None
        self._worker: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        # worker-thread state
        self._seed_done = threading.Event()
        self._seed_error: BaseException | None = None
        self._links_up: dict[Channel, bool] = {"private": True, "public": True}
        self._reconnecting = False
        self._resync_needed = False
        self._resync_due: float | None = None
        self._resync_backoff = _RESYNC_BACKOFF_FIRST
        self._outbox: list[Any] = []  # events of the frames in the worker's current batch

    def __repr__(self) -> str:
        symbols = self._subscriptions.symbols()
        return f"<ExchangeStream {self.exchange} {self._lifecycle.phase} symbols={symbols}>"

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self,
        symbol: str,
        *,
        on_position: PositionCallback | None = None,
        on_wallet: WalletCallback | None = None,
        on_order: OrderCallback | None = None,
        on_ticker: TickerCallback | None = None,
        on_fill: FillCallback | None = None,
        on_account: AccountCallback | None = None,
    ) -> None:
        """Register callbacks for ``symbol`` (upper-cased); before or after :meth:`start`.

        Each callback takes its event type (``on_position`` a PositionUpdate, ...); its return value
        is ignored.  Every callback is optional: a symbol subscribed with none still fills
        :attr:`book`.  ``on_wallet`` and ``on_account`` are account-wide: each distinct callback
        (compared by equality, so a bound method counts once) is called once per update, whichever
        symbols share it.  A symbol added while running gets its ticker stream and is seeded like
        one added before.  Subscribing an already subscribed symbol replaces its callbacks.

        Raises:
            TypeError: a callback is neither callable nor None.
            ValueError: ``symbol`` is empty.
        """
        symbol = _normalize_symbol(symbol, self.exchange)
        callbacks = Callbacks(on_position, on_wallet, on_order, on_ticker, on_fill, on_account)
        is_new = self._subscriptions.set(symbol, callbacks)
        if is_new and self._lifecycle.accepting:
            # While starting too: the adapter takes symbols at any time, and the worker seeds it
            # after (or besides) the initial seed - twice is harmless, the pipeline drops repeats.
            self._adapter.add_symbol(symbol)
            if self._snapshot:
                self._inbox.put(_SeedSymbol(symbol))

    def unsubscribe(self, symbol: str) -> None:
        """Remove the callbacks of ``symbol`` and its ticker subscription."""
        symbol = _normalize_symbol(symbol, self.exchange)
        if not self._subscriptions.remove(symbol):
            return
        self._book._forget(symbol)
        # The router's state is the dispatcher's: it forgets in turn, never under a caller's lock.
        self._queue.put(ForgetSymbol(symbol))
        if self._lifecycle.accepting:
            self._inbox.put(_ForgetSymbol(symbol))
            self._adapter.remove_symbol(symbol)

    def add_sink(self, sink: Callable[[Event], None]) -> None:
        """Hand ``sink`` every event the stream delivers to its subscribed symbols, status included,
        before the callbacks and on the same thread (e.g. :class:`gridbot.RedisPublisher`).  It must
        return quickly; an exception it raises is logged and counted like a callback's."""
        self._router.add_sink(sink)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Connect, seed, and return once live.

        Raises AuthenticationError for rejected keys and ConnectError for unreachable hosts or
        a timeout; GridbotError when the stream was started before, or stopped (before or during
        this call: a stopped stream is stopped for good).  On failure no thread is left running.
        """
        self._lifecycle.begin_start()
        deadline = time.monotonic() + timeout
        if self._journal is not None:
            try:
                self._backfill_at_seed = self._journal.open(self._pipeline, self._fill_marks, self._queue,
                                                            self._subscriptions.symbols())
            except BaseException:
                self._abort_start(deadline)
                raise
        live_since = _now_ms()
        for symbol in self._subscriptions.symbols():
            self._fill_marks.went_live(symbol, live_since)
        if self._dispatch_mode == "thread":
            self._dispatcher = self._spawn("dispatch", self._run_dispatcher, deadline)
        try:
            self._adapter.open(self._subscriptions.symbols(), timeout=_remaining(deadline))
        except BaseException:
            self._abort_start(deadline)
            raise
        for channel in ("private", "public"):
            self._book._socket_changed(channel, "up", "opened")  # before the worker sees any change
        self._worker = self._spawn("worker", lambda: self._run_worker(deadline), deadline)
        if not self._seed_done.wait(_remaining(deadline)):
            self._abort_start(deadline)
            raise ConnectError(f"{self.exchange}: the REST seed did not finish within {timeout:g} s")
        if self._seed_error is not None:
            error = self._seed_error
            interrupted = self._stop_event.is_set()  # stop() cut the seed (before our own teardown)
            self._abort_start(deadline)
            if interrupted and not isinstance(error, AuthenticationError):
                raise GridbotError(f"{self.exchange}: stop() was called while start() was running") from error
            raise error
        if not self._lifecycle.go_live():
            self._abort_start(deadline)
            raise GridbotError(f"{self.exchange}: stop() was called while start() was running")
        # What exists now (modules, the SDKs, the seed) lives as long as the stream: keep it out of every
        # later full collection, so the collector's pauses stay short while frames flow.  stop() undoes it.
        self._froze_heap = _freeze_heap()
        self._emit_status("connected", "live")

    def _spawn(self, role: str, target: Callable[[], None], deadline: float) -> threading.Thread:
        """A gridbot thread, started only while the stream is starting (never after stop())."""
        thread = self._lifecycle.spawn(f"gridbot-{self.exchange}-{role}", target)
        if thread is None:
            self._abort_start(deadline)
            raise GridbotError(f"{self.exchange}: stop() was called while start() was running")
        return thread

    def _abort_start(self, deadline: float) -> None:
        """Tear down what start() built; when stop() already claimed the teardown, only make sure
        the adapter is closed (it may have finished opening after stop() closed it)."""
        if self._lifecycle.begin_stop() not in ("starting", "failed"):
            self._close_adapter(max(0.5, _remaining(deadline)))
            return
        self._stop_threads(deadline + 5.0, adapter_budget=max(1.0, _remaining(deadline)))
        self._lifecycle.finish_stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect and join every thread gridbot started; idempotent, bounded by ``timeout``.

        Events already received are delivered first while the budget allows; a final
        ``StatusUpdate("stopped")`` is the last event.  A stream stopped before :meth:`start` is
        stopped for good; stopped during :meth:`start`, it makes ``start()`` raise.
        """
        found = self._lifecycle.begin_stop()
        if found in ("new", "stopping", "stopped"):
            return
        deadline = time.monotonic() + timeout
        self._stop_threads(deadline, adapter_budget=timeout * 0.5, final_status=True)
        self._lifecycle.finish_stop()
        if self._froze_heap:
            # Frozen objects are never collected: a process that stops streams (and drops its own objects)
            # must get its normal collection back, or their reference cycles leak for good.
            self._froze_heap = False
            gc.unfreeze()

    def _close_adapter(self, budget: float) -> None:
        try:
            self._adapter.close(timeout=budget)
        except Exception:
            logger.exception("%s: closing the exchange sockets failed", self.exchange)

    def _stop_threads(self, deadline: float, *, adapter_budget: float, final_status: bool = False) -> None:
        current = threading.current_thread()
        self._stop_event.set()  # first: a worker between REST retries ends at once
        self._close_adapter(min(adapter_budget, _remaining(deadline)))
        self._discard_after = deadline - 0.2
        self._inbox.put(_Stop())
        self._join(self._worker, deadline, current)
        if final_status:
            self._emit_status("stopped", "stop() called")
        self._queue.close()
        self._join(self._dispatcher, deadline, current)
        self._router.errors.flush()
        if self._journal is not None:
            self._journal.close(max(0.5, _remaining(deadline)))

    def _join(self, thread: threading.Thread | None, deadline: float, current: threading.Thread) -> None:
        if thread is None or thread is current:
            return
        thread.join(_remaining(deadline))
        if thread.is_alive():
            logger.error("%s: thread %s did not finish within stop()'s timeout", self.exchange, thread.name)

    def _fail(self, detail: str) -> None:
        """The stream cannot go on (a fault its threads could not contain): say so - status ``failed``,
        ``connected`` False - close the sockets and seal the inbox so nothing piles up unread."""
        if not self._lifecycle.fail():
            return
        self._sink.seal()
        self._seed_done.set()
        self._close_adapter(2.0)
        self._emit_status("failed", detail)

    def __enter__(self) -> ExchangeStream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True only while every socket is up."""
        return self._lifecycle.phase == "live" and self._adapter.connected

    @property
    def book(self) -> StateBook:
        """The account state delivered so far: positions, open orders, take-profit ids, tickers,
        wallet, sockets (see :mod:`gridbot.book`); readable from any thread, no callback needed."""
        return self._book

    def status(self) -> StreamStatus:
        """Connection state, each socket, the subscribed symbols, open positions and counters."""
        book = self._book.snapshot()
        return StreamStatus(
            exchange=self.exchange,
            state=self._state(),
            connected=self.connected,
            sockets=self._book.sockets(),
            symbols=tuple(self._subscriptions.symbols()),
            positions=tuple(p for p in book.positions if p.size > 0),
            open_orders=len(book.open_orders),
            last_event_at=book.last_event_at,
            stats=self.stats,
        )

    def _state(self) -> StreamState:
        phase = self._lifecycle.phase
        if phase in ("stopping", "stopped"):
            return "stopped"
        if phase in ("new", "starting", "failed"):
            return phase
        failed_socket = any(s.state == "failed" for s in self._book.sockets())
        if failed_socket or self._book.state == "failed":  # keys rejected, or the worker died
            return "failed"
        return "connected" if self.connected and not self._reconnecting else "reconnecting"

    @property
    def stats(self) -> StreamStats:
        """A consistent snapshot of the counters."""
        return self._counters.snapshot()

    def dispatch_pending(self, timeout: float = 0.0) -> int:
        """Run queued callbacks in the calling thread (``dispatch="manual"``); returns how many events.

        Waits up to ``timeout`` seconds for the first event, then delivers what is queued at that
        moment without waiting further.
        """
        if self._dispatch_mode != "manual":
            raise GridbotError("dispatch_pending() is for streams built with dispatch='manual'")
        with self._deliver_lock:
            event = self._queue.get(timeout)
            if event is None:
                return 0
            delivered = 0
            budget = len(self._queue)
            while event is not None:
                self._router.deliver(event)
                if self._journal is not None:
                    self._journal.delivered(event, self._book.account())
                delivered += 1
                if delivered > budget:
                    break
                event = self._queue.get(0)
            return delivered

    # ------------------------------------------------------------------ threads

    def _run_dispatcher(self) -> None:
        """Runs the callbacks until the queue closes; survives anything one event does (even a
        BaseException out of a callback), and fails the stream loudly if the loop itself breaks."""
        try:
            while True:
                batch = self._queue.take_all(None, limit=_BATCH)
                if not batch:
                    return
                for done, event in enumerate(batch):
                    if self._discard_after is not None and time.monotonic() > self._discard_after:
                        logger.warning("%s: stop() budget spent; %d queued events not delivered",
                                       self.exchange, len(self._queue) + len(batch) - done)
                        return
                    self._deliver_one(event)
        except BaseException:
            logger.exception("%s: the dispatcher failed; the stream cannot go on", self.exchange)
            self._fail("internal error in the dispatcher (see the log)")

    def _deliver_one(self, event: Any) -> None:
        try:
            with self._deliver_lock:
                self._router.deliver(event)
                if self._journal is not None:
                    self._journal.delivered(event, self._book.account())
        except BaseException:  # noqa: BLE001 - the dispatcher must outlive any one event
            self._internal_error(f"delivering {type(event).__name__}")

    def _run_worker(self, start_deadline: float) -> None:
        try:
            self._initial_seed(start_deadline)
            if self._seed_error is None:
                self._work_loop()
        except BaseException:
            logger.exception("%s: the stream worker failed; the stream cannot go on", self.exchange)
            self._seed_error = self._seed_error or GridbotError(f"{self.exchange}: worker failed")
            self._fail("internal error in the stream worker (see the log)")
        finally:
            self._seed_done.set()

    def _internal_error(self, what: str) -> None:
        """A fault of gridbot's own (a bug): logged with its traceback and counted; the thread goes on."""
        self._counters.add("internal_errors")
        logger.exception("%s: internal error while %s; the stream goes on", self.exchange, what)

    def _work_loop(self) -> None:
        while True:
            if self._journal is not None:  # the backfill bound the journal may persist, before each wait
                self._journal.publish(self._fill_marks, self._pipeline, self._subscriptions.symbols())
            try:
                item = self._inbox.get(timeout=self._until_resync())
            except queue.Empty:
                item = None
            if item is not None and not self._work_batch(item):
                return
            if self._resync_due is not None and time.monotonic() >= self._resync_due:
                try:
                    self._resync()
                except Exception:  # noqa: BLE001 - retried like a failed REST resync
                    self._internal_error("resyncing")
                    self._schedule_resync(self._resync_backoff)

    def _work_batch(self, item: _InboxItem) -> bool:
        """Handle ``item`` and up to ``_BATCH`` items already waiting; the events of consecutive frames
        reach the dispatch queue together, and anything else is handled after them.  False at the
        stop marker."""
        handled = 0
        try:
            while True:
                if isinstance(item, _Stop):
                    return False
                if self._discard_after is None or time.monotonic() <= self._discard_after:
                    try:
                        if isinstance(item, _Frame):
                            self._handle_frame(item)
                        else:
                            self._flush_outbox()
                            self._handle(item)
                    except Exception:  # noqa: BLE001 - one item must not end the worker
                        self._internal_error(f"handling {type(item).__name__.lstrip('_')}")
                # else: stop() budget spent: drain without work until the stop marker
                handled += 1
                if handled >= _BATCH:
                    return True
                try:
                    item = self._inbox.get_nowait()
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

    def _handle(self, item: _InboxItem) -> None:
        if isinstance(item, _Frame):
            self._handle_frame(item)
        elif isinstance(item, _Link):
            self._handle_link(item)
        elif isinstance(item, _SeedSymbol):
            self._seed_symbol(item.symbol)
        elif isinstance(item, _ForgetSymbol):
            self._pipeline.forget_symbol(item.symbol)
            self._fill_marks.forget(item.symbol)

    # ------------------------------------------------------------------ frames

    def _handle_frame(self, frame: _Frame) -> None:
        self._book._message_seen(frame.channel)
        try:
            decoded = self._adapter.decode(frame.channel, frame.payload)
        except NormalizationError as exc:
            self._bad_message(frame, str(exc))
            return
        except Exception:
            logger.exception("%s %s: decoding failed; raw=%.*r", self.exchange, frame.channel,
                             _RAW_LOG_CHARS, frame.payload)
            self._counters.add("bad_messages")
            return
        if isinstance(decoded, Ignored):
            return
        if isinstance(decoded, ListenKeyExpired):
            logger.info("%s: listenKey expired at %d; the adapter renews it and gridbot resyncs",
                        self.exchange, decoded.timestamp)
            return
        accepted = [e for e in decoded if isinstance(e, AccountConfig) or self._pipeline.accept(e)]
        self._outbox.extend(self._together(accepted, timestamp=0, is_snapshot=False))

    def _put_together(self, events: list[Any], *, timestamp: int, is_snapshot: bool) -> None:
        """Queue events that change the account together (after any frame events still in the outbox)."""
        self._flush_outbox()
        self._queue.put_many(self._together(events, timestamp=timestamp, is_snapshot=is_snapshot))

    def _together(self, events: list[Any], *, timestamp: int, is_snapshot: bool) -> list[Any]:
        """On Binance, whose account view gridbot computes, events that change the account together go
        inside batch markers, so the view is computed once, on the whole change."""
        if self.exchange != "binance" or len(events) <= 1:
            return events
        return [AccountBatch(start=True), *events,
                AccountBatch(start=False, timestamp=timestamp, is_snapshot=is_snapshot)]

    def _bad_message(self, frame: _Frame, reason: str) -> None:
        self._counters.add("bad_messages")
        logger.error("%s %s: dropped a message that could not be normalized: %s; raw=%.*r",
                     self.exchange, frame.channel, reason, _RAW_LOG_CHARS, frame.payload)

    # ------------------------------------------------------------------ links and resyncs

    def _handle_link(self, link: _Link) -> None:
        self._book._socket_changed(link.channel, link.state, link.detail)
        if link.state == "failed":
            logger.error("%s %s socket failed: %s", self.exchange, link.channel, link.detail)
            self._emit_status("failed", f"{link.channel}: {link.detail}")
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

    def _link_down(self, link: _Link) -> None:
        was_up = self._links_up[link.channel]
        self._links_up[link.channel] = False
        if link.channel == "private":
            self._fill_marks.open_gap(self._pipeline)
            self._resync_needed = True
            self._resync_due = None  # resync once the socket is back, not against a dying one
        if was_up and not self._reconnecting:
            self._reconnecting = True
            self._emit_status("reconnecting", f"{link.channel}: {link.detail}")

    def _link_up(self, link: _Link) -> None:
        if not self._links_up[link.channel]:
            self._counters.add("reconnects")
        self._links_up[link.channel] = True
        if not all(self._links_up.values()):
            return
        if self._resync_needed and self._snapshot:
            self._schedule_resync(0.0)
        elif self._reconnecting:
            self._reconnecting = False
            self._resync_needed = False
            self._emit_status("connected", f"{link.channel}: {link.detail}")

    def _schedule_resync(self, delay: float) -> None:
        self._resync_due = time.monotonic() + delay

    def _resync(self) -> None:
        """Fetch the snapshot and the gap's fills after a reconnect or gap; retried with backoff on
        failure (what a failed attempt delivered is not delivered again: the pipeline drops it)."""
        self._resync_due = None
        symbols = self._subscriptions.symbols()
        began = time.monotonic()
        try:
            backfilled = self._apply_snapshot(symbols, include_wallet=True, backfill=True)
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
        self._reconnecting = False
        self._counters.add("resyncs")
        took_ms = (time.monotonic() - began) * 1000
        logger.info("%s: resync took %.0f ms; %d fill(s) backfilled", self.exchange, took_ms, backfilled)
        self._emit_status("resynced", f"snapshot of {len(symbols)} symbol(s) applied, "
                                      f"{backfilled} fill(s) backfilled, in {took_ms:.0f} ms")

    def _initial_seed(self, deadline: float) -> None:
        """The first snapshot; retried until ``start()``'s deadline, except for rejected keys."""
        if not self._snapshot:
            self._seed_done.set()
            return
        backoff = _RESYNC_BACKOFF_FIRST
        while True:
            try:
                self._apply_snapshot(self._subscriptions.symbols(), include_wallet=True,
                                     backfill=self._backfill_at_seed)
                break
            except AuthenticationError as exc:
                self._seed_error = exc
                break
            except GridbotError as exc:
                if time.monotonic() + backoff >= deadline or self._stop_event.is_set():
                    self._seed_error = ConnectError(f"{self.exchange}: the REST seed failed: {exc}")
                    self._seed_error.__cause__ = exc
                    break
                logger.warning("%s: REST seed failed (%s); retrying", self.exchange, exc)
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, _RESYNC_BACKOFF_MAX)
        self._seed_done.set()

    def _seed_symbol(self, symbol: str) -> None:
        if self._subscriptions.get(symbol) is None:
            return
        self._fill_marks.went_live(symbol, _now_ms())
        try:
            self._apply_snapshot([symbol], include_wallet=False)
        except GridbotError as exc:
            if self._stop_event.is_set():  # stop() cut the request: nothing to report
                logger.debug("%s: seeding %s ended by stop(): %s", self.exchange, symbol, exc)
                return
            logger.warning("%s: seeding %s failed (%s); a full resync follows", self.exchange, symbol, exc)
            self._resync_needed = True
            self._schedule_resync(self._resync_backoff)

    def _apply_snapshot(self, symbols: list[str], *, include_wallet: bool, backfill: bool = False) -> int:
        """Fetch and deliver a snapshot of ``symbols``; with ``backfill``, then the fills the gap may
        have swallowed.  Everything is fetched before anything is delivered where possible, so a
        failing request leaves little to retry.  Returns the number of fills backfilled."""
        events = self._adapter.fetch_snapshot(symbols, include_wallet=include_wallet)
        found = backfill_fills(self._adapter, self._pipeline, self._fill_marks, symbols, _now_ms()) \
            if backfill else None
        config = self._adapter.fetch_account_config(symbols, full=include_wallet)
        reconciled = self._pipeline.reconcile(events, symbols)
        together: list[Any] = list(reconciled.events)
        if config is not None:
            together.append(config)
        self._put_together(together, timestamp=_now_ms(), is_snapshot=True)
        if reconciled.vanished_orders:
            self._finish_vanished(reconciled.vanished_orders)
        if found is None:
            return 0
        fills = found.fills
        unseen = unseen_orders(fills, self._pipeline)
        if unseen:  # placed and finished inside the gap: on_order learns how they ended, before the fills
            final_states = self._adapter.fetch_orders(unseen)
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
                        self.exchange, delivered, found.fetched)
        return delivered

    def _finish_vanished(self, orders: list[OrderUpdate]) -> None:
        """Orders that were open before the gap and are not any more: fetch how they ended."""
        final_states: list[Event] = list(self._adapter.fetch_orders(orders))
        found = {(e.symbol, e.order_id) for e in final_states if isinstance(e, OrderUpdate)}
        for event in final_states:
            if self._pipeline.accept(event):
                self._queue.put(event)
        for order in orders:
            if (order.symbol, order.order_id) not in found:
                logger.warning("%s: order %s %s left the open orders while disconnected; its final "
                               "state could not be fetched", self.exchange, order.symbol, order.order_id)

    # ------------------------------------------------------------------ status

    def _emit_status(self, state: Literal["connected", "reconnecting", "resynced", "stopped", "failed"],
                     detail: str) -> None:
        logger.info("%s stream %s: %s", self.exchange, state, detail)
        self._queue.put(StatusUpdate(exchange=self.exchange, timestamp=_now_ms(), state=state, detail=detail))


# The exchanges' symbol syntax.  Binance documents the legal range of ``symbol`` (error -1100):
# ``^[A-Z0-9-_.]{1,20}$``.  Bybit documents none; its linear symbols are letters and digits
# (``BTCUSDT``, ``1000PEPEUSDT``), dated futures add ``-`` (``BTC-26DEC25``), and ``.`` would split
# the ``tickers.<SYM>`` topic.  Anything else would land unescaped in a stream URL or topic.
_SYMBOL_SYNTAX: dict[str, re.Pattern[str]] = {
    "binance": re.compile(r"[A-Z0-9_.-]{1,20}"),
    "bybit": re.compile(r"[A-Z0-9][A-Z0-9_-]{0,24}"),
}


def _normalize_symbol(symbol: str, exchange: str) -> str:
    """The symbol upper-cased, or ValueError when it cannot be an ``exchange`` symbol."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, not {symbol!r}")
    clean = symbol.strip().upper()
    if not symbol.isascii() or not _SYMBOL_SYNTAX[exchange].fullmatch(clean):  # "ß".upper() is "SS"
        raise ValueError(
            f"{symbol[:40]!r} is not a {exchange} symbol: expected letters and digits like 'BTCUSDT' "
            f"(pattern {_SYMBOL_SYNTAX[exchange].pattern}), no spaces, slashes or URL characters")
    return clean


def _freeze_heap() -> bool:
    """``gc.freeze()`` unless the application froze its heap itself (its choice is left alone)."""
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
