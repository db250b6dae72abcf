"""The reader side of a RemoteStream: every Redis call, from seeding to the checked reads, on one thread.

Seeding: the state hash and the id of the stream entry it corresponds to are read atomically; the
state is delivered (``is_snapshot=True``) and the stream is read after that id, so nothing is lost
and nothing comes twice.  Every read checks, in the same Redis script, that the position it reads
from is still in the stream; when it is not (the stream was trimmed past a slow consumer, or Redis
lost its data) the reader resyncs from the stored state and says so in its ``resynced`` status.

Apart from :class:`~gridbot.remote.RemoteStream` (the public surface, its lifecycle and the callbacks)
because this is the part that talks to Redis and decides what reaches the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gridbot.errors import AuthenticationError, ConnectError, NormalizationError
from gridbot.events import Event, StatusUpdate
from gridbot.remote._codec import Marker, decode, state_identity
from gridbot.remote._delivery import AckQueue
from gridbot.remote._group import GroupMember
from gridbot.remote._link import LIVE, Link, StatusState
from gridbot.remote._redis import READ_SCRIPT, Entry, Keys, down_errors, entries_of, id_key, text
from gridbot.remote._state import StoredState, read_state, seed_order
from gridbot.stats import Counters

__all__ = ["ReaderConfig", "StreamReader"]

logger = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ReaderConfig:
    """Who reads what: the account, its Redis keys, the (redacted) URL for messages, the consumer group
    (None: read everything), this consumer's name, the batch size and the blocking wait."""

    account: str
    keys: Keys
    url: str
    group: str | None
    consumer: str
    count: int
    block_ms: int


