"""Failure injection for the loopback Binance (BinanceFaults)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridbot.emulator.binance._sockets import (
    _Hub,
)
from gridbot.emulator.binance._wire import (
    _CHANNELS,
    PRIVATE,
    PUBLIC,
    _ApiError,
)

if TYPE_CHECKING:
    from gridbot.emulator.binance._server import BinanceEmulator


# ------------------------------------------------------------------------------------------------ faults


@dataclass
class _RestFailure:
    status: int
    code: int
    msg: str
    remaining: int


class BinanceFaults:
    """Failure injection for tests.  Every method is thread-safe and returns at once; socket-side faults
    take effect on the server loop in the order they were called, before any frame produced later."""

    def __init__(self, emulator: BinanceEmulator) -> None:
        self._emulator = emulator
        self._lock = threading.Lock()
        self._reject_auth = False
        self._refuse_ws = False
        self._delays: dict[str, float] = {}
        self._failures: dict[str, _RestFailure] = {}

    # ---- sockets

    def drop_private(self) -> None:
        """Abort every user-data socket (no close frame)."""
        self._emulator._on_loop(lambda hub: hub.drop(PRIVATE))

    def drop_public(self) -> None:
        """Abort every market-data socket (no close frame)."""
        self._emulator._on_loop(lambda hub: hub.drop(PUBLIC))

    def expire_listen_key(self) -> None:
        """Expire the active listen key now: its sockets get ``listenKeyExpired`` and are closed."""
        self._emulator._expire_listen_key(force=True)

    def send_raw(self, channel: str, text: str) -> None:
        """Send ``text`` verbatim to every socket of ``channel`` (malformed or unknown frames)."""
        _check_channel(channel)
        self._emulator._on_loop(lambda hub: hub.send_raw(channel, text))

    def duplicate_next(self, channel: str, n: int = 1) -> None:
        """Send each of the next ``n`` frames of ``channel`` twice."""
        _check_channel(channel)

        def arm(hub: _Hub) -> None:
            hub.pipes[channel].duplicates += n

        self._emulator._on_loop(arm)

    def reorder_next(self, channel: str) -> None:
        """Swap the next two frames of ``channel`` (the first is held until the second exists)."""
        _check_channel(channel)

        def arm(hub: _Hub) -> None:
            hub.pipes[channel].reorder_armed = True

        self._emulator._on_loop(arm)

    def pause(self, channel: str) -> None:
        """Hold every frame of ``channel`` until :meth:`resume`."""
        _check_channel(channel)

        def hold(hub: _Hub) -> None:
            hub.pipes[channel].paused = True

        self._emulator._on_loop(hold)

    def resume(self, channel: str) -> None:
        """Deliver the held frames of ``channel``, in order, and stop holding."""
        _check_channel(channel)
        self._emulator._on_loop(lambda hub: hub.pipes[channel].resume())

    def refuse_ws(self, refuse: bool = True) -> None:
        """Answer every WebSocket upgrade with HTTP 503 (existing sockets are untouched)."""
        with self._lock:
            self._refuse_ws = refuse

    # ---- REST

    def reject_auth(self, reject: bool = True) -> None:
        """Signed REST calls and listen-key creation answer -2015 while set."""
        with self._lock:
            self._reject_auth = reject

    def rest_delay(self, path: str, seconds: float) -> None:
        """Delay every answer on ``path`` (e.g. "/fapi/v3/positionRisk") by ``seconds``; 0 removes it."""
        with self._lock:
            if seconds > 0:
                self._delays[path] = seconds
            else:
                self._delays.pop(path, None)

    def rest_fail(self, path: str, http_status: int, code: int, msg: str, times: int = 1) -> None:
        """Answer the next ``times`` calls on ``path`` with ``{"code": code, "msg": msg}``."""
        with self._lock:
            self._failures[path] = _RestFailure(http_status, code, msg, times)

    # ---- read by the server

    @property
    def auth_rejected(self) -> bool:
        with self._lock:
            return self._reject_auth

    @property
    def ws_refused(self) -> bool:
        with self._lock:
            return self._refuse_ws

    def delay_for(self, path: str) -> float:
        with self._lock:
            return self._delays.get(path, 0.0)

    def take_failure(self, path: str) -> _ApiError | None:
        with self._lock:
            failure = self._failures.get(path)
            if failure is None:
                return None
            failure.remaining -= 1
            if failure.remaining <= 0:
                del self._failures[path]
            return _ApiError(failure.status, failure.code, failure.msg)


def _check_channel(channel: str) -> None:
    if channel not in _CHANNELS:
        raise ValueError(f"channel must be 'private' or 'public', not {channel!r}")


