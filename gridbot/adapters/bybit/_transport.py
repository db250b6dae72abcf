"""The only code touching pybit's ``WebSocket`` and websocket-client internals: one socket object per
connection (:class:`BybitSocket`).

What pybit 5.17.0 does on its own, and what this module does about it (DESIGN §3):

* An exception on a socket thread (a callback, ``_process_auth_message`` on a rejected key, the KeyError of
  an unknown topic in ``_process_normal_message``) closes the socket for good and nobody is told.
  :class:`BybitSocket` therefore replaces pybit's message path (``_on_message`` and the ``callback_function``
  seam) so nothing of pybit's parsing runs: every frame goes to the sink at once, auth/subscribe answers
  are read here, and every hook catches everything.
* Reconnects happen inside pybit's ``_on_error`` on the dying thread, immediately (no backoff), ten times,
  then stop silently; a concurrent ``exit()`` does not stop that loop.  pybit's own reconnect is switched
  off (``restart_on_error=False``, one attempt): each socket object lives for one connection, and the
  adapter's supervisor rebuilds it with the whole subscription set.
* ``_connect`` waits without a bound (a black-holed host blocks the constructor); ``subscribe()`` spins
  forever on a dead object; ``exit()`` waits for the server's close frame and joins nothing.  The
  subclass connects once, wakes on stop, bounds the TCP connect with ``SO_SNDTIMEO`` (Linux), sends
  subscriptions without waiting, and its ``exit()`` never blocks; joining is the owner's job, within budgets.
* pybit merges ticker deltas itself and hands the mutated dict on as ``type: "snapshot"``; bypassing its
  parser keeps the raw frames, which :class:`~gridbot.normalize.bybit.TickerMerger` merges.
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
from typing import TYPE_CHECKING, Any, Final
from uuid import uuid4

from pybit.unified_trading import WebSocket
from websocket import WebSocketApp, WebSocketException

from gridbot._credentials import MaskedAttribute
from gridbot.adapters._base import Channel
from gridbot.adapters.bybit._errors import ConnectFailed, Stopped, describe

if TYPE_CHECKING:
    from gridbot.adapters.bybit._adapter import BybitAdapter

__all__ = ["BybitSocket"]

logger = logging.getLogger(__name__)

_AUTH_EXPIRE_SECONDS: Final = 10  # pybit's default of 1 s fails on a little clock skew


def _send_timeout_sockopt(seconds: float) -> list[tuple[int, int, bytes]]:
    """``SO_SNDTIMEO``: on Linux it also bounds a blocking ``connect()``, which websocket-client cannot."""
    if not sys.platform.startswith("linux"):
        return []
    whole = int(seconds)
    return [(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))]



class BybitSocket(WebSocket):  # type: ignore[misc]  # pybit is untyped
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
        return f"<BybitSocket {self._gb_channel} {self._gb_url}>"

    # ------------------------------------------------------------------ pybit overrides

    def _connect(self, url: str) -> None:
        """pybit's ``_connect`` for one attempt: start the app thread, wait (bounded, abortable) for the
        open, then authenticate and subscribe without waiting for answers (read in ``_on_message``)."""
        owner = self._gb_owner
        if owner._stop.is_set():
            raise Stopped
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
            raise Stopped
        if not opened:
            self._gb_abandon()
            if error is None:
                raise ConnectFailed(f"timed out connecting to {self._gb_url}")
            raise ConnectFailed(f"could not connect to {self._gb_url}: {describe(error)}") from error
        try:
            if self.api_key and self.api_secret:
                self._auth()
            for topics in self._gb_initial:
                self.gb_subscribe(topics, initial=True)
        except Exception as exc:
            self._gb_abandon()
            raise ConnectFailed(
                f"{self._gb_url}: connection lost while subscribing: {describe(exc)}"
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
            self._gb_mark_closed(describe(error) if isinstance(error, BaseException) else str(error))
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
            self._gb_mark_closed(f"send failed: {describe(exc)}")
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
            self._gb_mark_closed(f"send failed: {describe(exc)}")
            raise

    def gb_topics(self) -> set[str]:
        """Topics in pybit's subscription record (sent, acknowledged or not)."""
        return set(self.get_subscription_topics())

    def gb_ping(self, now: float) -> None:
        """Bybit's application-level heartbeat ``{"op": "ping"}``."""
        try:
            self.ws.send(self.custom_ping_message)
        except (WebSocketException, OSError) as exc:
            self._gb_mark_closed(f"ping failed: {describe(exc)}")
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
