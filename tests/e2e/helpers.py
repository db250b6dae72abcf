"""Shared pieces of the end-to-end tests: an event recorder, condition waits, emulator + stream wiring.

Every wait polls a condition with a generous timeout (the suite must pass on a loaded 2-core machine);
nothing sleeps and hopes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar

import gridbot
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from gridbot.events import Event, OrderUpdate, PositionUpdate, StatusUpdate
from tests.helpers import WAIT as WAIT  # re-exported: the e2e tests import them from here
from tests.helpers import wait_until as wait_until

KEY = "e2e-key"
SECRET = "e2e-secret-never-printed"
SYMBOL = "BTCUSDT"
START_PRICE = Decimal("60000")

E = TypeVar("E", bound=Event)


def engine_config(*, hedge: bool = False) -> EngineConfig:
    return EngineConfig(symbols=(SymbolConfig(SYMBOL, START_PRICE, tick_size=Decimal("0.1"),
                                              qty_step=Decimal("0.001")),),
                        seed=7, hedge_mode=hedge)


class Recorder:
    """Every event the stream delivers, in delivery order, readable from the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def all(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def mark(self) -> int:
        """An index: ``of(..., since=mark)`` sees only what arrived afterwards."""
        with self._lock:
            return len(self._events)

    def of(self, kind: type[E], since: int = 0, **fields: Any) -> list[E]:
        return [e for e in self.all()[since:] if isinstance(e, kind)
                and all(getattr(e, k) == v for k, v in fields.items())]

    def wait(self, kind: type[E], pred: Callable[[E], bool] = lambda _e: True, since: int = 0,
             what: str = "", **fields: Any) -> E:
        """The first matching event after ``since``; fails after WAIT seconds."""
        def find() -> E | None:
            return next((e for e in self.of(kind, since, **fields) if pred(e)), None)

        found = wait_until(find, what=what or f"{kind.__name__} {fields}")
        assert found is not None
        return found

    def statuses(self, since: int = 0) -> list[str]:
        return [e.state for e in self.of(StatusUpdate, since)]

    def wait_statuses(self, *states: str, since: int = 0) -> None:
        """Wait until the StatusUpdates after ``since`` contain ``states`` in this order (others may be
        interleaved: e.g. python-binance reports a possible gap, which gridbot resyncs, before the drop)."""
        def seen() -> bool:
            remaining = iter(self.statuses(since))
            return all(state in remaining for state in states)

        wait_until(seen, what=f"StatusUpdates {' -> '.join(states)}")

    def orders(self, order_id: str, since: int = 0) -> list[OrderUpdate]:
        return self.of(OrderUpdate, since, order_id=order_id)

    def last_position(self, position_idx: int = 0) -> PositionUpdate | None:
        positions = self.of(PositionUpdate, symbol=SYMBOL, position_idx=position_idx)
        return positions[-1] if positions else None


def make_stream(exchange: str, emulator: Any, recorder: Recorder,
                **kwargs: Any) -> gridbot.ExchangeStream:
    stream = gridbot.ExchangeStream(exchange, api_key=kwargs.pop("api_key", KEY),  # type: ignore[arg-type]
                                    api_secret=kwargs.pop("api_secret", SECRET),
                                    endpoints=emulator.endpoints, on_status=recorder, **kwargs)
    stream.subscribe(SYMBOL, on_position=recorder, on_wallet=recorder, on_order=recorder,
                     on_ticker=recorder, on_fill=recorder)
    return stream


@contextmanager
def running(exchange: str, emulator: Any, recorder: Recorder) -> Iterator[gridbot.ExchangeStream]:
    """A started stream on a started emulator; both stopped whatever happens."""
    emulator.start()
    stream: gridbot.ExchangeStream | None = None
    try:
        stream = make_stream(exchange, emulator, recorder)
        stream.start(timeout=WAIT)
        yield stream
    finally:
        if stream is not None:
            stream.stop(timeout=10.0)
        emulator.stop()


def state_calls(rest_calls: dict[str, int]) -> dict[str, int]:
    """The account-state reads among an emulator's ``"METHOD /path"`` counters."""
    from gridbot.cli import is_state_call

    return {call: n for call, n in rest_calls.items() if is_state_call(call)}


def wire_trade_ids(exchange: str, fills: Iterable[Any]) -> list[str]:
    """The trade ids the exchange's wire shows for the engine's fills, in execution order (Binance ``t`` /
    ``id`` is the engine's id; Bybit's ``execId`` is a UUID-shaped string derived from it)."""
    if exchange == "binance":
        return [str(fill.trade_id) for fill in fills]
    from gridbot.emulator.bybit._wire import _IdBook

    return [_IdBook.exec_id(fill.trade_id) for fill in fills]


def gridbot_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gridbot-") and t.is_alive()]


def unrealised(position: PositionUpdate) -> Decimal:
    """What DESIGN §2 says the merged unrealised PnL is: (mark - entry) * size, negated for shorts."""
    assert position.mark_price is not None
    pnl = (position.mark_price - position.entry_price) * position.size
    return -pnl if position.side == "Sell" else pnl
