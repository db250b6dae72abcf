"""An opt-in ``logging.Filter`` that masks request signatures, listenKeys and API-key headers.

gridbot's own log lines carry none of them, but the libraries under the SDKs do at DEBUG: urllib3 logs
every signed Binance URL (``...&timestamp=...&signature=...``), websockets logs the user-data socket's
``listenKey`` URL; in an application's own pybit clients, ``log_requests=True`` logs the
``X-BAPI-API-KEY``/``X-BAPI-SIGN`` headers and ``trace_logging=True`` makes websocket-client log Bybit's
``{"op": "auth", "args": [key, expires, signature]}`` frame.
Those records never pass through a gridbot logger, so a filter on gridbot's loggers could not reach
them, and a library must not reconfigure other libraries' loggers or install handlers: the application
attaches :class:`RedactingFilter` to its own handlers (a handler's filters see every record it emits,
whichever logger it came from).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["REDACTED", "RedactingFilter", "redact"]

REDACTED = "<redacted>"

_HEADERS = "X-MBX-APIKEY|X-BAPI-API-KEY|X-BAPI-SIGN"
_KEYS = rf"signature|sign|listenKey|{_HEADERS}|api_key|api_secret|apiKey|secretKey"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # query strings and form bodies: signature=..., sign=..., listenKey=...
    (re.compile(r"(?<![A-Za-z0-9_-])((?:signature|sign|listenKey)=)[^&\s'\"]+", re.IGNORECASE),
     rf"\1{REDACTED}"),
    # JSON and dict reprs: "listenKey": "...", 'X-BAPI-SIGN': '...'
    (re.compile(rf"([\"'](?:{_KEYS})[\"']\s*:\s*)([\"'])(?:(?!\2).)*\2", re.IGNORECASE),
     rf"\1\2{REDACTED}\2"),
    # header lines: "> X-MBX-APIKEY: ..." (websockets' handshake log, http.client's debug print)
    (re.compile(rf"(?<![A-Za-z0-9_-])((?:{_HEADERS})\s*:\s*)(?![\"'\s])[^\s,;}}]+", re.IGNORECASE),
     rf"\1{REDACTED}"),
    # Bybit's socket auth frame: {"op": "auth", "args": [api_key, expires, signature]}
    (re.compile(r"([\"']op[\"']\s*:\s*[\"']auth[\"']\s*,\s*[\"']args[\"']\s*:\s*)\[[^\]]*\]"),
     rf"\1[{REDACTED}]"),
    # an opaque token of 48+ letters and digits as a URL segment: a listenKey in /ws/<key> or
    # streams=<key>/..., a signature under another parameter name
    (re.compile(r"(?:(?<=/)|(?<==))[A-Za-z0-9]{48,}(?![A-Za-z0-9])"), REDACTED),
)


def redact(text: str, tokens: Iterable[str] = ()) -> str:
    """``text`` with signatures, listenKeys and API-key header values masked, and every whole-token
    occurrence of ``tokens`` (e.g. your API key) too."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for token in tokens:
        if token:
            text = re.sub(rf"(?<![A-Za-z0-9_-]){re.escape(token)}(?![A-Za-z0-9_-])", REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks request signatures (``signature=``, ``sign=``), listenKeys, the ``X-MBX-APIKEY``,
    ``X-BAPI-API-KEY`` and ``X-BAPI-SIGN`` header values and Bybit's socket auth arguments in every
    record it sees, plus any ``tokens`` given (e.g. the API key, the secret) as whole tokens.

    Attach it to your handlers, not to a logger: a logger's filters see only the records logged to
    that logger itself, while urllib3's, websockets' and the SDKs' records reach your handlers through
    propagation::

        handler = logging.StreamHandler()
        handler.addFilter(gridbot.RedactingFilter())
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])

    It never drops a record.  It rewrites the record in place (message, formatted traceback, stack), so
    handlers after it see the masked text too.  A traceback is formatted here with the default
    ``logging.Formatter.formatException``.
    """

    def __init__(self, *tokens: str, name: str = "") -> None:
        super().__init__(name)
        self._tokens = tuple(token for token in tokens if token)

    def __repr__(self) -> str:  # the tokens are secrets: never shown
        return f"RedactingFilter(<{len(self._tokens)} tokens>)"

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # malformed: logging reports it when a handler formats it
            return True
        masked = redact(message, self._tokens)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._tokens)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._tokens)
        return True
