"""stream.book and stream.status() with the real SDKs against the emulators: a loop without any callback
sees the emulator's positions, open orders, marks and wallet, per-socket states, and the same after a drop."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import gridbot
from gridbot.emulator import BinanceEmulator, BybitEmulator
from tests.e2e.helpers import KEY, SECRET, SYMBOL, WAIT, engine_config, wait_until

D = Decimal


@pytest.fixture(params=["binance", "bybit"])
def exchange(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    name: str = request.param
    emulator_class: Any = BinanceEmulator if name == "binance" else BybitEmulator
    emu = emulator_class(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    emu.start()
    try:
        yield name, emu
    finally:
        emu.stop()


def _book_matches_engine(stream: gridbot.ExchangeStream, emu: Any) -> bool:
    """Position size/side and open order ids in the book equal the engine's own."""
    engine_position = emu.engine.position(SYMBOL, 0)
    held = stream.book.position(SYMBOL)
    if held is None or (held.size, held.side) != (engine_position.size, engine_position.side):
        return False
    book_orders = {o.order_id for o in stream.book.open_orders(SYMBOL)}
    return len(book_orders) == len(emu.engine.open_orders(SYMBOL))


@pytest.mark.timeout(120)
def test_a_loop_without_callbacks_follows_the_account(exchange: tuple[str, Any]) -> None:
    name, emu = exchange
    stream = gridbot.ExchangeStream(name, api_key=KEY, api_secret=SECRET,  # type: ignore[arg-type]
                                    endpoints=emu.endpoints)
    stream.subscribe(SYMBOL)  # no callback at all
    stream.start(timeout=WAIT)
    try:
        status = stream.status()
        assert (status.state, status.connected, status.symbols) == ("connected", True, (SYMBOL,))
        assert {s.channel: s.state for s in status.sockets} == {"private": "up", "public": "up"}
        wait_until(lambda: stream.book.wallet("USDT") is not None, what="the seeded wallet")

        emu.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=D("0.01"))
        resting = emu.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Limit", qty=D("0.01"),
                                         price=D("50000"))
        emu.engine.set_price(SYMBOL, D("60100"))
        wait_until(lambda: _book_matches_engine(stream, emu), what="the book to show the engine's state")
        wait_until(lambda: stream.book.mark_price(SYMBOL) == D("60100"), what="the new mark")
        def valued() -> gridbot.PositionUpdate | None:
            position = stream.book.position(SYMBOL)
            return position if position is not None and position.mark_price == D("60100") else None

        held = wait_until(valued, what="the position valued at the new mark")
        assert held is not None and held.unrealised_pnl == (D("60100") - held.entry_price) * held.size
        assert [o.order_id for o in stream.book.open_orders(SYMBOL)] != []
        status = stream.status()
        assert [(p.symbol, p.size) for p in status.positions] == [(SYMBOL, D("0.01"))]
        assert status.open_orders == 1 and status.last_event_at is not None
        public = next(s for s in status.sockets if s.channel == "public")
        assert public.last_message_at is not None

        # A drop: the book catches up with what changed while the socket was down.
        emu.faults.drop_private()
        emu.engine.cancel_order(symbol=SYMBOL, order_id=resting.order_id)
        wait_until(lambda: stream.book.state in ("resynced", "connected") and not stream.book.open_orders(),
                   what="the cancelled order to leave the book after the reconnect")
        wait_until(lambda: stream.status().state == "connected", what="connected again")
        assert _book_matches_engine(stream, emu)
        assert stream.stats.reconnects >= 1
    finally:
        stream.stop()
    assert stream.status().state == "stopped" and stream.book.state == "stopped"
