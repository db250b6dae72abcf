"""ExchangeStream: the live state of one futures account, delivered to per-symbol callbacks.

Threads (all started by gridbot, all joined by :meth:`ExchangeStream.stop`):

- the SDK's socket threads decode, deduplicate and queue their frames for dispatch themselves, except
  while the worker seeds or resyncs: then the frames wait in the worker's inbox (:mod:`gridbot._inbox`);
  they never block for long and never raise;
- the *worker* (:mod:`gridbot._worker`, :mod:`gridbot._seeding`) seeds and resyncs over REST and
  handles the frames that waited meanwhile (decode, drop duplicates and stale pushes, queue);
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
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from gridbot._backfill import FillWatermarks
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
from gridbot._seeding import now_ms
from gridbot._symbols import normalize_symbol
from gridbot._worker import BATCH, StreamWorker
from gridbot.adapters._base import Adapter, Channel, Sink
from gridbot.book import StateBook, StreamState, StreamStatus
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import Event, StatusUpdate
from gridbot.journal import Journal
from gridbot.journal._binding import JournalQueue, StreamJournal
from gridbot.normalize import Decoder, new_decoder
from gridbot.stats import Counters, StreamStats

__all__ = ["ExchangeStream"]

logger = logging.getLogger(__name__)

Exchange = Literal["binance", "bybit"]
DispatchMode = Literal["thread", "manual"]
StatusCallback = Callable[[StatusUpdate], object]


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


def _make_decoder(exchange: Exchange, channel: Channel) -> Decoder:
    """The decoder of one channel (stateful decoding is the stream's, not the adapter's)."""
    return new_decoder(exchange, channel)


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
        self._pipeline = Pipeline()
        self._book = StateBook()
        self._book._share_finished(self._pipeline.finished_orders)
        self._router = Router(exchange, self._subscriptions, on_status, self._counters, book=self._book)
        self._router.contain_base_exceptions = dispatch == "thread"
        self._fill_marks = FillWatermarks()
        self._lifecycle = Lifecycle()
        self._deliver_lock = threading.RLock()
        self._stop_event = self._lifecycle.stopping
        self._worker_thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._worker = StreamWorker(
            exchange,
            adapter_factory=lambda sink: _make_adapter(
                exchange, api_key=api_key, api_secret=api_secret, testnet=testnet, demo=demo,
                endpoints=endpoints, sink=sink, counters=self._counters),
            decoder_factory=lambda channel: _make_decoder(exchange, channel),
            pipeline=self._pipeline, fill_marks=self._fill_marks, dispatch_queue=self._queue, book=self._book,
            counters=self._counters, subscriptions=self._subscriptions, journal=self._journal,
            snapshot=snapshot, stop_event=self._stop_event, on_fatal=self._fail, on_rejected=self.unsubscribe,
        )
        self._adapter = self._worker.adapter

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
        symbol = normalize_symbol(symbol, self.exchange)
        callbacks = Callbacks(on_position, on_wallet, on_order, on_ticker, on_fill, on_account)
        is_new = self._subscriptions.set(symbol, callbacks)
        if is_new and self._lifecycle.accepting:
            # While starting too: the adapter takes symbols at any time, and the worker seeds it
            # after (or besides) the initial seed - twice is harmless, the pipeline drops repeats.
            self._adapter.add_symbol(symbol)
            if self._snapshot:
                self._worker.seed_symbol_later(symbol)

    def unsubscribe(self, symbol: str) -> None:
        """Remove the callbacks of ``symbol`` and its ticker subscription."""
        symbol = normalize_symbol(symbol, self.exchange)
        if not self._subscriptions.remove(symbol):
            return
        self._book._forget(symbol)
        # The router's state is the dispatcher's: it forgets in turn, never under a caller's lock.
        self._queue.put(ForgetSymbol(symbol))
        if self._lifecycle.accepting:
            self._worker.forget_symbol_later(symbol)
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
                self._worker.backfill_at_seed = self._journal.open(
                    self._pipeline, self._fill_marks, self._queue, self._subscriptions.symbols())
            except BaseException:
                self._abort_start(deadline)
                raise
        live_since = now_ms()
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
        self._worker_thread = self._spawn("worker", lambda: self._worker.run(deadline), deadline)
        if not self._worker.seed_done.wait(_remaining(deadline)):
            self._abort_start(deadline)
            raise ConnectError(f"{self.exchange}: the REST seed did not finish within {timeout:g} s")
        if self._worker.seed_error is not None:
            error = self._worker.seed_error
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
        self._worker.emit_status("connected", "live")

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
        self._worker.request_stop(discard_after=deadline - 0.2)
        self._join(self._worker_thread, deadline, current)
        if final_status:
            self._worker.emit_status("stopped", "stop() called")
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
        self._worker.seal()
        self._close_adapter(2.0)
        self._worker.emit_status("failed", detail)

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
        return "connected" if self.connected and not self._worker.reconnecting else "reconnecting"

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
                batch = self._queue.take_all(None, limit=BATCH)
                if not batch:
                    return
                if not self._deliver_batch(batch):
                    return
        except BaseException:
            logger.exception("%s: the dispatcher failed; the stream cannot go on", self.exchange)
            self._fail("internal error in the dispatcher (see the log)")

    def _deliver_batch(self, batch: list[Any]) -> bool:
        """Deliver a batch under one hold of the delivery lock; False once stop()'s budget is spent."""
        deliver = self._router.deliver
        journal = self._journal
        with self._deliver_lock:
            for done, event in enumerate(batch):
                discard_after = self._worker.discard_after
                if discard_after is not None and time.monotonic() > discard_after:
                    logger.warning("%s: stop() budget spent; %d queued events not delivered",
                                   self.exchange, len(self._queue) + len(batch) - done)
                    return False
                try:
                    deliver(event)
                    if journal is not None:
                        journal.delivered(event, self._book.account())
                except BaseException:  # noqa: BLE001 - the dispatcher must outlive any one event
                    self._worker.internal_error(f"delivering {type(event).__name__}")
        return True


def _freeze_heap() -> bool:
    """``gc.freeze()`` unless the application froze its heap itself (its choice is left alone)."""
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
