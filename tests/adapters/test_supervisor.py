"""The socket supervisor against a fake transport and a fake clock: no threads, no sleeping.

``Rig.run_to(t)`` plays the runner thread: it steps the supervisor at each wake-up it asks for until
the fake time reaches ``t``.  The last tests run the real runner threads on the real clock, waiting
on conditions.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from gridbot.adapters import _supervisor as supervisor_module
from gridbot.adapters._backoff import Backoff, BackoffPolicy, backoff_delay
from gridbot.adapters._channel import Attempt
from gridbot.adapters._clock import FakeClock, MonotonicClock
from gridbot.adapters._supervisor import (
    AuthRejected,
    ChannelSpec,
    ChannelState,
    ConnectFailed,
    OpenFailed,
    Supervisor,
    Timings,
)
from gridbot.stats import Counters

T0 = 1000.0
POLICY = BackoffPolicy(initial=1.0, cap=8.0, jitter_low=0.5, reset_after=30.0)


class MaxJitter(random.Random):
    """``uniform(a, b)`` always answers ``b``: delays are exactly ``initial * 2**n`` (capped)."""

    def uniform(self, a: float, b: float) -> float:
        return b


class MinJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


class RecordingSink:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[tuple[str, ...]] = []
        self.raise_on_link = False

    def frame(self, channel: str, payload: Any) -> None:  # unused: frames go to on_frame
        raise AssertionError("the supervisor forwards frames to ChannelSpec.on_frame")

    def link(self, channel: str, state: str, detail: str) -> None:
        with self.cond:
            self.items.append((channel, state, detail))
            self.cond.notify_all()
        if self.raise_on_link:
            raise RuntimeError("sink exploded")

    def symbol_rejected(self, symbol: str, detail: str) -> None:  # unused: refusals go to on_refused
        raise AssertionError("the supervisor reports refusals to ChannelSpec.on_refused")

    def states(self, channel: str | None = None) -> list[tuple[str, str]]:
        with self.cond:
            return [(ch, state) for ch, state, _ in self.items if channel is None or ch == channel]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), f"sink saw only {self.items}"


class FakeHandle:
    def __init__(self, channel: str, topics: Sequence[str], events: Attempt) -> None:
        self.channel = channel
        self.topics = list(topics)
        self.events = events
        self.subscribed: list[list[str]] = []
        self.unsubscribed: list[list[str]] = []
        self.pings = 0
        self.closed = False
        self.ends = True
        self.joins: list[float] = []
        self.fail: set[str] = set()

    def __repr__(self) -> str:
        return f"<FakeHandle {self.channel} {self.topics}>"

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            raise OSError(f"{what} failed")

    def subscribe(self, topics: Sequence[str]) -> None:
        self._maybe_fail("subscribe")
        self.subscribed.append(list(topics))

    def unsubscribe(self, topics: Sequence[str]) -> None:
        self._maybe_fail("unsubscribe")
        self.unsubscribed.append(list(topics))

    def ping(self) -> None:
        self._maybe_fail("ping")
        self.pings += 1

    def close(self) -> None:
        self._maybe_fail("close")
        self.closed = True

    def join(self, timeout: float) -> bool:
        self.joins.append(timeout)
        self._maybe_fail("join")
        return self.closed and self.ends


class FakeTransport:
    """Opens FakeHandles; ``errors`` are raised by the next opens, in order; ``auto_open`` reports
    ``opened()`` from inside ``open`` (as a transport whose connect is synchronous would)."""

    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []
        self.errors: list[BaseException] = []
        self.auto_open = False
        self.opens = 0

    def open(self, channel: str, topics: Sequence[str], events: Attempt) -> FakeHandle:
        self.opens += 1
        if self.errors:
            raise self.errors.pop(0)
        handle = FakeHandle(channel, topics, events)
        self.handles.append(handle)
        if self.auto_open:
            events.opened()
        return handle

    def of(self, channel: str) -> list[FakeHandle]:
        return [handle for handle in self.handles if handle.channel == channel]

    def last(self, channel: str = "private") -> FakeHandle:
        return self.of(channel)[-1]


class Rig:
    def __init__(self, *specs: ChannelSpec, rng: random.Random | None = None) -> None:
        self.clock = FakeClock(T0)
        self.transport = FakeTransport()
        self.sink = RecordingSink()
        self.counters = Counters()
        self.frames: list[tuple[str, Any]] = []
        self.sup = Supervisor("test", self.transport, self.sink, clock=self.clock,
                              rng=rng or MaxJitter(), counters=self.counters,
                              scrub=lambda text: text.replace("SECRET", "***"))
        for spec in specs:
            self.sup.add(spec)

    def frame_handler(self, channel: str) -> Callable[[Any], None]:
        return lambda payload: self.frames.append((channel, payload))

    def step(self) -> float | None:
        return self.sup.step(self.clock.now())

    def run_to(self, when: float) -> None:
        """Step at every wake-up the supervisor asks for until ``when`` (what the runner thread does)."""
        for _ in range(10_000):
            wake = self.step()
            if wake is None or wake > when:
                self.clock.set(max(self.clock.now(), when))
                self.step()
                return
            self.clock.set(max(self.clock.now(), wake))
        raise AssertionError("the supervisor never settled")

    def run_for(self, seconds: float) -> None:
        self.run_to(self.clock.now() + seconds)

    def open_all(self) -> None:
        """start() + the first attempts opened + wait_up() (reporting on)."""
        self.sup.start(T0 + 10, threads=False)
        self.step()
        for channel in self.sup.channels:
            if channel.current is not None:
                self.transport.last(channel.name).events.opened()
        self.sup.wait_up(T0 + 10)

    @property
    def errors(self) -> int:
        return self.counters.snapshot().internal_errors


def spec(name: str = "private", **kwargs: Any) -> ChannelSpec:
    kwargs.setdefault("timings", Timings(connect_timeout=5.0, backoff=POLICY))
    kwargs.setdefault("on_frame", lambda payload: None)
    return ChannelSpec(name, **kwargs)


@pytest.fixture
def rig() -> Rig:
    rig = Rig(spec())
    rig.open_all()
    return rig


# -------------------------------------------------------------------------------------------------- backoff


def test_backoff_doubles_up_to_the_cap() -> None:
    rng = MaxJitter()
    assert [backoff_delay(n, POLICY, rng) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff_delay(10_000, POLICY, rng) == 8.0  # no overflow


def test_backoff_jitter_stays_within_its_bounds() -> None:
    assert [backoff_delay(n, POLICY, MinJitter()) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    rng = random.Random(7)
    delays = [backoff_delay(n, POLICY, rng) for n in range(8) for _ in range(50)]
    for n in range(8):
        ceiling = min(POLICY.cap, POLICY.initial * 2**n)
        chunk = delays[n * 50:(n + 1) * 50]
        assert all(ceiling * 0.5 <= delay <= ceiling for delay in chunk)
        assert len(set(chunk)) > 40  # jittered, not a constant


def test_backoff_resets_only_after_a_healthy_period() -> None:
    backoff = Backoff(POLICY, MaxJitter())
    assert [backoff.next_delay() for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.healthy(29.9)
    assert backoff.next_delay() == 8.0
    backoff.healthy(30.0)
    assert backoff.next_delay() == 1.0


def test_policy_and_timings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        BackoffPolicy(initial=5, cap=1)
    with pytest.raises(ValueError, match="jitter_low"):
        BackoffPolicy(jitter_low=1.5)
    with pytest.raises(ValueError, match="ping_interval"):
        Timings(ping_interval=0)


# ----------------------------------------------------------------------------------------------------- open


def test_open_reports_nothing_and_is_up_once_every_channel_opened() -> None:
    rig = Rig(spec("private"), spec("public", topics={"a", "b"}))
    rig.sup.start(T0 + 10, threads=False)
    rig.step()
    assert [h.topics for h in rig.transport.handles] == [[], ["a", "b"]]
    assert not rig.sup.connected
    rig.transport.last("private").events.opened()
    assert not rig.sup.connected
    rig.transport.last("public").events.opened()
    rig.sup.wait_up(T0 + 10)
    assert rig.sup.connected
    assert rig.sink.items == []  # the first up is open()'s answer, not a report


@pytest.mark.parametrize(
    ("error", "kind"),
    [(AuthRejected("key SECRET rejected"), "auth"), (ConnectFailed("refused"), "connect"),
     (OSError("unreachable"), "connect")],
)
def test_a_failed_first_attempt_fails_open_and_is_not_retried(error: Exception, kind: str) -> None:
    rig = Rig(spec())
    rig.transport.errors.append(error)
    rig.sup.start(T0 + 10, threads=False)
    rig.step()
    with pytest.raises(OpenFailed) as caught:
        rig.sup.wait_up(T0 + 10)
    assert caught.value.kind == kind and caught.value.channel == "private"
    assert caught.value.error is error  # for the adapter to translate and chain
    assert "SECRET" not in str(caught.value)
    rig.run_for(100)
    assert rig.transport.opens == 1
    assert rig.sink.items == []


def test_start_and_wait_returns_none_once_up_and_the_failure_instead_of_raising_it() -> None:
    idle = Rig(spec("public", idle_when_empty=True))
    assert idle.sup.start_and_wait(T0 + 10, threads=False) is None and idle.sup.connected
    rejected = AuthRejected("key SECRET rejected")
    transport = FakeTransport()
    transport.errors.append(rejected)
    sup = Supervisor("test", transport, RecordingSink(), counters=Counters())  # real clock, runner threads
    sup.add(spec())
    try:
        failure = sup.start_and_wait(time.monotonic() + 5)
    finally:
        assert sup.close(time.monotonic() + 5) == []
    assert failure is not None and failure.kind == "auth" and failure.error is rejected
    assert transport.opens == 1


def test_first_attempt_ends_at_the_open_deadline() -> None:
    rig = Rig(spec(timings=Timings(connect_timeout=1.0)))
    rig.sup.start(T0 + 7, threads=False)
    rig.run_to(T0 + 6.9)
    assert rig.sup.state("private") is ChannelState.CONNECTING  # the open deadline, not connect_timeout
    rig.run_to(T0 + 7)
    with pytest.raises(OpenFailed, match="not live within") as caught:
        rig.sup.wait_up(T0 + 7)
    assert caught.value.kind == "connect"
    assert rig.transport.last().closed


def test_wait_up_times_out_naming_the_waiting_channel() -> None:
    rig = Rig(spec("private"), spec("public", topics={"a"}))
    rig.sup.start(T0 + 10, threads=False)
    rig.step()
    rig.transport.last("private").events.opened()
    rig.clock.set(T0 + 10)
    with pytest.raises(OpenFailed, match="public") as caught:
        rig.sup.wait_up(T0 + 10)
    assert caught.value.channel == "public"


def test_a_fatal_refusal_fails_open_with_kind_refused() -> None:
    rig = Rig(spec(topics={"order"}, refusal_fatal=True))
    rig.sup.start(T0 + 10, threads=False)
    rig.step()
    rig.transport.last().events.refused(["order"], "no permission")
    with pytest.raises(OpenFailed) as caught:
        rig.sup.wait_up(T0 + 10)
    assert caught.value.kind == "refused" and "no permission" in caught.value.detail
    assert caught.value.error is None


def test_the_error_a_transport_reports_with_an_event_reaches_open_failed() -> None:
    rig = Rig(spec())
    rig.sup.start(T0 + 10, threads=False)
    rig.step()
    cause = ConnectionResetError("reset by peer")
    rig.transport.last().events.closed("the SDK gave up", cause)
    with pytest.raises(OpenFailed) as caught:
        rig.sup.wait_up(T0 + 10)
    assert caught.value.error is cause and caught.value.detail == "the SDK gave up"


def test_an_idle_channel_is_up_without_a_connection() -> None:
    rig = Rig(spec("public", idle_when_empty=True))
    rig.sup.start(T0 + 10, threads=False)
    rig.step()
    rig.sup.wait_up(T0 + 10)
    assert rig.transport.opens == 0 and rig.sup.connected


# ------------------------------------------------------------------------------------ losing and rebuilding


def test_closed_connection_reports_down_backs_off_and_reports_up(rig: Rig) -> None:
    first = rig.transport.last()
    first.events.closed("connection reset")
    assert rig.sink.states() == [("private", "down")]
    rig.step()
    assert first.closed  # the old handle is closed at once
    rig.run_for(0.99)
    assert rig.transport.opens == 1  # backoff: 1 s before the first retry
    rig.run_for(0.01)
    assert rig.transport.opens == 2
    rig.transport.last().events.opened()
    assert rig.sink.states() == [("private", "down"), ("private", "up")]
    assert rig.sup.connected


def test_failed_attempts_back_off_exponentially_up_to_the_cap(rig: Rig) -> None:
    rig.transport.last().events.closed("reset")
    rig.transport.errors.extend(ConnectFailed("refused") for _ in range(5))
    opened_at: list[float] = []
    for _ in range(6):
        opens = rig.transport.opens
        while rig.transport.opens == opens:
            wake = rig.step()
            assert wake is not None
            rig.clock.set(wake)
            rig.step()
        opened_at.append(rig.clock.now())
    gaps = [b - a for a, b in itertools.pairwise(opened_at)]
    assert gaps == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert rig.sink.states() == [("private", "down")]  # failed attempts are no new reports


def test_backoff_resets_after_a_healthy_period_but_not_after_a_flap(rig: Rig) -> None:
    def drop_and_measure() -> float:
        rig.transport.last().events.closed("reset")
        dropped = rig.clock.now()
        opens = rig.transport.opens
        while rig.transport.opens == opens:
            rig.clock.set(rig.step() or rig.clock.now())
            rig.step()
        rig.transport.last().events.opened()
        return rig.clock.now() - dropped

    assert drop_and_measure() == 1.0
    rig.run_for(5)  # a flap: up for less than reset_after
    assert drop_and_measure() == 2.0
    rig.run_for(5)
    assert drop_and_measure() == 4.0
    rig.run_for(30)  # healthy
    assert drop_and_measure() == 1.0


def test_connect_timeout_of_a_rebuild_abandons_the_attempt(rig: Rig) -> None:
    rig.transport.last().events.closed("reset")
    rig.run_for(1.0)
    stuck = rig.transport.last()
    rig.run_for(4.99)
    assert not stuck.closed
    rig.run_for(0.02)
    assert stuck.closed and rig.sup.state("private") is ChannelState.BACKOFF
    rig.run_for(2.0)
    assert rig.transport.opens == 3


def test_events_of_a_retired_attempt_are_ignored(rig: Rig) -> None:
    frames: list[Any] = []
    rig = Rig(spec(on_frame=frames.append))
    rig.open_all()
    old = rig.transport.last()
    old.events.closed("reset")
    rig.run_for(1.0)
    new = rig.transport.last()
    old.events.frame({"stale": True})
    old.events.opened()
    old.events.closed("late close")
    assert frames == [] and rig.sup.state("private") is ChannelState.CONNECTING
    new.events.frame({"fresh": True})
    assert frames == [{"fresh": True}]


# ------------------------------------------------------------------------------------------------- liveness


def test_pings_follow_the_interval_and_answers_keep_the_socket() -> None:
    rig = Rig(spec(timings=Timings(ping_interval=20, pong_timeout=10, backoff=POLICY)))
    rig.open_all()
    handle = rig.transport.last()
    rig.run_for(19.9)
    assert handle.pings == 0
    rig.run_for(0.1)
    assert handle.pings == 1
    rig.clock.advance(3)
    handle.events.heard()  # the pong
    rig.run_for(17)
    assert handle.pings == 2
    rig.clock.advance(1)
    handle.events.frame({"data": 1})  # any frame answers too
    for _ in range(3):
        rig.run_for(20)
        handle.events.heard()
    assert handle.pings == 5
    assert rig.sink.items == [] and not handle.closed


def test_unanswered_ping_rebuilds_reporting_down_then_up() -> None:
    rig = Rig(spec(timings=Timings(ping_interval=20, pong_timeout=10, backoff=POLICY)))
    rig.open_all()
    handle = rig.transport.last()
    rig.run_for(20)
    assert handle.pings == 1
    rig.run_for(10)
    assert not handle.closed  # exactly pong_timeout: not yet
    rig.run_for(0.01)
    assert handle.closed
    assert rig.sink.items[0][:2] == ("private", "down") and "no answer to ping" in rig.sink.items[0][2]
    rig.run_for(1.0)
    rig.transport.last().events.opened()
    assert rig.sink.states() == [("private", "down"), ("private", "up")]


def test_a_failing_ping_counts_as_a_lost_connection() -> None:
    rig = Rig(spec(timings=Timings(ping_interval=20, backoff=POLICY)))
    rig.open_all()
    rig.transport.last().fail.add("ping")
    rig.run_for(20)
    assert rig.sink.states() == [("private", "down")]
    assert "ping failed" in rig.sink.items[0][2]


def test_silence_bound() -> None:
    rig = Rig(spec(timings=Timings(silence_timeout=240, backoff=POLICY)))
    rig.open_all()
    handle = rig.transport.last()
    rig.run_for(200)
    handle.events.heard()  # a server ping
    rig.run_for(239)
    handle.events.frame({"e": "ORDER_TRADE_UPDATE"})
    rig.run_for(240)
    assert rig.sink.items == [] and not handle.closed
    rig.run_for(0.01)
    assert handle.closed and rig.sink.states() == [("private", "down")]
    assert "no frame for 240 s" in rig.sink.items[0][2]
    rig.run_for(1.0)
    assert rig.transport.opens == 2


# -------------------------------------------------------------------------------------------- keys rejected


def test_rejected_keys_on_reconnect_report_failed_once_then_up_when_they_work(rig: Rig) -> None:
    rig.transport.last().events.closed("reset")
    rig.transport.errors.extend([AuthRejected("code -2015 SECRET"), AuthRejected("code -2015")])
    rig.run_for(1.0 + 2.0)  # two rejected attempts
    assert rig.transport.opens == 3
    rig.run_for(4.0)  # a third attempt: the transport's auth answer says no
    rig.transport.last().events.auth_failed("auth: success false")
    assert rig.sink.states() == [("private", "down"), ("private", "failed")]
    assert "retrying" in rig.sink.items[1][2] and "SECRET" not in rig.sink.items[1][2]
    rig.run_for(8.0)
    rig.transport.last().events.opened()
    assert rig.sink.states() == [("private", "down"), ("private", "failed"), ("private", "up")]
    rig.transport.last().events.closed("reset")
    rig.transport.errors.append(AuthRejected("again"))
    rig.run_for(8.0)  # the backoff was not reset: the key was up only briefly
    assert rig.sink.states()[-2:] == [("private", "down"), ("private", "failed")]  # once per outage


# -------------------------------------------------------------------------------------- rebuilds and topics


def test_rebuild_request_drops_the_socket_and_reconnects_at_once(rig: Rig) -> None:
    old = rig.transport.last()
    rig.sup.rebuild("private", "listenKeyExpired")
    assert rig.sink.states() == [("private", "down")] and "listenKeyExpired" in rig.sink.items[0][2]
    rig.step()
    assert old.closed and rig.transport.opens == 2  # no backoff for a requested rebuild
    rig.transport.last().events.opened()
    assert rig.sink.states() == [("private", "down"), ("private", "up")]


def test_topic_change_without_live_subscribe_switches_to_a_replacement_socket() -> None:
    rig = Rig(spec("public", topics={"a"}))
    rig.open_all()
    old = rig.transport.last("public")
    rig.sup.add_topics("public", ["b"])
    rig.step()
    new = rig.transport.last("public")
    assert new is not old and new.topics == ["a", "b"] and not old.closed
    old.events.frame("old still delivers")
    new.events.opened()
    rig.step()
    assert old.closed and rig.sink.items == []  # seamless: nothing was missed, no resync
    assert rig.sup.connected and rig.sup.channel("public").current is new.events


def test_a_failed_replacement_keeps_the_current_socket_and_retries() -> None:
    rig = Rig(spec("public", topics={"a"}))
    rig.open_all()
    old = rig.transport.last("public")
    rig.sup.add_topics("public", ["b"])
    rig.step()
    rig.transport.last("public").events.closed("refused")
    assert not old.closed and rig.sup.connected and rig.sink.items == []
    rig.run_for(0.99)
    assert rig.transport.opens == 2
    rig.run_for(0.01)
    assert rig.transport.opens == 3 and rig.transport.last("public").topics == ["a", "b"]


def test_live_topics_subscribe_and_unsubscribe_on_the_open_socket() -> None:
    rig = Rig(spec("public", topics={"a"}, live_topics=True))
    rig.open_all()
    handle = rig.transport.last("public")
    rig.sup.add_topics("public", ["c", "b"])
    rig.sup.remove_topics("public", ["a"])
    rig.step()
    assert handle.subscribed == [["b", "c"]] and handle.unsubscribed == [["a"]]
    assert rig.transport.opens == 1
    handle.fail.add("subscribe")
    rig.sup.add_topics("public", ["d"])
    rig.step()
    assert rig.sink.states() == [("public", "down")]  # a send on a dead socket: rebuilt
    rig.run_for(1.0)
    assert rig.transport.last("public").topics == ["b", "c", "d"]


def test_a_refused_topic_is_dropped_and_reported_to_on_refused() -> None:
    refusals: list[tuple[list[str], str]] = []
    rig = Rig(spec("public", topics={"a", "b"}, live_topics=True,
                   on_refused=lambda topics, detail: refusals.append((list(topics), detail))))
    rig.open_all()
    rig.transport.last("public").events.refused(["b"], "SECRET symbol unknown")
    assert refusals == [(["b"], "*** symbol unknown")]
    assert rig.sup.topics("public") == {"a"} and rig.sup.connected
    rig.transport.last("public").events.closed("reset")
    rig.run_for(1.0)
    assert rig.transport.last("public").topics == ["a"]  # not asked for again
    rig.sup.add_topics("public", ["b"])  # until the adapter asks again
    assert rig.sup.topics("public") == {"a", "b"}


def test_a_fatal_refusal_while_running_fails_the_channel_until_rebuilt() -> None:
    rig = Rig(spec(topics={"order"}, refusal_fatal=True))
    rig.open_all()
    rig.transport.last().events.refused(["order"], "no permission")
    assert rig.sink.states() == [("private", "down"), ("private", "failed")]
    rig.run_for(600)
    assert rig.transport.opens == 1
    rig.sup.add_topics("private", ["order"])
    rig.sup.rebuild("private", "keys changed")
    rig.step()
    assert rig.transport.opens == 2


def test_failed_is_reported_once_per_outage_whatever_the_reasons() -> None:
    rig = Rig(spec(topics={"order"}, refusal_fatal=True))
    rig.open_all()
    rig.transport.last().events.refused(["order"], "no permission")
    rig.sup.add_topics("private", ["order"])
    rig.sup.rebuild("private", "try again")
    rig.transport.errors.append(AuthRejected("key revoked"))
    rig.step()
    assert rig.sink.states() == [("private", "down"), ("private", "failed")]
    rig.run_for(1.0)
    rig.transport.last().events.opened()
    assert rig.sink.states()[-1] == ("private", "up")


def test_an_idle_channel_closes_its_socket_and_opens_one_when_needed() -> None:
    rig = Rig(spec("public", topics={"a"}, idle_when_empty=True))
    rig.open_all()
    handle = rig.transport.last("public")
    rig.sup.remove_topics("public", ["a"])
    rig.step()
    assert handle.closed and rig.sup.connected
    rig.sup.add_topics("public", ["b"])
    rig.step()
    rig.transport.last("public").events.opened()
    assert rig.transport.last("public").topics == ["b"] and rig.sink.items == []


# ---------------------------------------------------------------------------------- gaps and SDK reconnects


def test_gap_then_frames_on_the_same_connection_report_up() -> None:
    rig = Rig(spec())
    rig.open_all()
    handle = rig.transport.last()
    handle.events.gap("SDK error BinanceWebsocketQueueOverflow")
    handle.events.gap("again")  # each one: the stream may count them
    assert rig.sink.states() == [("private", "gap"), ("private", "gap")]
    handle.events.frame({"e": "x"})
    handle.events.frame({"e": "y"})
    assert rig.sink.states() == [("private", "gap"), ("private", "gap"), ("private", "up")]


def test_transport_reconnecting_by_itself_reports_down_then_up() -> None:
    rig = Rig(spec(timings=Timings(recover_timeout=60, backoff=POLICY)))
    rig.open_all()
    handle = rig.transport.last()
    handle.events.reconnecting("the SDK is reconnecting")
    handle.events.gap("not reported while down")
    handle.events.opened()
    assert rig.sink.states() == [("private", "down"), ("private", "up")]
    assert rig.transport.opens == 1
    handle.events.reconnecting("again")
    rig.run_for(59.9)
    assert not handle.closed
    rig.run_for(0.2)
    assert handle.closed and rig.sup.state("private") is ChannelState.BACKOFF  # rebuilt by us


# -------------------------------------------------------------------------------------------------- closing


def test_close_during_connecting_closes_and_joins_the_handle() -> None:
    rig = Rig(spec())
    rig.sup.start(T0 + 10, threads=False)
    rig.step()
    handle = rig.transport.last()
    assert rig.sup.close(T0 + 1) == []
    assert handle.closed and handle.joins == [1.0]
    handle.events.opened()
    assert rig.sup.state("private") is ChannelState.CLOSED and not rig.sup.connected


def test_close_during_backoff_stops_retrying(rig: Rig) -> None:
    rig.transport.last().events.closed("reset")
    assert rig.sup.close(T0 + 1) == []
    rig.run_for(100)
    assert rig.transport.opens == 1
    assert rig.sink.states() == [("private", "down")]  # nothing after close


def test_close_is_bounded_by_its_deadline_and_names_what_did_not_end(rig: Rig) -> None:
    handle = rig.transport.last()
    handle.ends = False
    assert rig.sup.close(T0 + 2) == [repr(handle)]
    assert handle.joins == [2.0]
    rig.clock.advance(5)
    assert rig.sup.close(T0 + 5) == [repr(handle)]  # idempotent; a later close retries the join
    assert handle.joins[-1] == 0.0


def test_a_handle_opened_after_close_is_closed_too() -> None:
    rig = Rig(spec())
    sup = rig.sup
    sup.start(T0 + 10, threads=False)
    channel = sup.channel("private")
    rig.step()
    attempt = channel.current
    assert attempt is not None
    sup.close(T0 + 1)
    late = FakeHandle("private", [], attempt)
    rig.transport.open = lambda *args: late  # type: ignore[method-assign]
    sup.open(channel, attempt)  # an open() that returned after close()
    assert late.closed


def test_a_blocking_open_learns_that_its_attempt_was_given_up() -> None:
    rig = Rig(spec(timings=Timings(connect_timeout=5.0, backoff=POLICY)))
    rig.open_all()
    rig.transport.last().events.closed("reset")
    rig.run_for(1.0)
    attempt = rig.transport.last().events
    assert not attempt.wait_retired(0.0)
    rig.run_for(5.0)  # connect timeout
    assert attempt.wait_retired(0.0) and attempt.retired


def test_close_from_another_thread_ends_a_blocked_wait_up() -> None:
    sup = Supervisor("real", FakeTransport(), RecordingSink())
    sup.add(spec())
    sup.start(time.monotonic() + 30)
    errors: list[OpenFailed] = []

    def opener() -> None:
        try:
            sup.wait_up(time.monotonic() + 30)
        except OpenFailed as exc:
            errors.append(exc)

    thread = threading.Thread(target=opener)
    thread.start()
    assert sup.close(time.monotonic() + 2) == []
    thread.join(5)
    assert not thread.is_alive()
    assert errors and errors[0].kind == "connect" and "closed while opening" in str(errors[0])


def test_retired_handles_are_reaped_without_waiting() -> None:
    rig = Rig(spec())
    rig.open_all()
    old = rig.transport.last()
    old.ends = False
    old.events.closed("reset")
    rig.step()
    assert old.closed and old.joins == [0.0]
    old.ends = True
    rig.run_for(0.3)
    assert old.joins == [0.0, 0.0]
    rig.run_for(5)
    assert len(old.joins) == 2  # ended: no more joins


# -------------------------------------------------------------------------------------- faults never escape


def test_faults_of_transport_handles_sink_and_handlers_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_handler(payload: Any) -> None:
        raise ValueError("handler bug")

    rig = Rig(spec(on_frame=bad_handler))
    rig.open_all()
    handle = rig.transport.last()
    with caplog.at_level(logging.ERROR):
        handle.events.frame({"x": 1})  # the SDK thread survives
        assert rig.errors == 1 and "frame handler raised" in caplog.text
        rig.sink.raise_on_link = True
        handle.fail.add("close")
        handle.events.closed("reset")
        rig.step()
        assert rig.errors == 3  # the sink and handle.close both raised
        rig.transport.errors.append(RuntimeError("transport bug"))
        rig.run_for(1.0)
        assert rig.errors == 4 and "open() raised" in caplog.text
        rig.run_for(2.0)
        assert rig.transport.opens == 3  # still retrying


def test_a_raising_step_never_ends_the_runner_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "_ERROR_PAUSE", 0.01)
    sink = RecordingSink()
    transport = FakeTransport()
    transport.auto_open = True
    counters = Counters()
    sup = Supervisor("real", transport, sink, counters=counters)
    sup.add(spec())
    channel = sup.channel("private")
    real_step = channel.step
    calls = {"n": 0}

    def flaky_step(now: float) -> float | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug in a step")
        return real_step(now)

    monkeypatch.setattr(channel, "step", flaky_step)
    start = time.monotonic()
    sup.start(start + 5)
    sup.wait_up(start + 5)
    assert counters.snapshot().internal_errors == 1 and sup.connected
    assert sup.close(time.monotonic() + 2) == []


# --------------------------------------------------------------------------------- real threads, real clock


def test_runner_threads_on_the_real_clock_rebuild_and_close_promptly() -> None:
    sink = RecordingSink()
    transport = FakeTransport()
    transport.auto_open = True
    fast = Timings(connect_timeout=2, backoff=BackoffPolicy(initial=0.01, cap=0.05))
    sup = Supervisor("real", transport, sink, clock=MonotonicClock())
    sup.add(spec("private", timings=fast))
    sup.add(spec("public", topics={"a"}, timings=fast))
    sup.start(time.monotonic() + 5)
    sup.wait_up(time.monotonic() + 5)
    threading.Thread(target=transport.last("public").events.closed, args=("reset",)).start()
    sink.wait_for(lambda: ("public", "up", "reconnected (connected)") in sink.items)
    assert sink.states() == [("public", "down"), ("public", "up")]
    stuck = transport.last("private")
    stuck.ends = False
    began = time.monotonic()
    assert sup.close(began + 0.3) == [repr(stuck)]
    assert time.monotonic() - began < 2.0  # bounded: the never-ending handle is reported, not waited for
    assert not any(t.name.startswith("gridbot-real-") and t.is_alive() for t in threading.enumerate())


def test_monotonic_waker_is_sticky_and_wakes_a_sleeper() -> None:
    waker = MonotonicClock().waker()
    waker.wake()
    began = time.monotonic()
    waker.sleep_until(None)  # a wake-up before the sleep is not lost
    assert time.monotonic() - began < 1.0
    threading.Timer(0.05, waker.wake).start()
    waker.sleep_until(time.monotonic() + 30)
    assert time.monotonic() - began < 5.0
    waker.sleep_until(time.monotonic() + 0.01)  # a deadline alone ends it too


def test_fake_clock_never_goes_back_and_its_waker_jumps_time() -> None:
    clock = FakeClock(5.0)
    waker = clock.waker()
    waker.sleep_until(9.0)
    assert clock.now() == 9.0
    with pytest.raises(ValueError):
        clock.set(1.0)
    with pytest.raises(RuntimeError):
        waker.sleep_until(None)


# ------------------------------------------------------------------------------------------ random walks


def _check_report_order(items: list[tuple[str, ...]]) -> None:
    """The Sink contract on one channel: down only while up; up only after down or gap; gap only while
    up; failed only while down and once per outage."""
    up, gap, failed = True, False, False
    for _channel, state, _detail in items:
        if state == "down":
            assert up, items
            up, gap = False, False
        elif state == "up":
            assert not up or gap, items
            up, gap, failed = True, False, False
        elif state == "gap":
            assert up, items
            gap = True
        elif state == "failed":
            assert not up and not failed, items
            failed = True


@pytest.mark.parametrize("seed", range(40))
def test_random_event_sequences_keep_the_contract(seed: int) -> None:
    """Any order of transport events, topic changes, rebuilds and time: reports follow the Sink
    contract, only the current attempt's handle stays open, and nothing raises inside."""
    rng = random.Random(seed)
    timings = Timings(connect_timeout=5, ping_interval=20, pong_timeout=10, silence_timeout=60,
                      recover_timeout=30, backoff=POLICY)
    live, idle, fatal = (rng.random() < 0.5 for _ in range(3))
    rig = Rig(spec("public", topics={"a"}, timings=timings, live_topics=live, idle_when_empty=idle,
                   refusal_fatal=fatal), rng=random.Random(seed))
    rig.open_all()
    for _ in range(150):
        handles = rig.transport.of("public")
        channel = rig.sup.channel("public")
        active = [h for h in handles if h.events in (channel.current, channel.replacement)]
        pool = active if active and rng.random() < 0.8 else handles  # mostly the live ones, some stale
        handle = rng.choice(pool) if pool else None
        action = rng.randrange(12)
        if handle is not None and action == 0:
            handle.events.opened()
        elif handle is not None and action == 1:
            handle.events.closed("reset")
        elif handle is not None and action == 2:
            handle.events.frame({"n": 1})
        elif handle is not None and action == 3:
            handle.events.gap("error message")
        elif handle is not None and action == 4:
            handle.events.reconnecting("sdk reconnects")
        elif handle is not None and action == 5:
            handle.events.auth_failed("keys rejected")
        elif handle is not None and action == 6:
            handle.events.refused([rng.choice("abc")], "unknown")
        elif action == 7:
            rig.sup.add_topics("public", [rng.choice("abc")])
        elif action == 8:
            rig.sup.remove_topics("public", [rng.choice("abc")])
        elif action == 9:
            rig.sup.rebuild("public", "requested", seamless=rng.random() < 0.5)
        elif action == 10:
            rig.transport.errors.append(rng.choice([ConnectFailed("no"), AuthRejected("no")]))
        else:
            rig.run_for(rng.choice([0.5, 3, 11, 25, 70]))
        rig.step()
        channel = rig.sup.channel("public")
        live_attempts = {a for a in (channel.current, channel.replacement) if a is not None}
        for h in rig.transport.of("public"):
            assert h.closed or h.events in live_attempts, (seed, h)
    assert rig.errors == 0
    _check_report_order(rig.sink.items)
    rig.sup.close(rig.clock.now() + 1)
    assert all(h.closed for h in rig.transport.handles)
