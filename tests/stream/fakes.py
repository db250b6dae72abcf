"""A fake adapter for stream tests: frames are lists of ready events, the snapshot is scripted."""
# ruff: noqa: E501

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from decimal import Decimal
from typing import Any, Literal

from gridbot import ExchangeStream, NormalizationError
from gridbot.adapters._base import Channel, Decoded, Sink
from gridbot.events import Event, FillUpdate, OrderUpdate, PositionUpdate, TickerUpdate, WalletUpdate
from gridbot.normalize import Ignored
from gridbot.stats import Counters
from tests.helpers import wait_until as wait_until  # re-exported for the stream tests

D = Decimal


class FakeAdapter:
    exchange = "bybit"

    def __init__(self, *, sink: Sink, counters: Counters, **_: Any) -> None:
        self.sink = sink
        self.counters = counters
        self.snapshot: list[Event] = []
        self.snapshot_calls: list[tuple[list[str], bool]] = []
        self.snapshot_hook: Callable[[], None] | None = None
        self.snapshot_error: BaseException | None = None
        self.open_error: BaseException | None = None
        self.open_hook: Callable[[], None] | None = None
        self.final_orders: list[Event] = []
        self.fills: list[FillUpdate] = []  # the exchange's trade history, served by fetch_fills
        self.fill_calls: list[tuple[str, int, int]] = []
        self.fill_error: BaseException | None = None
        self.account_config: Any = None
        self.account_config_calls: list[tuple[list[str], bool]] = []
        self.fetch_orders_calls: list[list[str]] = []
        self.added: list[str] = []
        self.removed: list[str] = []
        self.opened_with: list[str] | None = None
        self.closed = 0
        self.is_connected = False
        self.unknown: dict[str, str] = {}  # symbols check_symbols rejects, with the exchange's words
        self.check_calls: list[list[str]] = []
        self.check_error: BaseException | None = None

    def open(self, symbols: Collection[str], timeout: float) -> None:
        if self.open_hook is not None:
            self.open_hook()
        if self.open_error is not None:
            raise self.open_error
        self.opened_with = list(symbols)
        self.is_connected = True

    def close(self, timeout: float) -> None:
        self.closed += 1
        self.is_connected = False

    def add_symbol(self, symbol: str) -> None:
        self.added.append(symbol)

    def remove_symbol(self, symbol: str) -> None:
        self.removed.append(symbol)

    def check_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        self.check_calls.append(list(symbols))  # not counted in rest_calls: the counts tests expect stay
        if self.check_error is not None:
            raise self.check_error
        return {symbol: self.unknown[symbol] for symbol in symbols if symbol in self.unknown}

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        self.snapshot_calls.append((list(symbols), include_wallet))
        self.counters.add("rest_calls")
        if self.snapshot_hook is not None:
            self.snapshot_hook()
        if self.snapshot_error is not None:
            raise self.snapshot_error
        return [e for e in self.snapshot if getattr(e, "symbol", None) in symbols or isinstance(e, WalletUpdate)]

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> Any:
        self.account_config_calls.append((list(symbols), full))
        return self.account_config

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        self.fetch_orders_calls.append([o.order_id for o in orders])
        return list(self.final_orders)

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        self.fill_calls.append((symbol, since_ms, until_ms))
        self.counters.add("rest_calls")
        if self.fill_error is not None:
            raise self.fill_error
        return sorted((f for f in self.fills if f.symbol == symbol and since_ms <= f.timestamp <= until_ms),
                      key=lambda f: f.timestamp)

    @property
    def connected(self) -> bool:
        return self.is_connected

    # test helpers
    def push(self, *events: Event, channel: Channel = "private") -> None:
        self.sink.frame(channel, list(events))


class FakeDecoder:
    """Frames are lists of ready events; "bad" is malformed, "boom" a decoder bug, "ignored" an ack."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.resets = 0
        self.forgotten: list[str] = []
        self.seeded: list[Event] = []

    def decode(self, payload: Any) -> Decoded:
        if payload == "bad":
            raise NormalizationError("bad payload", payload)
        if payload == "boom":
            raise KeyError("bug")
        if payload == "ignored":
            return Ignored("ack")
        return list(payload)

    def seed(self, events: Sequence[Event]) -> list[Event]:
        self.seeded.extend(events)
        return list(events)

    def reset(self) -> None:
        self.resets += 1

    def forget(self, symbol: str) -> None:
        self.forgotten.append(symbol)


class Recorder:
    """Collects callback events per kind; thread-safe enough for tests (appends are atomic)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[str] = []
        self.timeline: list[Any] = []  # events and statuses, in delivery order

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.timeline.append(event)

    def status(self, update: Any) -> None:
        self.statuses.append(update.state)
        self.timeline.append(update)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def callbacks(self) -> dict[str, Callable[[Any], None]]:
        return dict(on_position=self, on_wallet=self, on_order=self, on_ticker=self, on_fill=self)


def make_stream(fake: list[FakeAdapter], **kwargs: Any) -> tuple[ExchangeStream, FakeAdapter, Recorder]:
    rec = Recorder()
    kwargs.setdefault("on_status", rec.status)
    s = ExchangeStream("bybit", api_key="k", api_secret="s", **kwargs)
    return s, fake[-1], rec


def position(size: str = "1", *, side: Literal["Buy", "Sell"] = "Buy", ts: int = 10, cum: str | None = "0", idx: int = 0,
             entry: str = "100", symbol: str = "BTCUSDT", snap: bool = False, seq: int | None = None) -> PositionUpdate:
    return PositionUpdate(
        exchange="bybit", timestamp=ts, is_snapshot=snap, symbol=symbol, position_idx=idx,
        side=side if D(size) else "", size=D(size), entry_price=D(entry), mark_price=None,
        unrealised_pnl=D("0"), cum_realised_pnl=None if cum is None else D(cum),
        seq=seq,
    )


def order(oid: str, status: str = "New", *, ts: int = 10, symbol: str = "BTCUSDT", snap: bool = False) -> OrderUpdate:
    return OrderUpdate(
        exchange="bybit", timestamp=ts, is_snapshot=snap, symbol=symbol, order_id=oid, client_order_id="",
        side="Sell", order_type="Limit", status=status, price=D("110"), qty=D("1"),  # type: ignore[arg-type]
        filled_qty=D("0"), avg_price=D("0"), trigger_price=None, reduce_only=True, position_idx=0,
        is_take_profit=False,
    )


def fill(tid: str, *, ts: int = 10, symbol: str = "BTCUSDT", order_id: str = "o1") -> FillUpdate:
    return FillUpdate(
        exchange="bybit", timestamp=ts, symbol=symbol, order_id=order_id, trade_id=tid, side="Buy",
        price=D("100"), qty=D("1"), fee=D("0.01"), fee_asset="USDT", realised_pnl=D("0"),
        is_maker=True, position_idx=0,
    )


def ticker(mark: str, *, ts: int = 10, symbol: str = "BTCUSDT") -> TickerUpdate:
    return TickerUpdate(
        exchange="bybit", timestamp=ts, symbol=symbol, mark_price=D(mark), last_price=D(mark),
        index_price=None, funding_rate=None, next_funding_time=None,
    )


def wallet(balance: str, *, ts: int = 10, snap: bool = False) -> WalletUpdate:
    return WalletUpdate(exchange="bybit", timestamp=ts, is_snapshot=snap, coin="USDT",
                        wallet_balance=D(balance), available_balance=None, equity=None)


def no_gridbot_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("gridbot-") and t.is_alive()]
