"""The SDK threads' way in: a frame is handled on the SDK thread, or waits in the worker's inbox.

Outside seed and resync windows a frame is decoded, deduplicated and queued for dispatch right on
the SDK thread that received it (one thread hand-off per frame: to the dispatcher).  Whenever the
worker owns the stream's bookkeeping — seeding, a link report, a resync, a (un)subscription, stop —
frames wait in the inbox as they arrive and the worker handles them in order after what it is doing
(:mod:`gridbot._worker`).  One lock decides between the two, so the pipeline and the decoders are
only ever touched by one thread at a time, and every event reaches the dispatch queue in the order
its frame arrived on its socket.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from gridbot.adapters._base import Channel, LinkState, Sink

__all__ = ["ForgetSymbolItem", "Frame", "FrameGate", "InboxItem", "Link", "SeedSymbol", "Stop",
           "SymbolRejected"]


class Frame(NamedTuple):
    """A raw frame (a tuple: the cheapest object an SDK thread can allocate per frame)."""

    channel: Channel
    payload: Any


@dataclass(frozen=True, slots=True)
class Link:
    channel: Channel
    state: LinkState
    detail: str


@dataclass(frozen=True, slots=True)
class SeedSymbol:
    symbol: str


@dataclass(frozen=True, slots=True)
class ForgetSymbolItem:
    symbol: str


@dataclass(frozen=True, slots=True)
class SymbolRejected:
    symbol: str
    detail: str


class Stop:
    pass


InboxItem = Frame | Link | SeedSymbol | ForgetSymbolItem | SymbolRejected | Stop
FrameHandler = Callable[[Channel, Any], None]


class FrameGate(Sink):
    """The adapter's sink.  ``frame`` and ``link`` return at once and never raise.

    ``handle`` (the worker's inline frame handler, which contains its own faults) runs on the calling
    SDK thread under the gate's lock while the worker does not own the stream; otherwise the frame goes
    to the inbox.  Anything for the worker makes it the owner until it :meth:`release`\\ s the stream
    with an empty inbox.  Once the stream has failed for good nothing reads the inbox any more:
    :meth:`seal` makes both calls drop.
    """

    __slots__ = ("_handle", "_inbox", "_lock", "_put", "_worker_owns", "sealed")

    def __init__(self, inbox: queue.SimpleQueue[InboxItem], handle: FrameHandler) -> None:
        self._inbox = inbox
        self._put = inbox.put
        self._handle = handle
        self._lock = threading.Lock()
        self._worker_owns = True  # the worker seeds first
        self.sealed = False

    def frame(self, channel: Channel, payload: Any) -> None:
        with self._lock:
            if self.sealed:
                return
            if self._worker_owns:
                self._put(Frame(channel, payload))
            else:
                self._handle(channel, payload)

    def link(self, channel: Channel, state: LinkState, detail: str) -> None:
        with self._lock:
            if not self.sealed:
                self._worker_owns = True
                self._put(Link(channel, state, detail))

    def to_worker(self, item: InboxItem) -> None:
        """Queue ``item`` for the worker (sealed or not: a stop marker must always get through); the
        frames that arrive after it wait behind it."""
        with self._lock:
            self._worker_owns = True
            self._put(item)

    def claim(self) -> None:
        """The worker takes the stream (waits for a frame being handled inline to finish)."""
        with self._lock:
            self._worker_owns = True

    def release(self) -> bool:
        """The worker hands frames back to the SDK threads; refused (False) while the inbox holds
        anything, which the worker must handle first."""
        with self._lock:
            if self.sealed or not self._inbox.empty():
                return False
            self._worker_owns = False
            return True

    @property
    def worker_owns(self) -> bool:
        return self._worker_owns

    def symbol_rejected(self, symbol: str, detail: str) -> None:
        with self._lock:
            if not self.sealed:
                self._worker_owns = True
                self._put(SymbolRejected(symbol, detail))

    def seal(self) -> None:
        with self._lock:
            self.sealed = True
            self._worker_owns = True
