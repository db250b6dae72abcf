"""The lifecycle of one stream: one meaning per state, every transition under one lock.

::

    new --start()--> starting --seed done--> live --stop()--> stopping --> stopped
     |                  |                     |
     +--stop()----------+-----stop()----------+--(internal fault)--> failed --stop()--> stopping
     v
    stopped (for good: start() raises)

``stop()`` while ``starting`` makes ``start()`` raise; threads are only ever spawned while the state
allows it (:meth:`Lifecycle.spawn`), so a ``stop()`` racing ``start()`` can never leave a thread behind
that nobody joins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from gridbot.errors import GridbotError

__all__ = ["Lifecycle", "Phase"]

Phase = Literal["new", "starting", "live", "failed", "stopping", "stopped"]


class Lifecycle:
    """The state machine behind :class:`gridbot.ExchangeStream`; safe from any thread."""

    __slots__ = ("_lock", "_phase", "stopping")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phase: Phase = "new"
        self.stopping = threading.Event()  # set once stop() is called (or start() gave up)

    @property
    def phase(self) -> Phase:
        return self._phase

    def begin_start(self) -> None:
        """new -> starting; anything else is a :class:`GridbotError` (a stream starts once)."""
        with self._lock:
            if self._phase == "new":
                self._phase = "starting"
                return
            if self._phase in ("stopping", "stopped"):
                raise GridbotError("this stream was stopped; a stopped stream cannot be started again")
            raise GridbotError("start() was already called; a stream starts once")

    def go_live(self) -> bool:
        """starting -> live; False when stop() (or a fault) came first."""
        with self._lock:
            if self._phase != "starting":
                return False
            self._phase = "live"
            return True

    def begin_stop(self) -> Phase:
        """Claim the teardown: returns the phase stop() found.  ``new`` goes straight to stopped;
        ``starting``, ``live`` and ``failed`` go to stopping (the caller tears down); ``stopping`` and
        ``stopped`` are left alone (someone else tears down, or did)."""
        with self._lock:
            found = self._phase
            if found == "new":
                self._phase = "stopped"
            elif found in ("starting", "live", "failed"):
                self._phase = "stopping"
            self.stopping.set()
            return found

    def finish_stop(self) -> None:
        with self._lock:
            self._phase = "stopped"

    def fail(self) -> bool:
        """starting/live -> failed (the stream cannot go on); False if it is already ending."""
        with self._lock:
            if self._phase not in ("starting", "live"):
                return False
            self._phase = "failed"
            return True

    def spawn(self, name: str, target: Callable[[], None]) -> threading.Thread | None:
        """Start a daemon thread only while ``starting`` (atomically with stop()'s claim), else None."""
        with self._lock:
            if self._phase != "starting":
                return None
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            return thread

    @property
    def accepting(self) -> bool:
        """True while subscription changes must reach the running adapter and worker."""
        return self._phase in ("starting", "live")
