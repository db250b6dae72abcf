"""Bybit v5 linear through pybit: transport (:mod:`._transport`, the only code touching pybit and
websocket-client internals), REST (:mod:`._rest`), the one error map (:mod:`._errors`) and the
adapter that supervises them (:mod:`._adapter`)."""

from gridbot.adapters.bybit._adapter import BybitAdapter, BybitTimings

__all__ = ["BybitAdapter", "BybitTimings"]
