"""The time source of socket supervision, injected so tests step time instead of sleeping.

A :class:`Clock` tells the time (``now()``, seconds on a monotonic scale) and makes :class:`Waker` s:
one per waiting thread, which sleeps until a deadline or until another thread calls ``wake()``.  A wake-up
is sticky: one that arrives before the sleeper sleeps makes its next sleep return at once, so an event
posted between "decide" and "sleep" is never lost.

:class:`MonotonicClock` is the real one (``time.monotonic`` + ``threading.Condition``).
:class:`FakeClock` is for tests: time moves only when the test moves it (``advance``/``set``), and its
wakers never block — a sleep "until t" moves the fake time to t.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "MonotonicClock", "Waker"]


class Waker(Protocol):
    """A sleep that another thread can cut short."""

    def sleep_until(self, deadline: float | None) -> None:
        """Return at ``deadline`` (clock time; None: no deadline) or after ``wake()``, whichever is first."""

    def wake(self) -> None:
        """End the current sleep, or the next one if nobody sleeps now.  Any thread; never blocks for long."""


class Clock(Protocol):
    """``now()`` plus a way to wait for time or events."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""

    def waker(self) -> Waker:
        """A new waitable wake-up for one sleeping thread."""


class _ConditionWaker:
    """:class:`Waker` on ``threading.Condition`` and ``time.monotonic``."""

    __slots__ = ("_cond", "_woken")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._woken = False

    def sleep_until(self, deadline: float | None) -> None:
        with self._cond:
            while not self._woken:
                if deadline is None:
                    self._cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._woken = False

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    __slots__ = ()

    now = staticmethod(time.monotonic)  # the builtin itself: read once per frame on SDK threads

    def waker(self) -> Waker:
        return _ConditionWaker()


class _FakeWaker:
    __slots__ = ("_clock", "wakes", "woken")

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.woken = False
        self.wakes = 0

    def sleep_until(self, deadline: float | None) -> None:
        """Never blocks: a pending wake-up returns at once; otherwise the fake time jumps to ``deadline``."""
        if self.woken:
            self.woken = False
            return
        if deadline is None:
            raise RuntimeError("FakeClock: a sleep without deadline and without wake-up would never end")
        self._clock.set(max(self._clock.now(), deadline))

    def wake(self) -> None:
        self.woken = True
        self.wakes += 1


class FakeClock:
    """A clock for tests: starts at ``start`` and moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.wakers: list[_FakeWaker] = []

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError(f"FakeClock cannot go back from {self._now} to {when}")
        self._now = when

    def advance(self, seconds: float) -> float:
        """Move time forward; returns the new time."""
        self.set(self._now + seconds)
        return self._now

    def waker(self) -> Waker:
        waker = _FakeWaker(self)
        self.wakers.append(waker)
        return waker
