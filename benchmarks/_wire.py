"""Pre-encoded WebSocket frames for the flood server: official-doc payload shapes with patchable fields.

Every flooded frame carries ``bq`` (its sequence number) and ``bn`` (``time.time_ns()`` when the server
wrote it) at the top level and in the row a gridbot event keeps as ``raw``, so raw-SDK and gridbot
consumers read the same markers.  Ids that gridbot dedupes (trade, order, exec ids, Bybit position
``seq``) are the sequence number, so nothing is a duplicate; exchange timestamps are the send time
(a push older than the REST seed would be dropped as stale, as it should be).

A template is rendered by joining constant byte parts with fixed-width values, so the WebSocket header
is computed once and a frame costs one ``bytes.join``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections.abc import Callable
from typing import Any

# Markers inside json.dumps output.  "N" markers replace the quoted string (a JSON number), "S" markers
# sit inside a string.  Widths are fixed so every frame of a template has the same length.
_MARKER = re.compile(rb'"@N(SEQ|NS|MS)@"|@S(SEQ|MS|PX)@')
_SEQ_BASE = 10**11  # 12 digits, no leading zero
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SEQ, NS, MS = "@NSEQ@", "@NNS@", "@NMS@"  # JSON numbers
SSEQ, SMS, SPX = "@SSEQ@", "@SMS@", "@SPX@"  # inside JSON strings


def _values(seq: int, ns: int) -> dict[bytes, bytes]:
    return {
        b"SEQ": b"%d" % (_SEQ_BASE + seq),
        b"NS": b"%d" % ns,
        b"MS": b"%d" % (ns // 1_000_000),
        b"PX": b"6%04d.%02d" % (seq % 10_000, (seq // 10_000) % 100),
    }


class Template:
    """One frame shape; ``render(seq, ns)`` is the complete WebSocket text frame."""

    __slots__ = ("_header", "_parts", "_slots", "size")

    def __init__(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":")).encode()
        parts: list[bytes] = []
        slots: list[bytes] = []
        last = 0
        for match in _MARKER.finditer(text):
            parts.append(text[last:match.start()])
            slots.append(match.group(1) or match.group(2))
            last = match.end()
        parts.append(text[last:])
        self._parts = parts
        self._slots = slots
        sample = self._payload(0, 10**18)
        self.size = len(sample)
        self._header = ws_header(self.size)
        assert len(self._payload(10**6, 2 * 10**18 - 1)) == self.size, "template width varies"
        json.loads(sample)

    def _payload(self, seq: int, ns: int) -> bytes:
        values = _values(seq, ns)
        out = [self._parts[0]]
        for slot, part in zip(self._slots, self._parts[1:], strict=True):
            out.append(values[slot])
            out.append(part)
        return b"".join(out)

    def render(self, seq: int, ns: int) -> bytes:
        return self._header + self._payload(seq, ns)


def ws_header(size: int, opcode: int = 0x1) -> bytes:
    """Server-to-client frame header (FIN, unmasked)."""
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + struct.pack(">H", size)
    return bytes((0x80 | opcode, 127)) + struct.pack(">Q", size)


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    return ws_header(len(payload), opcode) + payload


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def text(obj: Any) -> bytes:
    return ws_frame(json.dumps(obj, separators=(",", ":")).encode())


# ------------------------------------------------------------------------------------------ Binance


def binance_mark(symbol: str) -> Template:
    """Combined-stream markPriceUpdate (``<sym>@markPrice@1s``)."""
    return Template({
        "stream": f"{symbol.lower()}@markPrice@1s",
        "data": {
            "e": "markPriceUpdate", "E": MS, "s": symbol, "p": SPX, "ap": SPX,
            "i": "60000.10000000", "P": "60001.20000000", "r": "0.00010000", "T": 1893456000000,
            "bq": SEQ, "bn": NS,
        },
        "bq": SEQ,
    })


def binance_fill(symbol: str) -> Template:
    """ORDER_TRADE_UPDATE, execution TRADE, order FILLED (one fill of one grid order)."""
    return Template({
        "e": "ORDER_TRADE_UPDATE", "E": MS, "T": MS,
        "o": {
            "s": symbol, "c": "grid-" + SSEQ, "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "0.010",
            "p": "60100.00", "ap": "60100.00", "sp": "0", "x": "TRADE", "X": "FILLED", "i": SEQ,
            "l": "0.010", "z": "0.010", "L": "60100.00", "N": "USDT", "n": "0.02404000", "T": MS,
            "t": SEQ, "b": "0", "a": "0", "m": True, "R": False, "wt": "CONTRACT_PRICE", "ot": "LIMIT",
            "ps": "BOTH", "cp": False, "rp": "1.00000000", "pP": False, "si": 0, "ss": 0,
            "V": "EXPIRE_TAKER", "pm": "NONE", "gtd": 0,
        },
        "bq": SEQ, "bn": NS,
    })


def binance_account(symbol: str) -> Template:
    """ACCOUNT_UPDATE after a fill: the USDT balance and the symbol's one-way position."""
    return Template({
        "e": "ACCOUNT_UPDATE", "E": MS, "T": MS,
        "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": "10012.34567890", "cw": "10012.34567890", "bc": "0"}],
            "P": [{
                "s": symbol, "pa": "0.010", "ep": "60000.00000", "bep": "60012.0", "cr": SPX,
                "up": "1.00000000", "mt": "cross", "iw": "0", "ps": "BOTH", "ma": "USDT",
                "bq": SEQ, "bn": NS,
            }],
        },
        "bq": SEQ, "bn": NS,
    })


