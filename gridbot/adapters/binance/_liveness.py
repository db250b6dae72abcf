"""Liveness of a python-binance socket: when did the server last send anything?

python-binance offers no hook for pings (it calls ``websockets.connect(url, close_timeout=0.1,
**ws_kwargs)``), and websockets answers server pings itself, so a stalled user stream that sends no
data and no pings stays "connected" for ever.  Binance documents a server ping every 3 minutes on
every stream connection; a healthy connection therefore receives *something* — a data frame or a
ping — at least that often.  :func:`watched_connection` is passed to websockets as
``create_connection`` and reports every received data or ping frame.  Our own pings' pongs are not
counted: a server that answers pings but stopped the stream is exactly what this must catch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, Frame, Opcode

__all__ = ["BINANCE_SERVER_PING_S", "watched_connection"]

logger = logging.getLogger(__name__)

# "The websocket server will send a ping frame every 3 minutes." (Binance WebSocket market streams)
BINANCE_SERVER_PING_S = 180.0


class _WatchedConnection(ClientConnection):
    """A websockets client connection that calls ``on_frame`` for each data frame and server ping."""

    gb_on_frame: Callable[[], None] | None = None

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        on_frame = self.gb_on_frame
        if on_frame is None or not isinstance(event, Frame):
            return
        if event.opcode is Opcode.PING or event.opcode in DATA_OPCODES:
            try:
                on_frame()
            except Exception:  # never into websockets' protocol machinery
                logger.exception("binance: liveness hook failed")


def watched_connection(on_frame: Callable[[], None]) -> Callable[..., ClientConnection]:
    """A ``create_connection`` factory for ``websockets.connect`` reporting to ``on_frame``."""

    def build(*args: Any, **kwargs: Any) -> ClientConnection:
        connection = _WatchedConnection(*args, **kwargs)
        connection.gb_on_frame = on_frame
        return connection

    return build
