"""python-binance's receive path without a Task per message (python-binance 1.0.37, Python >= 3.11).

The SDK moves every frame through three ``asyncio.wait_for`` calls — the read loop's ``ws.recv()``
(``reconnecting_websocket.py:188``), ``recv()``'s queue get (``:290``) and the listener's ``s.recv()``
(``threaded_stream.py:75``) — and on Python 3.11 each ``wait_for`` wraps its awaitable in a new Task: three
Tasks, three loop iterations and their timer handles per frame, most of the SDK's cost per message.
Here the same three steps use ``asyncio.timeout`` (no Task), and skip the timer entirely when a frame
is already queued.  Everything else is the SDK's, called in the SDK's order: reconnects
(``_run_reconnect``), the decode (``_handle_message``), error dicts (``_propagate_error``), the queue,
``ReadLoopClosed``, the listener's error dicts and its ``_socket_running`` flag.  On Python 3.10
(no ``asyncio.timeout``) the SDK's own methods run.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from socket import gaierror
from typing import Any, Final

import websockets as ws
from binance.exceptions import (
    BinanceWebsocketClosed,
    BinanceWebsocketQueueOverflow,
    BinanceWebsocketUnableToConnect,
    ReadLoopClosed,
)
from binance.ws.constants import WSListenerState
from binance.ws.reconnecting_websocket import ReconnectingWebsocket
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

__all__ = ["TASKLESS", "TasklessReceive", "listen"]

# The SDK listener's own logger, so its error lines stay where python-binance puts them.
_listener_log = logging.getLogger("binance.ws.threaded_stream")

TASKLESS: Final = sys.version_info >= (3, 11)
if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - TASKLESS is False: the SDK's own methods run

    def _timeout(delay: float) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError("asyncio.timeout needs Python 3.11")

_LISTENER_TIMEOUT: Final = 3  # threaded_stream.py:75
_RECONNECTING_ERRORS: Final = (
    asyncio.IncompleteReadError, gaierror, ConnectionClosedError, ConnectionClosedOK, BinanceWebsocketClosed,
)


def _error_dict(exc: BaseException) -> dict[str, Any]:
    return {"e": "error", "type": type(exc).__name__, "m": f"{exc}"}


class TasklessReceive(ReconnectingWebsocket):  # type: ignore[misc]  # python-binance is untyped
    """Mixin for the adapter's SDK sockets: ``_read_frames`` is the SDK's ``_read_loop`` body and
    ``recv`` the SDK's ``recv``, each without ``wait_for``."""

    async def _read_frames(self) -> None:
        """``ReconnectingWebsocket._read_loop`` (reconnecting_websocket.py:169-258), step for step."""
        try:
            while True:
                try:
                    while self.ws_state == WSListenerState.RECONNECTING:
                        await self._run_reconnect()
                    if self.ws_state == WSListenerState.EXITING:
                        break
                    if self.ws.state == ws.protocol.State.CLOSING:
                        await asyncio.sleep(0.1)
                        continue
                    if self.ws.state == ws.protocol.State.CLOSED:
                        self._reconnect()
                        raise BinanceWebsocketClosed("Connection closed. Reconnecting...")
                    if self.ws_state == WSListenerState.STREAMING:
                        async with _timeout(self.TIMEOUT):
                            res = await self.ws.recv()
                        res = self._handle_message(res)
                        if res:
                            if self._queue.qsize() < self.max_queue_size:
                                self._queue.put_nowait(res)  # unbounded asyncio.Queue: never waits
                            else:
                                raise BinanceWebsocketQueueOverflow(
                                    f"Message queue size {self._queue.qsize()} exceeded maximum "
                                    f"{self.max_queue_size}"
                                )
                except TimeoutError:
                    pass  # no message in TIMEOUT seconds: the SDK loops on
                except asyncio.CancelledError as exc:
                    await self._propagate_error(_error_dict(exc))
                    break
                except _RECONNECTING_ERRORS as exc:
                    # The SDK logs these at ERROR; here a lost connection is the supervisor's to report (one
                    # WARNING, then a rebuild), so the SDK's own line stays at DEBUG.
                    self._log.debug(f"{exc.__class__.__name__} ({exc})")
                    await self._propagate_error(_error_dict(exc))
                except BinanceWebsocketUnableToConnect as exc:
                    # Expected: the adapter sets MAX_RECONNECTS = 0, so the SDK hands every reconnect to the
                    # supervisor at once; not an error of its own.
                    self._log.debug(f"{exc.__class__.__name__} ({exc}): reconnect handed to the supervisor")
                    await self._propagate_error(_error_dict(exc))
                    break
                except (BinanceWebsocketQueueOverflow,
                        Exception) as exc:  # noqa: BLE001 - the SDK's handling: an error dict, then stop
                    self._log.error(f"Unknown exception: {exc.__class__.__name__} ({exc})")
                    await self._propagate_error(_error_dict(exc))
                    break
        except Exception as exc:  # noqa: BLE001 - the SDK's: the loop ends, recv() raises ReadLoopClosed
            self._log.error(f"Unknown exception: {exc.__class__.__name__} ({exc})")
        finally:
            self._handle_read_loop = None
            self._reconnects = 0

    def has_queued_frame(self) -> bool:
        """A frame is waiting and the read loop runs: ``recv()`` returns without suspending."""
        return bool(self._handle_read_loop) and not self._queue.empty()

    async def recv(self) -> Any:
        """The next queued message; ``ReadLoopClosed`` once the read loop has ended (``:284``)."""
        if not TASKLESS or getattr(self, "_uses_ws_api_subscription", False):
            return await super().recv()  # 3.10, or a KeepAliveWebsocket without a read loop
        queue: asyncio.Queue[Any] = self._queue
        while True:
            if not self._handle_read_loop:
                raise ReadLoopClosed(
                    "Read loop has been closed, please reset the websocket connection and listen to the "
                    "message error."
                )
            if not queue.empty():
                res = queue.get_nowait()
            else:
                try:
                    async with _timeout(self.TIMEOUT):
                        res = await queue.get()
                except TimeoutError:
                    continue
            if res:
                return res


async def listen(running: dict[str, bool], socket: Any, path: str,
                 callback: Callable[[Any], None]) -> None:
    """``ThreadedApiManager.start_listener`` (threaded_stream.py:72-93) for a synchronous callback; the
    listener's 3 s timeout is only armed when no frame is waiting."""
    async with socket as s:
        ready: Callable[[], bool] = s.has_queued_frame if isinstance(s, TasklessReceive) else bool
        while running[path]:
            try:
                if ready():
                    msg = await s.recv()
                else:
                    async with _timeout(_LISTENER_TIMEOUT):
                        msg = await s.recv()
            except TimeoutError:
                continue
            except Exception as exc:  # noqa: BLE001 - the SDK listener's: an error dict to the callback
                _listener_log.error(f"Error receiving message: {exc}")
                msg = _error_dict(exc)
            if msg:
                callback(msg)
    del running[path]
