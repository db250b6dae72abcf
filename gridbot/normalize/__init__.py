"""Pure normalizers: wire mappings in, events out.  No SDK, socket, clock, logging or module state.

Stateful decoding (order slots, ticker merging) lives in one decoder object per channel, built by
:func:`new_decoder` and owned by the stream.
"""

from gridbot.normalize._common import Ignored, ListenKeyExpired
from gridbot.normalize._decoders import Decoded, Decoder, new_decoder

__all__ = ["Decoded", "Decoder", "Ignored", "ListenKeyExpired", "new_decoder"]
