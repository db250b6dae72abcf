"""RemoteStream: an account's events from Redis, with the ExchangeStream surface.

Seeding: the state hash and the id of the stream entry it corresponds to are read atomically; the
state is delivered (``is_snapshot=True``) and the stream is read after that id, so nothing is lost
and nothing comes twice.  Every read checks, in the same Redis script, that the position it reads
from is still in the stream; when it is not (the stream was trimmed past a slow consumer, or Redis
lost its data) the consumer resyncs from the stored state and says so in its ``resynced`` status.

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
from dataclasses import replace
from typing import Any, Literal

from gridbot._dispatch import (
    AccountCallback,
    Callbacks,
    FillCallback,
    OrderCallback,
    PositionCallback,
    TickerCallback,
    WalletCallback,
)
from gridbot.book import StateBook
from gridbot.errors import AuthenticationError, ConnectError, GridbotError, NormalizationError
from gridbot.events import Event, StatusUpdate
from gridbot.remote._codec import Marker, decode, state_identity
from gridbot.remote._delivery import AckQueue, RemoteRouter
from gridbot.remote._group import GroupMember
from gridbot.remote._link import LIVE, Link, StatusState
from gridbot.remote._redis import (
    READ_SCRIPT,
    Keys,
    connect,
    down_errors,
    entries_of,
    id_key,
    redact,
    text,
)
from gridbot.remote._state import StoredState, read_state, seed_order
from gridbot.stats import Counters, StreamStats

__all__ = ["RemoteStream"]

logger = logging.getLogger(__name__)

DispatchMode = Literal["thread", "manual"]
_COUNT = 500
# In a group, a consumer takes small batches and reads again only when it has worked most of them off,
# so the work goes to whoever is free instead of to whoever read first.
_GROUP_COUNT = 50
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self.exchange = ""
        self._keys = Keys.of(account)
        self._url = redact(redis_url)
        self._redis = connect(redis_url, socket_timeout=max(10.0, block * 4))
        self._read = self._redis.register_script(READ_SCRIPT)
        self._down_errors = down_errors()
        self._group = group
        self._count = _COUNT if group is None else _GROUP_COUNT
        self._consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self._member = None if group is None else GroupMember(
            self._redis, self._keys.stream, group, self._consumer, claim_idle=claim_idle)
        self._dispatch_mode: DispatchMode = dispatch
        self._block_ms = max(1, int(block * 1000))
        self._counters = Counters()
        self._router = RemoteRouter(on_status, self._counters)
        self._queue = AckQueue(self._counters)
        self._lifecycle = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._stop_event = threading.Event()
        self._reader: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._requests_lock = threading.Lock()
        self._seed_requests: list[str] = []
        # reader-thread state
        self._pos = "0-0"
        self._latest: dict[str, Event] = {}
        self._floors: dict[str, tuple[int, int]] = {}
        self._link = Link(heartbeat_timeout, time.monotonic())
        self._meta_status: Any = None

    #: The reader stops reading while this many events wait for the callbacks: a slow consumer leaves
    #: its backlog in Redis (bounded memory here), and resyncs from the state if it is trimmed past.
    max_queued = 10_000

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self._started else "new"
        group = f" group={self._group!r}" if self._group else ""
        return f"<RemoteStream {self.account!r} {state}{group} redis={self._url!r}>"

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, symbol: str, *, on_position: PositionCallback | None = None,
                  on_wallet: WalletCallback | None = None, on_order: OrderCallback | None = None,
                  on_ticker: TickerCallback | None = None, on_fill: FillCallback | None = None,
                  on_account: AccountCallback | None = None) -> None:
        """Register callbacks for ``symbol`` (upper-cased), before or after :meth:`start`; a symbol
        added while running is seeded from the stored state like one added before."""
        symbol = _normalize_symbol(symbol)
        callbacks = Callbacks(on_position, on_wallet, on_order, on_ticker, on_fill, on_account)
        if self._router.set(symbol, callbacks) and self._started and not self._stopped:
            with self._requests_lock:
                self._seed_requests.append(symbol)

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
        deadline = time.monotonic() + timeout
        try:
            self._wait_for_producer(deadline)
            self._seed("start")
            if self._member is not None:
                self._process(self._member.join(self._pos))
        except BaseException:
            with self._lifecycle:
                self._stopped = True
            self._redis.close()
            raise
        self._link.up = self._link.producer_state in LIVE
        if self._link.up:
            self._emit("connected", f"seeded from {self._url} (account {self.account})")
        else:
            self._emit("reconnecting",
                       f"seeded; the producer is not live ({self._link.producer_state or 'no status yet'})")
        if self._dispatch_mode == "thread":
            self._dispatcher = self._thread("dispatch", self._run_dispatcher)
        self._reader = self._thread("reader", self._run_reader)

    def _wait_for_producer(self, deadline: float) -> None:
        import redis

        while True:
            try:
                if self._redis.hget(self._keys.meta, "last_id") is not None:
                    return
            except redis.AuthenticationError as exc:
                raise AuthenticationError(f"Redis {self._url} refused the credentials") from exc
            except self._down_errors as exc:
                raise ConnectError(f"Redis {self._url} is unreachable: {type(exc).__name__}") from exc
            if time.monotonic() >= deadline:
                raise ConnectError(f"no producer has published account {self.account!r} to {self._url}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading, deliver what is queued (within ``timeout``), acknowledge it, join the threads;
        idempotent.  ``StatusUpdate("stopped")`` is the last event."""
        with self._lifecycle:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        current = threading.current_thread()
        if self._reader is not None and self._reader is not current:
            self._reader.join(max(0.0, deadline - time.monotonic()))
        self._emit("stopped", "stop() called")
        self._queue.close()
        if self._dispatcher is not None and self._dispatcher is not current:
            self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        try:
            self._flush_acks()
        except self._down_errors as exc:
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
        return self._started and not self._stopped and self._link.up

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
        if ids and self._member is not None:
            self._member.ack(*ids)

    def _emit(self, state: StatusState, detail: str) -> None:
        logger.info("remote %s %s: %s", self.account, state, detail)
        status = StatusUpdate(exchange=self.exchange, timestamp=_now_ms(), state=state, detail=detail)
        self._queue.put(status, None)

    def _enqueue(self, event: Event, entry_id: str | None, *, seeded: bool = False) -> None:
        """Queue one event for the callbacks; seeded state that equals what was delivered is skipped."""
        identity = state_identity(event)
        if identity is not None:
            key, keep = identity
            if seeded:
                if self._latest.get(key) == event:
                    return
                event = replace(event, is_snapshot=True)
            if keep:
                self._latest[key] = event
            else:
                self._latest.pop(key, None)
        self._queue.put(event, entry_id)

    # ------------------------------------------------------------------ reader thread

    def _run_reader(self) -> None:
        backoff = _BACKOFF_FIRST
        missed_since: float | None = None
        group_free = self._group is None
        while not self._stop_event.is_set():
            try:
                if not self._link.redis_up:
                    self._redis.ping()
                    self._link.redis_up = True
                    self._counters.add("reconnects")
                if len(self._queue) >= (self.max_queued if group_free else min(self.max_queued, self._count)):
                    self._flush_acks()
                    self._stop_event.wait(0.02)
                    continue
                self._cycle(reconnected=missed_since is not None)
                missed_since = None
                backoff = _BACKOFF_FIRST
            except self._down_errors as exc:
                if self._link.redis_up:
                    self._link.redis_up = False
                    missed_since = time.monotonic()
                    logger.warning("remote %s: Redis %s unreachable (%s); retrying", self.account, self._url,
                                   type(exc).__name__)
                    self._set_up(f"redis: {type(exc).__name__}")
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            except Exception:
                logger.exception("remote %s: reading the stream failed; retrying", self.account)
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        try:
            self._flush_acks()
        except self._down_errors:
            logger.debug("remote %s: acknowledgements left for stop()", self.account)

    def _cycle(self, *, reconnected: bool) -> None:
        """One round: acknowledgements, claims, new-symbol seeds, then a checked read and a wait."""
        self._flush_acks()
        self._claim()
        self._seed_new_symbols()
        result = self._read(keys=[self._keys.stream, self._keys.meta],
                            args=[self._pos, self._count, self._group or "", self._consumer])
        self._check_meta(result[0])
        outcome = text(result[1])
        if outcome == "gap":
            self._recover_gap(f"the stream no longer holds entry {text(result[2])} this consumer read last "
                              "(trimmed past it, or Redis lost its data)")
            return
        if outcome == "nogroup":
            self._resync_from_state(f"consumer group {self._group!r} is gone (Redis lost its data?)")
            if self._member is not None:
                self._process(self._member.join(self._pos))
            return
        entries = entries_of(result[2])
        if reconnected:
            self._process(entries)
            self._set_up(f"redis {self._url} is back; {len(entries)} waiting entries delivered",
                         force="resynced")
            return
        if entries:
            self._process(entries)
            return
        newest = result[0][2]
        self._wait_for_entries(self._pos if self._member is None else text(newest) if newest else "$")

    def _wait_for_entries(self, after: str) -> None:
        """Block until the stream has an entry after ``after`` (or ``block`` seconds pass).  Only a
        wake-up: what it returns is dropped and read again by the checked read, because this consumer
        may pause between the two calls and the stream be trimmed past it meanwhile."""
        self._redis.xread({self._keys.stream: after}, count=1, block=self._block_ms)

    def _ack_now(self, entry_id: str) -> None:
        if self._member is not None:
            self._member.ack(entry_id)

    def _flush_acks(self) -> None:
        if self._member is not None:
            self._member.flush()

    def _claim(self) -> None:
        if self._member is not None:
            claimed = self._member.claim()
            if claimed:
                self._process(claimed)

    def _process(self, entries: list[tuple[str, dict[bytes, bytes] | None]]) -> None:
        for entry_id, fields in entries:
            if self._group is None:
                self._pos = entry_id
            payload = fields.get(b"e") if fields else None
            if payload is None:  # an entry trimmed while pending in the group
                self._ack_now(entry_id)
                continue
            try:
                item = decode(payload)
            except NormalizationError as exc:
                self._counters.add("bad_messages")
                logger.error("remote %s: entry %s skipped: %s: %.300r", self.account, entry_id, exc, payload)
                self._ack_now(entry_id)
                continue
            if isinstance(item, Marker):
                self._marker(item)
                self._ack_now(entry_id)
            elif isinstance(item, StatusUpdate):
                self.exchange = self.exchange or item.exchange
                if self._group is None:
                    self._producer_status(item.state, item.detail)
                self._ack_now(entry_id)
            else:
                symbol = getattr(item, "symbol", None)
                floor = self._floors.get(symbol) if symbol is not None else None
                if floor is not None and id_key(entry_id) <= floor:
                    self._ack_now(entry_id)  # already part of that symbol's seed
                    continue
                self._enqueue(item, entry_id)

    def _marker(self, marker: Marker) -> None:
        if marker.kind == "reset":
            self._latest.clear()
            logger.info("remote %s: %s", self.account, marker.detail)
            return
        for event in seed_order(marker.state):
            self._enqueue(event, None, seeded=True)
        self._counters.add("resyncs")
        self._set_up(f"the producer rewrote the state: {marker.detail}", force="resynced")

    def _producer_status(self, state: str, detail: str) -> None:
        force = self._link.producer(state)
        self._set_up(f"producer: {detail}" if state in LIVE else f"producer {state}: {detail}", force=force)

    def _set_up(self, detail: str, *, force: StatusState | None = None) -> None:
        """Report a change of liveness (or ``force`` a status while live)."""
        state = self._link.change(force=force)
        if state is not None:
            self._emit(state, detail)

    def _check_meta(self, meta: Any) -> None:
        hb, status = meta[0], meta[1]
        detail = self._link.heartbeat(hb, time.monotonic())
        if detail is not None:
            self._set_up(detail)
        if self._group is not None and status is not None and status != self._meta_status:
            self._meta_status = status
            try:
                item = decode(status)
            except NormalizationError:
                self._counters.add("bad_messages")
                return
            if isinstance(item, StatusUpdate):
                self._producer_status(item.state, item.detail)

    # ------------------------------------------------------------------ seeding

    def _read_state(self) -> StoredState:
        stored = read_state(self._redis, self._keys)
        self.exchange = stored.exchange or self.exchange
        if stored.bad_entries:
            self._counters.add("bad_messages", stored.bad_entries)
        return stored

    def _seed(self, why: str) -> bool:
        stored = self._read_state()
        if stored.last_id is None:
            return False
        for event in stored.events:
            self._enqueue(event, None, seeded=True)
        self._pos = stored.last_id
        self._floors.clear()
        if stored.status is not None:
            self._link.producer_state = stored.status.state
            self._meta_status = stored.status_payload
        logger.info("remote %s: seeded %d state entries at %s (%s)", self.account, len(stored.events),
                    stored.last_id, why)
        return True

    def _recover_gap(self, reason: str) -> None:
        """Continue from the producer's latest marker when it is newer than this consumer's position (it
        starts a complete state: a resync marker carries it, a reset's seed events follow it), so the
        entries after it are not skipped; otherwise resync from the stored state."""
        mark_id = self._redis.hget(self._keys.meta, "mark_id")
        if mark_id is not None and id_key(text(mark_id)) > id_key(self._pos):
            found = self._redis.xrange(self._keys.stream, mark_id, mark_id)
            if found:
                mark = text(mark_id)
                self._process([(mark, found[0][1])])
                if self._member is not None:
                    self._member.move_to(mark)
                self._pos = mark
                self._counters.add("resyncs")
                logger.warning("remote %s: %s; continuing from the producer's marker %s",
                               self.account, reason, mark)
                self._link.up = False
                self._set_up(f"{reason}; continued from the producer's marker {mark} (entries before it "
                             "that were not read, fills among them, were not delivered)", force="resynced")
                return
        self._resync_from_state(reason)

    def _resync_from_state(self, reason: str) -> None:
        if not self._seed("resync"):
            self._set_up("waiting for the producer to republish the account")
            self._stop_event.wait(0.2)
            return
        if self._member is not None:
            self._member.move_to(self._pos)
        self._counters.add("resyncs")
        logger.warning("remote %s: %s; resynced from the stored state", self.account, reason)
        self._link.up = False
        self._set_up(f"{reason}; resynced from the stored state (events in between, fills among them, "
                     "were not delivered)", force="resynced")

    def _seed_new_symbols(self) -> None:
        with self._requests_lock:
            symbols, self._seed_requests = self._seed_requests, []
        if not symbols:
            return
        stored = self._read_state()
        events, last_id = stored.events, stored.last_id
        for symbol in symbols:
            for event in events:
                if getattr(event, "symbol", None) == symbol:
                    self._enqueue(event, None, seeded=True)
            if last_id is not None and self._group is None:
                self._floors[symbol] = id_key(last_id)


def _normalize_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, not {symbol!r}")
    return symbol.strip().upper()
