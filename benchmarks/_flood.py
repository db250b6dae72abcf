"""The flood server: its own process, both exchanges' WebSocket protocols, pre-encoded frames.

REST (listen keys, the seed: positions, balances, open orders) is served by gridbot's loopback
emulators in this same process; they only answer the few requests a consumer makes at start.  The
WebSocket side is a small blocking-socket server (one thread per connection) that speaks just enough
of each protocol for the real SDKs: the opening handshake, Bybit ``auth`` / ``subscribe`` / ``ping``
answers and the first ticker snapshot, WebSocket ping -> pong, close.  A flood writes frames from
:mod:`_wire` to the one live connection of a channel, either as fast as the socket takes them
(``rate=0``: batches of frames per ``sendall``) or paced at ``rate`` frames per second (each frame
stamped with its own send time).

The driver talks to :func:`serve` over a ``multiprocessing`` pipe: ``("flood", exchange, workload,
count, rate, symbols, progress_path)`` -> ``{"t0": ns, "t1": ns, "frames": n}``; ``("stop",)``.
"""

from __future__ import annotations

import json
import logging
import mmap
import socket
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import _wire

KEY, SECRET = "bench-key", "bench-secret"
_BATCH = 64  # frames per sendall at max rate
_SUBSCRIBE_ACK_DELAY = 0.005
WINDOW = 4096  # frames a max-rate flood may be ahead of the consumer
_READY_TIMEOUT = 30.0


