"""One RemoteStream's membership in a Redis consumer group: joining, reading its share,
acknowledging after the callbacks, and claiming what a dead member received and never finished."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from gridbot.remote._redis import Entry, entries_of, text

__all__ = ["GroupMember"]

logger = logging.getLogger(__name__)


class GroupMember:
    """``consumer`` in ``group`` of ``stream``.  Acknowledgements are collected from any thread and
    sent by the reader thread (:meth:`flush`), which owns every other call."""

    def __init__(self, redis: Any, stream: str, group: str, consumer: str, *, claim_idle: float) -> None:
        self.group = group
        self.consumer = consumer
        self._redis = redis
        self._stream = stream
        self._claim_idle_ms = int(claim_idle * 1000)
        self._lock = threading.Lock()
        self._acks: list[str] = []
        self._next_claim = 0.0

    def join(self, start_id: str) -> list[Entry]:
        """Create the group at ``start_id`` unless it exists; returns the entries this consumer name
        received before (a restart) and never acknowledged."""
        import redis

        try:
            self._redis.xgroup_create(self._stream, self.group, id=start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        pending = self._redis.xreadgroup(self.group, self.consumer, {self._stream: "0"}, count=10_000)
        return entries_of(pending)

    def move_to(self, entry_id: str) -> None:
        """Set the group's position (after a resync from the state or a producer's marker)."""
        self._redis.xgroup_setid(self._stream, self.group, entry_id)

    def ack(self, *entry_ids: str) -> None:
        with self._lock:
            self._acks.extend(entry_ids)

    def flush(self) -> None:
        """Send the collected acknowledgements; kept for the next try if Redis fails."""
        with self._lock:
            ids, self._acks = self._acks, []
        if not ids:
            return
        try:
            self._redis.xack(self._stream, self.group, *ids)
        except BaseException:
            with self._lock:
                self._acks = ids + self._acks
            raise

    def claim(self) -> list[Entry]:
        """Entries other members received and did not acknowledge for ``claim_idle`` seconds (checked
        every half of that); entries trimmed meanwhile are acknowledged away."""
        if time.monotonic() < self._next_claim:
            return []
        self._next_claim = time.monotonic() + max(0.2, self._claim_idle_ms / 2000)
        claimed: list[Entry] = []
        cursor = "0-0"
        while True:
            result = self._redis.xautoclaim(self._stream, self.group, self.consumer,
                                            min_idle_time=self._claim_idle_ms, start_id=cursor, count=100)
            cursor = text(result[0])
            claimed += [(text(i), f or None) for i, f in result[1]]
            self.ack(*(text(d) for d in (result[2] if len(result) > 2 else [])))
            if cursor == "0-0":
                break
        if claimed:
            logger.warning("group %r: %s claimed %d entries another member did not acknowledge",
                           self.group, self.consumer, len(claimed))
        return claimed
