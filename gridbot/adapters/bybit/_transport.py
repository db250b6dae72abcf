"""The only code touching pybit's ``WebSocket`` and websocket-client internals: the Bybit transport of
the shared supervisor (:mod:`gridbot.adapters._supervisor`), one :class:`BybitSocket` per connection.

What pybit 5.17.0 does on its own, and what this module does about it (DESIGN §3):

* An exception on a socket thread (a callback, ``_process_auth_message`` on a rejected key, the KeyError of
  an unknown topic in ``_process_normal_message``) closes the socket for good and nobody is told.
  :class:`BybitSocket` therefore replaces pybit's message path (``_on_message`` and the ``callback_function``
  seam) so nothing of pybit's parsing runs: every frame goes to the supervisor's attempt at once,
  auth/subscribe answers are read here, and every hook catches everything.
* Reconnects happen inside pybit's ``_on_error`` on the dying thread, immediately (no backoff), ten times,
  then stop silently; a concurrent ``exit()`` does not stop that loop.  pybit's own reconnect is switched
  off (``restart_on_error=False``, one attempt): each socket object lives for one connection and reports
  ``closed``; the supervisor rebuilds it with the whole subscription set, backoff and jitter.
* ``_connect`` waits without a bound (a black-holed host blocks the constructor); ``subscribe()`` spins
  forever on a dead object; ``exit()`` waits for the server's close frame and joins nothing.  The
  subclass connects once, gives up when the supervisor retires the attempt, bounds the TCP connect with
  ``SO_SNDTIMEO`` (Linux), sends subscriptions without waiting, and its ``exit()`` never blocks.
* pybit merges ticker deltas itself and hands the mutated dict on as ``type: "snapshot"``; bypassing its
  parser keeps the raw frames, which the stream's decoder merges.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from uuid import uuid4

from pybit.unified_trading import WebSocket
from websocket import WebSocketApp, WebSocketException

from gridbot._credentials import Credentials, MaskedAttribute
from gridbot._sdk_versions import check_sdk_versions
from gridbot.adapters._supervisor import Attempt
from gridbot.adapters.bybit._errors import ConnectFailed, Stopped, describe
from gridbot.stats import Counters

__all__ = ["PRIVATE_TOPICS", "BybitSocket", "BybitTransport"]

logger = logging.getLogger(__name__)

PRIVATE_TOPICS: Final = ("position", "order", "execution", "wallet")
_AUTH_EXPIRE_SECONDS: Final = 10  # pybit's default of 1 s fails on a little clock skew
_POLL: Final = 0.02  # how often a blocked connect looks whether the supervisor gave up on it


class BybitTransport:
    """Opens one :class:`BybitSocket` per connection attempt (the supervisor's ``Transport``)."""

    def __init__(self, *, urls: Mapping[Any, str], credentials: Credentials, counters: Counters,
                 connect_timeout: float) -> None:
        check_sdk_versions("bybit")
        self._urls = dict(urls)
        self._credentials = credentials
        self._counters = counters
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._sockets: set[BybitSocket] = set()  # every socket whose thread may still run

    def __repr__(self) -> str:
        return "<BybitTransport (credentials hidden)>"

    def join_all(self, deadline: float) -> list[BybitSocket]:
        """Close and join every socket this transport opened (also those the supervisor never got a
        handle of: an attempt given up while its socket was connecting), until ``deadline``
        (monotonic); returns those still running."""
        with self._lock:
            sockets = list(self._sockets)
        return [sock for sock in sockets if not sock.join(deadline - time.monotonic())]

    def _track(self, sock: BybitSocket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def open(self, channel: str, topics: Sequence[str], events: Attempt) -> BybitSocket:
        """Connect ``channel``'s socket, authenticate (private) and send the subscriptions; the answers
        arrive on ``events`` (``opened`` once every one is in)."""
        private = channel == "private"
        if private:  # one request, in Bybit's documented order
            requests = [sorted(topics, key=lambda t: PRIVATE_TOPICS.index(t) if t in PRIVATE_TOPICS else 99)]
        else:
            requests = [[topic] for topic in topics]
        return BybitSocket(
            channel=channel, url=self._urls[channel], initial=[r for r in requests if r], events=events,
            connect_timeout=self.connect_timeout, counters=self._counters, redact=self._credentials.redact,
            api_key=self._credentials.key if private else None,
            api_secret=self._credentials.secret if private else None, track=self._track,
        )


def _send_timeout_sockopt(seconds: float) -> list[tuple[int, int, bytes]]:
    """``SO_SNDTIMEO``: on Linux it also bounds a blocking ``connect()``, which websocket-client cannot."""
    if not sys.platform.startswith("linux"):
        return []
    whole = int(seconds)
    return [(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))]


class BybitSocket(WebSocket):  # type: ignore[misc]  # pybit is untyped
    """One pybit socket for one connection: per-instance URL, one connect attempt, no pybit reconnect;
    also the supervisor's ``Handle`` (subscribe / unsubscribe / ping / close / join).

    Overrides (pybit 5.17.0 ``_websocket_stream.py``): ``_connect`` (URL, bounded wait, thread name,
    no retries), ``_on_message`` / ``_on_error`` / ``_on_close`` / ``_on_open`` / ``_on_pong`` (never raise,
    report to the attempt), ``_send_initial_ping`` (the supervisor pings), ``exit`` (close without waiting).
    """

    subscriptions: dict[str, str]  # pybit's record: req_id -> subscribe request text
    api_secret = MaskedAttribute("api_secret")

    def __init__(
        self, *, channel: str, url: str, initial: Sequence[Sequence[str]], events: Attempt,
        connect_timeout: float, counters: Counters, redact: Callable[[str], str],
        api_key: str | None, api_secret: str | None,
        track: Callable[[BybitSocket, bool], None] | None = None,
    ) -> None:
        self._gb_channel = channel
        self._gb_track = track
        self._gb_url = url
        self._gb_initial = [list(topics) for topics in initial]
        self._gb_events = events
        self._gb_deadline = time.monotonic() + connect_timeout
        self._gb_counters = counters
        self._gb_redact = redact
        self._gb_lock = threading.Lock()
        self._gb_state = threading.Event()  # set when the socket opened or closed
        self._gb_opened = False
        self._gb_closed = False
        self._gb_error: BaseException | None = None
        self._gb_auth: bool | None = None if channel == "private" else True
        self._gb_pending: dict[str, list[str]] = {}
        self._gb_initial_ids: set[str] = set()
        self._gb_live = False
        try:
            super().__init__(
                "private" if channel == "private" else "linear",
                api_key=api_key, api_secret=api_secret, testnet=False, demo=False,
                callback_function=events.frame, retries=1, restart_on_error=False,
                private_auth_expire=_AUTH_EXPIRE_SECONDS,
            )
        except BaseException:
            self.join(0.0)
            raise

    def __repr__(self) -> str:
        return f"<BybitSocket {self._gb_channel} {self._gb_url}>"

    # ------------------------------------------------------------------ pybit overrides

    def _connect(self, url: str) -> None:
        """pybit's ``_connect`` for one attempt: start the app thread, wait (bounded, abortable) for the
        open, then authenticate and subscribe without waiting for answers (read in ``_on_message``)."""
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
        if self._gb_track is not None:
            self._gb_track(self, True)
        self.wst.start()
        while not self._gb_state.wait(_POLL):
            if self._gb_events.retired:
                self._gb_abandon()
                raise Stopped
            if time.monotonic() >= self._gb_deadline:
                self._gb_abandon()
                raise ConnectFailed(f"timed out connecting to {self._gb_url}")
        with self._gb_lock:
            opened = self._gb_opened and not self._gb_closed
            error = self._gb_error
        if not opened:
            self._gb_abandon()
            if error is None:
                raise ConnectFailed(f"{self._gb_url}: closed before it was live")
            raise ConnectFailed(f"could not connect to {self._gb_url}: {describe(error)}") from error
        try:
            if self.api_key and self.api_secret:
                self._auth()
            for topics in self._gb_initial:
                self.subscribe_now(topics, initial=True)
        except Exception as exc:
            self._gb_abandon()
            raise ConnectFailed(
                f"{self._gb_url}: connection lost while subscribing: {describe(exc)}"
            ) from exc
        self.attempting_connection = False
        if self._gb_events.retired:  # given up while we subscribed: nobody will close this one
            self._gb_abandon()
            raise Stopped
        self._gb_maybe_live()

    def _on_open(self) -> None:
        # websocket-client's teardown only closes the fd of a socket it still thinks connected; one
        # that exit() shut down stays open until garbage collection.  Kept here, closed by _gb_run.
        self._gb_core = getattr(getattr(self, "ws", None), "sock", None)
        with self._gb_lock:
            self._gb_opened = True
        self._gb_state.set()

    def _on_message(self, message: Any) -> None:
        """Replaces pybit's ``json.loads`` + ``_handle_incoming_message``: forward at once, never raise."""
        try:
            try:
                msg = json.loads(message)
            except ValueError as exc:
                # One bad frame is no reason to drop the connection (and open a gap): count and skip it.
                self._gb_events.heard()
                self._gb_counters.add("bad_messages")
                logger.error("Bybit %s socket: dropped an unreadable frame (%s); raw=%.200r",
                             self._gb_channel, exc, message)
                return
            if isinstance(msg, dict) and self._gb_control(msg):
                self._gb_events.heard()
                return
            self.callback(msg)
        except Exception:
            logger.exception("Bybit %s socket: error while handling a frame", self._gb_channel)

    def _on_error(self, error: Any) -> None:
        """pybit re-raises unknown errors here (and reconnects on known ones); only record the loss."""
        try:
            with self._gb_lock:
                if self._gb_error is None and isinstance(error, BaseException):
                    self._gb_error = error
                opened = self._gb_opened
            text = describe(error) if isinstance(error, BaseException) else str(error)
            self._gb_mark_closed(text if opened else f"could not connect to {self._gb_url}: {text}")
        except Exception:
            logger.exception("Bybit %s socket: error in the error hook", self._gb_channel)

    def _on_close(self) -> None:
        try:
            self._gb_mark_closed("connection closed")
        except Exception:
            logger.exception("Bybit %s socket: error in the close hook", self._gb_channel)

    def _on_pong(self) -> None:
        self._gb_events.heard()

    def _send_initial_ping(self) -> None:
        """pybit starts a Timer thread per connection here; the supervisor sends the text pings."""

    def exit(self) -> None:
        """pybit's ``exit()`` closes the app (which closes the fd at once) and then waits for ``ws.sock`` to
        clear.  Closing the fd can swallow the wake-up of the reader's epoll, leaving it asleep for its
        10 s select timeout.  Instead: stop the read loop, send the close frame, shut the raw socket down
        (the reader wakes at EOF and tears down itself).  Never waits; joining is :meth:`join`'s job."""
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

    # ------------------------------------------------------------------ the supervisor's Handle

    def subscribe(self, topics: Sequence[str]) -> None:
        """Subscribe ``topics`` on the live connection (one request per topic on the public socket)."""
        for request in ([list(topics)] if self._gb_channel == "private" else [[t] for t in topics]):
            self.subscribe_now(request)

    def unsubscribe(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._gb_unsubscribe(topic)

    def ping(self) -> None:
        """Bybit's application-level heartbeat ``{"op": "ping"}`` (the answer is ``heard``)."""
        self._gb_send(self.custom_ping_message, "ping")

    def close(self) -> None:
        self.exit()

    def join(self, timeout: float) -> bool:
        """Exit and join the app thread for up to ``timeout``; True once it has ended (or never started).
        ``exit()`` is repeated while waiting: a thread still starting or connecting is told again."""
        thread = getattr(self, "wst", None)
        if thread is None:
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self.exit()
            if thread is not threading.current_thread():
                thread.join(min(0.05, max(0.0, deadline - time.monotonic())))
            if not thread.is_alive():
                return True
            if time.monotonic() >= deadline:
                return False

    # ------------------------------------------------------------------ subscriptions

    def subscribe_now(self, topics: Sequence[str], *, initial: bool = False) -> None:
        """Send one subscribe request and record it in pybit's ``subscriptions`` (never waits for the
        socket like pybit's ``subscribe()``; a dead socket raises at once)."""
        req_id = str(uuid4())
        text = json.dumps({"op": "subscribe", "req_id": req_id, "args": list(topics)})
        with self._gb_lock:
            self._gb_pending[req_id] = list(topics)
            if initial:
                self._gb_initial_ids.add(req_id)
            # Rebound, never mutated in place: pybit iterates it from other code paths.
            self.subscriptions = {**self.subscriptions, req_id: text}
        self._gb_send(text, "subscribe")

    def _gb_unsubscribe(self, topic: str) -> None:
        """Unsubscribe one topic and drop it from pybit's ``subscriptions`` at once.  (pybit's own
        ``unsubscribe`` matches by substring, unsubscribes every topic of the request, and only forgets
        it when the answer arrives through the parser bypassed here.)"""
        with self._gb_lock:
            subscriptions = dict(self.subscriptions)
            for req_id, text in self.subscriptions.items():
                args = list(json.loads(text).get("args", []))
                if topic not in args:
                    continue
                remaining = [arg for arg in args if arg != topic]
                if remaining:
                    request = {"op": "subscribe", "req_id": req_id, "args": remaining}
                    subscriptions[req_id] = json.dumps(request)
                else:
                    del subscriptions[req_id]
            if subscriptions == self.subscriptions:
                return
            self.subscriptions = subscriptions
        request = {"op": "unsubscribe", "req_id": str(uuid4()), "args": [topic]}
        self._gb_send(json.dumps(request), "unsubscribe")

    def topics(self) -> set[str]:
        """Topics in pybit's subscription record (sent, acknowledged or not)."""
        return set(self.get_subscription_topics())

    def _gb_send(self, text: str, what: str) -> None:
        try:
            self.ws.send(text)
        except Exception as exc:
            self._gb_mark_closed(f"{what} failed: {describe(exc)}")
            raise

    # ------------------------------------------------------------------ internals

    def _gb_run(self, app: Any) -> None:
        """The app thread: websocket-client's read loop; websocket pings off (the supervisor pings).

        ``skip_utf8_validation``: websocket-client otherwise validates every text frame's UTF-8 in pure
        Python (most of the CPU a busy socket costs); frames then arrive as bytes and ``json.loads``
        rejects bad UTF-8 itself (counted and skipped in ``_on_message``, like any unreadable frame)."""
        try:
            budget = self._gb_deadline - time.monotonic()
            app.run_forever(ping_interval=0, sockopt=_send_timeout_sockopt(max(1.0, budget)),
                            skip_utf8_validation=True)
        except Exception:
            logger.exception("Bybit %s socket: read loop failed", self._gb_channel)
        finally:
            self._gb_close_fd()
            self._gb_mark_closed("socket thread ended")
            if self._gb_track is not None:
                self._gb_track(self, False)

    def _gb_close_fd(self) -> None:
        """The read loop is over: nobody else uses this connection's fd any more; close it now."""
        core = getattr(self, "_gb_core", None)
        try:
            if core is not None:
                core.shutdown()
        except Exception:
            logger.exception("Bybit %s socket: closing its fd failed", self._gb_channel)

    def _gb_mark_closed(self, reason: str) -> None:
        with self._gb_lock:
            first = not self._gb_closed
            self._gb_closed = True
            error = self._gb_error
        self._gb_state.set()
        if first:
            self._gb_events.closed(self._gb_redact(reason), error)

    def _gb_abandon(self) -> None:
        self.join(min(1.0, max(0.0, self._gb_deadline - time.monotonic())))

    def _gb_maybe_live(self) -> None:
        """``opened`` once auth (private) and every initial subscription are answered."""
        with self._gb_lock:
            answered = not (self._gb_initial_ids & self._gb_pending.keys())
            live = (not self._gb_live and not self._gb_closed and self._gb_auth is True and answered
                    and not self.attempting_connection)
            if live:
                self._gb_live = True
        if live:
            self._gb_events.opened()

    def _gb_control(self, msg: Mapping[str, Any]) -> bool:
        """Read pong, auth and subscribe answers; True when ``msg`` was one of them."""
        op = msg.get("op")
        if msg.get("ret_msg") == "pong" or op == "pong":
            return True
        if op == "auth" or msg.get("type") == "AUTH_RESP":
            self._gb_on_auth(msg)
        elif op == "subscribe" or msg.get("type") == "COMMAND_RESP":
            self._gb_on_subscribed(msg)
        elif op == "unsubscribe" and msg.get("success") is not True:
            logger.warning("Bybit %s: unsubscribe refused: %s", self._gb_channel, msg.get("ret_msg"))
        return False  # answers still reach the frame handler (the decoder ignores them)

    def _gb_on_auth(self, msg: Mapping[str, Any]) -> None:
        ok = msg.get("success") is True
        with self._gb_lock:
            self._gb_auth = ok
        if ok:
            self._gb_maybe_live()
            return
        detail = self._gb_redact(str(msg.get("ret_msg") or "no reason given"))
        self._gb_events.auth_failed(f"Bybit rejected the API key on the private socket ({detail})")

    def _gb_on_subscribed(self, msg: Mapping[str, Any]) -> None:
        with self._gb_lock:
            req_id = msg.get("req_id")
            if isinstance(req_id, str) and req_id in self._gb_pending:
                topics = self._gb_pending.pop(req_id)
            elif self._gb_pending:  # answer without our req_id (private acks): the oldest request
                req_id, topics = next(iter(self._gb_pending.items()))
                del self._gb_pending[req_id]
            else:
                return
            refused = msg.get("success") is not True
            if refused:  # forgotten at once, or a rebuild would subscribe it again
                self.subscriptions = {k: v for k, v in self.subscriptions.items() if k != req_id}
        if refused:
            reason = self._gb_redact(str(msg.get("ret_msg") or "subscription refused"))
            self._gb_events.refused(topics, reason)
        self._gb_maybe_live()
