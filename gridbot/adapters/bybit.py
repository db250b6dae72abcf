"""Bybit v5 linear over pybit 5.17: private and public ``unified_trading.WebSocket``, pybit ``HTTP``.

What pybit 5.17.0 does on its own, and what this module does about it (DESIGN §3):

* An exception on a socket thread (a callback, ``_process_auth_message`` on a rejected key, the KeyError of
  an unknown topic in ``_process_normal_message``) closes the socket for good and nobody is told.
  :class:`_BybitSocket` therefore replaces pybit's message path (``_on_message`` and the ``callback_function``
  seam) so nothing of pybit's parsing runs: every frame goes to the sink at once, auth/subscribe answers
  are read by this module, and every hook catches everything.
* Reconnects happen inside pybit's ``_on_error`` on the dying thread, immediately (no backoff), ten times,
  then stop silently; a concurrent ``exit()`` does not stop that loop.  pybit's own reconnect is switched
  off (``restart_on_error=False``, one attempt): each socket object lives for one connection, and a
  supervisor thread per channel rebuilds it with the whole subscription set, exponential backoff and
  jitter, reporting ``down`` then ``up`` so the stream resyncs.
* ``_connect`` waits without a bound (a black-holed host blocks the constructor); ``subscribe()`` spins
  forever on a dead object; ``exit()`` waits for the server's close frame and joins nothing.  The
  subclass connects once, wakes on stop, bounds the TCP connect with ``SO_SNDTIMEO`` (Linux), sends
  subscriptions without waiting, and its ``exit()`` never blocks; joining is done here, within budgets.
* pybit merges ticker deltas itself and hands the mutated dict on as ``type: "snapshot"``; bypassing its
  parser keeps the raw frames, which :class:`~gridbot.normalize.bybit.TickerMerger` merges.
"""

from __future__ import annotations

import json
import logging
import random
import select
import socket
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final
from uuid import uuid4

from pybit.exceptions import FailedRequestError, InvalidRequestError, UnauthorizedExceptionError
from pybit.unified_trading import HTTP, WebSocket
from websocket import WebSocketApp, WebSocketException

from gridbot._credentials import Credentials, MaskedAttribute, mask_attribute
from gridbot.adapters._base import Channel, Decoded, LinkState, Sink
from gridbot.adapters._http import mount_abortable
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError, NormalizationError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.normalize import Ignored
from gridbot.normalize.bybit import (
    TickerMerger,
    fills_from_rest,
    orders_from_rest,
    parse_private_message,
    positions_from_rest,
    wallets_from_rest,
)
from gridbot.stats import Counters

__all__ = ["BybitAdapter", "BybitTimings"]

logger = logging.getLogger(__name__)

_MAINNET_WS: Final = "wss://stream.bybit.com"
_TESTNET_WS: Final = "wss://stream-testnet.bybit.com"
_DEMO_WS: Final = "wss://stream-demo.bybit.com"
_DEMO_TESTNET_WS: Final = "wss://stream-demo-testnet.bybit.com"  # pybit's DEMO_SUBDOMAIN_TESTNET
_PRIVATE_PATH: Final = "/v5/private"
_PUBLIC_PATH: Final = "/v5/public/linear"
_PRIVATE_TOPICS: Final = ("position", "order", "execution", "wallet")
_TICKER_PREFIX: Final = "tickers."
_AUTH_RET_CODES: Final = frozenset({10003, 10004, 10005, 33004})
_ORDER_SLOT_CAPACITY: Final = 50_000
_ORDERS_PAGE_LIMIT: Final = 50
_MAX_ORDER_PAGES: Final = 1_000
_EXECUTIONS_LIMIT: Final = 100  # execution/list: "[1, 100]. Default: 50"
_EXECUTIONS_WINDOW_MS: Final = 7 * 24 * 3600 * 1000  # "endTime - startTime <= 7 days"
_MAX_EXECUTION_PAGES: Final = 1_000
_AUTH_EXPIRE_SECONDS: Final = 10  # pybit's default of 1 s fails on a little clock skew


@dataclass(frozen=True, slots=True)
class BybitTimings:
    """Supervision timings (seconds).  Defaults follow Bybit's advice: a text ping every 20 s."""

    ping_interval: float = 20.0
    pong_timeout: float = 10.0
    connect_timeout: float = 10.0
    ack_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    join_grace: float = 2.0


# ---------------------------------------------------------------------------------------------- internals


class _ConnectFailed(Exception):
    """A socket could not be connected, or lost its connection before it was live."""


class _AuthRejected(Exception):
    """The private socket's auth answer said ``success: false``."""


class _SubscribeRejected(Exception):
    """The server refused a subscription."""


class _Stopped(Exception):
    """``close()`` was called while a socket was being built."""


