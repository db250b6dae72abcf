"""Reading the stored state of an account: the latest event per identity, the id of the stream entry
it corresponds to, and the producer's last status - in one transaction, so they agree."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from gridbot.errors import NormalizationError
from gridbot.events import Event, StatusUpdate
from gridbot.remote._codec import Marker, decode
from gridbot.remote._redis import Keys, text

__all__ = ["StoredState", "read_state", "seed_order"]

logger = logging.getLogger(__name__)

# Tickers first (the marks), then the account-wide figures, positions, and orders.
_ORDER: Final[Mapping[str, int]] = MappingProxyType(
    {"TickerUpdate": 0, "WalletUpdate": 1, "PositionUpdate": 3, "OrderUpdate": 4})


def seed_order(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=lambda e: _ORDER.get(type(e).__name__, 2))


@dataclass(frozen=True, slots=True)
class StoredState:
    events: list[Event]
    last_id: str | None  # None: no producer has published the account (or Redis lost it)
    status: StatusUpdate | None
    status_payload: Any
    exchange: str
    bad_entries: int


def read_state(redis: Any, keys: Keys) -> StoredState:
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(keys.state)
    pipe.hmget(keys.meta, "last_id", "status", "exchange")
    raw_state, (last_id, status_payload, exchange) = pipe.execute()
    events: list[Event] = []
    bad = 0
    for key, payload in raw_state.items():
        try:
            item = decode(payload)
        except NormalizationError as exc:
            bad += 1
            logger.error("stored state entry %s of %s skipped: %s", text(key), keys.state, exc)
            continue
        if not isinstance(item, Marker):
            events.append(item)
    status: StatusUpdate | None = None
    if status_payload is not None:
        try:
            decoded = decode(status_payload)
            status = decoded if isinstance(decoded, StatusUpdate) else None
        except NormalizationError:
            bad += 1
    return StoredState(events=seed_order(events), last_id=None if last_id is None else text(last_id),
                       status=status, status_payload=status_payload,
                       exchange=text(exchange) if exchange else "", bad_entries=bad)
