"""Binance USDⓈ-M futures: wire mappings (WebSocket pushes and REST seed rows) to gridbot events.

Pure: no SDK, socket, clock, logging or module state (its tables are read-only).

Conventions the stream relies on:

- ``timestamp`` is the exchange's transaction/update time of the thing, so a push and a REST row of
  the same key compare: pushes use the top-level ``T`` (ORDER_TRADE_UPDATE: ``o.T`` first) and fall back
  to ``E``; markPriceUpdate uses ``E``; REST rows use ``updateTime``, else ``time``, else 0.
- ``raw`` is the smallest mapping holding what the event was built from: the row of a multi-row
  message or of a REST answer, the whole message for ORDER_TRADE_UPDATE / ALGO_UPDATE, the ``data``
  dict of a markPriceUpdate.  A NormalizationError carries the whole message (or the REST row).
- Every money/quantity field is a Decimal from the wire string; a float raises NormalizationError.

Choices where Binance gives less than the event model has:

- Wallet: ACCOUNT_UPDATE ``a.B[]`` has ``wb`` (wallet balance) and ``cw`` (cross wallet balance: the
  wallet balance less isolated margin, still including margin held by cross positions and open orders).
  Neither is the balance available for new orders, so pushed WalletUpdates carry
  ``available_balance=None`` ("not sent"), and only the REST seed (balance v3 ``availableBalance``) sets
  it.  Consumers must keep the last known value when a push carries None.  ``equity`` is never sent by
  these messages: None.  The account figures (margin balance, maintenance margin, MM rate) are computed
  by the stream (gridbot._account), not sent by Binance.
- Position: ``mark_price`` is None on pushes (ACCOUNT_UPDATE has none; the stream merges the ticker's);
  REST positionRisk has ``markPrice``.  REST has no ``cr``, so seeded positions carry
  ``cum_realised_pnl=None``.
- ``reduce_only`` is True for the reduce-only flag ``R``, for close-position orders (``cp``: they can only
  reduce), and in hedge mode for a Sell on the long slot or a Buy on the short slot (DESIGN §4b).
- ``trigger_price`` is None when the wire value is absent, empty or zero (Binance sends "0" for "none").
- ALGO_UPDATE FINISHED is Filled when anything filled (``aq`` > 0, even partially; ``filled_qty`` tells
  how much), else Cancelled.  ``linked_order_id`` is the child order id ``ai`` once TRIGGERED/FINISHED.
- Order type LIQUIDATION (documented for ORDER_TRADE_UPDATE) is "Market": a forced close must not be
  dropped as an unknown enum, or its fill would be lost.
- Forced closes: ``x`` = CALCULATED ("Liquidation Execution"; the zh-CN page: liquidation *or* ADL)
  gives a FillUpdate like TRADE, ``exec_type`` "Adl" when the order's client id is ``adl_autoclose``
  (documented), else "Liquidation".  Which fill fields it carries is not documented: a missing ``t``
  becomes the trade id ``calc-<orderId>-<T>``, a missing or zero ``l`` means no fill.
- ``GET /fapi/v1/userTrades`` rows (gap backfill) become FillUpdates with ``exec_type`` "Trade" (the row
  does not tell a forced close) and ``is_snapshot`` True; ``commission`` is taken with its sign, as ``n``.

Layout: ``_push`` (WebSocket pushes), ``_rest`` (REST seed and backfill rows), ``_records`` (positions,
balances and orders, built one way from either source's spelling) and ``_wire`` (enum tables and
field readers); this package re-exports the public functions.
"""

from gridbot.normalize.binance._push import parse_market_message, parse_user_message
from gridbot.normalize.binance._rest import (
    algo_orders_from_rest,
    fills_from_rest,
    finished_algo_order_from_rest,
    orders_from_rest,
    positions_from_rest,
    wallets_from_rest,
)
from gridbot.normalize.binance._wire import EXCHANGE

__all__ = [
    "EXCHANGE",
    "algo_orders_from_rest",
    "fills_from_rest",
    "finished_algo_order_from_rest",
    "orders_from_rest",
    "parse_market_message",
    "parse_user_message",
    "positions_from_rest",
    "wallets_from_rest",
]
