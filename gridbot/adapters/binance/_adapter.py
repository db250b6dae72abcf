"""The Binance USDⓈ-M futures adapter: supervision of the two sockets a :class:`Transport` runs.

One :class:`BinanceAdapter` owns one transport (the manager thread and its SDK sockets — see
:mod:`~gridbot.adapters.binance._transport` for how python-binance is driven), a supervisor thread that
rebuilds dead sockets, and the REST layer (:mod:`~gridbot.adapters.binance._rest`).

Reconnect detection.  The SDK reconnects silently; the transport's observed sockets report to this
adapter (:class:`~gridbot.adapters.binance._transport.Hooks`) in the SDK's own order: an error dict
reports a ``gap`` (while the link is up), ``before_reconnect`` reports ``down``, a successful ``connect``
reports ``up`` (the stream resyncs on ``up``), and the end of the read loop means the SDK gave up for good
(four failed reconnects end in ``BinanceWebsocketUnableToConnect``; a non-JSON frame or any other error also
ends the loop, after which ``recv()`` raises ``ReadLoopClosed`` forever and the listener floods the callback
with error dicts).  A dead socket is stopped (which ends the flood), reported ``down``, and rebuilt by the
supervisor thread with jittered exponential backoff, with a fresh listen key for the user socket; ``up``
follows once it is connected.  If frames keep flowing on the same connection after a ``gap`` (no reconnect
followed), the next frame reports ``up`` so the gap is resynced too.  ``listenKeyExpired`` is forwarded,
then the user socket is retired at once, reported ``down``, and rebuilt with a new key.

Bounded close.  ``close()`` stops the supervisor, cuts every REST request in flight and asks the transport
to cancel everything on the manager's loop, then joins both threads against the same deadline.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from gridbot._account import AccountConfig
from gridbot._credentials import Credentials
from gridbot.adapters._base import Channel, LinkState, Sink
from gridbot.adapters.binance._errors import translated
from gridbot.adapters.binance._liveness import BINANCE_SERVER_PING_S
from gridbot.adapters.binance._rest import Rest
from gridbot.adapters.binance._transport import (
    FATAL_ERROR_TYPES,
    Hosts,
    Link,
    Transport,
    refused_status,
    stream_name,
)
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.stats import Counters

__all__ = ["BinanceAdapter"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT: Final = 15.0  # a rebuild attempt gives up after this long
_CLEANUP_BUDGET: Final = 5.0  # how long a failed open() may spend stopping what it started
_BACKOFF_INITIAL: Final = 0.5
_BACKOFF_CAP: Final = 30.0
_POLL: Final = 0.05  # slice of blocking waits that must notice close()
# A user socket that received no frame and no server ping for this long is treated as down: the
# documented server ping interval plus a margin.
_PRIVATE_SILENCE: Final = BINANCE_SERVER_PING_S + 60.0
_STOP: Final = object()  # supervisor queue sentinel


def _reconnect_delay(attempt: int) -> float:
    """Exponential backoff with jitter: ~0.25-0.5 s, then doubling up to 15-30 s."""
    ceiling = min(_BACKOFF_CAP, _BACKOFF_INITIAL * 2.0**attempt)
    return ceiling * random.uniform(0.5, 1.0)


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


_NEW, _OPENING, _OPEN, _CLOSING, _CLOSED = "new", "opening", "open", "closing", "closed"


class BinanceAdapter:
    """The :class:`~gridbot.adapters._base.Adapter` for Binance USDⓈ-M futures (see the package docstring).

    ``reconnect_delay(attempt)`` (seconds before rebuild attempt ``attempt + 1``) and
    ``connect_timeout`` may be replaced on an instance, e.g. by tests.
    """

    exchange = "binance"

    def __init__(self, *, api_key: str, api_secret: str, testnet: bool, demo: bool,
                 endpoints: Endpoints | None, sink: Sink, counters: Counters) -> None:
        self._credentials = Credentials(api_key, api_secret)
        self._testnet = testnet
        self._demo = demo
        self._endpoints = endpoints
        self._hosts = Hosts.choose(endpoints, testnet=testnet, demo=demo)
        self._sink = sink
        self._counters = counters
        self.reconnect_delay: Callable[[int], float] = _reconnect_delay
        self.connect_timeout = _CONNECT_TIMEOUT
        self.private_silence_timeout = _PRIVATE_SILENCE

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._state = _NEW
        self._reporting = False
        self._closing = False
        self._symbols: set[str] = set()
        self._current: dict[Channel, Link | None] = {"private": None, "public": None}
        self._up: dict[Channel, bool] = {"private": False, "public": False}
        self._fatal: GridbotError | None = None
        self._failed: set[Channel] = set()  # channels reported failed (keys rejected), until rebuilt

        self._stopping = threading.Event()
        self._transport: Transport | None = None
        self._rest: Rest | None = None
        self._commands: queue.Queue[object] = queue.Queue()
        self._supervisor = threading.Thread(target=self._supervise, name="gridbot-binance-supervisor",
                                            daemon=True)

    def __repr__(self) -> str:
        return (f"BinanceAdapter(testnet={self._testnet}, demo={self._demo}, "
                f"endpoints={self._endpoints!r}, state={self._state!r})")

    # ------------------------------------------------------------------ Adapter API

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._state == _OPEN and all(self._up.values())

    def open(self, symbols: Collection[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state != _NEW:
                raise GridbotError(f"BinanceAdapter.open() needs a new adapter; this one is {self._state}")
            self._state = _OPENING
            self._symbols.update(symbol.upper() for symbol in symbols)
        try:
            self._open(deadline, timeout)
        except BaseException:
            self._shutdown(time.monotonic() + _CLEANUP_BUDGET)
            with self._lock:
                self._state = _CLOSED
            raise

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._state in (_NEW, _CLOSED, _CLOSING):
                if self._state == _NEW:
                    self._state = _CLOSED
                return
            self._state = _CLOSING
            self._reporting = False
        self._shutdown(deadline)
        with self._lock:
            self._state = _CLOSED

    def add_symbol(self, symbol: str) -> None:
        self._change_symbols(symbol.upper(), add=True)

    def remove_symbol(self, symbol: str) -> None:
        self._change_symbols(symbol.upper(), add=False)

    # ------------------------------------------------------------------ open / close

    def _open(self, deadline: float, timeout: float) -> None:
        transport = self._transport = Transport(
            credentials=self._credentials, hosts=self._hosts, testnet=self._testnet, demo=self._demo,
            stopping=self._stopping)
        try:
            startup_error = transport.start(deadline)
        except ConnectError:
            raise ConnectError(f"Binance REST API did not answer within {timeout:g} s") from None
        if startup_error is not None:
            with self._translated("starting the Binance client (GET /api/v3/ping, /api/v3/time)"):
                raise startup_error
        self._rest = transport.run(Rest.build(
            credentials=self._credentials, hosts=self._hosts, testnet=self._testnet, demo=self._demo,
            counters=self._counters, clock_offset=transport.clock_offset), deadline)

        private = Link("private", listen_key=self._rest.new_listen_key(_remaining(deadline)))
        links = [private]
        self._spawn(private, deadline)
        streams = self._desired_streams()
        public = Link("public", streams=streams) if streams else None
        if public is not None:
            links.append(public)
            self._spawn(public, deadline)
        for link in links:
            self._await_settled(link, deadline)

        self._install("private", private)
        self._install("public", public)
        self._supervisor.start()
        with self._lock:
            while not all(self._up.values()) and self._fatal is None:
                left = _remaining(deadline)
                if left <= 0:
                    raise ConnectError(f"Binance sockets were not both connected within {timeout:g} s")
                self._changed.wait(left)
            if self._fatal is not None:
                raise self._fatal
            self._state = _OPEN
            self._reporting = True
        self._commands.put("public")  # symbols added while opening

    def _shutdown(self, deadline: float) -> None:
        """Stop the supervisor and the manager's loop, join both against ``deadline``."""
        self._closing = True
        self._stopping.set()
        self._commands.put(_STOP)
        rest, transport = self._rest, self._transport
        if rest is not None:
            rest.abort()  # a seed, resync or listen-key request in flight ends now
        threads = [self._supervisor]
        if transport is not None:
            transport.request_stop(budget=max(0.0, _remaining(deadline) - 0.1))
            threads.append(transport.thread)
        threads = [thread for thread in threads if thread.ident is not None]  # started ones
        for thread in threads:
            thread.join(_remaining(deadline))
        if rest is not None:
            rest.close()
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            logger.warning("binance: %s still running when the close timeout ran out", ", ".join(stuck))

    def _await_settled(self, link: Link, deadline: float) -> None:
        """Wait for the first connect of ``link``; on failure retire it and raise the translated error."""
        while not link.settled.wait(min(_POLL, max(_remaining(deadline), 0.001))):
            if self._stopping.is_set():
                self._retire(link)
                raise GridbotError("the adapter is closing")
            if _remaining(deadline) <= 0:
                self._retire(link)
                raise ConnectError(f"the Binance {link.channel} socket did not connect in time")
        if link.ever_connected:
            return
        self._retire(link)
        with self._translated(f"connecting the {link.channel} socket"):
            raise link.error or ConnectError(f"the Binance {link.channel} socket closed while connecting")

    def _spawn(self, link: Link, deadline: float) -> None:
        if self._transport is None:
            raise GridbotError("the Binance socket thread is not running")
        self._transport.spawn(link, self, self._on_sdk_message, self._on_listener_done, deadline)

    def _retire(self, link: Link) -> None:
        """Stop ``link`` for good, from any thread (fire and forget)."""
        link.retired = True
        if self._transport is not None:
            self._transport.retire(link)

    def _require_rest(self) -> Rest:
        rest = self._rest
        if rest is None:
            raise GridbotError("the Binance adapter is not open")
        return rest

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        with translated(action, self._credentials):
            yield

    # ------------------------------------------------------------------ REST (see _rest)

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        return self._require_rest().fetch_snapshot(symbols, include_wallet=include_wallet)

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        return self._require_rest().fetch_fills(symbol, since_ms, until_ms)

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> AccountConfig | None:
        return self._require_rest().fetch_account_config(symbols, full=full)

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        return self._require_rest().fetch_orders(orders)

    # ------------------------------------------------------------------ SDK callbacks (manager's loop)

    def _on_sdk_message(self, link: Link, msg: Any) -> None:
        """The SDK callback: forward at once; never block, never raise into the SDK."""
        try:
            if type(msg) is dict and msg.get("e") == "error":
                self._on_error_dict(link, msg)
                return
            self._sink.frame(link.channel, msg)
            if link.gap_pending:
                self._on_frames_after_gap(link)
            if link.channel == "private" and type(msg) is dict and msg.get("e") == "listenKeyExpired":
                self._on_listen_key_expired(link)
        except BaseException:
            logger.exception("binance %s: handling an SDK message failed", link.channel)

    def _on_error_dict(self, link: Link, msg: dict[str, Any]) -> None:
        """An error dict reaching the listener: the SDK gave up, or a gap not yet seen at its source."""
        if link.reported_errors and link.reported_errors[0] is msg:
            link.reported_errors.popleft()  # already reported by sdk_error when the read loop raised it
            return
        kind = str(msg.get("type"))
        if kind in FATAL_ERROR_TYPES:
            if not (link.retired or self._closing):
                self._on_dead(link, f"SDK error {kind}: {msg.get('m')}")
            return
        self._report_gap(link, msg)

    def sdk_error(self, link: Link, error: dict[str, Any]) -> None:
        """The read loop raised an error dict: report the ``gap`` now, in order with the reconnect hooks
        (the listener delivers the dict later, possibly after the reconnect's ``up``)."""
        link.reported_errors.append(error)
        self._report_gap(link, error)

    def sdk_bad_frame(self, link: Link, frame: Any, exc: Exception) -> None:
        self._counters.add("bad_messages")
        logger.error("binance %s: dropped a frame that is not JSON (%s); raw=%.200r",
                     link.channel, exc, frame)

    def _report_gap(self, link: Link, error: dict[str, Any]) -> None:
        if link.retired or self._closing or str(error.get("type")) in FATAL_ERROR_TYPES:
            return
        with self._lock:
            if link.dead or self._current[link.channel] is not link or not self._up[link.channel]:
                return  # a link that is down resyncs on its next up anyway
            link.gap_pending = True
            self._report(link.channel, "gap", f"SDK error {error.get('type')}: {error.get('m')}")

    def _on_frames_after_gap(self, link: Link) -> None:
        """Frames flow on the same connection after an error dict: report ``up`` so the gap is resynced."""
        with self._lock:
            if not link.gap_pending:
                return
            link.gap_pending = False
            if self._current[link.channel] is link and self._up[link.channel] and not link.retired:
                self._report(link.channel, "up", "frames flow again after an SDK error")

    def _on_listen_key_expired(self, link: Link) -> None:
        with self._lock:
            if self._current["private"] is not link or link.retired:
                return
            self._set_up("private", False, "listenKeyExpired: renewing the listen key")
        if self._transport is not None:
            self._transport.retire_on_loop(link)
        self._commands.put("private")

    def sdk_connected(self, link: Link) -> None:
        with self._lock:
            link.last_rx = time.monotonic()
            link.connected = True
            link.ever_connected = True
            if self._current[link.channel] is link and not (link.retired or link.dead):
                link.gap_pending = False
                self._set_up(link.channel, True, "the SDK reconnected")
        link.settled.set()

    def sdk_reconnecting(self, link: Link) -> None:
        with self._lock:
            link.connected = False
            if self._current[link.channel] is link and not link.retired:
                self._set_up(link.channel, False, "the SDK is reconnecting")

    def sdk_connect_failed(self, link: Link, exc: Exception) -> None:
        """A reconnect of the user socket refused by the exchange (an HTTP status instead of the upgrade)
        means its listen key is gone — expired while we were disconnected, so no ``listenKeyExpired``
        frame came.  The SDK would retry the dead key up to five times with growing waits (15-30 s);
        retire the link now so the supervisor rebuilds it with a new key."""
        status = refused_status(exc)
        if link.channel != "private" or not link.ever_connected or status is None:
            return
        if not (link.retired or self._closing):
            self._on_dead(link, f"the exchange refused the user socket (HTTP {status}): stale listen key")

    def sdk_read_loop_ended(self, link: Link) -> None:
        if not (link.retired or self._closing):
            self._on_dead(link, "the SDK's read loop ended")

    def _on_listener_done(self, link: Link, exc: BaseException | None) -> None:
        if link.retired or self._closing:
            return
        if exc is not None and link.error is None and not link.ever_connected:
            link.error = exc
        detail = f"the SDK listener ended: {type(exc).__name__}" if exc else "the SDK listener ended"
        self._on_dead(link, detail)

    def _on_dead(self, link: Link, detail: str) -> None:
        """The SDK gave up on ``link``: stop it, report ``down``, let the supervisor rebuild it."""
        with self._lock:
            if link.dead or link.retired:
                return
            link.dead = True
            link.connected = False
            is_current = self._current[link.channel] is link
            if is_current:
                self._set_up(link.channel, False, detail)
        logger.warning("binance %s socket is dead (%s); rebuilding it", link.channel, detail)
        link.settled.set()
        if self._transport is not None:
            self._transport.stop_socket(link)  # ends the listener's ReadLoopClosed flood
        if is_current:
            self._commands.put(link.channel)

    # ------------------------------------------------------------------ link state (under the lock)

    def _set_up(self, channel: Channel, up: bool, detail: str) -> None:
        if self._up[channel] == up:
            return
        self._up[channel] = up
        self._changed.notify_all()
        self._report(channel, "up" if up else "down", detail)

    def _report(self, channel: Channel, state: LinkState, detail: str) -> None:
        if not self._reporting:
            return
        try:
            self._sink.link(channel, state, detail)
        except BaseException:
            logger.exception("binance %s: the sink failed on a %s report", channel, state)

    def _install(self, channel: Channel, link: Link | None) -> None:
        """Make ``link`` the channel's socket (None: no market socket needed) and retire the old one."""
        with self._lock:
            old = self._current[channel]
            self._current[channel] = link
            self._failed.discard(channel)
            if link is None:
                self._set_up(channel, True, "no symbols to watch")
            else:
                link.gap_pending = False
                self._set_up(channel, link.connected and not link.dead, "new socket connected")
                if link.dead:
                    self._commands.put(channel)
        if old is not None and old is not link:
            self._retire(old)

    # ------------------------------------------------------------------ symbols and the supervisor

    def _desired_streams(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(stream_name(symbol) for symbol in sorted(self._symbols))

    def _change_symbols(self, symbol: str, *, add: bool) -> None:
        with self._lock:
            if (symbol in self._symbols) == add:
                return
            if add:
                self._symbols.add(symbol)
            else:
                self._symbols.discard(symbol)
            running = self._state == _OPEN
        if running:
            self._commands.put("public")

    def _needs_new_link(self, channel: Channel) -> bool:
        with self._lock:
            link = self._current[channel]
            if channel == "private":
                return link is None or link.dead or link.retired
            desired = tuple(stream_name(symbol) for symbol in sorted(self._symbols))
            if link is None:
                return bool(desired)
            return link.dead or link.retired or link.streams != desired

    def _supervise(self) -> None:
        """Rebuild dead sockets and apply symbol changes, one channel attempt at a time, with backoff."""
        due: dict[Channel, float] = {}
        attempts: dict[Channel, int] = {"private": 0, "public": 0}
        while not self._stopping.is_set():
            wait = max(0.0, min(due.values()) - time.monotonic()) if due else None
            watch = max(0.05, min(5.0, self.private_silence_timeout / 4))
            try:
                item = self._commands.get(timeout=watch if wait is None else min(wait, watch))
            except queue.Empty:
                item = None
            if item is _STOP or self._stopping.is_set():
                return
            self._check_silence()
            woken: Channel | None = "private" if item == "private" else "public" if item == "public" else None
            if woken is not None and woken not in due:
                due[woken] = time.monotonic()
            for channel in [ch for ch, at in due.items() if at <= time.monotonic()]:
                if self._stopping.is_set():
                    return
                try:
                    finished = self._attempt(channel)
                except BaseException:
                    logger.exception("binance %s: rebuild attempt failed unexpectedly", channel)
                    finished = False
                if finished:
                    del due[channel]
                    attempts[channel] = 0
                else:
                    due[channel] = time.monotonic() + self.reconnect_delay(attempts[channel])
                    attempts[channel] += 1

    def _check_silence(self) -> None:
        """A connected user socket that received nothing — no data frame, no server ping — for longer
        than ``private_silence_timeout`` is stalled: declare it dead, which reports ``down`` and has
        it rebuilt (new listen key); the stream resyncs when it is back."""
        with self._lock:
            link = self._current["private"]
            if link is None or link.dead or link.retired or not link.connected:
                return
            silent = time.monotonic() - link.last_rx
        if silent <= self.private_silence_timeout:
            return
        if self._transport is not None:
            self._transport.call_soon(self._on_dead, link, f"no frame and no server ping for {silent:.0f} s")

    def _attempt(self, channel: Channel) -> bool:
        """One try at giving ``channel`` the socket it needs; False means "try again after a backoff"."""
        if not self._needs_new_link(channel):
            return True
        deadline = time.monotonic() + self.connect_timeout
        try:
            if channel == "private":
                listen_key = self._require_rest().new_listen_key(self.connect_timeout)
                link: Link | None = Link("private", listen_key=listen_key)
            else:
                streams = self._desired_streams()
                link = Link("public", streams=streams) if streams else None
            if link is not None:
                self._spawn(link, deadline)
                self._await_settled(link, deadline)
        except AuthenticationError as exc:
            # Keys revoked: reported once, then retried with backoff, so the stream recovers by itself
            # when they work again (as it does after any other failed rebuild).
            self._fail(channel, exc)
            return False
        except GridbotError as exc:
            if not self._stopping.is_set():
                logger.warning("binance %s socket: rebuild attempt failed: %s", channel, exc)
            return False
        self._install(channel, link)
        return True

    def _fail(self, channel: Channel, exc: AuthenticationError) -> None:
        with self._lock:
            self._fatal = exc
            self._set_up(channel, False, str(exc))
            first = channel not in self._failed
            self._failed.add(channel)
            if first:
                self._report(channel, "failed", f"{exc}; retrying with backoff until the keys work again")
            self._changed.notify_all()
        if first:
            logger.error("binance %s socket: keys rejected (%s); retrying with backoff", channel, exc)
