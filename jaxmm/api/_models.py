"""Request and response models of the REST API (pydantic v2; they generate the OpenAPI schema).

Units follow MISSION.md: prices in the quote currency per unit of underlying, quantities in
contracts (the book converts them to integer ticks and lots at the edge and rejects values off
its grid), expiries in years ACT/365F, vols annualised fractions, Greeks raw (vega per 1.00
vol, theta per year), timestamps in integer nanoseconds since the Unix epoch. Money read from
the store (fills, daily PnL) is exact decimal text.

Every 4xx response has one shape, :class:`ErrorBody`::

    {"error": {"field": "price", "rule": "greater_than", "message": "..."}}
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from ..engine import MAX_DIRECTIONAL_SKEW, MAX_SIZE_SCALAR, MAX_SPREAD_MULTIPLIER

__all__ = [
    "ApiError",
    "error_field",
    "ErrorDetail",
    "ErrorBody",
    "Health",
    "VersionInfo",
    "ConfigOut",
    "ControlsIn",
    "ControlsOut",
    "InstrumentEnableIn",
    "InstrumentEnableOut",
    "KillIn",
    "EngineAction",
    "PriceIn",
    "PriceOut",
    "QuoteOut",
    "PositionOut",
    "GreeksOut",
    "PnlOut",
    "ChainSide",
    "ChainRow",
    "ChainExpiry",
    "SurfaceOut",
    "OrderIn",
    "OrderModifyIn",
    "OrderOut",
    "CancelAllIn",
    "CancelAllOut",
    "FillOut",
    "FillPage",
    "DailyPnlOut",
    "BreakerOut",
    "AlertOut",
]


def _decimal_text(d: Decimal) -> str:
    """Canonical decimal text: no exponent, no trailing zeros (the same on every backend)."""
    return format(d.normalize(), "f")


Money = Annotated[Decimal, PlainSerializer(_decimal_text, return_type=str, when_used="json")]
"""Exact money from the store, serialised as canonical decimal text (``"1.25"``)."""


class ApiError(Exception):
    """A 4xx answer: HTTP ``status``, the request ``field`` at fault (None when the request as
    a whole is), the ``rule`` it broke and a human ``message``; optional response headers.

    Example:
        >>> e = ApiError(404, "symbol", "unknown_symbol", "no instrument 'X'")
        >>> e.body()
        {'error': {'field': 'symbol', 'rule': 'unknown_symbol', 'message': "no instrument 'X'"}}
    """

    def __init__(
        self,
        status: int,
        field: str | None,
        rule: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.rule = rule
        self.message = message
        self.headers = headers

    @property
    def status_code(self) -> int:
        """The HTTP status (Starlette's spelling)."""
        return self.status

    @property
    def detail(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "rule": self.rule, "message": self.message}}


def _loc(loc: tuple) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or None


def error_field(err: dict) -> str | None:
    """The dotted field of one pydantic error; for a model-level check (no location) the
    ``field: ...`` prefix jaxmm's validators put in their message, joined to the model's path.

    Example:
        >>> error_field({"loc": ("body", "underlyings", 0, "spot"), "type": "greater_than"})
        'underlyings.0.spot'
        >>> error_field({"loc": ("body",), "type": "value_error",
        ...              "msg": "Value error, limits.ABC: not an underlying symbol"})
        'limits.ABC'
    """
    where = _loc(tuple(err.get("loc", ())))
    msg = str(err.get("msg", ""))
    if err.get("type") == "value_error":
        head, sep, _ = msg.removeprefix("Value error, ").partition(": ")
        if sep and head and all(c.isalnum() or c in "_.[]" for c in head):
            return f"{where}.{head}" if where else head
    return where


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorDetail(_Out):
    field: str | None = Field(description="the request field at fault (dotted path), if any")
    rule: str = Field(description="the rule broken, e.g. `greater_than`, `unknown_symbol`")
    message: str


