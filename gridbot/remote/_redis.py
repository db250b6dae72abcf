"""The Redis edge of the fan-out: keys, Lua scripts, and a redis-py client built from a URL.

redis-py is an optional dependency (``pip install 'gridbot[redis]'``), imported only here and only
when a publisher or remote stream is built.  A URL's password never appears in a log line, a repr
or an error: :func:`redact` is used wherever a URL is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gridbot.errors import GridbotError

__all__ = [
    "MARK_SCRIPT",
    "PUBLISH_SCRIPT",
    "READ_SCRIPT",
    "Entry",
    "Keys",
    "connect",
    "down_errors",
    "entries_of",
    "id_key",
    "redact",
    "text",
]

#: One stream entry: its id and its fields (None when the entry was trimmed while pending in a group).
Entry = tuple[str, dict[bytes, bytes] | None]


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def id_key(entry_id: str) -> tuple[int, int]:
    """An entry id as a comparable (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entries_of(result: Any) -> list[Entry]:
    """The entries of an XREAD/XREADGROUP reply for one stream (redis-py's or a script's raw reply)."""
    if not result:
        return []
    if isinstance(result, dict):  # RESP3
        streams = list(result.values())
        raw = streams[0][0] if streams and streams[0] and isinstance(streams[0][0], list) else streams[0]
    else:
        raw = result[0][1]
    out: list[Entry] = []
    for entry in raw:
        entry_id, fields = entry[0], entry[1]
        if isinstance(fields, list):  # a script's raw reply: a flat field/value list
            fields = {fields[i]: fields[i + 1] for i in range(0, len(fields), 2)}
        out.append((text(entry_id), fields or None))
    return out


_ACCOUNT = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


@dataclass(frozen=True, slots=True)
class Keys:
    """The three keys of one account; the ``{account}`` hash tag keeps them in one Redis Cluster slot."""

    stream: str
    state: str
    meta: str

    @classmethod
    def of(cls, account: str) -> Keys:
        if not isinstance(account, str) or not _ACCOUNT.match(account):
            raise ValueError(f"account must be 1-100 characters of A-Z a-z 0-9 _ . : -, not {account!r}")
        prefix = f"gridbot:{{{account}}}"
        return cls(stream=f"{prefix}:events", state=f"{prefix}:state", meta=f"{prefix}:meta")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and errors)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", re.sub(r"(://)[^:/@]+@", r"\1***@", url))


def connect(url: str, *, socket_timeout: float = 10.0) -> Any:
    """A redis-py client for ``url`` (redis://, rediss:// with TLS, unix://; user:password@ works)."""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            f"redis_url must start with redis://, rediss:// or unix://, not {redact(str(url))!r}")
    try:
        import redis
    except ImportError as exc:
        raise GridbotError("the Redis fan-out needs redis-py: pip install 'gridbot[redis]'") from exc
    return redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=5.0,
                                socket_keepalive=True)


def down_errors() -> tuple[type[BaseException], ...]:
    """The redis-py exceptions that mean "Redis is not reachable now" (retry later)."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


# Publish a batch of events atomically: each goes to the stream and (if it is state) to the state
# hash, and meta.last_id names the last entry, so "state as of last_id" is always consistent.  The
# guard refuses when Redis is not where this producer left it (Redis lost data, or another producer
# wrote): the caller then writes a resync marker.
# KEYS: stream, state, meta.  ARGV: maxlen, producer token, expected last_id, then (payload, identity, op)*
# op: "s" set the identity, "d" delete it, "t" a status (kept in meta.status), "" none.
PUBLISH_SCRIPT = """
local meta = redis.call('HMGET', KEYS[3], 'producer', 'last_id')
if meta[1] ~= ARGV[2] or meta[2] ~= ARGV[3] then
  return redis.error_reply('GRIDBOT_DIVERGED')
end
local id = ARGV[3]
for i = 4, #ARGV, 3 do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
  if ARGV[i + 2] == 's' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i])
  elseif ARGV[i + 2] == 'd' then
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
  elseif ARGV[i + 2] == 't' then
    redis.call('HSET', KEYS[3], 'status', ARGV[i])
  end
end
redis.call('HSET', KEYS[3], 'last_id', id)
redis.call('HINCRBY', KEYS[3], 'hb', 1)
return id
"""

# Write a marker entry and take the account over: "reset" (a producer starts; the state hash is
# kept until its seed has rewritten it) or "resync" (the state hash is replaced by ARGV's state).
# KEYS: stream, state, meta.  ARGV: maxlen, producer token, marker payload, exchange, replace (0/1),
# then (identity, payload)*.  Returns {id, previous state identities}.
MARK_SCRIPT = """
local old = redis.call('HKEYS', KEYS[2])
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[2])
  for i = 6, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
redis.call('HSET', KEYS[3], 'producer', ARGV[2], 'last_id', id, 'exchange', ARGV[4], 'mark_id', id)
redis.call('HINCRBY', KEYS[3], 'hb', 1)
return {id, old}
"""

# One non-blocking read with its continuity check, atomically.  The position read from (the
# consumer's last id, or its group's last-delivered-id) must still be in the stream: if it is gone,
# the stream was trimmed past it (or Redis lost data) and entries after it may be missing.
# KEYS: stream, meta.  ARGV: position, count, group ('' for none), consumer.
# Returns {meta {hb, status, last_id}, 'ok', entries} | {meta, 'gap', position} | {meta, 'nogroup'}.
READ_SCRIPT = """
local meta = redis.call('HMGET', KEYS[2], 'hb', 'status', 'last_id')
local pos = ARGV[1]
if ARGV[3] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {meta, 'nogroup'} end
  pos = false
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, last = nil, nil
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == ARGV[3] then pos = last end
  end
  if not pos then return {meta, 'nogroup'} end
end
if pos ~= '0-0' and #redis.call('XRANGE', KEYS[1], pos, pos) == 0 then
  return {meta, 'gap', pos}
end
local entries
if ARGV[3] ~= '' then
  entries = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', ARGV[2], 'STREAMS', KEYS[1], '>')
else
  entries = redis.call('XREAD', 'COUNT', ARGV[2], 'STREAMS', KEYS[1], pos)
end
return {meta, 'ok', entries}
"""
