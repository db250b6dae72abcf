"""A RemoteStream in its own process for the end-to-end tests: one JSON line per event in --out.

    python -m tests.fanout.consumer_proc URL ACCOUNT --out FILE [--group G --consumer C]
           [--claim-idle S] [--hang-on-fill N]

``--hang-on-fill N``: the callback of the N-th fill never returns (a stuck consumer, to be killed).
Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import Any

import gridbot
from gridbot.events import Event, FillUpdate, PositionUpdate, StatusUpdate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("account")
    parser.add_argument("--out", required=True)
    parser.add_argument("--group")
    parser.add_argument("--consumer")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--claim-idle", type=float, default=30.0)
    parser.add_argument("--hang-on-fill", type=int, default=0)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = open(args.out, "a", buffering=1)  # line-buffered: the test reads it while we run
    lock = threading.Lock()
    fills = 0

    def write(record: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(record) + "\n")

    def on_event(event: Event) -> None:
        nonlocal fills
        if isinstance(event, FillUpdate):
            fills += 1
            if fills == args.hang_on_fill:
                threading.Event().wait()
            write({"kind": "fill", "trade_id": event.trade_id, "order_id": event.order_id})
        elif isinstance(event, StatusUpdate):
            write({"kind": "status", "state": event.state, "detail": event.detail})
        elif isinstance(event, PositionUpdate):
            write({"kind": "position", "size": str(event.size), "snapshot": event.is_snapshot,
                   "mark": str(event.mark_price)})

    remote = gridbot.RemoteStream(args.url, args.account, group=args.group, consumer=args.consumer,
                                  on_status=on_event, claim_idle=args.claim_idle, heartbeat_timeout=2.0)
    remote.subscribe(args.symbol, on_fill=on_event, on_position=on_event)
    remote.start(timeout=30)
    write({"kind": "started"})
    stop.wait()
    remote.stop()
    out.close()


if __name__ == "__main__":
    main()
