"""One connection attempt of a supervised channel: the events its transport reports.

A transport gets an :class:`Attempt` with every ``Transport.open`` call and reports on it from its SDK
threads (see :mod:`gridbot.adapters._supervisor`).  The attempt hands them to its
:class:`~gridbot.adapters._channel.Channel`; once the supervisor has given up on it (``retired``) they
are ignored, frames included, so a late event of an old socket can never touch the new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridbot.adapters._channel import Channel
    from gridbot.adapters._contract import Handle

__all__ = ["Attempt"]

logger = logging.getLogger("gridbot.adapters._channel")  # the channel's log, whichever module writes


class Attempt:
    """One connection attempt: the events a transport reports for the handle it opened with it.

    Every method may be called from any thread, any number of times, also from inside
    ``Transport.open`` before it returns; none raises and none blocks for long.  Events of an attempt
    the supervisor has given up on (``retired``) are ignored, frames included.
    """

    __slots__ = ("_channel", "_ended", "_now", "_on_frame", "gap_pending", "handle", "last_rx", "number",
                 "retired", "topics")

    def __init__(self, channel: Channel, number: int, now: float, topics: tuple[str, ...]) -> None:
        self._channel = channel
        self._now = channel.now  # the frame path reads these two per frame
        self._on_frame = channel.on_frame
        self.number = number
        self.topics = topics  # what the transport is asked to subscribe
        self.handle: Handle | None = None
        self.retired = False
        self._ended = threading.Event()
        self.gap_pending = False
        self.last_rx = now

    def __repr__(self) -> str:
        return f"<Attempt {self._channel.name}#{self.number} retired={self.retired}>"

    def wait_retired(self, timeout: float) -> bool:
        """For a transport whose ``open`` blocks while connecting: wait up to ``timeout`` seconds, True
        as soon as the supervisor gave up on this attempt (``close()``, a timeout): stop connecting."""
        return self._ended.wait(timeout)

    def retire(self) -> None:
        """Called by the supervisor only (under its lock)."""
        self.retired = True
        self._ended.set()

    def frame(self, payload: Any) -> None:
        """A data frame: counts as life, and goes to the channel's frame handler."""
        if self.retired:
            return
        self.last_rx = self._now()
        try:
            self._on_frame(payload)
        except Exception:
            self._channel.count_error()
            logger.exception("%s: the frame handler raised", self._channel)
        if self.gap_pending:
            self._channel.frames_after_gap(self)

    def heard(self) -> None:
        """Traffic that is no data (a pong, a server ping): counts as life only."""
        if not self.retired:
            self.last_rx = self._now()

    def opened(self) -> None:
        """Connected, authenticated and the initial subscriptions acknowledged (again, after the
        transport reconnected by itself)."""
        self._channel.event(self, "opened", "")

    def reconnecting(self, detail: str) -> None:
        """The transport lost the connection and reconnects by itself (the handle stays)."""
        self._channel.event(self, "reconnecting", detail)

    def gap(self, detail: str) -> None:
        """The live connection may have missed frames (e.g. an SDK error message)."""
        self._channel.event(self, "gap", detail)

    def closed(self, detail: str, error: BaseException | None = None) -> None:
        """The connection is gone for good (or never came up): the supervisor rebuilds it.  ``error``:
        the exception behind it, if any (a first attempt's becomes ``OpenFailed.error``)."""
        self._channel.event(self, "closed", detail, error)

    def auth_failed(self, detail: str, error: BaseException | None = None) -> None:
        """The exchange rejected the keys: ``failed`` is reported once and attempts go on with backoff."""
        self._channel.event(self, "auth_failed", detail, error)

    def refused(self, topics: Sequence[str], detail: str) -> None:
        """The server refused subscribing ``topics``."""
        self._channel.refused(self, tuple(topics), detail)
