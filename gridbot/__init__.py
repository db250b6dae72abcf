"""gridbot: the live state of a futures account for a synchronous grid strategy, from exchange WebSockets."""

from gridbot._log_redaction import RedactingFilter
from gridbot.book import BookSnapshot, SocketStatus, StateBook, StreamStatus
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError, NormalizationError
from gridbot.events import (
    AccountUpdate,
    Event,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.journal import Journal
from gridbot.remote import PublisherStats, RedisPublisher, RemoteStream
from gridbot.stats import StreamStats
from gridbot.stream import ExchangeStream
from gridbot.tracking import AccountState, RealisedPnlTracker, TakeProfitTracker, WalletState

__all__ = [
    "AccountState",
    "AccountUpdate",
    "AuthenticationError",
    "BookSnapshot",
    "ConnectError",
    "Endpoints",
    "Event",
    "ExchangeStream",
    "FillUpdate",
    "GridbotError",
    "Journal",
    "NormalizationError",
    "OrderUpdate",
    "PositionUpdate",
    "PublisherStats",
    "RealisedPnlTracker",
    "RedactingFilter",
    "RedisPublisher",
    "RemoteStream",
    "SocketStatus",
    "StateBook",
    "StatusUpdate",
    "StreamStats",
    "StreamStatus",
    "TakeProfitTracker",
    "TickerUpdate",
    "WalletState",
    "WalletUpdate",
]

__version__ = "0.1.0"