def _backoff_delay(attempt: int, initial: float, cap: float, jitter: float) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): doubling up to ``cap``, scaled by ``jitter``."""
    return min(cap, initial * (2.0 ** min(attempt, 30))) * jitter


def _send_timeout_sockopt(seconds: float) -> list[tuple[int, int, bytes]]:
    """``SO_SNDTIMEO``: on Linux it also bounds a blocking ``connect()``, which websocket-client cannot."""
    if not sys.platform.startswith("linux"):
        return []
    whole = int(seconds)
    return [(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _BybitSocket(WebSocket):  # type: ignore[misc]  # pybit is untyped
    """One pybit socket for one connection: per-instance URL, one connect attempt, no pybit reconnect.

    Overrides (pybit 5.17.0 ``_websocket_stream.py``): ``_connect`` (URL, bounded wait, thread name,
    no retries), ``_on_message`` / ``_on_error`` / ``_on_close`` / ``_on_open`` / ``_on_pong`` (never raise,
    record state), ``_send_initial_ping`` (the owner pings), ``exit`` (close without waiting).  All state
    below is guarded by the owner's condition.
    """

    subscriptions: dict[str, str]  # pybit's record: req_id -> subscribe request text
    api_secret = MaskedAttribute("api_secret")

    def __init__(
        self,
        *,
        owner: BybitAdapter,
        channel: Channel,
        url: str,
        initial: Sequence[Sequence[str]],
        deadline: float,
        api_key: str | None,
        api_secret: str | None,
    ) -> None:
        self._gb_owner = owner
        self._gb_channel: Channel = channel
        self._gb_url = url
        self._gb_initial = [list(topics) for topics in initial]
        self._gb_deadline = deadline
        self._gb_opened = False
        self._gb_closed = False
        self._gb_close_reason = ""
        self._gb_error: BaseException | None = None
        self._gb_auth: bool | None = None if channel == "private" else True
        self._gb_auth_detail = ""
        self._gb_pending: dict[str, list[str]] = {}
        self._gb_initial_ids: set[str] = set()
        self._gb_rejections: list[tuple[tuple[str, ...], str]] = []
        self._gb_forward = True
        self._gb_last_rx = time.monotonic()
        self._gb_ping_at: float | None = None
        owner._register(self)
        try:
            self._gb_init_pybit(owner, channel, api_key, api_secret)
        except BaseException:
            if self.gb_join(0.0):
                owner._unregister(self)
            raise

    def _gb_init_pybit(
        self, owner: BybitAdapter, channel: Channel, api_key: str | None, api_secret: str | None
    ) -> None:
        super().__init__(
            "private" if channel == "private" else "linear",
            api_key=api_key,
            api_secret=api_secret,
            testnet=False,
            demo=False,
            callback_function=self._gb_deliver,
            retries=1,
            restart_on_error=False,
            ping_interval=owner.timings.ping_interval,
            ping_timeout=owner.timings.pong_timeout,
            private_auth_expire=_AUTH_EXPIRE_SECONDS,
        )

    def __repr__(self) -> str:
        return f"<_BybitSocket {self._gb_channel} {self._gb_url}>"

    # ------------------------------------------------------------------ pybit overrides

    def _connect(self, url: str) -> None:
        """pybit's ``_connect`` for one attempt: start the app thread, wait (bounded, abortable) for the
        open, then authenticate and subscribe without waiting for answers (read in ``_on_message``)."""
        owner = self._gb_owner
        if owner._stop.is_set():
            raise _Stopped
        self.attempting_connection = True
        self.endpoint = self._gb_url
        app = WebSocketApp(
            url=self._gb_url,
            on_open=lambda _ws: self._on_open(),
            on_message=lambda _ws, message: self._on_message(message),
            on_error=lambda _ws, error: self._on_error(error),
            on_close=lambda _ws, *_args: self._on_close(),
            on_pong=lambda _ws, *_args: self._on_pong(),
        )
        self.ws = app
        self.wst = threading.Thread(
            target=self._gb_run, args=(app,), name=f"gridbot-bybit-{self._gb_channel}-ws", daemon=True
        )
        self.wst.start()
        with owner._cond:
            owner._cond.wait_for(
                lambda: self._gb_opened or self._gb_closed or owner._stop.is_set(),
                timeout=max(0.0, self._gb_deadline - time.monotonic()),
            )
            opened = self._gb_opened and not self._gb_closed
            error = self._gb_error
        if owner._stop.is_set():
            self._gb_abandon()
            raise _Stopped
        if not opened:
            self._gb_abandon()
            if error is None:
                raise _ConnectFailed(f"timed out connecting to {self._gb_url}")
            raise _ConnectFailed(f"could not connect to {self._gb_url}: {_describe(error)}") from error
        try:
            if self.api_key and self.api_secret:
                self._auth()
            for topics in self._gb_initial:
                self.gb_subscribe(topics, initial=True)
        except Exception as exc:
            self._gb_abandon()
            raise _ConnectFailed(
                f"{self._gb_url}: connection lost while subscribing: {_describe(exc)}"
            ) from exc
        self.attempting_connection = False

    def _on_open(self) -> None:
        # websocket-client's teardown only closes the fd of a socket it still thinks connected; one
        # that exit() shut down stays open until garbage collection.  Kept here, closed by _gb_run.
        self._gb_core = getattr(getattr(self, "ws", None), "sock", None)
        with self._gb_owner._cond:
            self._gb_opened = True
            self._gb_last_rx = time.monotonic()
            self._gb_owner._changed()

    def _on_message(self, message: Any) -> None:
        """Replaces pybit's ``json.loads`` + ``_handle_incoming_message``: forward at once, never raise."""
        try:
            self._gb_last_rx = time.monotonic()
            try:
                msg = json.loads(message)
            except ValueError as exc:
                # One bad frame is no reason to drop the connection (and open a gap): count and skip it.
                self._gb_owner._counters.add("bad_messages")
                logger.error("Bybit %s socket: dropped an unreadable frame (%s); raw=%.200r",
                             self._gb_channel, exc, message)
                return
            if isinstance(msg, dict) and self._gb_control(msg):
                return
            if self._gb_forward:
                self.callback(msg)
        except Exception:
            logger.exception("Bybit %s socket: error while handling a frame", self._gb_channel)

    def _on_error(self, error: Any) -> None:
        """pybit re-raises unknown errors here (and reconnects on known ones); only record the loss."""
        try:
            with self._gb_owner._cond:
                if self._gb_error is None and isinstance(error, BaseException):
                    self._gb_error = error
            self._gb_mark_closed(_describe(error) if isinstance(error, BaseException) else str(error))
        except Exception:
            logger.exception("Bybit %s socket: error in the error hook", self._gb_channel)

    def _on_close(self) -> None:
        try:
            self._gb_mark_closed("connection closed")
        except Exception:
            logger.exception("Bybit %s socket: error in the close hook", self._gb_channel)

    def _on_pong(self) -> None:
        self._gb_last_rx = time.monotonic()

    def _send_initial_ping(self) -> None:
        """pybit starts a Timer thread per connection here; the owner's supervisor sends the text pings."""

    def exit(self) -> None:
        """pybit's ``exit()`` closes the app (which closes the fd at once) and then waits for ``ws.sock`` to
        clear.  Closing the fd can swallow the wake-up of the reader's epoll, leaving it asleep for its
        10 s select timeout.  Instead: stop the read loop, send the close frame, shut the raw socket down
        (the reader wakes at EOF and tears down itself).  Never waits; joining is the owner's job."""
        self.exited = True
        self._stop_custom_ping_timer()
        app = getattr(self, "ws", None)
        if app is None:
            return
        app.keep_running = False
        core = getattr(app, "sock", None)
        if core is None:
            return
        raw = getattr(core, "sock", None)
        if raw is None:
            return  # still in TCP connect: SO_SNDTIMEO ends it; a later exit() call shuts it
        if getattr(core, "connected", False):
            self._gb_send_close_frame(core, raw)
        try:
            raw.shutdown(socket.SHUT_RDWR)  # also releases a send blocked on a peer that stopped reading
        except OSError as exc:
            logger.debug("Bybit %s socket already shut: %s", self._gb_channel, exc)

    def _gb_send_close_frame(self, core: Any, raw: Any) -> None:
        """Best effort and never blocking: websocket-client's sends hold a non-reentrant lock and retry
        EAGAIN with an unbounded select, so only send when nobody is sending and the socket has room."""
        lock = getattr(core, "lock", None)
        if lock is None or not lock.acquire(blocking=False):
            return
        lock.release()
        try:
            _readable, writable, _errors = select.select([], [raw], [], 0)
            if writable:
                core.send_close()
        except (WebSocketException, OSError, ValueError) as exc:
            logger.debug("Bybit %s socket: close frame not sent: %s", self._gb_channel, exc)

    # ------------------------------------------------------------------ used by the owner

    def gb_subscribe(self, topics: Sequence[str], *, initial: bool = False) -> None:
        """Send one subscribe request and record it in pybit's ``subscriptions`` (never waits for the
        socket like pybit's ``subscribe()``; a dead socket raises at once)."""
        req_id = str(uuid4())
        text = json.dumps({"op": "subscribe", "req_id": req_id, "args": list(topics)})
        with self._gb_owner._cond:
            self._gb_pending[req_id] = list(topics)
            if initial:
                self._gb_initial_ids.add(req_id)
            # Rebound, never mutated in place: pybit iterates it from other code paths.
            self.subscriptions = {**self.subscriptions, req_id: text}
        try:
            self.ws.send(text)
        except Exception as exc:
            self._gb_mark_closed(f"send failed: {_describe(exc)}")
            raise

    def gb_unsubscribe(self, topic: str) -> None:
        """Unsubscribe one topic and drop it from pybit's ``subscriptions`` at once.  (pybit's own
        ``unsubscribe`` matches by substring, unsubscribes every topic of the request, and only forgets
        it when the answer arrives through the parser bypassed here.)"""
        with self._gb_owner._cond:
            subscriptions = dict(self.subscriptions)
            for req_id, text in self.subscriptions.items():
                args = list(json.loads(text).get("args", []))
                if topic not in args:
                    continue
                remaining = [arg for arg in args if arg != topic]
                if remaining:
                    subscriptions[req_id] = json.dumps(
                        {"op": "subscribe", "req_id": req_id, "args": remaining}
                    )
                else:
                    del subscriptions[req_id]
            if subscriptions == self.subscriptions:
                return
            self.subscriptions = subscriptions
        text = json.dumps({"op": "unsubscribe", "req_id": str(uuid4()), "args": [topic]})
        try:
            self.ws.send(text)
        except Exception as exc:
            self._gb_mark_closed(f"send failed: {_describe(exc)}")
            raise

    def gb_topics(self) -> set[str]:
        """Topics in pybit's subscription record (sent, acknowledged or not)."""
        return set(self.get_subscription_topics())

    def gb_ping(self, now: float) -> None:
        """Bybit's application-level heartbeat ``{"op": "ping"}``."""
        try:
            self.ws.send(self.custom_ping_message)
        except (WebSocketException, OSError) as exc:
            self._gb_mark_closed(f"ping failed: {_describe(exc)}")
            return
        with self._gb_owner._cond:
            if self._gb_ping_at is None or self._gb_last_rx >= self._gb_ping_at:
                self._gb_ping_at = now

    def gb_settled(self) -> bool:
        """Auth answered (private) and every initial subscription answered."""
        return self._gb_auth is not None and not (self._gb_initial_ids & self._gb_pending.keys())

    def gb_live(self) -> bool:
        return (
            self._gb_opened
            and not self._gb_closed
            and not self.exited
            and self._gb_auth is True
            and self.gb_settled()
            and bool(self.is_connected())
        )

    def gb_dead_reason(self, now: float, pong_timeout: float) -> str | None:
        """Why this object can no longer deliver frames, or None while it looks healthy."""
        if self._gb_closed:
            return self._gb_close_reason or "connection closed"
        if self.exited:
            return "socket exited"
        thread = getattr(self, "wst", None)
        if thread is None or not thread.is_alive():
            return "socket thread ended"
        if not self.is_connected():
            return "socket not connected"
        ping_at = self._gb_ping_at
        if ping_at is not None and self._gb_last_rx < ping_at and now - ping_at > pong_timeout:
            return f"no answer to ping within {pong_timeout:g} s"
        return None

    def gb_stop(self, deadline: float, interrupted: Callable[[], bool] | None = None) -> bool:
        """Exit and join the app thread until ``deadline``; True once it has ended.  ``exit()`` is repeated
        while waiting: a thread that was still starting (or connecting) when first told is told again."""
        while True:
            self.exit()
            if self.gb_join(min(0.05, max(0.0, deadline - time.monotonic()))):
                return True
            if time.monotonic() >= deadline or (interrupted is not None and interrupted()):
                return False

    def gb_join(self, timeout: float) -> bool:
        """Join the app thread; True when it has ended (or never started)."""
        thread = getattr(self, "wst", None)
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(max(0.0, timeout))
        return not thread.is_alive()

    # ------------------------------------------------------------------ internals

    def _gb_run(self, app: Any) -> None:
        """The app thread: websocket-client's read loop; websocket pings off (the owner pings).

        ``skip_utf8_validation``: websocket-client otherwise validates every text frame's UTF-8 in pure
        Python (most of the CPU a busy socket costs); frames then arrive as bytes and ``json.loads``
        rejects bad UTF-8 itself (counted and skipped in ``_on_message``, like any unreadable frame)."""
        try:
            budget = min(self._gb_owner.timings.connect_timeout, self._gb_deadline - time.monotonic())
            app.run_forever(ping_interval=0, sockopt=_send_timeout_sockopt(max(1.0, budget)),
                            skip_utf8_validation=True)
        except Exception:
            logger.exception("Bybit %s socket: read loop failed", self._gb_channel)
        finally:
            self._gb_close_fd()
            self._gb_mark_closed("socket thread ended")

    def _gb_close_fd(self) -> None:
        """The read loop is over: nobody else uses this connection's fd any more; close it now."""
        core = getattr(self, "_gb_core", None)
        try:
            if core is not None:
                core.shutdown()
        except Exception:
            logger.exception("Bybit %s socket: closing its fd failed", self._gb_channel)

    def _gb_deliver(self, msg: Any) -> None:
        """pybit's ``callback``: hand the raw frame to the sink, nothing else."""
        try:
            self._gb_owner._sink.frame(self._gb_channel, msg)
        except Exception:
            logger.exception("Bybit %s: the sink raised on a frame", self._gb_channel)

    def _gb_mark_closed(self, reason: str) -> None:
        with self._gb_owner._cond:
            if not self._gb_closed:
                self._gb_closed = True
                self._gb_close_reason = self._gb_owner._scrub(reason)
            self._gb_owner._changed()

    def _gb_abandon(self) -> None:
        self.gb_stop(time.monotonic() + min(self._gb_owner.timings.join_grace, 1.0))

    def _gb_control(self, msg: Mapping[str, Any]) -> bool:
        """Read auth/subscribe answers; True for a pong (dropped, as pybit drops it)."""
        op = msg.get("op")
        if msg.get("ret_msg") == "pong" or op == "pong":
            return True
        if op == "auth" or msg.get("type") == "AUTH_RESP":
            self._gb_on_auth(msg)
        elif op == "subscribe" or msg.get("type") == "COMMAND_RESP":
            self._gb_on_subscribed(msg)
        elif op == "unsubscribe" and msg.get("success") is not True:
            logger.warning("Bybit %s: unsubscribe refused: %s", self._gb_channel, msg.get("ret_msg"))
        return False

    def _gb_on_auth(self, msg: Mapping[str, Any]) -> None:
        with self._gb_owner._cond:
            self._gb_auth = msg.get("success") is True
            self._gb_auth_detail = self._gb_owner._scrub(str(msg.get("ret_msg") or ""))
            self._gb_owner._changed()

    def _gb_on_subscribed(self, msg: Mapping[str, Any]) -> None:
        rejected: tuple[str, ...] | None = None
        reason = ""
        with self._gb_owner._cond:
            req_id = msg.get("req_id")
            if isinstance(req_id, str) and req_id in self._gb_pending:
                topics = self._gb_pending.pop(req_id)
            elif self._gb_pending:  # answer without our req_id (private acks): the oldest request
                req_id, topics = next(iter(self._gb_pending.items()))
                del self._gb_pending[req_id]
            else:
                return
            if msg.get("success") is not True:
                rejected = tuple(topics)
                reason = self._gb_owner._scrub(str(msg.get("ret_msg") or "subscription refused"))
                self._gb_rejections.append((rejected, reason))
                # Forgotten and marked refused in one step, or the supervisor would resubscribe it.
                self.subscriptions = {k: v for k, v in self.subscriptions.items() if k != req_id}
                if self._gb_channel == "public":
                    self._gb_owner._rejected_topics.update(rejected)
            self._gb_owner._changed()
        if rejected is not None:
            logger.error(
                "Bybit refused the %s subscription to %s: %s", self._gb_channel, ", ".join(rejected), reason
            )


