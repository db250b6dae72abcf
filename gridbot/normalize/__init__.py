"""Pure normalizers: wire mappings in, events out.  No SDK, socket, clock, logging or module state."""

from gridbot.normalize._common import Ignored, ListenKeyExpired

__all__ = ["Ignored", "ListenKeyExpired"]