class ErrorBody(_Out):
    """The body of every 4xx (and 5xx) response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "field": "price",
                        "rule": "greater_than",
                        "message": "Input should be greater than 0",
                    }
                }
            ]
        }
    )
    error: ErrorDetail


class Health(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ok", "ts_ns": 1767225600000000000, "auth": "enabled"}]
        }
    )
    status: Literal["ok"]
    ts_ns: int
    auth: Literal["enabled", "disabled"]


class VersionInfo(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "jaxmm", "version": "0.1.0", "api": "v1", "python": "3.11.2"}]
        }
    )
    name: str
    version: str
    api: str
    python: str


class ConfigOut(_Out):
    """A configuration version: the running config when read from ``GET /mm/config``."""

    version: int = Field(ge=0, description="store version number (0: never stored)")
    author: str
    ts_ns: int
    comment: str | None = None
    config: dict[str, Any]


class ControlsIn(_In):
    """Operator controls to change; fields left out keep their value. Applied atomically."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"spread_multiplier": 1.5, "directional_skew": -2.0}]}
    )
    spread_multiplier: float | None = Field(
        default=None, gt=0, le=MAX_SPREAD_MULTIPLIER, description="x half-spread"
    )
    size_scalar: float | None = Field(
        default=None, ge=0, le=MAX_SIZE_SCALAR, description="x base size"
    )
    directional_skew: float | None = Field(
        default=None,
        ge=-MAX_DIRECTIONAL_SKEW,
        le=MAX_DIRECTIONAL_SKEW,
        description="underlying price units: quote as if spot were S + skew",
    )
    quoting_enabled: bool | None = None


class ControlsOut(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "spread_multiplier": 1.0,
                    "size_scalar": 1.0,
                    "directional_skew": 0.0,
                    "quoting_enabled": True,
                    "disabled_instruments": [],
                }
            ]
        }
    )
    spread_multiplier: float
    size_scalar: float
    directional_skew: float
    quoting_enabled: bool
    disabled_instruments: list[str]


class InstrumentEnableIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})
    enabled: bool


class InstrumentEnableOut(_Out):
    symbol: str
    enabled: bool
    disabled_instruments: list[str]


class KillIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "manual"}]})
    reason: str = Field(default="manual", min_length=1, max_length=200)


class EngineAction(_Out):
    """The answer to start / stop / kill / resume."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"action": "kill", "ts_ns": 1767225600000000000}]}
    )
    action: Literal["start", "stop", "kill", "resume"]
    ts_ns: int


class PriceIn(_In):
    """An underlying price, as a feed would send it."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"underlying": "BTC", "price": 101.25}]}
    )
    underlying: str = Field(min_length=1, max_length=32)
    price: float = Field(gt=0, description="finite, > 0, quote currency")
    ts_ns: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="exchange time, ns (default: now)"
    )


class PriceOut(_Out):
    underlying: str
    price: float
    ts_ns: int


class QuoteOut(_Out):
    """The engine's current two-sided quote for one option (size 0 = side not quoted)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTC-0030D-100-C",
                    "underlying": "BTC",
                    "strike": 100.0,
                    "expiry": 0.0822,
                    "is_call": True,
                    "bid": 4.51,
                    "ask": 4.67,
                    "bid_size": 10.0,
                    "ask_size": 10.0,
                    "theo": 4.59,
                    "iv": 0.55,
                    "status": "OK",
                }
            ]
        },
    )
    symbol: str
    underlying: str
    strike: float
    expiry: float = Field(description="years, ACT/365F")
    is_call: bool
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    theo: float
    iv: float
    status: str | int


class PositionOut(_Out):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTC-0030D-100-C",
                    "quantity": -3.0,
                    "avg_price": 4.62,
                    "realised": 0.0,
                    "unrealised": 0.09,
                }
            ]
        },
    )
    symbol: str
    quantity: float
    avg_price: float
    realised: float
    unrealised: float


class GreeksOut(_Out):
    """Portfolio (position) Greeks: unit Greek x signed quantity x multiplier, raw units."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "total": {"delta": 1.2, "gamma": 0.05, "vega": -3.1, "theta": 12.0},
                    "by_underlying": {
                        "BTC": {"delta": 1.2, "gamma": 0.05, "vega": -3.1, "theta": 12.0}
                    },
                    "by_expiry": {
                        "BTC": {"0.0822": {"delta": 1.2, "gamma": 0.05, "vega": -3.1, "theta": 12}}
                    },
                }
            ]
        }
    )
    total: dict[str, float] = Field(
        description="raw sum over underlyings: meaningful for one underlying only"
    )
    total_dollar: dict[str, float] = Field(
        default_factory=dict,
        description="across underlyings in the common currency: dollar_delta (delta x S), "
        "dollar_gamma (gamma x S^2 / 100, per 1% move), vega, theta",
    )
    by_underlying: dict[str, dict[str, float]]
    by_expiry: dict[str, dict[str, dict[str, float]]]


