"""Binance USDⓈ-M futures over python-binance, in layers:

- :mod:`._transport` (with :mod:`._receive` and :mod:`._liveness`): the only code touching python-binance
  and websockets internals — the manager thread, the observed SDK sockets, the hosts;
- :mod:`._adapter`: :class:`BinanceAdapter`, supervising the two sockets and reporting to the stream;
- :mod:`._rest`: the one REST layer (seed, order look-ups, fill backfill, account config, listen keys);
- :mod:`._errors`: the one error map, shared by the adapter and the order gateway.
"""

from gridbot.adapters.binance._adapter import BinanceAdapter

__all__ = ["BinanceAdapter"]
