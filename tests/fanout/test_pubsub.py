"""RedisPublisher -> real redis-server -> RemoteStream, without an exchange: seeding, continuity,
Redis outages, buffer overflow, trimming, consumer groups, heartbeat, credentials."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

import gridbot
from gridbot.events import Event, FillUpdate, PositionUpdate, StatusUpdate
from tests.e2e.helpers import Recorder, wait_until
from tests.fanout.helpers import SYMBOL, SinkHost, fill, order, position, status, ticker, wallet
from tests.fanout.redis_server import RedisServer

ACCOUNT = "main"


@pytest.fixture
def cleanup() -> Iterator[Callable[[Any], Any]]:
    things: list[Any] = []

    def register(thing: Any) -> Any:
        things.append(thing)
        return thing

    try:
        yield register
    finally:
        for thing in reversed(things):
            thing.stop()


def publisher(server: RedisServer, cleanup: Callable[[Any], Any], **kwargs: Any) -> tuple[SinkHost, Any]:
    host = SinkHost()
    kwargs.setdefault("heartbeat_interval", 0.1)
    pub = gridbot.RedisPublisher(server.url, ACCOUNT, **kwargs)
    pub.attach(host)
    cleanup(pub)
    pub.start()
    return host, pub


def consumer(server: RedisServer, cleanup: Callable[[Any], Any], rec: Recorder, *, start: bool = True,
             **kwargs: Any) -> gridbot.RemoteStream:
    remote = gridbot.RemoteStream(kwargs.pop("url", server.url), ACCOUNT, on_status=rec, **kwargs)
    remote.subscribe(SYMBOL, on_position=rec, on_order=rec, on_fill=rec, on_wallet=rec, on_ticker=rec)
    cleanup(remote)
    if start:
        remote.start(timeout=10)
    return remote


def fill_numbers(rec: Recorder) -> list[int]:
    return [int(f.trade_id[1:]) for f in rec.of(FillUpdate)]


def wait_fills(rec: Recorder, expected: list[int]) -> None:
    wait_until(lambda: len(fill_numbers(rec)) >= len(expected), what=f"{len(expected)} fills")
    assert fill_numbers(rec) == expected


def test_seed_from_state_then_live_loses_nothing_and_repeats_nothing(
        redis_server: RedisServer, cleanup: Callable[[Any], Any]) -> None:
    host, _ = publisher(redis_server, cleanup)
    host.emit(wallet("100"), position("0.01", 0), order("resting"), status("connected", "live"))
    stop = threading.Event()
    published: list[int] = []

    def produce() -> None:  # the producer keeps going while the consumer seeds
        n = 1
        while not stop.is_set() and n <= 3000:
            host.emit(fill(n), position(f"0.{n:04d}", n))
            published.append(n)
            n += 1

    producer = threading.Thread(target=produce)
    producer.start()
    client = redis_server.client()
    wait_until(lambda: client.xlen(f"gridbot:{{{ACCOUNT}}}:events") > 400,
               what="fills in Redis before the consumer")
    rec = Recorder()
    remote_book = consumer(redis_server, cleanup, rec).book
    producer.join(30)
    stop.set()
    total = len(published)
    wait_until(lambda: fill_numbers(rec) and fill_numbers(rec)[-1] == total, what="the last fill")
    got = fill_numbers(rec)
    assert got == list(range(got[0], total + 1)), "a gap or a duplicate"
    seeded = [p for p in rec.of(PositionUpdate) if p.is_snapshot]
    assert len(seeded) == 1 and seeded[0].size == Decimal(f"0.{got[0] - 1:04d}"), \
        "the seeded state is the state just before the first fill read from the stream"
    assert rec.last_position() == position(f"0.{total:04d}", total)
    assert [o.order_id for o in rec.of(gridbot.OrderUpdate)] == ["resting"]
    view = remote_book.snapshot()
    assert view.position(SYMBOL) is not None and view.position(SYMBOL) == rec.last_position()
    assert [o.order_id for o in view.open_orders] == ["resting"]


def test_redis_restart_delivers_what_was_missed_once(redis_server: RedisServer,
                                                    cleanup: Callable[[Any], Any]) -> None:
    host, pub = publisher(redis_server, cleanup)
    host.emit(status("connected", "live"))
    rec = Recorder()
    remote = consumer(redis_server, cleanup, rec)
    host.emit(*[fill(n) for n in range(1, 51)])
    wait_fills(rec, list(range(1, 51)))

    since = rec.mark()
    redis_server.stop()
    host.emit(*[fill(n) for n in range(51, 101)])  # buffered by the producer
    rec.wait_statuses("reconnecting", since=since)
    assert not remote.connected
    # The producer writes on its own thread (and redis-py retries a failed call before giving up): restart
    # only once it has seen the outage, or under load its first attempt may fall after the restart and see
    # none.
    wait_until(lambda: pub.stats.redis_errors >= 1, what="the producer saw Redis down")
    redis_server.start()
    rec.wait_statuses("reconnecting", "resynced", since=since)
    wait_fills(rec, list(range(1, 101)))
    wait_until(lambda: remote.connected, what="connected again")
    assert remote.stats.reconnects >= 1 and pub.stats.dropped == 0 and pub.stats.redis_errors >= 1


def test_redis_that_lost_its_data_is_rewritten_and_consumers_resync(
        tmp_path: Any, cleanup: Callable[[Any], Any]) -> None:
    server = RedisServer(tmp_path, persistent=False)
    server.start()
    cleanup(server)
    host, pub = publisher(server, cleanup)
    host.emit(status("connected", "live"), position("0.01", 1), order("a"))
    rec = Recorder()
    consumer(server, cleanup, rec)
    host.emit(fill(1))
    wait_fills(rec, [1])

    since = rec.mark()
    server.stop()
    server.start()  # empty
    host.emit(position("0.02", 2), order("b"), fill(2))
    rec.wait(StatusUpdate, lambda s: s.state == "resynced", since=since)
    wait_until(lambda: (p := rec.last_position()) and p.size == Decimal("0.02"), what="the new position")
    assert 2 in fill_numbers(rec)
    assert pub.stats.resyncs == 1
    assert server.client().hexists(f"gridbot:{{{ACCOUNT}}}:state", "order|BTCUSDT|a")


def test_full_buffer_keeps_the_state_and_says_what_was_dropped(redis_server: RedisServer,
                                                              cleanup: Callable[[Any], Any]) -> None:
    host, pub = publisher(redis_server, cleanup, buffer_size=10)
    host.emit(status("connected", "live"))
    rec = Recorder()
    remote = consumer(redis_server, cleanup, rec)
    wait_until(lambda: remote.connected, what="connected")
    since = rec.mark()
    redis_server.stop()
    wait_until(lambda: not pub.connected, what="the publisher notices")
    host.emit(*[e for n in range(1, 31) for e in (position(f"0.{n:02d}", n), fill(n))])
    host.emit(order("late"))
    assert pub.stats.dropped == 61 - 10
    redis_server.start()
    resynced = rec.wait(StatusUpdate, lambda s: s.state == "resynced" and "dropped" in s.detail, since=since)
    assert "51 events (25 fills)" in resynced.detail
    wait_until(lambda: (p := rec.last_position()) and p.size == Decimal("0.30"), what="the latest position")
    wait_until(lambda: rec.orders("late"), what="the last order")
    assert fill_numbers(rec)[-5:] == [26, 27, 28, 29, 30]  # what was still buffered arrives as events


def test_a_consumer_trimmed_past_resyncs_from_the_state_and_says_so(redis_server: RedisServer,
                                                                   cleanup: Callable[[Any], Any]) -> None:
    host, _ = publisher(redis_server, cleanup, maxlen=50)
    host.emit(status("connected", "live"))
    rec = Recorder()
    gate = threading.Event()
    remote = consumer(redis_server, cleanup, rec, start=False)
    remote.max_queued = 5
    def slow_fill(event: FillUpdate) -> None:
        gate.wait(20)
        rec(event)

    remote.subscribe(SYMBOL, on_fill=slow_fill, on_position=rec)
    remote.start(timeout=10)
    host.emit(*[e for n in range(1, 1001) for e in (fill(n), position(f"{n}", n))])
    client = redis_server.client()
    wait_until(lambda: client.xlen(f"gridbot:{{{ACCOUNT}}}:events") < 500, what="the stream trimmed")
    gate.set()
    resynced = rec.wait(StatusUpdate, lambda s: s.state == "resynced")
    assert "trimmed past" in resynced.detail and "were not delivered" in resynced.detail
    wait_until(lambda: (p := rec.last_position()) and p.size == 1000, what="the latest position")
    got = fill_numbers(rec)
    assert len(got) < 1000 and got == sorted(set(got)), "fills skipped (trimmed), none twice, in order"
    assert remote.stats.resyncs >= 1


def test_a_group_splits_the_events_and_claims_a_dead_consumers_entries(
        redis_server: RedisServer, cleanup: Callable[[Any], Any]) -> None:
    host, _ = publisher(redis_server, cleanup)
    host.emit(status("connected", "live"))
    rec_a, rec_b = Recorder(), Recorder()
    b_working = threading.Event()
    a = consumer(redis_server, cleanup, rec_a, group="writers", consumer="a", claim_idle=1.0, start=False)
    def a_fill(event: FillUpdate) -> None:  # busy until b works too
        b_working.wait(20)
        rec_a(event)

    def b_fill(event: FillUpdate) -> None:
        b_working.set()
        rec_b(event)

    a.subscribe(SYMBOL, on_fill=a_fill)
    a.start(timeout=10)
    b = consumer(redis_server, cleanup, rec_b, group="writers", consumer="b", claim_idle=1.0, start=False)
    b.subscribe(SYMBOL, on_fill=b_fill)
    b.start(timeout=10)
    host.emit(*[fill(n) for n in range(1, 201)])
    wait_until(lambda: len(fill_numbers(rec_a)) + len(fill_numbers(rec_b)) >= 200, what="200 fills")
    assert sorted(fill_numbers(rec_a) + fill_numbers(rec_b)) == list(range(1, 201))
    assert fill_numbers(rec_a) and fill_numbers(rec_b), "both consumers got a share"

    # a consumer that dies with entries it received and never processed (manual dispatch, never run)
    rec_c = Recorder()
    c = consumer(redis_server, cleanup, rec_c, group="writers", consumer="c", claim_idle=1.0,
                 dispatch="manual")
    a.stop()
    client = redis_server.client()
    host.emit(*[fill(n) for n in range(201, 401)])
    wait_until(lambda: client.xpending(f"gridbot:{{{ACCOUNT}}}:events", "writers")["consumers"]
               and any(x["name"] == b"c" for x in
                       client.xpending(f"gridbot:{{{ACCOUNT}}}:events", "writers")["consumers"]),
               what="entries pending at c")
    c.stop()  # dies: what it read stays unacknowledged
    wait_until(lambda: sorted(fill_numbers(rec_a) + fill_numbers(rec_b)) == list(range(1, 401)),
               what="b has everything a and c did not process")
    assert fill_numbers(rec_c) == []
    wait_until(lambda: client.xpending(f"gridbot:{{{ACCOUNT}}}:events", "writers")["pending"] == 0,
               what="everything acknowledged")
    assert b.connected


def test_producer_heartbeat_lost_then_back(redis_server: RedisServer, cleanup: Callable[[Any], Any]) -> None:
    host, pub = publisher(redis_server, cleanup)
    host.emit(status("connected", "live"), position("0.01", 1))
    rec = Recorder()
    remote = consumer(redis_server, cleanup, rec, heartbeat_timeout=1.0)
    since = rec.mark()
    pub.stop()  # the producer process is gone (no "stopped" status reached Redis)
    silent = rec.wait(StatusUpdate, lambda s: s.state == "reconnecting", since=since)
    assert "heartbeat" in silent.detail and not remote.connected
    since = rec.mark()
    host2, _ = publisher(redis_server, cleanup)
    host2.emit(position("0.01", 1), status("connected", "live"), fill(7))
    rec.wait(StatusUpdate, lambda s: s.state in ("connected", "resynced"), since=since)
    wait_until(lambda: 7 in fill_numbers(rec), what="the new producer's fill")
    assert remote.connected


def test_producer_status_is_relayed(redis_server: RedisServer, cleanup: Callable[[Any], Any]) -> None:
    host, _ = publisher(redis_server, cleanup)
    host.emit(status("connected", "live"))
    rec = Recorder()
    remote = consumer(redis_server, cleanup, rec)
    since = rec.mark()
    host.emit(status("reconnecting", "private: closed"))
    relayed = rec.wait(StatusUpdate, lambda s: s.state == "reconnecting", since=since)
    assert "private: closed" in relayed.detail
    wait_until(lambda: not remote.connected, what="not connected")
    host.emit(status("resynced", "snapshot applied"))
    rec.wait(StatusUpdate, lambda s: s.state == "resynced", since=since)
    wait_until(lambda: remote.connected, what="connected")
    host.emit(status("stopped", "stop() called"))
    assert "stopped" in rec.wait(StatusUpdate, lambda s: s.state == "reconnecting" and "stop" in s.detail,
                                 since=since).detail


def test_manual_dispatch_and_a_symbol_added_while_running(redis_server: RedisServer,
                                                         cleanup: Callable[[Any], Any]) -> None:
    host, pub = publisher(redis_server, cleanup)
    host.emit(status("connected", "live"), position("1", 1, symbol="ETHUSDT"), ticker("3000", 1, "ETHUSDT"))
    wait_until(lambda: pub.stats.published == 3, what="published")
    rec = Recorder()
    remote = consumer(redis_server, cleanup, rec, dispatch="manual")
    assert remote.dispatch_pending(timeout=5) >= 1
    remote.subscribe("ethusdt", on_position=rec, on_ticker=rec)
    wait_until(lambda: remote.dispatch_pending(0.1) and rec.of(PositionUpdate, symbol="ETHUSDT"),
               what="the new symbol seeded")
    assert rec.of(PositionUpdate, symbol="ETHUSDT")[0].is_snapshot
    host.emit(position("2", 2, symbol="ETHUSDT"))
    wait_until(lambda: remote.dispatch_pending(0.1) or rec.of(PositionUpdate, size=Decimal(2)),
               what="a live update")
    assert [p.size for p in rec.of(PositionUpdate, symbol="ETHUSDT")] == [Decimal(1), Decimal(2)]
    with pytest.raises(gridbot.GridbotError):
        gridbot.RemoteStream(redis_server.url, ACCOUNT).dispatch_pending()


def test_password_url_works_and_the_password_is_never_shown(tmp_path: Any, cleanup: Callable[[Any], Any],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = RedisServer(tmp_path, password="s3cret-redis-pw")
    server.start()
    cleanup(server)
    host, pub = publisher(server, cleanup)
    host.emit(status("connected", "live"))
    rec = Recorder()
    remote = consumer(server, cleanup, rec)
    host.emit(fill(1))
    wait_fills(rec, [1])
    assert "s3cret" not in repr(remote) + repr(pub) + caplog.text
    bad = gridbot.RemoteStream(server.url.replace("s3cret-redis-pw", "wrong"), ACCOUNT)
    with pytest.raises(gridbot.AuthenticationError) as raised:
        bad.start(timeout=2)
    assert "wrong" not in str(raised.value)


def test_unreachable_redis_or_no_producer_is_a_connect_error(redis_server: RedisServer) -> None:
    with pytest.raises(gridbot.ConnectError, match="no producer"):
        gridbot.RemoteStream(redis_server.url, "nobody").start(timeout=0.5)
    with pytest.raises(gridbot.ConnectError, match="unreachable"):
        gridbot.RemoteStream("redis://127.0.0.1:1/0", ACCOUNT).start(timeout=0.5)


def test_rediss_urls_use_tls() -> None:
    remote = gridbot.RemoteStream("rediss://user:pw@127.0.0.1:6380/0", ACCOUNT)
    assert remote._redis.connection_pool.connection_class.__name__ == "SSLConnection"
    assert "pw" not in repr(remote)
    with pytest.raises(ValueError, match="redis://"):
        gridbot.RemoteStream("http://127.0.0.1", ACCOUNT)
    with pytest.raises(ValueError, match="account"):
        gridbot.RemoteStream("redis://127.0.0.1", "has space")


def test_events_are_exact_after_the_trip(redis_server: RedisServer, cleanup: Callable[[Any], Any]) -> None:
    host, _ = publisher(redis_server, cleanup)
    sent: list[Event] = [fill(1), position("0.0100", 2), order("x", "PartiallyFilled", 3), wallet("1E+2", 4),
                         ticker("60000.10", 5)]
    host.emit(status("connected", "live"))
    rec = Recorder()
    consumer(redis_server, cleanup, rec)
    host.emit(*sent)
    def received() -> list[Event]:
        return [e for e in rec.all() if not isinstance(e, StatusUpdate)]

    wait_until(lambda: len(received()) >= len(sent), what="all")
    assert received() == sent
