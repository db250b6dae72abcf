"""Bybit instrument, coin and account-metadata rows (what CCXT's load_markets and its unified-account
detection read): ``GET /v5/market/instruments-info``, ``/v5/asset/coin/query-info``, ``/v5/user/query-api``,
``/v5/account/info``.  Pure functions; shapes from the v5 docs' examples.

The key is a unified trading account (UTA 2.0) key with read-write contract permissions; the account has one
coin (the engine's), one chain per coin, and no withdrawals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gridbot.emulator.bybit._wire import _s
from gridbot.emulator.engine import SymbolConfig
from gridbot.emulator.margin import LeverageBracket

__all__ = ["account_info", "api_key_info", "coin_info", "instrument"]


def _scale(step: Decimal) -> str:
    return str(max(0, -int(step.normalize().as_tuple().exponent)))


def instrument(cfg: SymbolConfig, coin: str, launch_time: int,
               brackets: tuple[LeverageBracket, ...]) -> dict[str, Any]:
    """A ``list[]`` row of instruments-info for a linear perpetual."""
    base = cfg.symbol[: -len(coin)] if cfg.symbol.endswith(coin) else cfg.symbol
    return {
        "symbol": cfg.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": base,
        "quoteCoin": coin,
        "launchTime": str(launch_time),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": _scale(cfg.tick_size),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": _s(Decimal(brackets[0].initial_leverage)),
                           "leverageStep": "0.01"},
        "priceFilter": {"minPrice": _s(cfg.tick_size), "maxPrice": "1999999.8",
                        "tickSize": _s(cfg.tick_size)},
        "lotSizeFilter": {"maxOrderQty": "100000", "minOrderQty": _s(cfg.qty_step),
                          "qtyStep": _s(cfg.qty_step),
                          "postOnlyMaxOrderQty": "100000", "maxMktOrderQty": "100000",
                          "minNotionalValue": _s(cfg.min_notional)},
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": coin,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
    }


def coin_info(coin: str) -> dict[str, Any]:
    """A ``rows[]`` entry of coin/query-info: one chain, deposits and withdrawals open."""
    chain = {
        "chainType": coin, "confirmation": "1", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0",
        "chain": coin, "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8",
        "withdrawPercentageFee": "0", "contractAddress": "", "safeConfirmNumber": "1",
        "blockConfirmNumber": "1",
    }
    return {"name": coin, "coin": coin, "remainAmount": "9999999", "chains": [chain]}


def api_key_info(api_key: str, uid: str, created: str) -> dict[str, Any]:
    """The result of user/query-api: a UTA key (``uta`` 1) that may trade contracts, never expiring."""
    return {
        "id": "1", "note": "gridbot emulator", "apiKey": api_key, "readOnly": 0, "secret": "",
        "permissions": {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Wallet": [],
                        "Options": [], "Derivatives": ["DerivativesTrade"], "CopyTrading": [],
                        "BlockTrade": [],
                        "Exchange": [], "NFT": [], "Affiliate": [], "Earn": []},
        "ips": ["*"], "type": 1, "deadlineDay": -1, "expiredAt": "", "createdAt": created,
        "unified": 0, "uta": 1, "userID": int(uid), "inviterID": 0, "vipLevel": "No VIP",
        "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True, "parentUid": "0",
        "kycLevel": "LEVEL_DEFAULT", "kycRegion": "",
    }


def account_info(updated_time: int) -> dict[str, Any]:
    """The result of account/info: UTA 2.0 (``unifiedMarginStatus`` 5), regular cross margin."""
    return {"unifiedMarginStatus": 5, "marginMode": "REGULAR_MARGIN", "isMasterTrader": False,
            "spotHedgingStatus": "OFF", "updatedTime": str(updated_time), "dcpStatus": "OFF",
            "timeWindow": 10, "smpGroup": 0}