class _Peer:
    """One client connection."""

    def __init__(self, sock: socket.socket, exchange: str, channel: str, path: str) -> None:
        self.sock = sock
        self.exchange = exchange
        self.channel = channel
        self.path = path
        self.topics: set[str] = set()
        self.authed = channel != "private" or exchange == "binance"
        self.open = True
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class FloodServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self._listener.getsockname()[1]
        self._peers: list[_Peer] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._accept, name="flood-accept", daemon=True).start()

    # ------------------------------------------------------------------ connections

    def _accept(self) -> None:
        while True:
            sock, _ = self._listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve_peer, args=(sock,), daemon=True).start()

    def _serve_peer(self, sock: socket.socket) -> None:
        peer: _Peer | None = None
        try:
            request, rest = _read_request(sock)
            path, key = _parse_request(request)
            exchange, channel = _classify(path)
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + _wire.ws_accept(key).encode() + b"\r\n\r\n"
            )
            peer = _Peer(sock, exchange, channel, path)
            with self._cond:
                self._peers.append(peer)
                self._cond.notify_all()
            self._read_frames(peer, rest)
        except (OSError, ConnectionError):
            pass
        except Exception:
            logging.getLogger("flood").exception("flood server: connection handler failed")
        finally:
            if peer is not None:
                with self._cond:
                    peer.open = False
                    self._peers.remove(peer)
            sock.close()

    def _read_frames(self, peer: _Peer, buffer: bytes) -> None:
        for opcode, payload in _client_frames(peer.sock, buffer):
            if opcode == 0x8:  # close
                peer.send(_wire.ws_frame(payload[:2], 0x8))
                return
            if opcode == 0x9:  # ping
                peer.send(_wire.ws_frame(payload, 0xA))
            elif opcode == 0x1 and peer.exchange == "bybit":
                self._bybit_op(peer, json.loads(payload))

    def _bybit_op(self, peer: _Peer, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        req_id = msg.get("req_id")
        if op == "ping":
            answer: dict[str, Any] = {"success": True, "ret_msg": "pong", "conn_id": "bench", "op": "ping"}
            if peer.channel == "private":
                answer = {"req_id": req_id, "op": "pong", "args": [str(int(time.time() * 1000))],
                          "conn_id": "bench"}
            if req_id is not None:
                answer["req_id"] = req_id
            peer.send(_wire.text(answer))
        elif op == "auth":
            peer.send(_wire.text({"success": True, "ret_msg": "", "op": "auth", "conn_id": "bench"}))
            with self._cond:
                peer.authed = True
                self._cond.notify_all()
        elif op in ("subscribe", "unsubscribe"):
            # pybit records a subscription after sending it; an instant loopback answer can beat that and
            # kill its socket thread (KeyError) - the emulator waits as long before it answers.
            time.sleep(_SUBSCRIBE_ACK_DELAY)
            args = [str(a) for a in msg.get("args", [])]
            answer = {"success": True, "ret_msg": "", "conn_id": "bench", "op": op}
            if req_id is not None:
                answer["req_id"] = req_id
            peer.send(_wire.text(answer))
            if op == "subscribe":
                for topic in args:
                    if topic.startswith("tickers."):
                        peer.send(_wire.bybit_ticker_snapshot(topic.split(".", 1)[1]))
            with self._cond:
                if op == "subscribe":
                    peer.topics.update(args)
                else:
                    peer.topics.difference_update(args)
                self._cond.notify_all()

    # ------------------------------------------------------------------ floods

    def _target(self, exchange: str, channel: str, symbols: list[str]) -> _Peer | None:
        def ready(peer: _Peer) -> bool:
            if peer.exchange != exchange or peer.channel != channel or not peer.open or not peer.authed:
                return False
            if exchange == "bybit" and channel == "public":
                return {f"tickers.{s}" for s in symbols} <= peer.topics
            if exchange == "bybit":
                return {"execution", "order", "position", "wallet"} <= peer.topics
            if channel == "public":
                return all(f"{s.lower()}@markprice" in peer.path.lower() for s in symbols)
            return True

        with self._cond:
            self._cond.wait_for(lambda: any(ready(p) for p in self._peers), _READY_TIMEOUT)
            candidates = [p for p in self._peers if ready(p)]
        return candidates[-1] if candidates else None

    def flood(self, exchange: str, name: str, count: int, rate: float, symbols: list[str],
              progress: str | None = None) -> dict[str, Any]:
        channel, renderers = _wire.workload(exchange, name, symbols)
        peer = self._target(exchange, channel, symbols)
        if peer is None:
            return {"error": f"no {exchange} {channel} consumer subscribed within {_READY_TIMEOUT:g} s"}
        try:
            if rate > 0:
                t0, t1 = _paced(peer, renderers, count, rate)
            else:
                with _Progress(progress) as consumed:
                    t0, t1 = _max_rate(peer, renderers, count, consumed)
        except OSError as exc:
            return {"error": f"consumer connection lost: {exc}"}
        return {"t0": t0, "t1": t1, "frames": count}


class _Progress:
    """The consumer's progress (frames consumed), which it writes into a shared 8-byte file."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._map: mmap.mmap | None = None

    def __enter__(self) -> Callable[[], int] | None:
        if self._path is None:
            return None
        with open(self._path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), 8)
        shared = self._map
        return lambda: int(struct.unpack_from("<q", shared, 0)[0])

    def __exit__(self, *exc: object) -> None:
        if self._map is not None:
            self._map.close()


def _max_rate(peer: _Peer, renderers: list[Callable[[int, int], bytes]], count: int,
              consumed: Callable[[], int] | None) -> tuple[int, int]:
    """As fast as the consumer reads, with at most ``WINDOW`` frames written ahead of what it consumed
    (when it reports progress), so a slow consumer's backlog is not what its memory figure measures."""
    n = len(renderers)
    now = time.time_ns
    t0 = now()
    for start in range(0, count, _BATCH):
        if consumed is not None:
            while start - consumed() > WINDOW:
                time.sleep(0.0002)
        stamp = now()
        peer.send(b"".join([renderers[k % n](k, stamp) for k in range(start, min(count, start + _BATCH))]))
    return t0, now()


def _paced(peer: _Peer, renderers: list[Callable[[int, int], bytes]], count: int,
           rate: float) -> tuple[int, int]:
    """Frame k is due at t0 + k/rate; every due frame is written at once, stamped when written."""
    n = len(renderers)
    now = time.time_ns
    interval = 1e9 / rate
    t0 = now()
    k = 0
    while k < count:
        t = now()
        due = min(count, int((t - t0) / interval) + 1)
        while k < due:
            peer.send(renderers[k % n](k, now()))
            k += 1
        if k < count:
            wait = (t0 + k * interval - now()) / 1e9
            if wait > 0:
                time.sleep(wait)
    return t0, now()


# ------------------------------------------------------------------------------------------ protocol


def _read_request(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse_request(head: bytes) -> tuple[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return path, headers["sec-websocket-key"]


def _classify(path: str) -> tuple[str, str]:
    if path.startswith("/v5/private"):
        return "bybit", "private"
    if path.startswith("/v5/public/"):
        return "bybit", "public"
    if "listenKey" in path or "/private/" in path:
        return "binance", "private"
    if "streams=" in path:
        return "binance", "public"
    raise ValueError(f"unknown websocket path {path}")


def _client_frames(sock: socket.socket, buffer: bytes) -> Any:
    """Yield (opcode, payload) of masked client frames (no fragmentation: the SDKs send small frames)."""
    buf = bytearray(buffer)

    def need(n: int) -> None:
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf.extend(chunk)

    while True:
        need(2)
        opcode = buf[0] & 0x0F
        size = buf[1] & 0x7F
        pos = 2
        if size == 126:
            need(4)
            size = struct.unpack(">H", buf[2:4])[0]
            pos = 4
        elif size == 127:
            need(10)
            size = struct.unpack(">Q", buf[2:10])[0]
            pos = 10
        masked = buf[1] & 0x80
        need(pos + (4 if masked else 0) + size)
        if masked:
            mask = buf[pos:pos + 4]
            pos += 4
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[pos:pos + size]))
        else:
            payload = bytes(buf[pos:pos + size])
        del buf[:pos + size]
        yield opcode, payload


# ------------------------------------------------------------------------------------------ process


def serve(conn: Connection) -> None:
    """Process entry point: start the emulators (REST) and the flood server, then obey the pipe."""
    logging.basicConfig(level=logging.WARNING)
    from decimal import Decimal

    from gridbot.emulator import BinanceEmulator, BybitEmulator, EngineConfig, SymbolConfig

    config = EngineConfig(symbols=(
        SymbolConfig("BTCUSDT", Decimal("60000")),
        SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01")),
    ))

    flood = FloodServer()
    binance = BinanceEmulator(config, api_key=KEY, api_secret=SECRET, price_interval=0)
    bybit = BybitEmulator(config, api_key=KEY, api_secret=SECRET, price_interval=0)
    binance.start()
    bybit.start()
    ws = f"ws://127.0.0.1:{flood.port}"
    conn.send({
        "binance": {"rest": binance.endpoints.rest, "ws": ws},
        "bybit": {"rest": bybit.endpoints.rest, "ws": ws},
        "symbols": list(binance.engine.symbols),
    })
    try:
        while True:
            command = conn.recv()
            if command[0] == "stop":
                break
            if command[0] == "flood":
                _, exchange, name, count, rate, symbols, progress = command
                conn.send(flood.flood(exchange, name, count, rate, symbols, progress))
    finally:
        binance.stop()
        bybit.stop()
