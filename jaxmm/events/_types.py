"""Typed events: pydantic models with a ``type`` discriminator.

Every event carries ``seq`` (the broadcaster's strictly increasing sequence number, ``None``
until published) and two integer-nanosecond timestamps: ``exchange_ts_ns`` (when the venue or
feed says it happened; ``None`` for internal events) and ``local_ts_ns`` (when jaxmm saw or made
it). Prices and quantities are the edge's floats (the book itself works in integer ticks and
lots); Greeks are raw per MISSION.md (vega per 1.00 vol, theta per year).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

__all__ = [
    "EventBase",
    "PriceUpdated",
    "QuoteUpdated",
    "OrderFilled",
    "GreeksUpdated",
    "HedgeSent",
    "AlertTriggered",
    "CircuitBreakerTripped",
    "ConfigChanged",
    "ArbitrageSignal",
    "Event",
    "EVENT_TYPES",
    "parse_event",
    "now_ns",
]


def now_ns() -> int:
    """Wall-clock time in integer nanoseconds since the Unix epoch."""
    return time.time_ns()


class EventBase(BaseModel):
    """Fields every event has. Events are immutable once built."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    seq: int | None = Field(default=None, ge=1, description="broadcast sequence number")
    local_ts_ns: int = Field(default_factory=now_ns, ge=0, description="local time, ns")
    exchange_ts_ns: int | None = Field(default=None, ge=0, description="venue time, ns")
    instrument: str | None = Field(default=None, max_length=64, description="symbol, if any")


class PriceUpdated(EventBase):
    """A new underlying price (from a feed or ``POST`` by an operator)."""

    type: Literal["price_updated"] = "price_updated"
    underlying: str = Field(max_length=32)
    price: float = Field(gt=0)


class QuoteUpdated(EventBase):
    """The engine's two-sided quote for one instrument changed (a side may be absent)."""

    type: Literal["quote_updated"] = "quote_updated"
    bid: float | None = Field(default=None, ge=0)
    ask: float | None = Field(default=None, gt=0)
    bid_size: float = Field(default=0.0, ge=0)
    ask_size: float = Field(default=0.0, ge=0)
    theo: float | None = None

    @field_validator("ask")
    @classmethod
    def _not_crossed(cls, ask, info):
        bid = info.data.get("bid")
        if ask is not None and bid is not None and bid >= ask:
            raise ValueError(f"ask: must be > bid ({bid}), got {ask}")
        return ask


class OrderFilled(EventBase):
    """One fill of one of our orders.

    ``theo``: the model value at the fill (price units); ``edge``: the signed edge versus it per
    unit, positive in our favour (``theo - price`` for a buy, ``price - theo`` for a sell), as
    the store's fill log records it; both None when no finite theo was known.
    """

    type: Literal["order_filled"] = "order_filled"
    order_id: str = Field(max_length=64)
    trade_id: str = Field(max_length=64)
    side: Literal["buy", "sell"]
    price: float = Field(gt=0)
    quantity: float = Field(gt=0)
    fee: float = 0.0
    theo: float | None = None
    edge: float | None = None


class GreeksUpdated(EventBase):
    """Portfolio Greeks re-marked (``instrument`` is the underlying, or None for the total)."""

    type: Literal["greeks_updated"] = "greeks_updated"
    delta: float
    gamma: float
    vega: float
    theta: float


class HedgeSent(EventBase):
    """A hedge order sent in the underlying's book."""

    type: Literal["hedge_sent"] = "hedge_sent"
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0)
    reason: str = Field(max_length=200)


class AlertTriggered(EventBase):
    """An alert raised by the risk layer."""

    type: Literal["alert_triggered"] = "alert_triggered"
    severity: Literal["info", "warning", "critical"]
    kind: str = Field(max_length=64)
    message: str = Field(max_length=1000)


class CircuitBreakerTripped(EventBase):
    """A circuit breaker changed state."""

    type: Literal["circuit_breaker"] = "circuit_breaker"
    breaker: str = Field(max_length=64)
    from_state: Literal["active", "tripped", "cooldown"]
    to_state: Literal["active", "tripped", "cooldown"]
    reason: str = Field(max_length=500)


class ConfigChanged(EventBase):
    """The market maker's configuration changed (versioned)."""

    type: Literal["config_changed"] = "config_changed"
    version: int = Field(ge=1)
    author: str = Field(max_length=64)
    changes: dict[str, object]


class ArbitrageSignal(EventBase):
    """A tradable term-structure or butterfly arbitrage after spread and fees.

    ``legs[i]`` is traded ``ratios[i]`` units per structure (> 0 buy at the ask, < 0 sell at the
    bid) at ``prices[i]``; ``strikes`` and ``expiries`` (years) are the legs' own;
    ``max_structures`` is what the displayed sizes allow (None: sizes unknown). The per-leg
    lists are empty on signals built without them and otherwise as long as ``legs``.
    """

    type: Literal["arbitrage_signal"] = "arbitrage_signal"
    kind: Literal["calendar", "butterfly"]
    legs: list[str] = Field(min_length=2, max_length=8)
    edge: float = Field(description="expected profit per structure after costs")
    ratios: list[float] = Field(default_factory=list, max_length=8)
    prices: list[float] = Field(default_factory=list, max_length=8)
    strikes: list[float] = Field(default_factory=list, max_length=8)
    expiries: list[float] = Field(default_factory=list, max_length=8)
    max_structures: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _per_leg(self) -> ArbitrageSignal:
        for name in ("ratios", "prices", "strikes", "expiries"):
            n = len(getattr(self, name))
            if n and n != len(self.legs):
                raise ValueError(f"{name}: {n} values for {len(self.legs)} legs")
        return self


Event = Annotated[
    PriceUpdated
    | QuoteUpdated
    | OrderFilled
    | GreeksUpdated
    | HedgeSent
    | AlertTriggered
    | CircuitBreakerTripped
    | ConfigChanged
    | ArbitrageSignal,
    Field(discriminator="type"),
]
"""Any jaxmm event; parse JSON with :func:`parse_event`."""

EVENT_TYPES: dict[str, type[EventBase]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        PriceUpdated,
        QuoteUpdated,
        OrderFilled,
        GreeksUpdated,
        HedgeSent,
        AlertTriggered,
        CircuitBreakerTripped,
        ConfigChanged,
        ArbitrageSignal,
    )
}
"""Discriminator value -> event class."""

_ADAPTER: TypeAdapter = TypeAdapter(Event)


def parse_event(data: str | bytes | dict) -> EventBase:
    """Parse one event from JSON text or a dict; the ``type`` field picks the class.

    Raises ``pydantic.ValidationError`` (a ``ValueError``) naming the bad field.

    Example:
        >>> e = parse_event('{"type": "price_updated", "underlying": "BTC", "price": 1.5}')
        >>> type(e).__name__, e.price
        ('PriceUpdated', 1.5)
    """
    if isinstance(data, str | bytes):
        return _ADAPTER.validate_json(data)
    return _ADAPTER.validate_python(data)
