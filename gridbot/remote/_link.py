"""Whether a RemoteStream is live, and which status to report when that changes.

Pure (no Redis, no clock of its own): the reader thread feeds it what it observes - Redis reachable
or not, the producer's heartbeat counter, the producer's own status - and reports what it returns.
Live means: Redis reachable, the heartbeat moved within ``heartbeat_timeout`` seconds, and the
producer's exchange stream connected (or resynced).
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["LIVE", "Link", "StatusState"]

StatusState = Literal["connected", "reconnecting", "resynced", "stopped", "failed"]
LIVE = ("connected", "resynced")


class Link:
    def __init__(self, heartbeat_timeout: float, now: float) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.redis_up = True
        self.producer_alive = True
        self.producer_state: str | None = None
        self.up = False
        self._hb: Any = None
        self._hb_seen = now

    def change(self, *, force: StatusState | None = None) -> StatusState | None:
        """The status to report after an observation: a change of liveness, or ``force`` while live."""
        up = self.redis_up and self.producer_alive and self.producer_state in LIVE
        if up != self.up:
            self.up = up
            return (force or "connected") if up else "reconnecting"
        return force if up else None

    def heartbeat(self, value: Any, now: float) -> str | None:
        """Note the producer's heartbeat counter; a detail when the producer's liveness changed."""
        if value != self._hb:
            self._hb, self._hb_seen = value, now
            if not self.producer_alive:
                self.producer_alive = True
                return "producer heartbeat is back"
        elif self.producer_alive and now - self._hb_seen > self.heartbeat_timeout:
            self.producer_alive = False
            return f"no producer heartbeat for {now - self._hb_seen:.1f} s"
        return None

    def producer(self, state: str) -> StatusState | None:
        """Note the producer's status; the status to force when it is live again after an outage."""
        previous, self.producer_state = self.producer_state, state
        if state in LIVE and (state == "resynced" or previous not in (*LIVE, None)):
            return "resynced"
        return None
