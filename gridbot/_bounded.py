"""Bounded memories of ids, so dedupe state cannot grow without bound and stays small per id.

A ``set`` (or ``dict``) answers membership and a ``deque`` remembers the order of first insertion:
about 50 bytes per entry besides the key itself, where an ``OrderedDict`` (a linked-list node per
entry) took about 150.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedMap", "BoundedSet", "FinishedOrders", "IdKey", "IdKeys"]

IdKey = str | int

T = TypeVar("T", bound=Hashable)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


_MAX_DIGITS = 19  # every 19-digit number is below 2**64


class IdKeys:
    """One small object per remembered (symbol, id), where a tuple would add a 56-byte object and keep
    the id string alive besides: an ``int`` for a canonical decimal id (Binance's trade and order ids;
    about 40 bytes), else ``symbol\0id`` in one string (symbols hold no NUL; Bybit's UUIDs, ~100 bytes).

    Exact, never a hash: the int is the symbol's number above 64 bits and the id below, and only ids
    that print back as themselves become ints (ASCII digits, no leading zero), so two different ids
    never share a key.  Only the memory's writer may call :meth:`key` (it numbers new symbols);
    readers on other threads call :meth:`find`.
    """

    __slots__ = ("_symbols",)

    def __init__(self) -> None:
        self._symbols: dict[str, int] = {}

    def key(self, symbol: str, ident: str) -> IdKey:
        if _canonical_number(ident):
            number = self._symbols.get(symbol)
            if number is None:
                number = self._symbols[symbol] = len(self._symbols) + 1
            return number << 64 | int(ident)
        return f"{symbol}\0{ident}"

    def find(self, symbol: str, ident: str) -> IdKey | None:
        """The key if it may be remembered; None when it cannot be (a symbol never written)."""
        if _canonical_number(ident):
            number = self._symbols.get(symbol)
            return None if number is None else number << 64 | int(ident)
        return f"{symbol}\0{ident}"


def _canonical_number(ident: str) -> bool:
    return (ident.isdigit() and ident.isascii() and len(ident) <= _MAX_DIGITS
            and (ident[0] != "0" or len(ident) == 1))


def _check(capacity: int) -> int:
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    return capacity


class BoundedSet(Generic[T]):
    """A set of at most ``capacity`` items; the first added is forgotten first.

    Adding an item already present changes nothing (it keeps its place in line).
    """

    __slots__ = ("_capacity", "_items", "_order")

    def __init__(self, capacity: int) -> None:
        self._capacity = _check(capacity)
        self._items: set[T] = set()
        self._order: deque[T] = deque()

    def add(self, item: T) -> None:
        if item in self._items:
            return
        self._items.add(item)
        self._order.append(item)
        if len(self._order) > self._capacity:
            self._items.discard(self._order.popleft())

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


class BoundedMap(Generic[K, V]):
    """A mapping of at most ``capacity`` keys; the first added key is forgotten first.

    Setting a key already present replaces its value and keeps its place in line.
    """

    __slots__ = ("_capacity", "_items", "_order")

    def __init__(self, capacity: int) -> None:
        self._capacity = _check(capacity)
        self._items: dict[K, V] = {}
        self._order: deque[K] = deque()

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self._items:
            self._order.append(key)
        self._items[key] = value
        if len(self._order) > self._capacity:
            del self._items[self._order.popleft()]

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class FinishedOrders:
    """Orders that reached a terminal status, with that status (the latest ``capacity``; the oldest
    forgotten first): one memory for the stream's pipeline, which writes it, and the state book, which
    reads it from the dispatching thread (each read is one dict lookup, safe beside the one writer).

    About 100 bytes per order (Binance; ~150 with Bybit's UUIDs): an :class:`IdKeys` key, its dict slot
    and its deque slot.
    """

    __slots__ = ("_capacity", "_items", "_keys", "_order")

    def __init__(self, capacity: int) -> None:
        self._capacity = _check(capacity)
        self._keys = IdKeys()
        self._items: dict[IdKey, str] = {}
        self._order: deque[IdKey] = deque()

    def add(self, symbol: str, order_id: str, status: str) -> None:
        key = self._keys.key(symbol, order_id)
        items = self._items
        if key not in items:
            self._order.append(key)
        items[key] = status
        if len(self._order) > self._capacity:
            del items[self._order.popleft()]

    def status(self, symbol: str, order_id: str) -> str | None:
        """The order's terminal status, or None when it is not (or no longer) remembered."""
        key = self._keys.find(symbol, order_id)
        return None if key is None else self._items.get(key)

    def has(self, symbol: str, order_id: str) -> bool:
        key = self._keys.find(symbol, order_id)
        return key is not None and key in self._items

    def __len__(self) -> int:
        return len(self._items)
