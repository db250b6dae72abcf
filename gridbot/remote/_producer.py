"""RedisPublisher: the producer side of the fan-out, a sink attached to an :class:`ExchangeStream`.

Every event the stream delivers (positions with their merged marks, orders, fills, wallet, account,
conflated tickers, status) is appended to the account's capped Redis Stream, and the latest state
per identity (position slot, open order, coin, symbol ticker, account) is kept in a hash together
with the id of the stream entry it corresponds to, in one atomic script call per batch.  A consumer
seeds from that hash and reads the stream after that id: nothing lost, nothing twice.

While Redis is unreachable the stream keeps running and events wait in a bounded buffer.  When the
buffer is full the oldest events are folded into a pending state (the latest per identity) and
counted; when Redis is back a ``resync`` marker carrying the full state is written before the events
still buffered, so consumers stay correct and are told what was dropped.  If Redis comes back
without the account's data (restarted without persistence), the same marker rebuilds it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from gridbot.events import Event, FillUpdate, StatusUpdate
from gridbot.remote._codec import Marker, decode_event, encode, state_identity
from gridbot.remote._redis import MARK_SCRIPT, PUBLISH_SCRIPT, Keys, connect, down_errors, redact

__all__ = ["PublisherStats", "RedisPublisher"]

logger = logging.getLogger(__name__)

_BATCH = 500
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """Counters of one publisher: entries written, events still buffered, events dropped from a full
    buffer (their state was kept), Redis failures, and resync markers written."""

    published: int = 0
    buffered: int = 0
    dropped: int = 0
    redis_errors: int = 0
    resyncs: int = 0


class _Diverged(Exception):
    """Redis is not where this producer left it."""


class RedisPublisher:
    """Publishes one account's events to Redis; see the module docstring.

    ``maxlen`` caps the stream (approximately, ``XADD MAXLEN ~``); ``buffer_size`` bounds the events
    held while Redis is away; ``heartbeat_interval`` is how often an idle producer proves it is alive.
    """

    def __init__(self, redis_url: str, account: str, *, maxlen: int = 100_000, buffer_size: int = 100_000,
                 heartbeat_interval: float = 1.0) -> None:
        if maxlen < 1 or buffer_size < 1 or heartbeat_interval <= 0:
            raise ValueError("maxlen and buffer_size must be >= 1 and heartbeat_interval > 0")
        self.account = account
        self._keys = Keys.of(account)
        self._url = redact(redis_url)
        self._redis = connect(redis_url)
        self._publish = self._redis.register_script(PUBLISH_SCRIPT)
        self._mark = self._redis.register_script(MARK_SCRIPT)
        self._down_errors = down_errors()
        self._maxlen = maxlen
        self._buffer_size = buffer_size
        self._heartbeat_interval = heartbeat_interval
        self._token = secrets.token_hex(8)
        self._exchange = ""
        self._cond = threading.Condition()
        self._buffer: deque[Event] = deque()
        self._overflow: dict[str, str | None] = {}  # identity -> payload (None: deleted), dropped events
        self._overflow_events = 0
        self._overflow_fills = 0
        self._stopping = False
        self._stop_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._stats = {"published": 0, "dropped": 0, "redis_errors": 0, "resyncs": 0}
        # writer-thread state
        self._state: dict[str, str] = {}  # identity -> payload: the state as of self._last_id
        self._last_id: str | None = None
        self._resync_reason = ""
        self._stale: set[str] = set()
        self._seeded = False
        self._down_since: float | None = None
        self._next_heartbeat = 0.0

    def __repr__(self) -> str:
        return f"<RedisPublisher account={self.account!r} redis={self._url!r}>"

    # ------------------------------------------------------------------ wiring

    def attach(self, stream: Any) -> None:
        """Publish every event ``stream`` delivers (call before ``stream.start()`` to get its seed)."""
        self._exchange = str(getattr(stream, "exchange", ""))
        stream.add_sink(self.publish)

    def publish(self, event: Event) -> None:
        """Queue one event; never blocks on Redis and never raises (it runs on the stream's thread)."""
        with self._cond:
            self._buffer.append(event)
            if len(self._buffer) > self._buffer_size:
                self._drop_oldest()
            self._cond.notify()

    def _drop_oldest(self) -> None:
        dropped = self._buffer.popleft()
        self._stats["dropped"] += 1
        self._overflow_events += 1
        if isinstance(dropped, FillUpdate):
            self._overflow_fills += 1
        identity = state_identity(dropped)
        if identity is not None:
            self._overflow[identity[0]] = encode(dropped).decode() if identity[1] else None
        if self._overflow_events == 1 or self._overflow_events % 10_000 == 0:
            logger.warning("fan-out %s: buffer full (%d events) while Redis is unreachable: the oldest "
                           "events are dropped (%d so far); their state is kept", self.account,
                           self._buffer_size, self._overflow_events)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the writer thread (Redis may be down: events wait in the buffer until it is up)."""
        if self._thread is not None:
            raise RuntimeError("RedisPublisher.start() was already called")
        self._thread = threading.Thread(target=self._run, name=f"gridbot-fanout-{self.account}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is buffered (within ``timeout``), then stop the writer thread; idempotent."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._stop_deadline = time.monotonic() + timeout * 0.8
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("fan-out %s: the writer thread did not finish within %.1f s",
                             self.account, timeout)
        try:
            self._redis.close()
        except Exception:
            logger.exception("fan-out %s: closing the Redis client failed", self.account)

    def __enter__(self) -> RedisPublisher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def stats(self) -> PublisherStats:
        with self._cond:
            return PublisherStats(buffered=len(self._buffer), **self._stats)

    @property
    def connected(self) -> bool:
        """True while the last Redis call succeeded."""
        return self._down_since is None and self._last_id is not None

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            if self._down_since is not None and not self._probe(backoff):
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            with self._cond:
                if not self._buffer and not self._stopping:
                    self._cond.wait(max(0.0, self._next_heartbeat - time.monotonic()))
                if self._stopping and (not self._buffer or time.monotonic() >= self._stop_deadline):
                    if self._buffer:
                        logger.error("fan-out %s: stop() budget spent with %d events not written to Redis",
                                     self.account, len(self._buffer))
                    return
                batch = [self._buffer.popleft() for _ in range(min(len(self._buffer), _BATCH))]
            try:
                self._write_session(batch)
                backoff = _BACKOFF_FIRST
            except _Diverged:
                self._requeue(batch)
                self._resync_reason = ("Redis does not hold what this producer wrote (restarted without "
                                       "persistence, or another producer published this account)")
                logger.warning("fan-out %s: %s; rewriting the state", self.account, self._resync_reason)
            except Exception as exc:  # noqa: BLE001 - logged in _failed (with the traceback unless Redis is down)
                self._requeue(batch)
                self._failed(exc)
                with self._cond:
                    if not self._stopping or time.monotonic() < self._stop_deadline:
                        self._cond.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def _probe(self, backoff: float) -> bool:
        """While Redis is down, ping it instead of taking batches out of the buffer (so a full buffer
        drops only its oldest events); False after waiting ``backoff`` (or at once when stopping)."""
        try:
            self._redis.ping()
            return True
        except self._down_errors:
            with self._cond:
                if self._stopping and time.monotonic() >= self._stop_deadline:
                    return True  # let the loop end
                self._cond.wait(backoff)
            return False

    def _failed(self, exc: Exception) -> None:
        with self._cond:
            self._stats["redis_errors"] += 1
        if not isinstance(exc, self._down_errors):
            logger.exception("fan-out %s: writing to Redis failed; retrying", self.account)
        elif self._down_since is None:
            logger.warning("fan-out %s: Redis %s unreachable (%s); events are buffered (up to %d)",
                           self.account, self._url, type(exc).__name__, self._buffer_size)
        if self._down_since is None:
            self._down_since = time.monotonic()

    def _requeue(self, batch: list[Event]) -> None:
        """Put an unwritten batch back in front; if events were already dropped, fold it in with them."""
        if not batch:
            return
        with self._cond:
            if not self._overflow_events:
                self._buffer.extendleft(reversed(batch))
                return
            older: dict[str, str | None] = {}
            for event in batch:
                identity = state_identity(event)
                if identity is not None:
                    older[identity[0]] = encode(event).decode() if identity[1] else None
                self._overflow_fills += isinstance(event, FillUpdate)
            older.update(self._overflow)
            self._overflow = older
            self._overflow_events += len(batch)
            self._stats["dropped"] += len(batch)

    def _write_session(self, batch: list[Event]) -> None:
        if self._last_id is None:
            self._write_reset()
        if self._resync_reason or self._overflow_events:
            self._write_resync()
        if batch:
            self._write_batch(batch)
        elif time.monotonic() >= self._next_heartbeat:
            self._redis.hincrby(self._keys.meta, "hb", 1)
        self._next_heartbeat = time.monotonic() + self._heartbeat_interval
        if self._down_since is not None:
            logger.warning("fan-out %s: Redis is back after %.1f s", self.account,
                           time.monotonic() - self._down_since)
            self._down_since = None

    def _keys_list(self) -> list[str]:
        return [self._keys.stream, self._keys.state, self._keys.meta]

    def _write_reset(self) -> None:
        marker = encode(Marker("reset", f"producer {self._token} started"))
        last_id, old = self._mark(keys=self._keys_list(),
                                  args=[self._maxlen, self._token, marker, self._exchange, "0"])
        self._last_id = _text(last_id)
        self._stale = {_text(k) for k in old}
        logger.info("fan-out %s: publishing to %s (stream %s)", self.account, self._url, self._keys.stream)

    def _write_resync(self) -> None:
        with self._cond:
            overflow, events, fills = self._overflow, self._overflow_events, self._overflow_fills
            self._overflow, self._overflow_events, self._overflow_fills = {}, 0, 0
        state = dict(self._state)
        for identity, payload in overflow.items():
            if payload is None:
                state.pop(identity, None)
            else:
                state[identity] = payload
        reasons = [self._resync_reason] if self._resync_reason else []
        if events:
            reasons.append(f"{events} events ({fills} fills) were dropped from the producer's full buffer "
                           "while Redis was unreachable")
        detail = "; ".join(reasons)
        marker = encode(Marker("resync", detail, tuple(decode_event(json.loads(p)) for p in state.values())))
        pairs = [item for identity_payload in state.items() for item in identity_payload]
        try:
            last_id, _ = self._mark(keys=self._keys_list(),
                                    args=[self._maxlen, self._token, marker, self._exchange, "1", *pairs])
        except BaseException:
            with self._cond:
                overflow.update(self._overflow)
                self._overflow = overflow
                self._overflow_events += events
                self._overflow_fills += fills
            raise
        self._state = state
        self._last_id = _text(last_id)
        self._resync_reason = ""
        self._stale = set()
        with self._cond:
            self._stats["resyncs"] += 1
        logger.warning("fan-out %s: wrote a resync marker with %d state entries (%s)", self.account,
                       len(state), detail)

    def _write_batch(self, batch: list[Event]) -> None:
        args: list[Any] = [self._maxlen, self._token, self._last_id]
        updates: list[tuple[str, str | None]] = []
        seed_done = False
        for event in batch:
            payload = encode(event)
            identity = state_identity(event)
            if identity is None:
                op = "t" if isinstance(event, StatusUpdate) else ""
                args += [payload, "", op]
                seed_done = seed_done or (isinstance(event, StatusUpdate) and event.state == "connected")
                continue
            key, keep = identity
            args += [payload, key, "s" if keep else "d"]
            updates.append((key, payload.decode() if keep else None))
        try:
            last_id = self._publish(keys=self._keys_list(), args=args)
        except Exception as exc:
            if "GRIDBOT_DIVERGED" in str(exc):
                raise _Diverged() from exc
            raise
        self._last_id = _text(last_id)
        for key, value in updates:
            self._stale.discard(key)
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        with self._cond:
            self._stats["published"] += len(batch)
        if seed_done and not self._seeded:
            self._seeded = True
            self._sweep_stale()

    def _sweep_stale(self) -> None:
        """Drop state a previous producer left that this one's seed did not rewrite (e.g. orders that
        ended while no producer was running)."""
        if self._stale:
            self._redis.hdel(self._keys.state, *self._stale)
            logger.info("fan-out %s: removed %d stale state entries left by a previous producer",
                        self.account, len(self._stale))
            self._stale = set()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
