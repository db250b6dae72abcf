"""Frames handled on the SDK thread outside seed/resync windows, and in the worker's inbox inside them:
same events, same order per kind and symbol, nothing lost, nothing raised into the SDK thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import gridbot._worker as worker_module
from gridbot._seeding import now_ms
from gridbot.adapters._base import Decoded
from gridbot.events import FillUpdate, PositionUpdate, TickerUpdate
from tests.stream.fakes import FakeAdapter, fill, make_stream, position, ticker, wait_until


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_RESYNC_BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(worker_module, "_GAP_GRACE", 0.0)


def decoding_threads(stream: Any) -> list[str]:
    """Patch the stream's decoders to record the name of every thread that decodes a frame."""
    names: list[str] = []

    def recording(decode: Callable[[Any], Decoded]) -> Callable[[Any], Decoded]:
        def decode_and_record(payload: Any) -> Decoded:
            names.append(threading.current_thread().name)
            return decode(payload)
        return decode_and_record

    for decoder in stream._worker._decoders.values():
        decoder.decode = recording(decoder.decode)
    return names


def on_thread(name: str, work: Callable[[], None]) -> None:
    thread = threading.Thread(target=work, name=name)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


def test_an_idle_worker_leaves_frames_to_the_sdk_thread(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        wait_until(lambda: not s._worker.gate.worker_owns)
        threads = decoding_threads(s)
        on_thread("sdk-private", lambda: adapter.push(fill("a"), position("1", ts=20)))
        wait_until(lambda: len(rec.of(PositionUpdate)) == 1)
        assert threads == ["sdk-private"]
        assert [f.trade_id for f in rec.of(FillUpdate)] == ["a"]
    finally:
        s.stop()


def test_frames_that_arrive_during_a_resync_wait_for_it_in_order(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        wait_until(lambda: not s._worker.gate.worker_owns)
        threads = decoding_threads(s)
        in_resync = threading.Event()
        go_on = threading.Event()

        def slow_snapshot() -> None:
            in_resync.set()
            assert go_on.wait(5)

        adapter.snapshot_hook = slow_snapshot
        adapter.snapshot = [position("1", ts=5, snap=True)]
        adapter.sink.link("private", "gap", "an SDK error")
        assert in_resync.wait(5)

        def five_fills() -> None:
            for i in range(5):
                adapter.push(fill(f"t{i}", ts=30 + i))

        on_thread("sdk-private", five_fills)
        assert threads == []  # nothing decoded while the worker applies the snapshot
        assert s._worker.inbox.qsize() == 5
        go_on.set()
        wait_until(lambda: len(rec.of(FillUpdate)) == 5)
        assert set(threads) == {"gridbot-bybit-worker"}
        assert [f.trade_id for f in rec.of(FillUpdate)] == [f"t{i}" for i in range(5)]
        timeline = [getattr(e, "state", None) or type(e).__name__ for e in rec.timeline]
        assert timeline.index("PositionUpdate") < timeline.index("resynced") < timeline.index("FillUpdate")
        # idle again: the next frame is the SDK thread's
        adapter.snapshot_hook = None
        wait_until(lambda: not s._worker.gate.worker_owns)
        on_thread("sdk-private", lambda: adapter.push(fill("after")))
        wait_until(lambda: len(rec.of(FillUpdate)) == 6)
        assert threads[-1] == "sdk-private"
    finally:
        s.stop()


def test_a_fault_of_gridbot_never_reaches_the_sdk_thread(fake: list[FakeAdapter],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        wait_until(lambda: not s._worker.gate.worker_owns)
        accept = s._pipeline.accept
        calls = iter([RuntimeError("a bug in the pipeline")])

        def broken_once(event: Any) -> bool:
            error = next(calls, None)
            if error is not None:
                raise error
            return accept(event)

        monkeypatch.setattr(s._pipeline, "accept", broken_once)
        adapter.push(position("1", ts=20))  # would raise here if the fault escaped
        adapter.push(position("2", ts=21))
        wait_until(lambda: len(rec.of(PositionUpdate)) == 1)
        assert s.stats.internal_errors == 1
        assert rec.of(PositionUpdate)[0].size == 2
    finally:
        s.stop()


def test_sdk_threads_racing_resyncs_lose_nothing_and_keep_order(fake: list[FakeAdapter]) -> None:
    """Two SDK threads (private fills and positions, public tickers) push while a third reports gaps,
    drops and reconnects, each of which makes the worker take the frames for a resync and give them back."""
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.subscribe("ETHUSDT", **rec.callbacks())
    s.start(timeout=5)
    frames = 2000
    done = threading.Event()
    try:
        def private() -> None:
            for i in range(frames):
                adapter.push(fill(f"t{i}", ts=100 + i), position(str(i + 1), ts=100 + i))

        def public() -> None:
            for i in range(frames):
                adapter.push(ticker(str(i + 1), ts=100 + i, symbol=("BTCUSDT", "ETHUSDT")[i % 2]),
                             channel="public")

        def links() -> None:
            while not done.is_set():
                adapter.sink.link("private", "gap", "an SDK error")
                adapter.sink.link("private", "down", "closed")
                adapter.sink.link("private", "up", "back")
                done.wait(0.005)

        threads = [threading.Thread(target=t, name=f"sdk-{t.__name__}") for t in (private, public, links)]
        for thread in threads:
            thread.start()
        threads[0].join(30)
        threads[1].join(30)
        done.set()
        threads[2].join(5)
        wait_until(lambda: len(rec.of(FillUpdate)) == frames, timeout=20)
        wait_until(lambda: not s._worker.gate.worker_owns)
        assert [f.trade_id for f in rec.of(FillUpdate)] == [f"t{i}" for i in range(frames)]
        # the resyncs' empty snapshots flatten the slot in between (snapshot rows), a mark move re-emits the
        # slot: every push comes through, in order
        pushed = [p.size for p in rec.of(PositionUpdate) if not p.is_snapshot]
        assert pushed == sorted(pushed) and set(pushed) == set(range(1, frames + 1))
        for symbol in ("BTCUSDT", "ETHUSDT"):
            marks = [t.mark_price for t in rec.of(TickerUpdate) if t.symbol == symbol]
            assert marks == sorted(marks) and marks[-1] in (frames - 1, frames)
        assert s.stats.internal_errors == 0 and s.stats.resyncs >= 1
    finally:
        done.set()
        s.stop()


def test_a_link_report_goes_before_the_frames_that_follow_it(fake: list[FakeAdapter]) -> None:
    """The gap a drop opens starts at the last fill delivered before the drop: a frame received after
    the report must not be judged first (the backfill would then start after the fills the gap swallowed)."""
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        wait_until(lambda: not s._worker.gate.worker_owns)
        base = now_ms()
        adapter.push(fill("before", ts=base))
        adapter.fills = [fill("swallowed", ts=base + 1_000)]  # the exchange's history: made during the drop
        adapter.sink.link("private", "down", "closed")
        adapter.push(fill("after", ts=base + 8_000))  # received on the new socket, before its "up" report
        adapter.sink.link("private", "up", "back")
        wait_until(lambda: "resynced" in rec.statuses)
        wait_until(lambda: len(rec.of(FillUpdate)) == 3)
        assert sorted(f.trade_id for f in rec.of(FillUpdate)) == ["after", "before", "swallowed"]
    finally:
        s.stop()
