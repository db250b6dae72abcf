"""``gridbot journal PATH``: read a journal (even while a stream writes it): summary, fills, PnL, orders."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from gridbot.cli._base import EXIT_FAILED, EXIT_OK, Command, err, say, symbol
from gridbot.errors import GridbotError
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate
from gridbot.journal import Journal
from gridbot.journal._codec import decimal_text

__all__ = ["COMMAND", "read_journal"]


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the journal file (an SQLite database)")
    show = parser.add_mutually_exclusive_group()
    show.add_argument("--fills", action="store_true", help="every journaled fill, in exchange order")
    show.add_argument("--pnl", action="store_true",
                      help="realised PnL per position slot since the journal began")
    show.add_argument("--orders", action="store_true", help="the latest state of each order")
    parser.add_argument("--open", action="store_true", help="with --orders: open orders only")
    parser.add_argument("--symbol", type=symbol, help="only this symbol")
    parser.add_argument("--exchange", choices=("binance", "bybit"), help="only this exchange")
    parser.add_argument("--json", action="store_true",
                        help="one JSON document on stdout (Decimals as strings)")


def _run(args: argparse.Namespace) -> int:
    view = "fills" if args.fills else "pnl" if args.pnl else "orders" if args.orders else "summary"
    try:
        with Journal(args.path, readonly=True) as journal:
            result = read_journal(journal, view, symbol=args.symbol, exchange=args.exchange,
                                  open_only=args.open)
    except GridbotError as exc:
        err(f"gridbot journal: {exc}")
        return EXIT_FAILED
    result = _plain(result)
    if args.json:
        say(json.dumps(result))
    else:
        for line in _lines(view, result):
            say(line)
    return EXIT_OK


COMMAND = Command(
    name="journal",
    help="read a journal file: summary, --fills, --pnl or --orders",
    description=(
        "Read a gridbot journal (the SQLite file of ExchangeStream(..., journal=PATH)); safe while a "
        "stream is writing it.  Without an option: a summary per exchange.\n\n"
        "The tables are plain SQL too: sqlite3 PATH 'SELECT symbol, side, qty, price FROM fills'."),
    configure=_configure,
    run=_run,
)


def read_journal(journal: Journal, view: str, *, symbol: str | None = None, exchange: str | None = None,
                 open_only: bool = False) -> dict[str, Any]:
    """The data of one view (Decimals stay Decimal)."""
    if view == "fills":
        return {"fills": [_fill(f) for f in journal.fills(symbol, exchange=exchange)]}
    if view == "orders":
        return {"orders": [_order(o) for o in journal.orders(symbol, open_only, exchange=exchange)]}
    slots = _pnl_slots(journal, symbol, exchange)
    total = sum((s["realised"] for s in slots), Decimal(0))
    if view == "pnl":
        return {"realised_pnl": total, "slots": slots}
    fills = journal.fills(symbol, exchange=exchange)
    return {
        "path": journal.path,
        "schema_version": journal.schema_version,
        "fills": len(fills),
        "first_fill": _iso(fills[0].timestamp) if fills else None,
        "last_fill": _iso(fills[-1].timestamp) if fills else None,
        "realised_pnl": total,
        "open_orders": len(journal.orders(symbol, True, exchange=exchange)),
        "positions": [_position(p) for p in journal.positions(symbol, exchange=exchange) if p.size > 0],
    }


def _plain(value: Any) -> Any:
    """Decimals as exact fixed-point text (no exponent), recursively."""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _pnl_slots(journal: Journal, symbol: str | None, exchange: str | None) -> list[dict[str, Any]]:
    slots = []
    for p in journal.positions(symbol, exchange=exchange):
        realised = journal.realised_pnl(p.symbol, p.position_idx, exchange=p.exchange)
        slots.append({"exchange": p.exchange, "symbol": p.symbol, "position_idx": p.position_idx,
                      "realised": realised, "cum_realised_pnl": p.cum_realised_pnl})
    return slots


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def _fill(f: FillUpdate) -> dict[str, Any]:
    return {"time": _iso(f.timestamp), "timestamp": f.timestamp, "exchange": f.exchange, "symbol": f.symbol,
            "position_idx": f.position_idx, "side": f.side, "qty": f.qty, "price": f.price, "fee": f.fee,
            "fee_asset": f.fee_asset, "realised_pnl": f.realised_pnl, "is_maker": f.is_maker,
            "trade_id": f.trade_id, "order_id": f.order_id}


def _order(o: OrderUpdate) -> dict[str, Any]:
    return {"time": _iso(o.timestamp), "timestamp": o.timestamp, "exchange": o.exchange, "symbol": o.symbol,
            "order_id": o.order_id, "client_order_id": o.client_order_id, "status": o.status,
            "side": o.side, "order_type": o.order_type, "qty": o.qty, "filled_qty": o.filled_qty,
            "price": o.price, "trigger_price": o.trigger_price, "reduce_only": o.reduce_only,
            "position_idx": o.position_idx, "is_take_profit": o.is_take_profit}


def _position(p: PositionUpdate) -> dict[str, Any]:
    return {"exchange": p.exchange, "symbol": p.symbol, "position_idx": p.position_idx, "side": p.side,
            "size": p.size, "entry_price": p.entry_price, "cum_realised_pnl": p.cum_realised_pnl}


def _lines(view: str, result: dict[str, Any]) -> list[str]:
    if view == "fills":
        return [f"{f['time']} {f['exchange']} {f['symbol']} {f['side']} {f['qty']} @ {f['price']} "
                f"fee {f['fee']} {f['fee_asset']} pnl {f['realised_pnl']} trade {f['trade_id']} "
                f"order {f['order_id']}" for f in result["fills"]]
    if view == "orders":
        return [f"{o['time']} {o['exchange']} {o['symbol']} {o['order_id']} {o['status']} {o['side']} "
                f"{o['order_type']} {o['filled_qty']}/{o['qty']} @ {o['price']}"
                + (" TP" if o["is_take_profit"] else "") + (" reduce-only" if o["reduce_only"] else "")
                for o in result["orders"]]
    if view == "pnl":
        lines = [f"{s['exchange']} {s['symbol']} idx {s['position_idx']}: realised {s['realised']}"
                 f" (cum {s['cum_realised_pnl']})" for s in result["slots"]]
        return [*lines, f"total realised {result['realised_pnl']}"]
    lines = [f"journal {result['path']} (schema v{result['schema_version']})",
             f"fills: {result['fills']}" + (f" ({result['first_fill']} .. {result['last_fill']})"
                                            if result["fills"] else ""),
             f"realised pnl: {result['realised_pnl']}",
             f"open orders: {result['open_orders']}"]
    lines += [f"position {p['exchange']} {p['symbol']} idx {p['position_idx']}: {p['side']} {p['size']} "
              f"@ {p['entry_price']}" for p in result["positions"]]
    return lines
