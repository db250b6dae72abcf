"""A compact synchronous grid strategy driven only by :class:`gridbot.ExchangeStream` callbacks.

Levels sit around a start price: ``levels`` buy orders below it and ``levels`` sell orders above, each
``step_pct`` percent apart.  When a level's entry fills, a reduce-only Limit take-profit goes one step
back towards the start price; when that fills, the level is armed again.  In hedge mode buy levels
trade the long slot (``position_idx`` 1) and sell levels the short slot (2); in one-way mode both use
slot 0.

State comes from the stream, never from REST polling: realised PnL from ``cum_realised_pnl`` deltas
(:class:`~gridbot.RealisedPnlTracker`), cross-checked against the fills' own PnL; open take-profit ids
from :class:`~gridbot.TakeProfitTracker`; balance from :class:`~gridbot.WalletState`, MM rate from
:class:`~gridbot.AccountState`.  Orders are placed through an :class:`~gridbot.adapters._orders.OrderGateway`
(REST, control only).  While the stream reconnects the strategy places nothing; after the resync it
catches up (take-profits for entries that filled meanwhile, re-armed levels).

Every callback takes one lock, so the strategy can be read from another thread (a terminal view) and
events delivered while an order request is in flight wait for it.

This package only re-exports: the grid's shape (``_levels``), its PnL bookkeeping (``_pnl``), the
strategy (``_strategy``) and its wiring to a stream (``_wiring``) each have a module of their own.
"""

from gridbot.grid._levels import GridConfig, Level, LevelState
from gridbot.grid._pnl import Close, PnlChange, PnlCrossCheck, PnlMismatch
from gridbot.grid._strategy import GridStrategy, GridView
from gridbot.grid._wiring import fan_out

__all__ = ["Close", "GridConfig", "GridStrategy", "GridView", "Level", "LevelState", "PnlChange",
           "PnlCrossCheck", "PnlMismatch", "fan_out"]
