"""Fan one account out over Redis Streams: one process owns the exchange connection
(:class:`RedisPublisher` attached to an :class:`~gridbot.ExchangeStream`, or ``gridbot serve``), any
number of :class:`RemoteStream` consumers, anywhere, get the same typed, Decimal-exact events.

Needs redis-py: ``pip install 'gridbot[redis]'`` (imported only when one of these is built).
"""

from gridbot.remote._consumer import RemoteStream
from gridbot.remote._producer import PublisherStats, RedisPublisher

__all__ = ["PublisherStats", "RedisPublisher", "RemoteStream"]
