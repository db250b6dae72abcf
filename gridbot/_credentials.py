"""API keys as gridbot holds them: a secret no repr, log line or error message can show.

The secret is kept XOR-masked with a random pad of its length, so not even a walk over every object a
stream references (error trackers, debuggers, ``gc.get_referents``) meets its text; it is unmasked
only for the moment an SDK signs a request.  :meth:`Credentials.redact` removes the key, the secret
(whole tokens only: a short test secret cannot garble ordinary words) and request signatures from
text that might echo them (SDK exception messages, URLs).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, TypeVar

__all__ = ["Credentials", "MaskedAttribute", "Secret", "mask_attribute"]

T = TypeVar("T")

_SIGNATURE = re.compile(r"((?:signature|sign)=)[^&\s'\"]+", re.IGNORECASE)
_REDACTED = "<redacted>"


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
