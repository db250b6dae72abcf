"""One supervised socket channel: the state machine behind :mod:`gridbot.adapters._supervisor`.

States (``ChannelState``)::

    NEW --start--> CONNECTING --opened--> UP --closed / pong or silence timeout / rebuild--> BACKOFF
                      |  ^                 |  ^                                               |
                      |  +-----------------|--|------------------- retry time reached --------+
                      |                    |  +-- opened (the transport reconnected itself) --+
                      |                    +--reconnecting--> RECOVERING                       |
                      +--closed / auth failed / connect timeout--> BACKOFF  (STOPPED: refused)
    any --close--> CLOSED

``UP`` without an attempt is an idle channel (no topics, ``idle_when_empty``): up, nothing to watch.
Events arrive from transport threads and change state at once, under the supervisor's lock, reporting to
the sink in that same call (so reports keep the transport's order); time-driven work (retries, pings,
timeouts, topic changes, reaping closed handles) happens in :meth:`Channel.step`, which plans under the
lock and calls the transport outside it.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridbot.adapters._attempt import Attempt
from gridbot.adapters._backoff import Backoff

if TYPE_CHECKING:
    from gridbot.adapters._contract import ChannelSpec, Handle
    from gridbot.adapters._supervisor import Supervisor

__all__ = ["Attempt", "Channel", "ChannelState", "OpenFailure"]

logger = logging.getLogger(__name__)

_MAX_PASSES = 16  # step(): plan/act rounds before it returns (each round does something)
_REAP_INTERVAL = 0.25  # seconds between non-blocking joins of closed handles


class ChannelState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    UP = "up"
    RECOVERING = "recovering"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class OpenFailure:
    """Why a channel's first attempt failed: ``auth`` (keys rejected), ``refused`` (a subscription the
    channel cannot do without), ``connect`` (unreachable, timed out, closed before it was live);
    ``error``: the exception behind it, when the transport gave one."""

    kind: str
    detail: str
    error: BaseException | None = None


class Channel:
    """The state machine of one channel (see the module docstring).  Owned by a :class:`Supervisor`."""

    def __init__(self, owner: Supervisor, spec: ChannelSpec, lock: threading.Condition) -> None:
        self._owner = owner
        self.spec = spec
        self.name = spec.name
        self.now = owner.clock.now
        self.on_frame = spec.on_frame
        self._cond = lock
        self.waker = owner.clock.waker()
        self.state = ChannelState.NEW
        self.backoff = Backoff(spec.timings.backoff, owner.rng)
        self.topics: set[str] = set(spec.topics)
        self.refused_topics: set[str] = set()
        self.applied: set[str] = set()
        self.current: Attempt | None = None
        self.replacement: Attempt | None = None
        self.lingering: list[Handle] = []  # retired, to be closed
        self.closing: list[Handle] = []  # closed, to be joined
        self.reap_at = 0.0
        self.open_failure: OpenFailure | None = None
        self.ever_up = False
        self.reported_up = False
        self.failed = False
        self.retry_at = 0.0
        self.deadline = 0.0
        self.up_since = 0.0
        self.last_ping = 0.0
        self.ping_at: float | None = None
        self.replace_reason: str | None = None
        self.replace_at = 0.0
        self.replace_deadline = 0.0
        self.first_deadline = 0.0
        self._numbers = 0

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.state.value} attempt={self.current!r}>"

    def __str__(self) -> str:
        return f"{self._owner.name} {self.name}"

    # ------------------------------------------------------------------ reporting

    def report(self, state: str, detail: str) -> None:
        """Tell the sink (under the lock: the sink only enqueues, and reports keep their order)."""
        if state in ("up", "down"):
            self.reported_up = state == "up"
        if not self._owner.reporting:
            return
        try:
            self._owner.sink.link(self.name, state, self._owner.scrub(detail))  # type: ignore[arg-type]
        except Exception:
            self.count_error()
            logger.exception("%s: the sink raised on a %r report", self, state)

    def count_error(self) -> None:
        self._owner.count_error()

    # ------------------------------------------------------------------ events (any thread)

    def event(self, attempt: Attempt, kind: str, detail: str, error: BaseException | None = None) -> None:
        try:
            with self._cond:
                if attempt.retired:
                    return
                if attempt is self.replacement:
                    self._replacement_event(attempt, kind, detail)
                elif attempt is self.current:
                    self._current_event(attempt, kind, detail, error)
                self._cond.notify_all()
            self.waker.wake()
        except Exception:
            self.count_error()
            logger.exception("%s: handling the %r event failed", self, kind)

    def _current_event(self, attempt: Attempt, kind: str, detail: str, error: BaseException | None) -> None:
        now = self.now()
        if kind == "opened":
            if self.state is not ChannelState.UP:  # a repeated opened() changes nothing
                self._became_up(attempt, now, "connected")
        elif kind == "reconnecting":
            if self.state is ChannelState.UP:
                self.state = ChannelState.RECOVERING
                recover = self.spec.timings.recover_timeout
                self.deadline = now + recover if recover is not None else float("inf")
                attempt.gap_pending = False
                logger.warning("%s %s socket lost (%s); the transport reconnects", self._owner.name,
                               self.name, self._owner.scrub(detail))
                self.report("down", detail)
        elif kind == "gap":
            if self.state is ChannelState.UP and self.reported_up:
                attempt.gap_pending = True
                self.report("gap", detail)
        elif kind == "closed":
            self.lost(now, detail, error=error)
        elif kind == "auth_failed":
            self.lost(now, detail, auth=True, error=error)

    def _replacement_event(self, attempt: Attempt, kind: str, detail: str) -> None:
        now = self.now()
        if kind == "opened":
            old, self.current, self.replacement = self.current, attempt, None
            if old is not None:
                self.retire(old)
            self.applied = set(attempt.topics)
            self._became_up(attempt, now, "replaced")
        elif kind in ("closed", "auth_failed", "reconnecting"):
            self._replacement_failed(now, detail)

    def _became_up(self, attempt: Attempt, now: float, why: str) -> None:
        self.state = ChannelState.UP
        self.up_since = self.last_ping = attempt.last_rx = now
        self.ping_at = None
        attempt.gap_pending = False
        first = not self.ever_up
        self.ever_up = True
        self.failed = False
        if not self.reported_up:
            if not first:
                logger.info("%s %s socket is up again (%s)", self._owner.name, self.name, why)
            self.report("up", why if first else f"reconnected ({why})")

    def frames_after_gap(self, attempt: Attempt) -> None:
        """Frames flow on the same connection after a ``gap``: ``up`` makes the stream resync it."""
        with self._cond:
            if not attempt.gap_pending or attempt is not self.current or attempt.retired:
                return
            attempt.gap_pending = False
            if self.state is ChannelState.UP:
                self.report("up", "frames flow again after a gap")

    def refused(self, attempt: Attempt, topics: tuple[str, ...], detail: str) -> None:
        try:
            with self._cond:
                if attempt.retired:
                    return
                self.topics.difference_update(topics)
                self.applied.difference_update(topics)
                self.refused_topics.update(topics)
                fatal = self.spec.refusal_fatal
                if fatal:
                    self._refused_fatal(attempt, detail)
                self._cond.notify_all()
            logger.error("%s refused the %s subscription to %s: %s", self._owner.name, self.name,
                         ", ".join(topics), self._owner.scrub(detail))
            self.waker.wake()
            if not fatal and self.spec.on_refused is not None:
                self.spec.on_refused(topics, self._owner.scrub(detail))
        except Exception:
            self.count_error()
            logger.exception("%s: handling a refused subscription failed", self)

    def _refused_fatal(self, attempt: Attempt, detail: str) -> None:
        text = f"subscription refused: {detail}"
        if attempt is self.replacement:
            self._replacement_failed(self.now(), text)
            return
        if not self.ever_up:
            self._first_failed("refused", text)
            return
        self.retire(attempt)
        if self.reported_up:
            self.report("down", text)
        self.state = ChannelState.STOPPED
        if not self.failed:  # once per outage, whatever the reason
            self.failed = True
            self.report("failed", f"{text}; not retried until the channel is rebuilt")

    # ------------------------------------------------------------------ transitions (under the lock)

    def lost(self, now: float, detail: str, *, auth: bool = False,
             error: BaseException | None = None) -> None:
        """The current attempt is gone: retire it, report, and retry after a backoff."""
        for attempt in (self.current, self.replacement):
            if attempt is not None:
                self.retire(attempt)
        if not self.ever_up:
            self._first_failed("auth" if auth else "connect", detail, error)
            return
        if self.state is ChannelState.UP:
            self.backoff.healthy(now - self.up_since)
        if self.reported_up:
            logger.warning("%s %s socket lost (%s); reconnecting", self._owner.name, self.name,
                           self._owner.scrub(detail))
            self.report("down", detail)
        else:
            logger.warning("%s %s reconnect attempt failed: %s", self._owner.name, self.name,
                           self._owner.scrub(detail))
        if auth and not self.failed:
            self.failed = True
            logger.error("%s %s socket: keys rejected (%s); retrying with backoff", self._owner.name,
                         self.name, self._owner.scrub(detail))
            self.report("failed", f"{detail}; retrying with backoff until the keys work again")
        self.state = ChannelState.BACKOFF
        self.retry_at = now + self.backoff.next_delay()

    def _first_failed(self, kind: str, detail: str, error: BaseException | None = None) -> None:
        """Before the first ``up`` nothing is retried: the adapter's ``open()`` raises instead."""
        if self.open_failure is None:
            self.open_failure = OpenFailure(kind, detail, error)
        for attempt in (self.current, self.replacement):
            if attempt is not None:
                self.retire(attempt)
        self.state = ChannelState.STOPPED

    def _replacement_failed(self, now: float, detail: str) -> None:
        attempt = self.replacement
        if attempt is not None:
            self.retire(attempt)
        self.replacement = None
        logger.warning("%s %s: replacement socket failed (%s); the current one stays", self._owner.name,
                       self.name, self._owner.scrub(detail))
        self.replace_at = now + self.backoff.next_delay()

    def retire(self, attempt: Attempt) -> None:
        attempt.retire()
        if self.current is attempt:
            self.current = None
        if self.replacement is attempt:
            self.replacement = None
        handle, attempt.handle = attempt.handle, None
        if handle is not None:
            self.lingering.append(handle)  # closed and joined by step() or close()

    def start_attempt(self, now: float, *, replacement: bool = False) -> Attempt:
        self._numbers += 1
        attempt = Attempt(self, self._numbers, now, tuple(sorted(self.topics)))
        timeout = self.spec.timings.connect_timeout
        deadline = self.first_deadline if not self.ever_up and self.first_deadline else now + timeout
        if replacement:
            self.replacement = attempt
            self.replace_deadline = deadline
        else:
            self.current = attempt
            self.state = ChannelState.CONNECTING
            self.deadline = deadline
            self.applied = set(self.topics)
        return attempt

    def rebuild(self, now: float, reason: str, *, seamless: bool) -> None:
        """A new connection is needed (e.g. a listen key expired).  ``seamless``: open the new one while
        the old one still delivers and switch when it is live (no ``down``); otherwise drop the old one
        now, report ``down`` and reconnect at once."""
        state = self.state
        if state in (ChannelState.NEW, ChannelState.CLOSED) or (state is ChannelState.STOPPED
                                                                   and not self.ever_up):
            return
        if seamless and state is ChannelState.UP:
            self.replace_reason = reason
            self.replace_at = now
            return
        for attempt in (self.current, self.replacement):
            if attempt is not None:
                self.retire(attempt)
        if self.reported_up:
            logger.warning("%s %s socket rebuilt: %s", self._owner.name, self.name, self._owner.scrub(reason))
            self.report("down", reason)
        self.state = ChannelState.BACKOFF
        self.retry_at = now

    # ------------------------------------------------------------------ step

    def step(self, now: float) -> float | None:
        """Do what is due at ``now``; returns when to step next (None: only on an event)."""
        for _pass in range(_MAX_PASSES):
            actions: list[Callable[[], None]] = []
            with self._cond:
                wake = self._plan(now, actions)
                self._cond.notify_all()
            for action in actions:
                try:
                    action()
                except Exception:
                    self.count_error()
                    logger.exception("%s: a supervision step failed", self)
            if not actions and (wake is None or wake > now):
                return wake
            now = max(now, self.now())
        return now

    def _plan(self, now: float, actions: list[Callable[[], None]]) -> float | None:
        wake = self._plan_state(now, actions)
        reap = self._plan_disposal(now, actions)  # after: what the state step retired closes now
        if reap is None:
            return wake
        return reap if wake is None else min(wake, reap)

    def _plan_disposal(self, now: float, actions: list[Callable[[], None]]) -> float | None:
        """Close retired handles at once; join closed ones (without waiting) every ``_REAP_INTERVAL``."""
        if self.lingering:
            handles, self.lingering = self.lingering, []
            self.closing.extend(handles)
            actions.append(lambda: self._owner.close_handles(self, handles))
        if not self.closing:
            return None
        if now >= self.reap_at:
            self.reap_at = now + _REAP_INTERVAL
            closing, self.closing = self.closing, []
            actions.append(lambda: self._owner.reap(self, closing))
        return self.reap_at

    def _plan_state(self, now: float, actions: list[Callable[[], None]]) -> float | None:
        state = self.state
        if state is ChannelState.BACKOFF:
            if now < self.retry_at:
                return self.retry_at
            attempt = self.start_attempt(now)
            actions.append(lambda: self._owner.open(self, attempt))
            return None
        if state is ChannelState.CONNECTING:
            if now < self.deadline:
                return self.deadline
            self.lost(now, f"not live within {self.spec.timings.connect_timeout:g} s")
            return now
        if state is ChannelState.RECOVERING:
            if now < self.deadline:
                return self.deadline if self.deadline != float("inf") else None
            self.lost(now, "the transport did not reconnect in time")
            return now
        if state is ChannelState.UP:
            return self._plan_up(now, actions)
        return None

    def _plan_up(self, now: float, actions: list[Callable[[], None]]) -> float | None:
        attempt = self.current
        wakes: list[float] = []
        if self.replacement is not None:
            if now >= self.replace_deadline:
                self._replacement_failed(now, f"not live within {self.spec.timings.connect_timeout:g} s")
            else:
                wakes.append(self.replace_deadline)
        self._plan_topics(now, actions, wakes)
        if attempt is None or attempt is not self.current:
            return min(wakes, default=None)
        timings = self.spec.timings
        silence = timings.silence_timeout
        if silence is not None:
            if now - attempt.last_rx > silence:
                self.lost(now, f"no frame for {now - attempt.last_rx:.0f} s")
                return now
            wakes.append(attempt.last_rx + silence + 0.001)
        if self.ping_at is not None:
            if attempt.last_rx >= self.ping_at:
                self.ping_at = None
            elif now - self.ping_at > timings.pong_timeout:
                self.lost(now, f"no answer to ping within {timings.pong_timeout:g} s")
                return now
            else:
                wakes.append(self.ping_at + timings.pong_timeout + 0.001)
        if self.backoff.attempts:
            up_for = now - self.up_since
            self.backoff.healthy(up_for)
            if self.backoff.attempts:
                wakes.append(self.up_since + timings.backoff.reset_after)
        if timings.ping_interval is not None and attempt.handle is not None:
            if now - self.last_ping >= timings.ping_interval:
                self.last_ping = now
                if self.ping_at is None:
                    self.ping_at = now
                    wakes.append(now + timings.pong_timeout + 0.001)
                handle = attempt.handle
                actions.append(lambda: self._owner.ping(self, attempt, handle))
            wakes.append(self.last_ping + timings.ping_interval)
        return min(wakes, default=None)

    def _plan_topics(self, now: float, actions: list[Callable[[], None]], wakes: list[float]) -> None:
        """Bring the live connection's topics to the wanted ones: live (un)subscribe where the transport
        can, otherwise (or when asked) a replacement socket that takes over once it is live."""
        attempt = self.current
        if not self.topics and self.spec.idle_when_empty:
            for retired in (attempt, self.replacement):  # nothing to watch: idle, still up
                if retired is not None:
                    self.retire(retired)
            self.applied = set()
            self.replace_reason = None
            return
        wanted = self.topics
        if self.replace_reason is None and wanted != self.applied:
            live = self.spec.live_topics and attempt is not None and attempt.handle is not None
            if live and attempt is not None and attempt.handle is not None:
                added, removed = sorted(wanted - self.applied), sorted(self.applied - wanted)
                self.applied = set(wanted)
                handle = attempt.handle
                actions.append(lambda: self._owner.change_topics(self, handle, added, removed))
            else:
                self.replace_reason = "topics changed"
        if self.replace_reason is None or self.replacement is not None:
            return
        if now < self.replace_at:
            wakes.append(self.replace_at)
            return
        self.replace_reason = None
        attempt = self.start_attempt(now, replacement=True)
        actions.append(lambda: self._owner.open(self, attempt))