# ------------------------------------------------------------------------------------------ Bybit


def bybit_ticker_snapshot(symbol: str) -> bytes:
    """The first ``tickers.<SYM>`` frame after a subscription (not a flood frame: no ``bq``)."""
    return text({
        "topic": f"tickers.{symbol}", "type": "snapshot",
        "data": {
            "symbol": symbol, "lastPrice": "60000.00", "markPrice": "60000.00", "indexPrice": "60000.10",
            "nextFundingTime": "1893456000000", "fundingRate": "0.0001", "bid1Price": "59999.90",
            "ask1Price": "60000.00", "volume24h": "1000", "turnover24h": "60000000",
        },
        "cs": 1, "ts": 1700000000000,
    })


def bybit_ticker(symbol: str) -> Template:
    """A ``tickers.<SYM>`` delta that moves the mark and last price."""
    return Template({
        "topic": f"tickers.{symbol}", "type": "delta",
        "data": {"symbol": symbol, "markPrice": SPX, "lastPrice": SPX, "bid1Price": SPX},
        "cs": SEQ, "ts": MS, "bq": SEQ, "bn": NS,
    })


def _private(topic: str, row: dict[str, Any]) -> Template:
    return Template({
        "id": "bench-" + SSEQ, "topic": topic, "creationTime": MS,
        "data": [{**row, "bq": SEQ, "bn": NS}], "bq": SEQ, "bn": NS,
    })


def bybit_execution(symbol: str) -> Template:
    return _private("execution", {
        "category": "linear", "symbol": symbol, "execFee": "0.0240", "execId": "e-" + SSEQ,
        "execPrice": "60100.0", "execQty": "0.010", "execType": "Trade", "execValue": "601.0",
        "feeRate": "0.00004", "orderId": "o-" + SSEQ, "orderLinkId": "grid-" + SSEQ, "orderPrice": "60100.0",
        "orderQty": "0.010", "orderType": "Limit", "side": "Sell", "execTime": SMS, "isMaker": True,
        "leavesQty": "0", "closedSize": "0.010", "execPnl": "1.0", "feeCurrency": "USDT",
        "markPrice": "60100.0", "seq": SEQ,
    })