class StreamReader:
    """Reads the account's entries and queues their events; owns the reader-thread state (position,
    latest state per key, per-symbol seed floors, liveness).  ``queue_limit`` is read on every round:
    the reader pauses while that many events wait for the callbacks."""

    def __init__(self, redis: Any, config: ReaderConfig, member: GroupMember | None, *, queue: AckQueue,
                 counters: Counters, heartbeat_timeout: float, queue_limit: Callable[[], int]) -> None:
        self.exchange = ""
        self.link = Link(heartbeat_timeout, time.monotonic())
        self.member = member
        self.down_errors = down_errors()
        self.stop_event = threading.Event()
        self._redis = redis
        self._read = redis.register_script(READ_SCRIPT)
        self._config = config
        self._queue = queue
        self._counters = counters
        self._queue_limit = queue_limit
        self._requests_lock = threading.Lock()
        self._seed_requests: list[str] = []
        self._pos = "0-0"
        self._latest: dict[str, Event] = {}
        self._floors: dict[str, tuple[int, int]] = {}
        self._meta_status: Any = None

    # ------------------------------------------------------------------ start and status

    def wait_for_producer(self, deadline: float) -> None:
        """Until the producer has published the account: ConnectError at ``deadline`` or when Redis is
        unreachable, AuthenticationError when it refuses the credentials."""
        import redis

        cfg = self._config
        while True:
            try:
                if self._redis.hget(cfg.keys.meta, "last_id") is not None:
                    return
            except redis.AuthenticationError as exc:
                raise AuthenticationError(f"Redis {cfg.url} refused the credentials") from exc
            except self.down_errors as exc:
                raise ConnectError(f"Redis {cfg.url} is unreachable: {type(exc).__name__}") from exc
            if time.monotonic() >= deadline:
                raise ConnectError(f"no producer has published account {cfg.account!r} to {cfg.url}")
            time.sleep(0.1)

    def seed_at_start(self) -> None:
        """The stored state, then (in a group) what this consumer name received before and never acked."""
        self._seed("start")
        if self.member is not None:
            self._process(self.member.join(self._pos))

    def emit(self, state: StatusState, detail: str) -> None:
        logger.info("remote %s %s: %s", self._config.account, state, detail)
        status = StatusUpdate(exchange=self.exchange, timestamp=_now_ms(), state=state, detail=detail)
        self._queue.put(status, None)

    def request_seed(self, symbol: str) -> None:
        """Seed ``symbol`` from the stored state on the next round (a symbol subscribed while running)."""
        with self._requests_lock:
            self._seed_requests.append(symbol)

    def flush_acks(self) -> None:
        if self.member is not None:
            self.member.flush()

    # ------------------------------------------------------------------ the reader thread

    def run(self) -> None:
        """The reader thread: rounds until :attr:`stop_event`, retrying with backoff while Redis is down."""
        backoff = _BACKOFF_FIRST
        missed_since: float | None = None
        while not self.stop_event.is_set():
            try:
                self._reconnect_if_down()
                if self._backlogged():
                    self.flush_acks()
                    self.stop_event.wait(0.02)
                    continue
                self._cycle(reconnected=missed_since is not None)
                missed_since = None
                backoff = _BACKOFF_FIRST
            except self.down_errors as exc:
                if self.link.redis_up:
                    missed_since = time.monotonic()
                    self._redis_lost(exc)
                backoff = self._back_off(backoff)
            except Exception:
                logger.exception("remote %s: reading the stream failed; retrying", self._config.account)
                backoff = self._back_off(backoff)
        try:
            self.flush_acks()
        except self.down_errors:
            logger.debug("remote %s: acknowledgements left for stop()", self._config.account)

    def _reconnect_if_down(self) -> None:
        if not self.link.redis_up:
            self._redis.ping()
            self.link.redis_up = True
            self._counters.add("reconnects")

    def _backlogged(self) -> bool:
        limit = self._queue_limit()
        if self._config.group is not None:
            limit = min(limit, self._config.count)
        return len(self._queue) >= limit

    def _redis_lost(self, exc: BaseException) -> None:
        self.link.redis_up = False
        cfg = self._config
        logger.warning("remote %s: Redis %s unreachable (%s); retrying", cfg.account, cfg.url,
                       type(exc).__name__)
        self._set_up(f"redis: {type(exc).__name__}")

    def _back_off(self, backoff: float) -> float:
        self.stop_event.wait(backoff)
        return min(backoff * 2, _BACKOFF_MAX)

    def _cycle(self, *, reconnected: bool) -> None:
        """One round: acknowledgements, claims, new-symbol seeds, then a checked read and a wait."""
        cfg = self._config
        self.flush_acks()
        self._claim()
        self._seed_new_symbols()
        result = self._read(keys=[cfg.keys.stream, cfg.keys.meta],
                            args=[self._pos, cfg.count, cfg.group or "", cfg.consumer])
        self._check_meta(result[0])
        outcome = text(result[1])
        if outcome == "gap":
            self._recover_gap(f"the stream no longer holds entry {text(result[2])} this consumer read last "
                              "(trimmed past it, or Redis lost its data)")
            return
        if outcome == "nogroup":
            self._resync_from_state(f"consumer group {cfg.group!r} is gone (Redis lost its data?)")
            if self.member is not None:
                self._process(self.member.join(self._pos))
            return
        entries = entries_of(result[2])
        if reconnected:
            self._process(entries)
            self._set_up(f"redis {cfg.url} is back; {len(entries)} waiting entries delivered",
                         force="resynced")
            return
        if entries:
            self._process(entries)
            return
        newest = result[0][2]
        self._wait_for_entries(self._pos if self.member is None else text(newest) if newest else "$")

    def _wait_for_entries(self, after: str) -> None:
        """Block until the stream has an entry after ``after`` (or ``block`` seconds pass).  Only a
        wake-up: what it returns is dropped and read again by the checked read, because this consumer
        may pause between the two calls and the stream be trimmed past it meanwhile."""
        self._redis.xread({self._config.keys.stream: after}, count=1, block=self._config.block_ms)

    def _ack_now(self, entry_id: str) -> None:
        if self.member is not None:
            self.member.ack(entry_id)

    def _claim(self) -> None:
        if self.member is not None:
            claimed = self.member.claim()
            if claimed:
                self._process(claimed)

    # ------------------------------------------------------------------ entries

    def _process(self, entries: list[Entry]) -> None:
        for entry_id, fields in entries:
            if self._config.group is None:
                self._pos = entry_id
            payload = fields.get(b"e") if fields else None
            if payload is None:  # an entry trimmed while pending in the group
                self._ack_now(entry_id)
                continue
            try:
                item = decode(payload)
            except NormalizationError as exc:
                self._counters.add("bad_messages")
                logger.error("remote %s: entry %s skipped: %s: %.300r", self._config.account, entry_id, exc,
                             payload)
                self._ack_now(entry_id)
                continue
            self._entry(entry_id, item)

    def _entry(self, entry_id: str, item: Event | Marker) -> None:
        if isinstance(item, Marker):
            self._marker(item)
        elif isinstance(item, StatusUpdate):
            self.exchange = self.exchange or item.exchange
            if self._config.group is None:
                self._producer_status(item.state, item.detail)
        elif not self._below_floor(entry_id, item):
            self._enqueue(item, entry_id)
            return
        self._ack_now(entry_id)

    def _below_floor(self, entry_id: str, event: Event) -> bool:
        """Already part of its symbol's seed (a symbol subscribed while running)."""
        symbol = getattr(event, "symbol", None)
        floor = self._floors.get(symbol) if symbol is not None else None
        return floor is not None and id_key(entry_id) <= floor

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

    def _marker(self, marker: Marker) -> None:
        if marker.kind == "reset":
            self._latest.clear()
            logger.info("remote %s: %s", self._config.account, marker.detail)
            return
        for event in seed_order(marker.state):
            self._enqueue(event, None, seeded=True)
        self._counters.add("resyncs")
        self._set_up(f"the producer rewrote the state: {marker.detail}", force="resynced")

    # ------------------------------------------------------------------ liveness

    def _producer_status(self, state: str, detail: str) -> None:
        force = self.link.producer(state)
        self._set_up(f"producer: {detail}" if state in LIVE else f"producer {state}: {detail}", force=force)

    def _set_up(self, detail: str, *, force: StatusState | None = None) -> None:
        """Report a change of liveness (or ``force`` a status while live)."""
        state = self.link.change(force=force)
        if state is not None:
            self.emit(state, detail)

    def _check_meta(self, meta: Any) -> None:
        hb, status = meta[0], meta[1]
        detail = self.link.heartbeat(hb, time.monotonic())
        if detail is not None:
            self._set_up(detail)
        if self._config.group is not None and status is not None and status != self._meta_status:
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
        stored = read_state(self._redis, self._config.keys)
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
            self.link.producer_state = stored.status.state
            self._meta_status = stored.status_payload
        logger.info("remote %s: seeded %d state entries at %s (%s)", self._config.account, len(stored.events),
                    stored.last_id, why)
        return True

    def _recover_gap(self, reason: str) -> None:
        """Continue from the producer's latest marker when it is newer than this consumer's position (it
        starts a complete state: a resync marker carries it, a reset's seed events follow it), so the
        entries after it are not skipped; otherwise resync from the stored state."""
        keys = self._config.keys
        mark_id = self._redis.hget(keys.meta, "mark_id")
        if mark_id is not None and id_key(text(mark_id)) > id_key(self._pos):
            found = self._redis.xrange(keys.stream, mark_id, mark_id)
            if found:
                self._continue_from_marker(text(mark_id), found[0][1], reason)
                return
        self._resync_from_state(reason)

    def _continue_from_marker(self, mark: str, fields: dict[bytes, bytes], reason: str) -> None:
        self._process([(mark, fields)])
        if self.member is not None:
            self.member.move_to(mark)
        self._pos = mark
        self._counters.add("resyncs")
        logger.warning("remote %s: %s; continuing from the producer's marker %s", self._config.account,
                       reason, mark)
        self.link.up = False
        self._set_up(f"{reason}; continued from the producer's marker {mark} (entries before it "
                     "that were not read, fills among them, were not delivered)", force="resynced")

    def _resync_from_state(self, reason: str) -> None:
        if not self._seed("resync"):
            self._set_up("waiting for the producer to republish the account")
            self.stop_event.wait(0.2)
            return
        if self.member is not None:
            self.member.move_to(self._pos)
        self._counters.add("resyncs")
        logger.warning("remote %s: %s; resynced from the stored state", self._config.account, reason)
        self.link.up = False
        self._set_up(f"{reason}; resynced from the stored state (events in between, fills among them, "
                     "were not delivered)", force="resynced")

    def _seed_new_symbols(self) -> None:
        with self._requests_lock:
            symbols, self._seed_requests = self._seed_requests, []
        if not symbols:
            return
        stored = self._read_state()
        for symbol in symbols:
            for event in stored.events:
                if getattr(event, "symbol", None) == symbol:
                    self._enqueue(event, None, seeded=True)
            if stored.last_id is not None and self._config.group is None:
                self._floors[symbol] = id_key(stored.last_id)
