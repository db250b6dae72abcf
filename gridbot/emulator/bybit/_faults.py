"""Failure injection for the loopback Bybit (BybitFaults)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from gridbot.emulator.bybit._wire import (
    _CHANNELS,
    PRIVATE,
    PUBLIC,
)

# --------------------------------------------------------------------------------------------- faults


@dataclass
class _RestFailure:
    http_status: int
    ret_code: int
    ret_msg: str


class _FaultHooks:
    """What BybitFaults asks the running emulator to do (no-ops until it runs)."""

    def drop(self, channel: str) -> None:
        """Abort every socket of ``channel``."""

    def send_raw(self, channel: str, text: str) -> None:
        """Queue ``text`` on every socket of ``channel``."""

    def wake(self) -> None:
        """Re-check pause state (a channel was resumed)."""


class BybitFaults:
    """Misbehaviour on demand; every method is thread-safe and takes effect at once.

    ``channel`` is ``"private"`` or ``"public"``.  Frame faults (duplicate, reorder) apply to data pushes
    (topic frames) that at least one socket of the channel receives -- not to acks, pongs or the ticker
    snapshot; a reordered push waits for the next push of its channel (a drop discards it).  Pause and
    silence apply to everything a socket would send (pushes, acks, pongs, protocol pongs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks = _FaultHooks()
        self._paused: set[str] = set()
        self._silenced: set[str] = set()
        self._duplicate: dict[str, int] = {}
        self._reorder: set[str] = set()
        self._auth_rejected = False
        self._ws_refused = False
        self._rest_delays: dict[str, float] = {}
        self._rest_failures: dict[str, deque[_RestFailure]] = {}

    # -- public

    def drop_private(self) -> None:
        """Abort every private socket (TCP closed without a close frame, like a network drop)."""
        self._hooks.drop(PRIVATE)

    def drop_public(self) -> None:
        """Abort every public socket."""
        self._hooks.drop(PUBLIC)

    def send_raw(self, channel: str, text: str) -> None:
        """Send ``text`` verbatim to every socket of ``channel`` (after what is already queued)."""
        self._hooks.send_raw(_check_channel(channel), text)

    def duplicate_next(self, channel: str, n: int = 1) -> None:
        """Send each of the next ``n`` data pushes of ``channel`` twice."""
        with self._lock:
            self._duplicate[_check_channel(channel)] = self._duplicate.get(channel, 0) + n

    def reorder_next(self, channel: str) -> None:
        """Hold the next data push of ``channel`` and send it after the push that follows it."""
        with self._lock:
            self._reorder.add(_check_channel(channel))

    def pause(self, channel: str) -> None:
        """Stop sending on ``channel``; everything is queued and sent, in order, on :meth:`resume`."""
        with self._lock:
            self._paused.add(_check_channel(channel))

    def resume(self, channel: str) -> None:
        """Undo :meth:`pause`."""
        with self._lock:
            self._paused.discard(_check_channel(channel))
        self._hooks.wake()

    def reject_auth(self, on: bool = True) -> None:
        """While on, private WS auth fails and signed REST answers 10003."""
        with self._lock:
            self._auth_rejected = on

    def silence(self, channel: str, on: bool = True) -> None:
        """A half-dead socket: while on, nothing is sent on ``channel`` (pushes, acks and pongs are
        discarded, protocol pings unanswered) but the sockets stay open."""
        with self._lock:
            if on:
                self._silenced.add(_check_channel(channel))
            else:
                self._silenced.discard(_check_channel(channel))

    def rest_delay(self, path: str, seconds: float) -> None:
        """Delay every answer on ``path`` (e.g. ``/v5/position/list``) by ``seconds``; 0 removes it."""
        with self._lock:
            if seconds > 0:
                self._rest_delays[path] = seconds
            else:
                self._rest_delays.pop(path, None)

    def rest_fail(self, path: str, http_status: int, ret_code: int, ret_msg: str, times: int = 1) -> None:
        """Answer the next ``times`` requests on ``path`` with ``http_status`` and this retCode/retMsg."""
        with self._lock:
            queue = self._rest_failures.setdefault(path, deque())
            queue.extend(_RestFailure(http_status, ret_code, ret_msg) for _ in range(times))

    def refuse_ws(self, on: bool = True) -> None:
        """While on, WebSocket upgrade requests are answered with HTTP 503."""
        with self._lock:
            self._ws_refused = on

    # -- used by the emulator

    def _bind(self, hooks: _FaultHooks) -> None:
        self._hooks = hooks

    def _take_push_action(self, channel: str) -> tuple[int, bool]:
        """(copies, hold) for the next data push on ``channel``; consumes the one-shot faults."""
        with self._lock:
            hold = channel in self._reorder
            self._reorder.discard(channel)
            copies = 1
            if self._duplicate.get(channel, 0) > 0:
                self._duplicate[channel] -= 1
                copies = 2
            return copies, hold

    def _is_paused(self, channel: str) -> bool:
        with self._lock:
            return channel in self._paused

    def _is_silenced(self, channel: str) -> bool:
        with self._lock:
            return channel in self._silenced

    def _auth_is_rejected(self) -> bool:
        with self._lock:
            return self._auth_rejected

    def _ws_is_refused(self) -> bool:
        with self._lock:
            return self._ws_refused

    def _rest_delay_for(self, path: str) -> float:
        with self._lock:
            return self._rest_delays.get(path, 0.0)

    def _take_rest_failure(self, path: str) -> _RestFailure | None:
        with self._lock:
            queue = self._rest_failures.get(path)
            return queue.popleft() if queue else None


def _check_channel(channel: str) -> str:
    if channel not in _CHANNELS:
        raise ValueError(f"channel must be 'private' or 'public', not {channel!r}")
    return channel


