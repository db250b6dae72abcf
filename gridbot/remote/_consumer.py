"""RemoteStream: an account's events from Redis, with the ExchangeStream surface.

This module is the public surface - subscriptions, lifecycle, status, stats and the callbacks; what
talks to Redis is :mod:`gridbot.remote._reader`.

Threads: the *reader* owns every Redis call (reads, acknowledgements, claims, heartbeat checks);
the *dispatcher* (``dispatch="thread"``) runs the callbacks, or the caller does in
:meth:`RemoteStream.dispatch_pending` (``dispatch="manual"``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Literal

from gridbot import _dispatch as cb
from gridbot.book import StateBook
from gridbot.errors import GridbotError
from gridbot.events import Event, StatusUpdate
from gridbot.remote._delivery import AckQueue, RemoteRouter
from gridbot.remote._group import GroupMember
from gridbot.remote._link import LIVE
from gridbot.remote._reader import ReaderConfig, StreamReader
from gridbot.remote._redis import Keys, connect, redact
from gridbot.stats import Counters, StreamStats

__all__ = ["RemoteStream"]

logger = logging.getLogger(__name__)

DispatchMode = Literal["thread", "manual"]
_COUNT = 500
# In a group, a consumer takes small batches and reads again only when it has worked most of them off,
# so the work goes to whoever is free instead of to whoever read first.
_GROUP_COUNT = 50


class RemoteStream:
    """The events a ``gridbot serve`` producer publishes for ``account``, as ExchangeStream callbacks.

    ``group``: share the events among the consumers of that Redis consumer group (each event goes to
    one of them, acknowledged after its callback; a dead consumer's unacknowledged events are claimed
    by the others after ``claim_idle`` seconds).  Without it every RemoteStream sees everything.
    ``heartbeat_timeout``: seconds without a producer heartbeat before the status says reconnecting.
    """

    def __init__(self, redis_url: str, account: str, *, group: str | None = None, consumer: str | None = None,
                 dispatch: DispatchMode = "thread", on_status: Callable[[StatusUpdate], object] | None = None,
                 heartbeat_timeout: float = 5.0, claim_idle: float = 30.0, block: float = 0.5) -> None:
        if dispatch not in ("thread", "manual"):
            raise ValueError(f"dispatch must be 'thread' or 'manual', not {dispatch!r}")
        if group is not None and (not isinstance(group, str) or not group):
            raise ValueError("group must be a non-empty string or None")
        self.account = account
        self._group = group
        self._url = redact(redis_url)
        self._redis = connect(redis_url, socket_timeout=max(10.0, block * 4))
        config = ReaderConfig(
            account=account, keys=Keys.of(account), url=self._url, group=group,
            consumer=consumer or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}",
            count=_COUNT if group is None else _GROUP_COUNT, block_ms=max(1, int(block * 1000)))
        member = None if group is None else GroupMember(
            self._redis, config.keys.stream, group, config.consumer, claim_idle=claim_idle)
        self._dispatch_mode: DispatchMode = dispatch
        self._counters = Counters()
        self._router = RemoteRouter(on_status, self._counters)
        self._queue = AckQueue(self._counters)
        self._feed = StreamReader(self._redis, config, member, queue=self._queue, counters=self._counters,
                                  heartbeat_timeout=heartbeat_timeout, queue_limit=lambda: self.max_queued)
        self._lifecycle = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._reader: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None

    #: The reader stops reading while this many events wait for the callbacks: a slow consumer leaves
    #: its backlog in Redis (bounded memory here), and resyncs from the state if it is trimmed past.
    max_queued = 10_000

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self._started else "new"
        group = f" group={self._group!r}" if self._group else ""
        return f"<RemoteStream {self.account!r} {state}{group} redis={self._url!r}>"

    @property
    def exchange(self) -> str:
        """The producer's exchange (``"binance"`` / ``"bybit"``); "" until the state was read."""
        return self._feed.exchange

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, symbol: str, *, on_position: cb.PositionCallback | None = None,
                  on_wallet: cb.WalletCallback | None = None, on_order: cb.OrderCallback | None = None,
                  on_ticker: cb.TickerCallback | None = None, on_fill: cb.FillCallback | None = None,
                  on_account: cb.AccountCallback | None = None) -> None:
        """Register callbacks for ``symbol`` (upper-cased), before or after :meth:`start`; a symbol
        added while running is seeded from the stored state like one added before."""
        symbol = _normalize_symbol(symbol)
        callbacks = cb.Callbacks(on_position, on_wallet, on_order, on_ticker, on_fill, on_account)
        if self._router.set(symbol, callbacks) and self._started and not self._stopped:
            self._feed.request_seed(symbol)

    def unsubscribe(self, symbol: str) -> None:
        """Remove the callbacks of ``symbol``."""
        self._router.remove(_normalize_symbol(symbol))

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Connect to Redis, seed from the stored state and return; ConnectError when Redis is
        unreachable or no producer has published the account within ``timeout``,
        AuthenticationError when Redis refuses the credentials."""
        with self._lifecycle:
            if self._started or self._stopped:
                raise GridbotError("a RemoteStream starts once (and not after stop())")
            self._started = True
        try:
            self._feed.wait_for_producer(time.monotonic() + timeout)
            self._feed.seed_at_start()
        except BaseException:
            with self._lifecycle:
                self._stopped = True
            self._redis.close()
            raise
        self._announce_start()
        if self._dispatch_mode == "thread":
            self._dispatcher = self._thread("dispatch", self._run_dispatcher)
        self._reader = self._thread("reader", self._feed.run)

    def _announce_start(self) -> None:
        link = self._feed.link
        link.up = link.producer_state in LIVE
        if link.up:
            self._feed.emit("connected", f"seeded from {self._url} (account {self.account})")
        else:
            self._feed.emit("reconnecting",
                            f"seeded; the producer is not live ({link.producer_state or 'no status yet'})")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading, deliver what is queued (within ``timeout``), acknowledge it, join the threads;
        idempotent.  ``StatusUpdate("stopped")`` is the last event."""
        with self._lifecycle:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        self._feed.stop_event.set()
        _join(self._reader, deadline)
        self._feed.emit("stopped", "stop() called")
        self._queue.close()
        _join(self._dispatcher, deadline)
        try:
            self._feed.flush_acks()
        except self._feed.down_errors as exc:
            logger.warning("remote %s: final acknowledgements failed (%s); the group will redeliver them",
                           self.account, type(exc).__name__)
        self._redis.close()

    def __enter__(self) -> RemoteStream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """True while Redis is reachable, the producer's heartbeat is fresh and its exchange link is live."""
        return self._started and not self._stopped and self._feed.link.up

    @property
    def book(self) -> StateBook:
        """The account state delivered so far (positions, open orders, take-profit ids, tickers, wallet,
        account), as :attr:`gridbot.ExchangeStream.book`; readable from any thread."""
        return self._router.book

    @property
    def stats(self) -> StreamStats:
        """``reconnects`` counts Redis reconnects, ``resyncs`` resyncs from the stored state,
        ``bad_messages`` entries that could not be decoded; ``rest_calls`` is always 0."""
        return self._counters.snapshot()

    def dispatch_pending(self, timeout: float = 0.0) -> int:
        """Run queued callbacks in the calling thread (``dispatch="manual"``); returns how many events."""
        if self._dispatch_mode != "manual":
            raise GridbotError("dispatch_pending() is for streams built with dispatch='manual'")
        with self._deliver_lock:
            budget = len(self._queue)
            delivered = 0
            item = self._queue.get(timeout)
            while item is not None:
                self._deliver(item)
                delivered += 1
                if delivered > budget:
                    break
                item = self._queue.get(0)
            return delivered

    # ------------------------------------------------------------------ delivery

    def _thread(self, role: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"gridbot-remote-{self.account}-{role}", daemon=True)
        thread.start()
        return thread

    def _run_dispatcher(self) -> None:
        while True:
            item = self._queue.get(None)
            if item is None:
                return
            with self._deliver_lock:
                self._deliver(item)

    def _deliver(self, item: tuple[Event, list[str]]) -> None:
        event, ids = item
        self._router.deliver(event)
        member = self._feed.member
        if ids and member is not None:
            member.ack(*ids)


def _join(thread: threading.Thread | None, deadline: float) -> None:
    """Join ``thread`` until ``deadline`` (not the calling thread: stop() may run in a callback)."""
    if thread is not None and thread is not threading.current_thread():
        thread.join(max(0.0, deadline - time.monotonic()))


def _normalize_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, not {symbol!r}")
    return symbol.strip().upper()
