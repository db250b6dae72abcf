"""API keys as gridbot holds them: a secret no repr, log line or error message can show.

The secret is kept XOR-masked with a random pad of its length, so not even a walk over every object a
stream references (error trackers, debuggers, ``gc.get_referents``) meets its text; it is unmasked
only for the moment an SDK signs a request.  :meth:`Credentials.redact` removes the key, the secret
(whole tokens only: a short test secret cannot garble ordinary words) and request signatures from
text that might echo them (SDK exception messages, URLs), and :meth:`Credentials.scrub` does that to an
SDK exception and its causes, dropping the request and response objects they keep (signed URLs, key
headers), so an exception gridbot raises ``from`` one is safe to log with its whole traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from typing import Any, Final, TypeVar

__all__ = ["Credentials", "MaskedAttribute", "Secret", "mask_attribute"]

T = TypeVar("T")

_SIGNATURE = re.compile(r"((?:signature|sign)=)[^&\s'\"]+", re.IGNORECASE)
_REDACTED = "<redacted>"
# What SDK and HTTP exceptions keep of the request they failed on: requests' and python-binance's
# ``.request``/``.response`` (signed URL, key header), pybit's ``.request`` text and ``.resp_headers``,
# urllib3's ``.pool``.  Dropped from every exception of a chain (urllib3's ``.url`` is redacted instead).
_REQUEST_ATTRIBUTES: Final = ("request", "response", "resp_headers", "pool")
# Text attributes that may echo a URL or the exchange's message: redacted in place.
_TEXT_ATTRIBUTES: Final = ("message", "url", "msg")

logger = logging.getLogger(__name__)


class Secret:
    """A string stored masked; :meth:`reveal` gives it back, ``repr`` never does."""

    __slots__ = ("_masked", "_pad")

    def __init__(self, value: str) -> None:
        data = value.encode()
        self._pad = os.urandom(len(data))
        self._masked = bytes(a ^ b for a, b in zip(data, self._pad, strict=True))

    def reveal(self) -> str:
        return bytes(a ^ b for a, b in zip(self._masked, self._pad, strict=True)).decode()

    def __bool__(self) -> bool:
        return bool(self._masked)

    def __repr__(self) -> str:
        return "<secret hidden>"


class Credentials:
    """An API key and its secret; one type for both adapters and the order gateways."""

    __slots__ = ("_secret", "key")

    def __init__(self, key: str, secret: str) -> None:
        self.key = key
        self._secret = Secret(secret)

    @property
    def secret(self) -> str:
        """The secret in clear, for an SDK about to sign; never keep the result."""
        return self._secret.reveal()

    def __repr__(self) -> str:
        return "<credentials hidden>"

    def redact(self, text: str) -> str:
        """``text`` without the key, the secret (as whole tokens) or any request signature."""
        text = _SIGNATURE.sub(r"\1" + _REDACTED, text)
        for token in (self.secret, self.key):
            if token:
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", _REDACTED, text)
        return text

    def scrub(self, exc: BaseException) -> BaseException:
        """``exc`` and every exception it was raised from, in place: messages redacted, the request and
        response objects they keep dropped (see ``_REQUEST_ATTRIBUTES``).  Returns ``exc``."""
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            try:
                self._scrub_one(current)
            except Exception:  # noqa: BLE001 - an odd exception type must not mask the real error
                logger.debug("could not scrub a %s", type(current).__name__)
            current = current.__cause__ or current.__context__
        return exc

    def _scrub_one(self, exc: BaseException) -> None:
        state = getattr(exc, "__dict__", {})
        for name in _REQUEST_ATTRIBUTES:
            if state.get(name) is not None:
                setattr(exc, name, None)
        for name in _TEXT_ATTRIBUTES:
            value = state.get(name)
            if isinstance(value, str):
                setattr(exc, name, self.redact(value))
        args = tuple(arg if isinstance(arg, (int, float)) or arg is None else self.redact(str(arg))
                     for arg in exc.args)
        if args != exc.args:
            exc.args = args


class MaskedAttribute:
    """A descriptor keeping an SDK object's secret attribute masked (:class:`Secret`): the SDK reads the
    clear text when it signs; the object's ``__dict__`` (and so any repr or object walk) never has it."""

    def __init__(self, name: str) -> None:
        self._slot = f"_gb_masked_{name}"

    def __get__(self, holder: Any, owner: type | None = None) -> str | None:
        secret = getattr(holder, self._slot, None) if holder is not None else None
        return secret.reveal() if secret else None

    def __set__(self, holder: Any, value: str | None) -> None:
        setattr(holder, self._slot, Secret(value) if value else None)


@functools.cache
def _masked_class(cls: type, name: str) -> type:
    def __repr__(self: Any) -> str:
        return f"<{cls.__module__}.{cls.__name__} (credentials hidden)>"

    return type(cls.__name__, (cls,), {name: MaskedAttribute(name), "__repr__": __repr__,
                                       "__module__": cls.__module__, "__qualname__": cls.__qualname__})


def mask_attribute(holder: T, name: str) -> T:
    """Move ``holder.<name>`` (an SDK client's secret) into a masked store, in place: the instance's
    class becomes a subclass with a :class:`MaskedAttribute` and a repr that shows no credentials.
    Objects without that instance attribute (test doubles) are left as they are."""
    state = getattr(holder, "__dict__", None)
    if not isinstance(state, dict) or name not in state:
        return holder
    value = state.pop(name)
    cls: type = type(holder)
    holder.__class__ = _masked_class(cls, name)
    setattr(holder, name, value)
    return holder