def bybit_order(symbol: str) -> Template:
    return _private("order", {
        "category": "linear", "symbol": symbol, "orderId": "o-" + SSEQ, "orderLinkId": "grid-" + SSEQ,
        "side": "Sell", "positionIdx": 0, "orderStatus": "Filled", "cancelType": "UNKNOWN",
        "rejectReason": "EC_NoError", "price": "60100.0", "qty": "0.010", "avgPrice": "60100.0",
        "leavesQty": "0", "leavesValue": "0", "cumExecQty": "0.010", "cumExecValue": "601.0",
        "cumExecFee": "0.0240", "timeInForce": "GTC", "orderType": "Limit", "stopOrderType": "",
        "triggerPrice": "", "takeProfit": "", "stopLoss": "", "reduceOnly": True, "closeOnTrigger": False,
        "createType": "CreateByUser", "createdTime": SMS, "updatedTime": SMS,
    })


def bybit_position(symbol: str) -> Template:
    return _private("position", {
        "category": "linear", "symbol": symbol, "positionIdx": 0, "side": "Buy", "size": "0.010",
        "entryPrice": "60000.0", "markPrice": "60100.0", "positionValue": "600.0", "leverage": "10",
        "unrealisedPnl": "1.0", "cumRealisedPnl": SPX, "curRealisedPnl": "1.0", "positionStatus": "Normal",
        "tradeMode": 0, "autoAddMargin": 0, "createdTime": SMS, "updatedTime": SMS, "seq": SEQ,
    })


def bybit_wallet() -> Template:
    return _private("wallet", {
        "accountType": "UNIFIED", "accountIMRate": "0.01", "accountMMRate": "0.005",
        "totalEquity": "10012.3", "totalWalletBalance": "10011.3", "totalMarginBalance": "10012.3",
        "totalAvailableBalance": "9900.1", "totalPerpUPL": "1.0", "totalInitialMargin": "60.1",
        "totalMaintenanceMargin": "3.0",
        "coin": [{"coin": "USDT", "equity": "10012.3", "walletBalance": "10011.3", "unrealisedPnl": "1.0",
                  "cumRealisedPnl": "11.3", "usdValue": "10012.3", "totalPositionIM": "60.1",
                  "totalPositionMM": "3.0", "availableToWithdraw": ""}],
    })


# ------------------------------------------------------------------------------------------ workloads

Renderer = Callable[[int, int], bytes]


def workload(exchange: str, name: str, symbols: list[str]) -> tuple[str, list[Renderer]]:
    """(channel, renderers): frame ``k`` of the flood is ``renderers[k % len(renderers)](k, now_ns)``.

    - ``public``: mark price / ticker frames, symbols round-robin;
    - ``private``: per fill the frames an exchange pushes for it (Binance ORDER_TRADE_UPDATE +
      ACCOUNT_UPDATE; Bybit order + execution + wallet + position), symbols round-robin;
    - ``fills``: one fill per frame (Binance ORDER_TRADE_UPDATE, Bybit execution).
    """
    if exchange == "binance":
        if name == "public":
            return "public", [binance_mark(s).render for s in symbols]
        if name == "private":
            return "private", [t.render for s in symbols for t in (binance_fill(s), binance_account(s))]
        if name == "fills":
            return "private", [binance_fill(s).render for s in symbols]
    elif exchange == "bybit":
        if name == "public":
            return "public", [bybit_ticker(s).render for s in symbols]
        if name == "private":
            wallet = bybit_wallet()
            return "private", [t.render for s in symbols
                               for t in (bybit_order(s), bybit_execution(s), wallet, bybit_position(s))]
        if name == "fills":
            return "private", [bybit_execution(s).render for s in symbols]
    raise ValueError(f"unknown workload {exchange}/{name}")


FRAMES_PER_FILL = {("binance", "private"): 2, ("bybit", "private"): 4}
