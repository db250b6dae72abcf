"""The journal: a SQLite file of what the stream delivered, so a restart is handled like a long disconnect."""

from gridbot.journal._journal import Journal, Restored
from gridbot.journal._schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Journal", "Restored"]
