"""What the supervisor and an exchange's transport agree on: the transport and handle protocols, the
errors ``Transport.open`` raises, the per-channel specification and timings, and the error
``wait_up`` raises.  Re-exported by :mod:`gridbot.adapters._supervisor`, whose docstring tells how an
adapter uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gridbot.adapters._backoff import BackoffPolicy

if TYPE_CHECKING:
    from gridbot.adapters._attempt import Attempt

__all__ = ["AuthRejected", "ChannelSpec", "ConnectFailed", "Handle", "OpenFailed", "Timings", "Transport"]


class AuthRejected(Exception):
    """Raised by ``Transport.open`` when the exchange rejected the keys (e.g. a listen-key request)."""


class ConnectFailed(Exception):
    """Raised by ``Transport.open`` for an expected connect failure (logged as a warning, retried)."""


class OpenFailed(Exception):
    """``wait_up``: a channel's first attempt failed.  ``kind``: ``auth``, ``refused`` or ``connect``;
    ``error``: the exception behind it (raised by ``Transport.open`` or passed to ``closed`` /
    ``auth_failed``), for the adapter to translate and chain (``raise ... from failed.error``).  The
    detail is scrubbed; the error is the SDK's own: it goes through the exchange's error map (which
    strips signed URLs and keys) before anyone logs or raises it."""

    def __init__(self, channel: str, kind: str, detail: str, error: BaseException | None = None) -> None:
        super().__init__(f"the {channel} socket: {detail}")
        self.channel = channel
        self.kind = kind
        self.detail = detail
        self.error = error


class Handle(Protocol):
    """One connection opened by a transport: the only object that touches the SDK's socket."""

    def subscribe(self, topics: Sequence[str]) -> None: ...

    def unsubscribe(self, topics: Sequence[str]) -> None: ...

    def ping(self) -> None:
        """Send the exchange's heartbeat; the answer comes back as ``events.heard()`` (or any frame)."""

    def close(self) -> None:
        """Start closing; never blocks.  Idempotent."""

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the connection's threads; True once they have ended."""


class Transport(Protocol):
    """Opens connections for the supervisor (see the module docstring)."""

    def open(self, channel: str, topics: Sequence[str], events: Attempt) -> Handle: ...


@dataclass(frozen=True, slots=True)
class Timings:
    """Per-channel supervision timings, seconds.

    ``connect_timeout``: an attempt not ``opened()`` by then is abandoned (the first one instead ends at
    the deadline given to ``start``).  ``ping_interval``: send ``handle.ping()`` this often (None: the
    transport or server pings).  ``pong_timeout``: after a ping, nothing received for this long means the
    connection is dead.  ``silence_timeout``: nothing received at all for this long means dead (None: no
    bound).  ``recover_timeout``: how long a transport's own reconnect may take (None: as long as it
    reports nothing).  ``backoff``: delays between attempts.
    """

    connect_timeout: float = 20.0
    ping_interval: float | None = None
    pong_timeout: float = 10.0
    silence_timeout: float | None = None
    recover_timeout: float | None = None
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        names = ("connect_timeout", "pong_timeout", "ping_interval", "silence_timeout", "recover_timeout")
        for name in names:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Timings.{name} must be > 0, got {value}")


def _ignore_refusal(topics: Sequence[str], detail: str) -> None:
    """Default ``on_refused``: the supervisor already logged the refusal."""


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One supervised channel.

    ``on_frame(payload)`` runs on the transport's thread for every data frame of a live attempt.
    ``live_topics``: the transport can (un)subscribe on a live connection; otherwise a topic change opens
    a replacement connection.  ``idle_when_empty``: no topics means no connection (still "up").
    ``refusal_fatal``: a refused subscription fails the channel (``failed``, no retries until ``rebuild``);
    otherwise the topics are dropped and ``on_refused(topics, detail)`` is told (any thread, no lock held).
    """

    name: str
    on_frame: Callable[[Any], None]
    topics: Collection[str] = ()
    timings: Timings = field(default_factory=Timings)
    live_topics: bool = False
    idle_when_empty: bool = False
    refusal_fatal: bool = False
    on_refused: Callable[[Sequence[str], str], None] | None = _ignore_refusal
