"""ExchangeStream.add_sink: what a publisher sees is what the callbacks see (positions at the mark)."""

from __future__ import annotations

from decimal import Decimal

from gridbot._dispatch import Callbacks, Router, Subscriptions
from gridbot.events import Event, PositionUpdate
from gridbot.stats import Counters
from tests.fanout.helpers import SYMBOL, fill, position, status, ticker, wallet


def make_router() -> tuple[Router, Counters, list[Event], list[Event]]:
    subscriptions = Subscriptions()
    delivered: list[Event] = []
    subscriptions.set(SYMBOL, Callbacks(on_position=delivered.append, on_fill=delivered.append))
    counters = Counters()
    router = Router("bybit", subscriptions, None, counters)
    sunk: list[Event] = []
    router.add_sink(sunk.append)
    return router, counters, sunk, delivered


def test_the_sink_gets_every_delivered_event_with_positions_at_the_merged_mark() -> None:
    router, _, sunk, delivered = make_router()
    router.deliver(position("0.01", 1, mark=None))
    router.deliver(ticker("60100", 2))  # re-emits the position at the new mark
    router.deliver(fill(3))
    router.deliver(wallet("5", 4))
    router.deliver(status("connected"))
    kinds = [type(e).__name__ for e in sunk]
    assert kinds == ["PositionUpdate", "TickerUpdate", "PositionUpdate", "FillUpdate", "WalletUpdate",
                     "StatusUpdate"]
    moved = sunk[2]
    assert isinstance(moved, PositionUpdate)
    assert moved.mark_price == Decimal("60100") and moved.unrealised_pnl == Decimal("1.00")
    assert [e for e in sunk if isinstance(e, PositionUpdate)] == [e for e in delivered
                                                                  if isinstance(e, PositionUpdate)]


def test_events_of_unsubscribed_symbols_do_not_reach_the_sink() -> None:
    router, _, sunk, _ = make_router()
    router.deliver(fill(1, symbol="ETHUSDT"))
    router.deliver(position("1", 2, symbol="ETHUSDT"))
    router.deliver(ticker("1", 3, symbol="ETHUSDT"))
    assert sunk == []


def test_a_raising_sink_is_counted_and_delivery_goes_on() -> None:
    router, counters, sunk, delivered = make_router()

    def broken(event: Event) -> None:
        raise RuntimeError("sink bug")

    router.add_sink(broken)
    router.deliver(fill(1))
    assert sunk == [fill(1)] and delivered == [fill(1)]
    assert counters.snapshot().callback_errors == 1