class PnlOut(_Out):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "realised": 12.5,
                    "unrealised": -1.0,
                    "fees": 0.4,
                    "total": 11.1,
                    "attribution": {
                        "spread": 13.0,
                        "delta": -1.2,
                        "gamma": 0.3,
                        "vega": -0.5,
                        "theta": 0.1,
                        "residual": -0.6,
                    },
                }
            ]
        },
    )
    realised: float
    unrealised: float
    fees: float
    total: float
    attribution: dict[str, float]


class ChainSide(_Out):
    """One option of a strike: quote, theo, implied vol and raw Greeks per unit."""

    model_config = ConfigDict(extra="allow")
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    theo: float
    iv: float
    delta: float
    gamma: float
    vega: float
    theta: float


class ChainRow(_Out):
    model_config = ConfigDict(extra="allow")
    strike: float
    call: ChainSide
    put: ChainSide


class ChainExpiry(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "underlying": "BTC",
                    "expiry": 0.0822,
                    "rows": [
                        {
                            "strike": 100.0,
                            "call": {
                                "bid": 4.51,
                                "ask": 4.67,
                                "bid_size": 10.0,
                                "ask_size": 10.0,
                                "theo": 4.59,
                                "iv": 0.55,
                                "delta": 0.53,
                                "gamma": 0.025,
                                "vega": 11.4,
                                "theta": -38.0,
                            },
                            "put": {
                                "bid": 4.5,
                                "ask": 4.66,
                                "bid_size": 10.0,
                                "ask_size": 10.0,
                                "theo": 4.58,
                                "iv": 0.55,
                                "delta": -0.47,
                                "gamma": 0.025,
                                "vega": 11.4,
                                "theta": -38.0,
                            },
                        }
                    ],
                }
            ]
        }
    )
    underlying: str
    expiry: float
    rows: list[ChainRow]


class SurfaceOut(_Out):
    """The volatility surface the engine quotes from: ``vols[i][j]`` at ``expiries[i]``,
    ``strikes[j]``."""

    model_config = ConfigDict(extra="allow")
    underlying: str
    expiries: list[float]
    strikes: list[float]
    vols: list[list[float]]


_SIDE = Literal["buy", "sell"]