@dataclass(slots=True, eq=False)
class _Link:
    """One channel's current socket and what the stream was last told about it."""

    channel: Channel
    current: _BybitSocket | None = None
    reported_up: bool = True
    failed: bool = False
    last_ping: float = 0.0
    thread: threading.Thread | None = None


# ---------------------------------------------------------------------------------------------- adapter


class BybitAdapter:
    """Bybit v5 linear: private socket (position, order, execution, wallet), public ``tickers.<SYM>``,
    REST seed.  See :class:`gridbot.adapters._base.Adapter` for the contract."""

    exchange = "bybit"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        testnet: bool,
        demo: bool,
        endpoints: Endpoints | None,
        sink: Sink,
        counters: Counters,
        timings: BybitTimings | None = None,
    ) -> None:
        self._credentials = Credentials(api_key, api_secret)
        self._testnet = testnet
        self._demo = demo
        self._endpoints = endpoints
        self._sink = sink
        self._counters = counters
        self.timings = timings or BybitTimings()
        self._urls: dict[Channel, str] = _ws_urls(testnet=testnet, demo=demo, endpoints=endpoints)
        # One attempt per request, no sleeping between attempts (pybit would sleep 3 s per retry,
        # uninterruptibly): the stream retries failed seeds and resyncs itself, with backoff.
        self._http = HTTP(testnet=testnet, demo=demo, api_key=api_key, api_secret=api_secret,
                          max_retries=1, retry_delay=0)
        mask_attribute(self._http, "api_secret")  # pybit's HTTP is a dataclass: its repr printed it
        if endpoints is not None:
            self._http.endpoint = endpoints.rest  # per instance: pybit builds every URL from it
        self._transport = mount_abortable(getattr(self._http, "client", None))
        self._cond = threading.Condition(threading.RLock())
        self._stop = threading.Event()
        self._version = 0
        self._state = "idle"  # idle -> open -> closed
        self._symbols: set[str] = set()
        self._rejected_topics: set[str] = set()
        self._links: dict[Channel, _Link] = {"private": _Link("private"), "public": _Link("public")}
        self._sockets: list[_BybitSocket] = []
        self._merger = TickerMerger()
        self._merger_resets: list[str | None] = []
        self._order_slots: OrderedDict[str, int] = OrderedDict()
        self._rng = random.Random()

    def __repr__(self) -> str:
        return (
            f"BybitAdapter(testnet={self._testnet}, demo={self._demo}, endpoints={self._endpoints!r}, "
            f"state={self._state!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def open(self, symbols: Collection[str], timeout: float) -> None:
        """Connect and authenticate the private socket, connect the public one, subscribe, and return
        once every auth/subscribe answer is in.  On failure everything started is stopped first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._state != "idle":
                raise GridbotError(f"BybitAdapter.open() called in state {self._state!r}")
            self._state = "opening"
            self._symbols.update(symbols)  # add_symbol() may already have added some (subscribe during start)
            self._rejected_topics.clear()
        try:
            sockets = self._open_sockets(deadline, timeout)
        except Exception as exc:
            self._shutdown(time.monotonic() + self.timings.join_grace)
            with self._cond:
                self._state = "idle"
                self._stop.clear()
            raise self._translate(exc, "Bybit: opening the streams") from exc
        with self._cond:
            closed_meanwhile = self._state == "closed"
        if closed_meanwhile:  # close() ran while the sockets were settling: they stay closed
            self._shutdown(time.monotonic() + self.timings.join_grace)
            raise ConnectError("Bybit: opening the streams: stopped by close()")
        with self._cond:
            for channel, sock in sockets.items():
                link = self._links[channel]
                link.current, link.reported_up, link.failed = sock, True, False
                link.last_ping = time.monotonic()
            self._state = "open"
        for link in self._links.values():
            link.thread = threading.Thread(
                target=self._supervise,
                args=(link,),
                name=f"gridbot-bybit-{link.channel}-supervisor",
                daemon=True,
            )
            link.thread.start()

    def close(self, timeout: float) -> None:
        """Stop supervisors and sockets and join every thread started, within ``timeout``; idempotent
        (a second call only retries joining what the first could not)."""
        deadline = time.monotonic() + timeout
        if self._transport is not None:
            self._transport.abort()  # a seed or resync request in flight ends now
            self._http.client.close()
        with self._cond:
            if self._state == "idle":
                return
            self._state = "closed"
        self._shutdown(deadline)

    @property
    def connected(self) -> bool:
        with self._cond:
            if self._state != "open":
                return False
            return all(link.current is not None and link.current.gb_live() for link in self._links.values())

    def add_symbol(self, symbol: str) -> None:
        """Ask the public supervisor to subscribe ``tickers.<symbol>`` (it never blocks the caller; a dead
        socket is rebuilt with the whole symbol set instead)."""
        with self._cond:
            self._symbols.add(symbol)
            self._rejected_topics.discard(_TICKER_PREFIX + symbol)
            self._changed()

    def remove_symbol(self, symbol: str) -> None:
        with self._cond:
            self._symbols.discard(symbol)
            self._rejected_topics.discard(_TICKER_PREFIX + symbol)
            self._merger_resets.append(symbol)
            self._changed()

    # ------------------------------------------------------------------ REST

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        """Positions per symbol, the wallet (optional) and the open linear USDT orders of ``symbols``."""
        events: list[Event] = []
        for symbol in symbols:
            response = self._rest("position/list", self._http.get_positions, category="linear", symbol=symbol)
            events.extend(positions_from_rest(response))
        if include_wallet:
            response = self._rest(
                "account/wallet-balance", self._http.get_wallet_balance, accountType="UNIFIED"
            )
            events.extend(wallets_from_rest(response))
        if symbols:
            wanted = set(symbols)
            orders = [order for order in self._open_orders() if order.symbol in wanted]
            self._remember_orders(orders)
            events.extend(orders)
        return events

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> None:
        """Bybit sends its account figures (the wallet topic's account fields): nothing to fetch."""
        return None

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        """Final states of orders that left the open orders while disconnected.

        ``/v5/order/realtime`` by ``orderId`` answers in real time for open and the 500 most recent closed
        orders; ``/v5/order/history`` (asynchronous, may lag) is asked only when realtime does not know the
        order.  A failing history lookup leaves that order out (logged) rather than failing the resync;
        rejected keys still raise.
        """
        found: list[Event] = []
        for order in orders:
            rows = self._order_by_id("order/realtime", self._http.get_open_orders, order)
            if not rows:
                rows = self._order_from_history(order)
            self._remember_orders(rows)
            found.extend(rows)
        return found

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """``GET /v5/execution/list`` (category linear) of ``symbol`` in windows of at most 7 days, each
        paged by ``nextPageCursor`` until it is empty (the end-of-data signal is not documented: an
        empty or absent cursor ends the window; a repeated one is an error).  Trade, BustTrade and
        AdlTrade rows, deduplicated by ``execId``, oldest first; ``position_idx`` from the order when
        this adapter has seen it (as for pushed executions)."""
        found: dict[str, FillUpdate] = {}
        start = since_ms
        while start <= until_ms:
            end = min(until_ms, start + _EXECUTIONS_WINDOW_MS)
            for fill in self._executions_window(symbol, start, end):
                if fill.symbol == symbol and start <= fill.timestamp <= end:
                    found[fill.trade_id] = fill
            start = end + 1
        ordered = sorted(found.values(),
                         key=lambda f: (f.timestamp, -1 if f.seq is None else f.seq, f.trade_id))
        with_slots = self._with_fill_slots(list[Event](ordered))
        return [event for event in with_slots if isinstance(event, FillUpdate)]

    def _executions_window(self, symbol: str, start: int, end: int) -> list[FillUpdate]:
        fills: list[FillUpdate] = []
        cursor = ""
        seen: set[str] = set()
        for _page in range(_MAX_EXECUTION_PAGES):
            params: dict[str, Any] = {"category": "linear", "symbol": symbol, "startTime": start,
                                      "endTime": end, "limit": _EXECUTIONS_LIMIT}
            if cursor:
                params["cursor"] = cursor
            response = self._rest("execution/list", self._http.get_executions, **params)
            fills.extend(fills_from_rest(response))
            result = response.get("result")
            cursor = str(result.get("nextPageCursor") or "") if isinstance(result, Mapping) else ""
            if not cursor:
                return fills
            if cursor in seen:
                raise GridbotError(f"Bybit GET /v5/execution/list: pagination repeats cursor {cursor!r}")
            seen.add(cursor)
        raise GridbotError(f"Bybit GET /v5/execution/list: more than {_MAX_EXECUTION_PAGES} pages")

    def _order_by_id(self, what: str, call: Callable[..., Any], order: OrderUpdate) -> list[OrderUpdate]:
        response = self._rest(what, call, category="linear", symbol=order.symbol, orderId=order.order_id)
        return [row for row in orders_from_rest(response) if row.order_id == order.order_id]

    def _order_from_history(self, order: OrderUpdate) -> list[OrderUpdate]:
        try:
            return self._order_by_id("order/history", self._http.get_order_history, order)
        except AuthenticationError:
            raise
        except GridbotError as exc:
            logger.warning("Bybit: order history of %s %s unavailable: %s", order.symbol, order.order_id, exc)
            return []

    def _open_orders(self) -> list[OrderUpdate]:
        orders: list[OrderUpdate] = []
        cursor = ""
        seen: set[str] = set()
        for _page in range(_MAX_ORDER_PAGES):
            params: dict[str, Any] = {"category": "linear", "settleCoin": "USDT", "limit": _ORDERS_PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            response = self._rest("order/realtime", self._http.get_open_orders, **params)
            orders.extend(orders_from_rest(response))
            result = response.get("result")
            cursor = str(result.get("nextPageCursor") or "") if isinstance(result, Mapping) else ""
            if not cursor:
                return orders
            if cursor in seen:
                raise GridbotError(f"Bybit GET /v5/order/realtime: pagination repeats cursor {cursor!r}")
            seen.add(cursor)
        raise GridbotError(f"Bybit GET /v5/order/realtime: more than {_MAX_ORDER_PAGES} pages")

    def _rest(self, what: str, call: Callable[..., Any], **params: Any) -> Mapping[str, Any]:
        """One counted request; SDK exceptions and non-zero ``retCode`` become GridbotErrors."""
        self._counters.add("rest_calls")
        try:
            response = call(**params)
        except Exception as exc:
            raise self._translate(exc, f"Bybit GET /v5/{what}") from exc
        if not isinstance(response, Mapping):
            raise GridbotError(f"Bybit GET /v5/{what}: unexpected response type {type(response).__name__}")
        code = response.get("retCode")
        if code != 0:
            message = self._scrub(str(response.get("retMsg")))
            if code in _AUTH_RET_CODES:
                raise AuthenticationError(
                    f"Bybit GET /v5/{what}: API key rejected (retCode {code}: {message})"
                )
            raise GridbotError(f"Bybit GET /v5/{what}: retCode {code}: {message}")
        return response

    # ------------------------------------------------------------------ decoding (stream worker thread)

    def decode(self, channel: Channel, payload: Any) -> Decoded:
        if not isinstance(payload, Mapping):
            raise NormalizationError(f"Bybit {channel} frame is not a JSON object", payload)
        if channel == "private":
            result = parse_private_message(payload)
            if isinstance(result, Ignored):
                return result
            return self._with_fill_slots(result)
        if self._merger_resets:
            self._apply_merger_resets()
        ticker = self._merger.apply(payload)
        return ticker if isinstance(ticker, Ignored) else [ticker]

    def _with_fill_slots(self, events: list[Event]) -> list[Event]:
        """Executions carry no positionIdx: use their order's, when this adapter has seen the order."""
        out: list[Event] = []
        for event in events:
            if isinstance(event, OrderUpdate):
                self._remember_orders((event,))
            elif isinstance(event, FillUpdate):
                slot = self._order_slots.get(event.order_id, 0)
                if slot != event.position_idx:  # one-way accounts (idx 0) need no copy
                    event = replace(event, position_idx=slot)
            out.append(event)
        return out

    def _remember_orders(self, orders: Iterable[Event]) -> None:
        slots = self._order_slots
        for order in orders:
            if isinstance(order, OrderUpdate):
                slots[order.order_id] = order.position_idx
                slots.move_to_end(order.order_id)
        while len(slots) > _ORDER_SLOT_CAPACITY:
            slots.popitem(last=False)

    def _apply_merger_resets(self) -> None:
        with self._cond:
            resets, self._merger_resets = self._merger_resets, []
        for symbol in resets:
            self._merger.reset(symbol)

    # ------------------------------------------------------------------ opening

    def _open_sockets(self, deadline: float, timeout: float) -> dict[Channel, _BybitSocket]:
        sockets: dict[Channel, _BybitSocket] = {
            "private": self._build("private", deadline),
        }
        sockets["public"] = self._build("public", deadline)
        self._await_settled(list(sockets.values()), deadline, timeout)
        for sock in sockets.values():
            self._check_outcome(sock, fatal_rejections=True)
        return sockets

    def _build(self, channel: Channel, deadline: float) -> _BybitSocket:
        with self._cond:
            if channel == "private":
                initial: list[list[str]] = [list(_PRIVATE_TOPICS)]
            else:
                topics = {_TICKER_PREFIX + symbol for symbol in self._symbols} - self._rejected_topics
                initial = [[topic] for topic in sorted(topics)]
        private = channel == "private"
        return _BybitSocket(
            owner=self,
            channel=channel,
            url=self._urls[channel],
            initial=initial,
            deadline=deadline,
            api_key=self._credentials.key if private else None,
            api_secret=self._credentials.secret if private else None,
        )

    def _await_settled(self, sockets: list[_BybitSocket], deadline: float, timeout: float) -> None:
        def done() -> bool:
            if self._stop.is_set() or any(s._gb_auth is False for s in sockets):
                return True
            return all(s._gb_closed or s.gb_settled() for s in sockets)

        with self._cond:
            finished = self._cond.wait_for(done, timeout=max(0.0, deadline - time.monotonic()))
            if self._stop.is_set():
                raise _Stopped
            if finished:
                return
            waiting = [s._gb_channel for s in sockets if not s.gb_settled()]
        raise _ConnectFailed(
            f"timed out after {timeout:g} s waiting for the {' and '.join(waiting)} socket(s) "
            "to confirm authentication/subscriptions"
        )

    def _check_outcome(self, sock: _BybitSocket, *, fatal_rejections: bool) -> None:
        """Raise what went wrong on a settled socket; public ticker refusals are fatal only at open."""
        with self._cond:
            auth, detail = sock._gb_auth, sock._gb_auth_detail
            closed, reason = sock._gb_closed, sock._gb_close_reason
            rejections = list(sock._gb_rejections)
        if auth is False:
            raise _AuthRejected(
                f"Bybit rejected the API key on the private socket ({detail or 'no reason given'})"
            )
        if rejections and (fatal_rejections or sock._gb_channel == "private"):
            text = "; ".join(f"{','.join(topics)}: {why}" for topics, why in rejections)
            raise _SubscribeRejected(f"Bybit refused the {sock._gb_channel} subscription ({text})")
        if closed or not sock.gb_live():
            raise _ConnectFailed(
                f"the {sock._gb_channel} socket closed before it was live ({reason or 'closed'})"
            )

    # ------------------------------------------------------------------ supervision

    def _supervise(self, link: _Link) -> None:
        """Per-channel supervisor: text pings, dead-object detection, rebuild with backoff, ticker sync."""
        while not self._stop.is_set():
            with self._cond:
                seen = self._version
            try:
                wait = self._supervise_once(link)
            except Exception:
                logger.exception("Bybit %s supervisor: unexpected error", link.channel)
                wait = min(1.0, self.timings.ping_interval)
            self._wait_for_change(seen, wait)

    def _wait_for_change(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen or self._stop.is_set(), timeout=timeout)

    def _supervise_once(self, link: _Link) -> float:
        sock = link.current
        if sock is None:
            if link.failed:
                return 3600.0
            self._rebuild(link)
            return 0.0
        now = time.monotonic()
        with self._cond:
            reason = sock.gb_dead_reason(now, self.timings.pong_timeout)
        if reason is not None:
            self._replace(link, sock, reason)
            return 0.0
        if link.channel == "public":
            self._sync_tickers(sock)
        if now - link.last_ping >= self.timings.ping_interval:
            sock.gb_ping(now)
            link.last_ping = now
        wait = link.last_ping + self.timings.ping_interval - now
        ping_at = sock._gb_ping_at
        if ping_at is not None and sock._gb_last_rx < ping_at:
            wait = min(wait, ping_at + self.timings.pong_timeout - now + 0.01)
        return max(0.01, wait)

    def _sync_tickers(self, sock: _BybitSocket) -> None:
        """Make the live public socket's subscriptions match the wanted symbols (add/remove_symbol)."""
        with self._cond:
            wanted = {_TICKER_PREFIX + symbol for symbol in self._symbols} - self._rejected_topics
            have = {topic for topic in sock.gb_topics() if topic.startswith(_TICKER_PREFIX)}
        for topic in sorted(wanted - have):
            sock.gb_subscribe([topic])
        for topic in sorted(have - wanted):
            sock.gb_unsubscribe(topic)

    def _replace(self, link: _Link, sock: _BybitSocket, reason: str) -> None:
        logger.warning("Bybit %s socket lost (%s); reconnecting", link.channel, reason)
        with self._cond:
            sock._gb_forward = False
            link.current = None
            was_up, link.reported_up = link.reported_up, False
            if link.channel == "public":
                self._merger_resets.append(None)  # the new connection starts with fresh snapshots
        if was_up:
            self._report(link.channel, "down", reason)
        self._dispose(link, sock)
        self._rebuild(link)

    def _rebuild(self, link: _Link) -> None:
        attempt = 0
        while not self._stop.is_set():
            delay = _backoff_delay(
                attempt, self.timings.backoff_initial, self.timings.backoff_max, self._rng.uniform(0.5, 1.0)
            )
            if self._stop.wait(delay):
                return
            sock: _BybitSocket | None = None
            try:
                deadline = time.monotonic() + self.timings.connect_timeout
                sock = self._build(link.channel, deadline)
                self._await_settled([sock], deadline + self.timings.ack_timeout, self.timings.ack_timeout)
                self._check_outcome(sock, fatal_rejections=False)
            except _Stopped:
                if sock is not None:
                    self._dispose(link, sock)
                return
            except _AuthRejected as exc:
                # Keys revoked (or IP no longer allowed): say so once, then keep trying with backoff,
                # so the stream recovers by itself when they work again.
                if sock is not None:
                    self._dispose(link, sock)
                attempt += 1
                if not link.failed:
                    self._fail(link, f"{exc}; retrying with backoff until the keys work again")
                continue
            except _SubscribeRejected as exc:
                if sock is not None:
                    self._dispose(link, sock)
                self._fail(link, str(exc))
                return
            except (_ConnectFailed, WebSocketException, OSError) as exc:
                attempt += 1
                logger.warning("Bybit %s reconnect attempt %d failed: %s", link.channel, attempt, exc)
                if sock is not None:
                    self._dispose(link, sock)
                continue
            with self._cond:
                if self._stop.is_set():
                    stopped = True
                else:
                    stopped = False
                    link.current, link.reported_up, link.last_ping = sock, True, time.monotonic()
                    link.failed = False
            if stopped:
                self._dispose(link, sock)
                return
            logger.info("Bybit %s socket reconnected after %d attempt(s)", link.channel, attempt + 1)
            self._report(link.channel, "up", f"reconnected after {attempt + 1} attempt(s)")
            return

    def _fail(self, link: _Link, detail: str) -> None:
        logger.error("Bybit %s socket failed: %s", link.channel, detail)
        with self._cond:
            link.failed = True
        self._report(link.channel, "failed", detail)

    def _dispose(self, link: _Link, sock: _BybitSocket) -> None:
        """Exit an old socket and join its thread briefly; a thread that lingers is joined by close()."""
        with self._cond:
            sock._gb_forward = False
        if sock.gb_stop(time.monotonic() + self.timings.join_grace, self._stop.is_set):
            self._unregister(sock)
        elif not self._stop.is_set():
            logger.warning("Bybit %s: old socket thread still running; close() will join it", link.channel)

    def _shutdown(self, deadline: float) -> None:
        """Stop everything; join supervisors then socket threads until ``deadline``."""
        with self._cond:
            self._stop.set()
            self._changed()
            sockets = list(self._sockets)
        for sock in sockets:
            sock.exit()
        for link in self._links.values():
            if link.thread is not None and link.thread is not threading.current_thread():
                link.thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.exit()  # sockets registered by a supervisor after the first pass
        lingering = [sock for sock in sockets if not sock.gb_stop(deadline)]
        with self._cond:
            self._sockets = lingering
            for link in self._links.values():
                link.current = None
        alive = [
            link.channel
            for link in self._links.values()
            if link.thread is not None and link.thread.is_alive()
        ]
        if lingering or alive:
            logger.warning(
                "Bybit: %d socket thread(s) and supervisor(s) %s still running after the close budget",
                len(lingering),
                alive,
            )

    # ------------------------------------------------------------------ hooks for _BybitSocket

    def _register(self, sock: _BybitSocket) -> None:
        with self._cond:
            if self._stop.is_set():
                raise _Stopped
            self._sockets.append(sock)

    def _unregister(self, sock: _BybitSocket) -> None:
        with self._cond:
            if sock in self._sockets:
                self._sockets.remove(sock)

    def _changed(self) -> None:
        """Wake every waiter (callers hold or take the condition; cheap, never blocks for long)."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _report(self, channel: Channel, state: LinkState, detail: str) -> None:
        try:
            self._sink.link(channel, state, self._scrub(detail))
        except Exception:
            logger.exception("Bybit %s: the sink raised on a link change", channel)

    # ------------------------------------------------------------------ errors

    def _scrub(self, text: str) -> str:
        """Mask the key and secret wherever foreign text might echo them."""
        return self._credentials.redact(text)

    def _translate(self, exc: BaseException, what: str) -> GridbotError:
        """The one place SDK and socket exceptions become gridbot errors (callers ``raise ... from exc``)."""
        if isinstance(exc, GridbotError):
            return exc
        text = self._scrub(_describe(exc))
        if isinstance(exc, _AuthRejected):
            return AuthenticationError(f"{what}: {self._scrub(str(exc))}")
        if isinstance(exc, UnauthorizedExceptionError):
            return AuthenticationError(f"{what}: API key or secret missing")
        if isinstance(exc, InvalidRequestError):
            code = exc.status_code
            message = self._scrub(str(exc.message))
            if code in _AUTH_RET_CODES:
                return AuthenticationError(f"{what}: API key rejected (retCode {code}: {message})")
            return GridbotError(f"{what}: retCode {code}: {message}")
        if isinstance(exc, FailedRequestError):
            message = self._scrub(str(exc.message))
            if exc.status_code == 401:
                return AuthenticationError(f"{what}: HTTP 401: {message}")
            return ConnectError(f"{what}: HTTP {exc.status_code}: {message}")
        if isinstance(exc, (_ConnectFailed, _SubscribeRejected)):
            return ConnectError(f"{what}: {self._scrub(str(exc))}")
        if isinstance(exc, _Stopped):
            return ConnectError(f"{what}: stopped by close()")
        if isinstance(exc, (OSError, WebSocketException)):  # requests' exceptions are OSErrors
            return ConnectError(f"{what}: {text}")
        return GridbotError(f"{what}: {text}")


def _ws_urls(*, testnet: bool, demo: bool, endpoints: Endpoints | None) -> dict[Channel, str]:
    """Socket URLs: ``endpoints.ws`` when given; else Bybit's hosts (demo: private on the demo host,
    public on the real one, which is what Bybit's demo trading documents)."""
    if endpoints is not None:
        private_host = public_host = endpoints.ws
    else:
        public_host = _TESTNET_WS if testnet else _MAINNET_WS
        if demo:
            private_host = _DEMO_TESTNET_WS if testnet else _DEMO_WS
        else:
            private_host = public_host
    return {"private": private_host + _PRIVATE_PATH, "public": public_host + _PUBLIC_PATH}
