"""One supervisor for every exchange socket: connect, watch, rebuild, report — written and tested once.

The supervisor owns the *policy* of a socket: when to (re)connect, backoff with jitter, liveness (pings,
pong and silence timeouts), rebuilds, topic changes, what the stream is told (``up``/``down``/``gap``/
``failed`` on the :class:`~gridbot.adapters._base.Sink`) and bounded shutdown.  The exchange's
:class:`Transport` owns the *mechanics*: it is the only code that touches SDK internals.  Time comes from
an injected :class:`~gridbot.adapters._clock.Clock`; every channel's state machine
(:class:`~gridbot.adapters._channel.Channel`; the events of one connection are an
:class:`~gridbot.adapters._attempt.Attempt`; the protocols and specs are in
:mod:`gridbot.adapters._contract`, re-exported here) is steppable, so tests drive it with a fake transport and
a :class:`~gridbot.adapters._clock.FakeClock` — no threads, no sleeping.

How an adapter adopts it
========================

1. Write a transport (e.g. ``adapters/bybit/_transport.py``) implementing :class:`Transport`:
   ``open(channel, topics, events) -> Handle``.  ``open`` starts one connection for ``channel`` with
   ``topics`` and returns its handle promptly (bounded blocking work such as a REST listen-key request
   is fine; waiting for acknowledgements is not: report them; a transport that must block while
   connecting waits with ``events.wait_retired(slice)`` and gives up when it returns True).
   It raises :class:`AuthRejected` for rejected keys, :class:`ConnectFailed` (or ``OSError``) for an
   expected connect failure; anything else is logged as an internal error; all three are a failed
   attempt.  From its SDK threads it then reports
   on ``events`` (an :class:`~gridbot.adapters._attempt.Attempt`, one per connection; events of an
   attempt the supervisor gave up on are ignored, so no version counters are needed):

   - ``events.opened()`` — connected, authenticated, initial subscriptions acknowledged (call it again
     after the SDK reconnected by itself, see ``reconnecting``);
   - ``events.frame(payload)`` — every data frame, at once (forwarded to ``ChannelSpec.on_frame`` on
     the calling thread; also counts as life for the silence/pong checks);
   - ``events.heard()`` — a pong or server ping: life, no data;
   - ``events.closed(detail)`` — gone for good (or never came up): the supervisor rebuilds;
   - ``events.auth_failed(detail)`` — keys rejected (e.g. the private socket's auth answer);
   - ``events.refused(topics, detail)`` — the server refused a subscription;
   - ``events.gap(detail)`` — the live connection may have lost frames (an SDK error message);
   - ``events.reconnecting(detail)`` — the SDK reconnects by itself (Binance's ReconnectingWebsocket):
     ``down`` now, ``up`` on the next ``opened()``; no rebuild unless ``Timings.recover_timeout`` ends.

   The handle (:class:`Handle`) does ``subscribe``/``unsubscribe`` (only called when
   ``ChannelSpec.live_topics``), ``ping`` (only with ``Timings.ping_interval``), ``close`` (never blocks)
   and ``join(timeout) -> bool`` (True once its threads ended).  An exception from a handle method counts
   as the connection being lost.

2. In the adapter::

       self._supervisor = Supervisor("bybit", transport, sink, counters=counters, scrub=creds.redact)
       self._supervisor.add(ChannelSpec("private", topics=PRIVATE_TOPICS, on_frame=forward_private,
                                        timings=Timings(ping_interval=20, pong_timeout=10),
                                        refusal_fatal=True))
       self._supervisor.add(ChannelSpec("public", topics=tickers, on_frame=forward_public, live_topics=True,
                                        on_refused=sink_symbol_rejected, timings=...))

       def open(self, symbols, timeout):
           deadline = self._supervisor.clock.now() + timeout
           self._supervisor.start(deadline)          # first attempts, runner threads
           try:
               self._supervisor.wait_up(deadline)    # raises OpenFailed (kind auth/refused/connect)
           except OpenFailed as exc:
               self._supervisor.close(cleanup_deadline)
               raise AuthenticationError(...) if exc.kind == "auth" else ConnectError(...) from exc
       def close(self, timeout):          self._supervisor.close(now + timeout)   # bounded, idempotent
       def add_symbol(self, symbol):      self._supervisor.add_topics("public", [topic_of(symbol)])
       def remove_symbol(self, symbol):   self._supervisor.remove_topics("public", [topic_of(symbol)])
       connected = self._supervisor.connected

   Binance maps: private channel ``topics=()`` (the transport fetches a fresh listen key in every
   ``open``), ``Timings(silence_timeout=240)``; a ``listenKeyExpired`` frame seen by ``on_frame`` calls
   ``supervisor.rebuild("private", "listenKeyExpired")`` (``down`` now, new key, ``up``); the public
   combined stream has ``live_topics=False`` and ``idle_when_empty=True``: a topic change opens a
   replacement socket with the new stream list and switches to it once live (no ``down``: nothing was
   missed), an empty list closes it and the channel stays up.  Bybit maps: ``ping_interval=20``,
   ``pong_timeout=10``, ``live_topics=True`` for tickers, ``refusal_fatal=True`` for the private topics.

Reporting (the Sink contract): nothing is reported before ``wait_up`` succeeded (``open()`` answers for
that phase; first attempts are not retried: they fail ``open``).  Afterwards: a connection lost while up
→ ``down`` (then ``up`` when a new one is live: the stream resyncs); keys rejected → ``failed`` once per
outage, attempts go on with backoff, ``up`` when they work again; ``gap`` on a live connection, and the
next frame on it reports ``up``.  Reports are made in the thread of the event, under the supervisor's lock
(the sink only enqueues), so they keep the transport's order; frames are never sent under the lock.
Exceptions from the transport, the handles, the sink or the frame handler are logged with context and
counted in ``internal_errors``; none reaches an SDK thread and none ends a runner thread.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Collection, Sequence

from gridbot.adapters._attempt import Attempt
from gridbot.adapters._base import Sink
from gridbot.adapters._channel import Channel, ChannelState
from gridbot.adapters._clock import Clock, MonotonicClock
from gridbot.adapters._contract import (
    AuthRejected,
    ChannelSpec,
    ConnectFailed,
    Handle,
    OpenFailed,
    Timings,
    Transport,
)
from gridbot.stats import Counters

__all__ = [
    "Attempt",
    "AuthRejected",
    "ChannelSpec",
    "ChannelState",
    "ConnectFailed",
    "Handle",
    "OpenFailed",
    "Supervisor",
    "Timings",
    "Transport",
]

logger = logging.getLogger(__name__)

_ERROR_PAUSE = 1.0  # a runner whose step raised waits this long before the next one


def _no_scrub(text: str) -> str:
    return text


class Supervisor:
    """The channels of one adapter, each with its runner thread (see the module docstring)."""

    def __init__(self, name: str, transport: Transport, sink: Sink, *, clock: Clock | None = None,
                 rng: random.Random | None = None, counters: Counters | None = None,
                 scrub: Callable[[str], str] = _no_scrub) -> None:
        self.name = name
        self.transport = transport
        self.sink = sink
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.rng = rng if rng is not None else random.Random()
        self.scrub = scrub
        self.reporting = False
        self.errors = 0
        self._counters = counters
        self._cond = threading.Condition(threading.RLock())
        self._channels: dict[str, Channel] = {}
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False
        self._late: list[Handle] = []  # handles a runner was reaping when close() began
        self._stuck: list[Handle] = []  # handles a close() could not join: the next close() retries

    def __repr__(self) -> str:
        return f"<Supervisor {self.name} {list(self._channels.values())!r}>"

    # ------------------------------------------------------------------ set-up and queries

    def add(self, spec: ChannelSpec) -> Channel:
        with self._cond:
            if self._started:
                raise RuntimeError("Supervisor.add() after start()")
            if spec.name in self._channels:
                raise ValueError(f"channel {spec.name!r} added twice")
            channel = self._channels[spec.name] = Channel(self, spec, self._cond)
            return channel

    def channel(self, name: str) -> Channel:
        return self._channels[name]

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    @property
    def connected(self) -> bool:
        """Every channel is up (an idle one counts) and nothing is closing."""
        with self._cond:
            return not self._closed and all(ch.state is ChannelState.UP for ch in self._channels.values())

    def state(self, name: str) -> ChannelState:
        with self._cond:
            return self._channels[name].state

    # ------------------------------------------------------------------ lifecycle

    def start(self, deadline: float, *, threads: bool = True) -> None:
        """Begin every channel's first attempt (bounded by ``deadline``, clock time) and start one
        runner thread per channel (``threads=False``: the caller steps them, as tests do)."""
        with self._cond:
            if self._started:
                raise RuntimeError("Supervisor.start() called twice")
            self._started = True
            now = self.clock.now()
            for channel in self._channels.values():
                channel.first_deadline = deadline
                if not channel.topics and channel.spec.idle_when_empty:
                    channel.state = ChannelState.UP
                    channel.ever_up = channel.reported_up = True
                else:
                    channel.state = ChannelState.BACKOFF
                    channel.retry_at = now
        if threads:
            for channel in self._channels.values():
                thread = threading.Thread(target=self._run, args=(channel,), daemon=True,
                                          name=f"gridbot-{self.name}-{channel.name}-supervisor")
                self._threads.append(thread)
                thread.start()

    def wait_up(self, deadline: float) -> None:
        """Block until every channel is up, then start reporting; raise :class:`OpenFailed` as soon as a
        first attempt failed, or at ``deadline`` (kind ``connect``)."""
        with self._cond:
            while True:
                for channel in self._channels.values():
                    failure = channel.open_failure
                    if failure is not None:
                        detail = self.scrub(failure.detail)
                        raise OpenFailed(channel.name, failure.kind, detail, failure.error)
                if self._closed:
                    raise OpenFailed("", "connect", "closed while opening")
                if all(ch.state is ChannelState.UP for ch in self._channels.values()):
                    self.reporting = True
                    return
                left = deadline - self.clock.now()
                if left <= 0:
                    waiting = [ch.name for ch in self._channels.values() if ch.state is not ChannelState.UP]
                    raise OpenFailed(waiting[0], "connect", f"not live in time ({', '.join(waiting)})")
                self._cond.wait(left)

    def start_and_wait(self, deadline: float, *, threads: bool = True) -> OpenFailed | None:
        """:meth:`start` then :meth:`wait_up`; the failure is returned, not raised, so the adapter raises its
        translation outside an ``except`` block (the SDK's exception becomes the cause, not this one)."""
        self.start(deadline, threads=threads)
        try:
            self.wait_up(deadline)
        except OpenFailed as failure:
            return failure
        return None

    def close(self, deadline: float) -> list[str]:
        """Stop every channel, close every handle and join runner threads and handles until ``deadline``;
        idempotent.  Returns (and logs) what still runs when the deadline passed."""
        with self._cond:
            self._closed = True
            self.reporting = False
            handles: list[Handle] = []
            for channel in self._channels.values():
                handles.extend(self._stop_channel(channel))
            self._cond.notify_all()
        for channel in self._channels.values():
            channel.waker.wake()
        self.close_handles(None, handles)
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(max(0.0, deadline - self.clock.now()))
        with self._cond:  # handles a runner retired or was reaping while we joined it
            late, self._late = self._late, []
            fresh: list[Handle] = []
            for channel in self._channels.values():
                fresh.extend(self._stop_channel(channel))
        self.close_handles(None, fresh)
        handles.extend(late + fresh)
        with self._cond:
            handles.extend(self._stuck)
        self._stuck = [handle for handle in handles if not self._join(handle, deadline)]
        stuck = [repr(handle) for handle in self._stuck]
        stuck.extend(thread.name for thread in self._threads if thread.is_alive())
        if stuck:
            logger.warning("%s: still running after the close budget: %s", self.name, ", ".join(stuck))
        return stuck

    def _stop_channel(self, channel: Channel) -> list[Handle]:
        for attempt in (channel.current, channel.replacement):
            if attempt is not None:
                channel.retire(attempt)
        channel.state = ChannelState.CLOSED
        handles = channel.lingering + channel.closing
        channel.lingering, channel.closing = [], []
        return handles

    def _join(self, handle: Handle, deadline: float) -> bool:
        try:
            return handle.join(max(0.0, deadline - self.clock.now()))
        except Exception:
            self.count_error()
            logger.exception("%s: joining %r failed", self.name, handle)
            return False

    # ------------------------------------------------------------------ requests (any thread)

    def add_topics(self, name: str, topics: Collection[str]) -> None:
        """Want ``topics`` too (a refused topic is tried again)."""

        def change(channel: Channel) -> None:
            channel.topics.update(topics)
            channel.refused_topics.difference_update(topics)

        self._change(name, change)

    def remove_topics(self, name: str, topics: Collection[str]) -> None:
        def change(channel: Channel) -> None:
            channel.topics.difference_update(topics)
            channel.refused_topics.difference_update(topics)

        self._change(name, change)

    def topics(self, name: str) -> frozenset[str]:
        with self._cond:
            return frozenset(self._channels[name].topics)

    def rebuild(self, name: str, reason: str, *, seamless: bool = False) -> None:
        """Replace the channel's connection (see :meth:`Channel.rebuild`); any thread, never blocks."""
        self._change(name, lambda channel: channel.rebuild(self.clock.now(), reason, seamless=seamless))

    def _change(self, name: str, change: Callable[[Channel], object]) -> None:
        channel = self._channels[name]
        with self._cond:
            change(channel)
            self._cond.notify_all()
        channel.waker.wake()

    # ------------------------------------------------------------------ running

    def step(self, now: float | None = None) -> float | None:
        """Step every channel once (tests); returns the earliest next wake-up."""
        wakes = []
        for channel in self._channels.values():
            wake = channel.step(self.clock.now() if now is None else now)
            if wake is not None:
                wakes.append(wake)
        return min(wakes, default=None)

    def _run(self, channel: Channel) -> None:
        """A runner thread: step the channel, sleep until its next wake-up or an event."""
        while not self._closed:
            try:
                wake = channel.step(self.clock.now())
            except Exception:
                self.count_error()
                logger.exception("%s %s: the supervision step raised", self.name, channel.name)
                wake = self.clock.now() + _ERROR_PAUSE
            if self._closed:
                return
            channel.waker.sleep_until(wake)

    # ------------------------------------------------------------------ transport calls (no lock held)

    def open(self, channel: Channel, attempt: Attempt) -> None:
        try:
            handle = self.transport.open(channel.name, attempt.topics, attempt)
        except AuthRejected as exc:
            attempt.auth_failed(str(exc) or "keys rejected", exc)
            return
        except (ConnectFailed, OSError) as exc:
            attempt.closed(f"could not connect: {_describe(exc)}", exc)
            return
        except Exception as exc:
            self.count_error()
            logger.exception("%s %s: the transport's open() raised", self.name, channel.name)
            attempt.closed(f"could not connect: {_describe(exc)}", exc)
            return
        with self._cond:
            if attempt.retired:
                if channel.state is ChannelState.CLOSED:
                    closing: list[Handle] = [handle]
                else:
                    channel.lingering.append(handle)
                    closing = []
            else:
                attempt.handle = handle
                closing = []
        self.close_handles(channel, closing)
        channel.waker.wake()

    def ping(self, channel: Channel, attempt: Attempt, handle: Handle) -> None:
        try:
            handle.ping()
        except Exception as exc:  # noqa: BLE001 - a send on a dead connection: rebuild it
            attempt.closed(f"ping failed: {_describe(exc)}")

    def change_topics(self, channel: Channel, handle: Handle, added: Sequence[str],
                      removed: Sequence[str]) -> None:
        attempt = channel.current
        try:
            if added:
                handle.subscribe(added)
            if removed:
                handle.unsubscribe(removed)
        except Exception as exc:  # noqa: BLE001 - a send on a dead connection: rebuild it
            if attempt is not None and attempt.handle is handle:
                attempt.closed(f"changing subscriptions failed: {_describe(exc)}")

    def close_handles(self, channel: Channel | None, handles: Sequence[Handle]) -> None:
        for handle in handles:
            try:
                handle.close()
            except Exception:
                self.count_error()
                logger.exception("%s: closing %r failed", self.name, handle)

    def reap(self, channel: Channel, handles: Sequence[Handle]) -> None:
        """Join closed handles without waiting; those still running are looked at again later."""
        running = [handle for handle in handles if not self._join_now(handle)]
        if running:
            with self._cond:
                if channel.state is not ChannelState.CLOSED:
                    channel.closing.extend(running)
                    return
                self._late.extend(running)  # close() is under way: it joins them

    def _join_now(self, handle: Handle) -> bool:
        try:
            return handle.join(0.0)
        except Exception:
            self.count_error()
            logger.exception("%s: joining %r failed", self.name, handle)
            return True  # nothing more can be done with it

    def count_error(self) -> None:
        with self._cond:
            self.errors += 1
        if self._counters is not None:
            self._counters.add("internal_errors")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