class OrderIn(_In):
    """A new order from the API's own participant into an in-process book."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "symbol": "BTC-0030D-100-C",
                    "side": "buy",
                    "quantity": 2,
                    "price": 4.7,
                    "order_type": "limit",
                    "time_in_force": "gtc",
                }
            ]
        }
    )
    symbol: str = Field(min_length=1, max_length=64)
    side: _SIDE
    quantity: float = Field(gt=0, description="contracts, on the instrument's lot grid")
    price: float | None = Field(
        default=None, gt=0, description="limit price on the tick grid; omit for market orders"
    )
    order_type: Literal["limit", "market"] = "limit"
    time_in_force: Literal["gtc", "ioc", "fok"] | None = Field(
        default=None,
        description="default: gtc for a limit order, ioc for a market order (a market order "
        "never rests: gtc is refused)",
    )
    post_only: bool = False
    client_id: str | None = Field(
        default=None, min_length=1, max_length=48, pattern=r"^[A-Za-z0-9_.\-]+$"
    )

    @model_validator(mode="after")
    def _price_vs_type(self) -> OrderIn:
        if self.order_type == "limit" and self.price is None:
            raise ValueError("price: required for a limit order")
        if self.order_type == "market" and self.price is not None:
            raise ValueError("price: must be omitted for a market order")
        if self.time_in_force is None:
            self.time_in_force = "ioc" if self.order_type == "market" else "gtc"
        elif self.order_type == "market" and self.time_in_force == "gtc":
            raise ValueError("time_in_force: a market order must be ioc or fok")
        if self.post_only and self.order_type == "market":
            raise ValueError("post_only: a market order cannot be post-only")
        if self.post_only and self.time_in_force != "gtc":
            raise ValueError("time_in_force: a post-only order must be gtc")
        return self


class OrderModifyIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"quantity": 3, "price": 4.65}]})
    quantity: float | None = Field(default=None, gt=0, description="new OPEN quantity")
    price: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _something(self) -> OrderModifyIn:
        if self.quantity is None and self.price is None:
            raise ValueError("quantity: give quantity and/or price")
        return self


class OrderOut(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "api-1",
                    "venue_order_id": 17,
                    "symbol": "BTC-0030D-100-C",
                    "side": "buy",
                    "price": 4.7,
                    "quantity": 2.0,
                    "filled": 0.0,
                    "open_quantity": 2.0,
                    "avg_price": None,
                    "state": "open",
                    "reason": None,
                }
            ]
        }
    )
    order_id: str = Field(description="the API's order id (client id)")
    venue_order_id: int | None = Field(description="the book's order id, once acknowledged")
    symbol: str
    side: _SIDE
    price: float | None
    quantity: float
    filled: float
    open_quantity: float
    avg_price: float | None = Field(description="fill VWAP; null before the first fill")
    state: str
    reason: str | None


class CancelAllIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"symbol": None, "side": "buy"}]})
    symbol: str | None = Field(default=None, min_length=1, max_length=64)
    side: _SIDE | None = None


class CancelAllOut(_Out):
    cancelled: list[OrderOut]


class FillOut(_Out):
    """One of the market maker's fills from the store (exact decimal money)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "trade_id": "BTC-0030D-100-C:42",
                    "order_id": "17",
                    "instrument": "BTC-0030D-100-C",
                    "side": "sell",
                    "price": "4.67",
                    "quantity": 2,
                    "fee": "0",
                    "theo": "4.59",
                    "edge": "0.08",
                    "exchange_ts_ns": 1767225600000000000,
                    "local_ts_ns": 1767225600000100000,
                }
            ]
        }
    )
    id: int
    trade_id: str
    order_id: str
    instrument: str
    side: _SIDE
    price: Money
    quantity: int
    fee: Money
    theo: Money | None
    edge: Money | None
    exchange_ts_ns: int
    local_ts_ns: int


class FillPage(_Out):
    fills: list[FillOut]
    next_cursor: int | None = Field(
        description="pass as `cursor` for the next page; null when this page is the last"
    )


class DailyPnlOut(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "day": "2026-01-01",
                    "book": "*",
                    "realised": "12.5",
                    "unrealised": "-1",
                    "fees": "0.4",
                    "delta_pnl": "-1.2",
                    "gamma_pnl": "0.3",
                    "vega_pnl": "-0.5",
                    "theta_pnl": "0.1",
                    "residual_pnl": "-0.6",
                }
            ]
        }
    )
    day: _dt.date
    book: str
    realised: Money
    unrealised: Money
    fees: Money
    delta_pnl: Money
    gamma_pnl: Money
    vega_pnl: Money
    theta_pnl: Money
    residual_pnl: Money


class BreakerOut(_Out):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "breakers": {"BTC": "active"},
                    "kill_switch": False,
                    "store_halted": False,
                    "status": {"BTC": "OK"},
                }
            ]
        }
    )
    breakers: dict[str, str] = Field(description="per underlying: active / tripped / cooldown")
    kill_switch: bool
    store_halted: bool = Field(description="quoting halted because the store fell behind")
    status: dict[str, str] = Field(description="quoting status per underlying")


class AlertOut(_Out):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"seq": 12.0, "severity": "warning", "kind": "limit", "message": "vega at 95%"}
            ]
        },
    )
    seq: float
    severity: str
    kind: str
    message: str
