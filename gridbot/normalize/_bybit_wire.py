"""What every Bybit v5 frame parser shares: the exchange name, the errors a malformed frame raises inside a
parser, and the answer to a frame without a topic (an op answer or an unknown shape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gridbot.errors import NormalizationError
from gridbot.normalize._common import Ignored

__all__ = ["EXCHANGE", "MALFORMED", "control_frame"]

EXCHANGE: Final = "bybit"
_CONTROL_TYPES: Final = frozenset({"COMMAND_RESP", "AUTH_RESP"})
# What indexing into a malformed wire dict raises; parsers turn it into a NormalizationError with the frame.
MALFORMED: Final = (AttributeError, TypeError, KeyError, ValueError, IndexError)


def control_frame(msg: Mapping[str, Any]) -> Ignored:
    """A frame without a topic: an op answer (auth, subscribe, ping/pong) or an unknown shape (error)."""
    op = msg.get("op")
    if isinstance(op, str) and op:
        return Ignored(op)
    if "success" in msg or "ret_msg" in msg or msg.get("type") in _CONTROL_TYPES:
        return Ignored("ack")
    raise NormalizationError("frame has neither a topic nor an op", msg)
