"""The WebSocket side of the loopback Bybit: tickers, accepted sockets, and the v5 socket protocol (ping,
auth, subscribe) as a mixin of BybitEmulator."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from gridbot.emulator._base import wall_ms as _wall_ms
from gridbot.emulator._runner import LoopbackServer
from gridbot.emulator.bybit._faults import BybitFaults
from gridbot.emulator.bybit._wire import (
    _CATEGORY_SUFFIXES,
    _PRIVATE_KINDS,
    PRIVATE,
    PUBLIC,
    _dumps,
    _Row,
    _s,
    _sign,
    _uuid_like,
)
from gridbot.emulator.engine import (
    Prices,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- tickers


@dataclass
class _Ticker:
    """The public ticker of one symbol as last published (deltas are diffs against ``fields``)."""

    open_price: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    direction: str = "PlusTick"
    fields: dict[str, str] = field(default_factory=dict)
    cs: int = 0

    def update(self, prices: Prices, tick: Decimal) -> dict[str, str]:
        last = prices.last
        if last > self.last:
            self.direction = "PlusTick"
        elif last < self.last:
            self.direction = "MinusTick"
        elif not self.direction.startswith("Zero"):
            self.direction = "Zero" + self.direction
        self.last = last
        self.high = max(self.high, last)
        self.low = min(self.low, last)
        change = ((last - self.open_price) / self.open_price).quantize(Decimal("0.000001"))
        return {
            "symbol": prices.symbol,
            "tickDirection": self.direction,
            "price24hPcnt": _s(change),
            "lastPrice": _s(last),
            "prevPrice24h": _s(self.open_price),
            "highPrice24h": _s(self.high),
            "lowPrice24h": _s(self.low),
            "prevPrice1h": _s(self.open_price),
            "markPrice": _s(prices.mark),
            "indexPrice": _s(prices.index),
            "openInterest": "0",
            "openInterestValue": "0",
            "turnover24h": "0",
            "volume24h": "0",
            "fundingIntervalHour": "8",
            "fundingCap": "0.005",
            "nextFundingTime": str(prices.next_funding_time),
            "fundingRate": _s(prices.funding_rate),
            "bid1Price": _s(last),
            "bid1Size": "1",
            "ask1Price": _s(last + tick),
            "ask1Size": "1",
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        }


# --------------------------------------------------------------------------------------------- sockets


@dataclass(eq=False)
class _Conn:
    """One accepted WebSocket; only the loop thread touches it."""

    channel: str
    conn_id: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    queue: asyncio.Queue[str | bytes] = field(default_factory=asyncio.Queue)  # text frame | pong payload
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    topics: set[str] = field(default_factory=set)
    authed: bool = False
    closed: bool = False

    def send_text(self, text: str) -> None:
        if not self.closed:
            self.queue.put_nowait(text)

    def send_json(self, obj: Any) -> None:
        self.send_text(_dumps(obj))

    def send_pong(self, data: bytes) -> None:
        if not self.closed:
            self.queue.put_nowait(data)

    def topics_for(self, kind: str) -> list[str]:
        if kind == "wallet":
            return ["wallet"] if "wallet" in self.topics else []
        return [t for t in (kind, f"{kind}.linear") if t in self.topics]


class _SocketProtocol:
    """The v5 WebSocket endpoints and their text protocol; BybitEmulator supplies the state."""

    SUBSCRIBE_ACK_DELAY: float
    _api_key: str
    _api_secret: str
    _clock: Callable[[], int]
    _faults: BybitFaults
    _ticks: dict[str, Decimal]
    _conns: dict[str, set[_Conn]]
    _conn_numbers: Iterator[int]

    def _require_server(self) -> LoopbackServer:
        raise NotImplementedError

    def _ticker_snapshot(self, symbol: str) -> str:
        raise NotImplementedError


    async def _private_ws(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, PRIVATE)

    async def _public_ws(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, PUBLIC)

    async def _serve_ws(self, request: web.Request, channel: str) -> web.StreamResponse:
        if self._faults._ws_is_refused():
            return web.Response(status=503, text="Service Unavailable")
        # autoping off: protocol pongs go through the sender, so silence() can withhold them too
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = _Conn(channel, self._new_conn_id(channel), ws, request.transport)
        server = self._require_server()
        self._conns[channel].add(conn)
        server.track_websocket(ws)
        sender = asyncio.get_running_loop().create_task(self._sender(conn))
        try:
            await self._receive(conn)
        finally:
            conn.closed = True
            self._conns[channel].discard(conn)
            sender.cancel()
            server.untrack(ws)
        return ws

    def _new_conn_id(self, channel: str) -> str:
        number = next(self._conn_numbers)
        if channel == PRIVATE:
            return f"{_uuid_like('conn', number).replace('-', '')[:20]}-{number:x}"
        return _uuid_like("conn", number)

    async def _receive(self, conn: _Conn) -> None:
        async for msg in conn.ws:
            if msg.type == WSMsgType.TEXT:
                self._on_text(conn, msg.data)
            elif msg.type == WSMsgType.PING:
                conn.send_pong(bytes(msg.data))  # aiohttp hands a bytearray
            elif msg.type == WSMsgType.ERROR:
                logger.debug("bybit emulator: %s socket error: %s", conn.channel, conn.ws.exception())
                return

    async def _sender(self, conn: _Conn) -> None:
        """The only writer of a socket: sends queued items in order, honouring pause and silence."""
        try:
            while True:
                data = await conn.queue.get()
                await self._wait_unpaused(conn)
                if self._faults._is_silenced(conn.channel):
                    continue
                if isinstance(data, bytes):
                    await conn.ws.pong(data)
                else:
                    await conn.ws.send_str(data)
        except (ConnectionError, RuntimeError) as err:
            logger.debug("bybit emulator: %s send failed: %s", conn.channel, err)
        except Exception:
            logger.exception("bybit emulator: %s sender failed", conn.channel)
            if conn.transport is not None:
                conn.transport.abort()  # a socket that can no longer send must not look alive

    async def _wait_unpaused(self, conn: _Conn) -> None:
        while self._faults._is_paused(conn.channel):
            conn.wake.clear()
            await conn.wake.wait()

    def _on_text(self, conn: _Conn, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            conn.send_json({"success": False, "ret_msg": "error:request not json", "conn_id": conn.conn_id})
            return
        if not isinstance(message, dict):
            conn.send_json({"success": False, "ret_msg": "error:request not json", "conn_id": conn.conn_id})
            return
        op = message.get("op")
        handlers: dict[Any, Callable[[_Conn, _Row], None]] = {
            "ping": self._on_ping, "auth": self._on_auth,
            "subscribe": self._on_subscribe, "unsubscribe": self._on_unsubscribe,
        }
        handler = handlers.get(op)
        if handler is None:
            conn.send_json({"success": False, "ret_msg": f"error:invalid op:{op}", "conn_id": conn.conn_id})
            return
        handler(conn, message)

    def _on_ping(self, conn: _Conn, message: _Row) -> None:
        req_id = message.get("req_id")
        if conn.channel == PRIVATE:
            pong: _Row = {"op": "pong", "args": [str(self._clock())], "conn_id": conn.conn_id}
            if req_id is not None:
                pong = {"req_id": req_id, **pong}
        else:
            pong = {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id,
                    "req_id": req_id if req_id is not None else "", "op": "ping"}
        conn.send_json(pong)

    def _answer(self, conn: _Conn, message: _Row, op: str, ok: bool, ret_msg: str) -> _Row:
        answer: _Row = {"success": ok, "ret_msg": ret_msg, "op": op, "conn_id": conn.conn_id}
        if "req_id" in message:
            answer["req_id"] = message["req_id"]
        return answer

    def _on_auth(self, conn: _Conn, message: _Row) -> None:
        ok = conn.channel == PRIVATE and self._auth_args_valid(message.get("args"))
        conn.authed = conn.authed or ok
        conn.send_json(self._answer(conn, message, "auth", ok, "" if ok else "Params Error"))

    def _auth_args_valid(self, args: Any) -> bool:
        if self._faults._auth_is_rejected() or not isinstance(args, list) or len(args) != 3:
            return False
        key, expires, signature = args
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            return False
        if expires_ms <= _wall_ms() or not isinstance(key, str) or not isinstance(signature, str):
            return False
        expected = _sign(self._api_secret, f"GET/realtime{expires}")
        return hmac.compare_digest(key, self._api_key) and hmac.compare_digest(signature, expected)

    def _on_subscribe(self, conn: _Conn, message: _Row) -> None:
        topics = message.get("args")
        error = self._subscribe_error(conn, topics)
        loop = asyncio.get_running_loop()
        if error:
            loop.call_later(self.SUBSCRIBE_ACK_DELAY, conn.send_json,
                            self._answer(conn, message, "subscribe", False, error))
            return
        assert isinstance(topics, list)
        loop.call_later(self.SUBSCRIBE_ACK_DELAY, self._activate, conn, message, [str(t) for t in topics])

    def _subscribe_error(self, conn: _Conn, topics: Any) -> str:
        if not isinstance(topics, list) or not topics:
            return "error:args is empty"
        if conn.channel == PRIVATE and not conn.authed:
            return "Request not authorized"
        for topic in topics:
            if topic in conn.topics:
                return f"error:already subscribed,topic:{topic}"
            if not self._topic_known(conn.channel, topic):
                return f"error:handler not found,topic:{topic}"
        return ""

    def _topic_known(self, channel: str, topic: Any) -> bool:
        if not isinstance(topic, str):
            return False
        if channel == PUBLIC:
            return topic.startswith("tickers.") and topic[len("tickers."):] in self._ticks
        if topic in ("wallet", "greeks"):
            return True
        return any(topic == kind + suffix for kind in _PRIVATE_KINDS for suffix in _CATEGORY_SUFFIXES)

    def _activate(self, conn: _Conn, message: _Row, topics: list[str]) -> None:
        """The ack, then (tickers) the snapshot; pushes of these topics start from here."""
        if conn.closed:
            return
        conn.topics.update(topics)
        conn.send_json(self._ack(conn, message, "subscribe"))
        for topic in topics:
            if topic.startswith("tickers."):
                conn.send_text(self._ticker_snapshot(topic[len("tickers."):]))

    def _ack(self, conn: _Conn, message: _Row, op: str) -> _Row:
        if conn.channel == PUBLIC:
            return {"success": True, "ret_msg": "", "conn_id": conn.conn_id,
                    "req_id": message.get("req_id", ""), "op": op}
        return self._answer(conn, message, op, True, "")

    def _on_unsubscribe(self, conn: _Conn, message: _Row) -> None:
        topics = message.get("args")
        if isinstance(topics, list):
            conn.topics.difference_update(str(t) for t in topics)
        asyncio.get_running_loop().call_later(self.SUBSCRIBE_ACK_DELAY, conn.send_json,
                                              self._ack(conn, message, "unsubscribe"))

