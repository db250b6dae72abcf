"""A strategy process for the crash tests: an ExchangeStream with a journal, every callback written
to a line-per-event log (flushed at once, so a SIGKILL loses at most a partial last line).

    python -m tests.journal.consumer EXCHANGE REST_URL WS_URL JOURNAL LOG SYMBOL[,SYMBOL...]

Prints "live" once start() returned; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import gridbot

KEY, SECRET = "crash-key", "crash-secret"


def main(argv: list[str]) -> int:
    exchange, rest, ws, journal_path, log_path, symbols = argv
    log = open(log_path, "a", buffering=1, encoding="utf-8")

    def write(kind: str, event: Any, **fields: Any) -> None:
        log.write(json.dumps({"kind": kind, "restored": event.restored, "snapshot": event.is_snapshot,
                              **fields}) + "\n")

    def on_fill(fill: gridbot.FillUpdate) -> None:
        write("fill", fill, symbol=fill.symbol, trade_id=fill.trade_id)

    def on_position(position: gridbot.PositionUpdate) -> None:
        cum = position.cum_realised_pnl
        write("position", position, symbol=position.symbol, idx=position.position_idx,
              cum=None if cum is None else str(cum), size=str(position.size))

    def on_order(order: gridbot.OrderUpdate) -> None:
        write("order", order, symbol=order.symbol, order_id=order.order_id, status=order.status)

    stream = gridbot.ExchangeStream(exchange, api_key=KEY, api_secret=SECRET,  # type: ignore[arg-type]
                                    endpoints=gridbot.Endpoints(rest=rest, ws=ws), journal=journal_path)
    for symbol in symbols.split(","):
        stream.subscribe(symbol, on_fill=on_fill, on_position=on_position, on_order=on_order)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stream.start(timeout=30.0)
    print("live", flush=True)
    stop.wait()
    stream.stop()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
