"""Unknown symbols (the stream's side): checked by REST before they are seeded, refused by a socket, or
both; one WARNING naming the symbol and the exchange's words, ``stats.rejected_symbols``, the subscription
removed, and the other symbols unaffected."""

from __future__ import annotations

import logging

import pytest

from gridbot.errors import ConnectError
from gridbot.events import PositionUpdate
from tests.stream.fakes import FakeAdapter, make_stream, position, wait_until

WORDS = "Invalid symbol. (not in GET /fapi/v1/exchangeInfo)"


def warnings_about(caplog: pytest.LogCaptureFixture, symbol: str) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [message for message in messages if symbol in message]


def test_start_drops_an_unknown_symbol_and_seeds_the_others(fake: list[FakeAdapter],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    s, adapter, rec = make_stream(fake)
    adapter.unknown = {"NOPEUSDT": WORDS}
    adapter.snapshot = [position("1", snap=True)]
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.subscribe("NOPEUSDT", **rec.callbacks())
    with caplog.at_level(logging.WARNING):
        s.start(timeout=5)
    try:
        assert adapter.check_calls == [["BTCUSDT", "NOPEUSDT"]]
        assert [call[0] for call in adapter.snapshot_calls] == [["BTCUSDT"]]  # the bad one is never seeded
        wait_until(lambda: [p.symbol for p in rec.of(PositionUpdate)] == ["BTCUSDT"])
        assert s.stats.rejected_symbols == 1
        [warning] = warnings_about(caplog, "NOPEUSDT")
        assert WORDS in warning
        assert adapter.removed == ["NOPEUSDT"]  # its ticker subscription is gone
        assert "NOPEUSDT" not in repr(s) and "BTCUSDT" in repr(s)
    finally:
        s.stop()


def test_subscribe_while_running_checks_only_the_new_symbol(fake: list[FakeAdapter],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    s, adapter, rec = make_stream(fake)
    adapter.unknown = {"NOPEUSDT": WORDS}
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        adapter.snapshot = [position("2", symbol="ETHUSDT", snap=True)]
        with caplog.at_level(logging.WARNING):
            s.subscribe("nopeusdt", **rec.callbacks())
            s.subscribe("ETHUSDT", **rec.callbacks())
            wait_until(lambda: len(rec.of(PositionUpdate)) == 1 and s.stats.rejected_symbols == 1)
        assert adapter.check_calls == [["BTCUSDT"], ["NOPEUSDT"], ["ETHUSDT"]]
        assert (["NOPEUSDT"], False) not in adapter.snapshot_calls
        assert adapter.added == ["NOPEUSDT", "ETHUSDT"] and adapter.removed == ["NOPEUSDT"]
        assert len(warnings_about(caplog, "NOPEUSDT")) == 1
        wait_until(lambda: "NOPEUSDT" not in repr(s))
    finally:
        s.stop()


def test_a_socket_refusal_is_handled_alike(fake: list[FakeAdapter], caplog: pytest.LogCaptureFixture) -> None:
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.subscribe("BADUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        with caplog.at_level(logging.WARNING):
            adapter.sink.symbol_rejected("BADUSDT", "Invalid symbol :[tickers.BADUSDT]")
            adapter.sink.symbol_rejected("BADUSDT", "Invalid symbol :[tickers.BADUSDT]")  # counted once
            wait_until(lambda: adapter.removed == ["BADUSDT"])
        assert s.stats.rejected_symbols == 1
        [warning] = warnings_about(caplog, "BADUSDT")
        assert "Invalid symbol :[tickers.BADUSDT]" in warning
    finally:
        s.stop()


def test_snapshot_false_never_checks_by_rest(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = make_stream(fake, snapshot=False)
    adapter.unknown = {"NOPEUSDT": WORDS}
    s.subscribe("NOPEUSDT", **rec.callbacks())
    s.start(timeout=5)
    s.subscribe("ETHUSDT", **rec.callbacks())
    s.stop()
    assert adapter.check_calls == [] and adapter.snapshot_calls == []
    assert s.stats.rejected_symbols == 0


def test_a_failing_check_fails_the_seed_like_any_rest_call(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = make_stream(fake)
    adapter.check_error = ConnectError("exchangeInfo unreachable")
    s.subscribe("BTCUSDT", **rec.callbacks())
    with pytest.raises(ConnectError, match="exchangeInfo unreachable"):
        s.start(timeout=1.0)
    assert adapter.snapshot_calls == []  # nothing seeded unchecked


def test_a_resync_checks_a_symbol_whose_check_failed(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        adapter.check_error = ConnectError("exchangeInfo unreachable")
        s.subscribe("NOPEUSDT", **rec.callbacks())
        wait_until(lambda: adapter.check_calls[-1:] == [["NOPEUSDT"]])
        adapter.check_error = None
        adapter.unknown = {"NOPEUSDT": WORDS}
        wait_until(lambda: s.stats.rejected_symbols == 1, timeout=5.0)  # the resync that follows checks it
        assert all("NOPEUSDT" not in call[0] for call in adapter.snapshot_calls)
    finally:
        s.stop()

