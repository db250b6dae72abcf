"""The worker's inbox: what SDK threads and the caller hand to the stream worker.

SDK threads only enqueue here (never block, never raise); the worker (:mod:`gridbot._worker`)
takes the items in order.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any, NamedTuple

from gridbot.adapters._base import Channel, LinkState, Sink

__all__ = ["ForgetSymbolItem", "Frame", "InboxItem", "InboxSink", "Link", "SeedSymbol", "Stop",
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


class InboxSink(Sink):
    """The adapter's view of the inbox: two enqueue calls that cannot block or raise.  Once the
    stream has failed for good nothing reads the inbox any more: :meth:`seal` makes both drop."""

    __slots__ = ("_put", "sealed")

    def __init__(self, inbox: queue.SimpleQueue[InboxItem]) -> None:
        self._put = inbox.put
        self.sealed = False

    def frame(self, channel: Channel, payload: Any) -> None:
        if not self.sealed:
            self._put(Frame(channel, payload))

    def link(self, channel: Channel, state: LinkState, detail: str) -> None:
        if not self.sealed:
            self._put(Link(channel, state, detail))

    def symbol_rejected(self, symbol: str, detail: str) -> None:
        if not self.sealed:
            self._put(SymbolRejected(symbol, detail))

    def seal(self) -> None:
        self.sealed = True
