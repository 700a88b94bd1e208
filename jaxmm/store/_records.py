"""The records the store reads and writes: frozen, validated dataclasses.

Validation happens on construction, so a bad record never reaches a transaction: a message
names the field and the bound. Prices, fees and PnL are ``Decimal`` (floats are converted
through their shortest repr, the value the caller typed); quantities are integers in the
instrument's own unit — contracts for an option, units for the underlying — the unit of
:class:`jaxmm.portfolio.Fill` and of :meth:`jaxmm.store.Store.rebuild_positions` (the engine
multiplies a book's lots by the lot size before it writes).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..portfolio._types import to_decimal
from ._schema import SYMBOL_MAX

__all__ = [
    "FillRecord",
    "OrderRecord",
    "PositionSnapshot",
    "DailyPnl",
    "ConfigVersion",
    "RiskRecord",
    "ORDER_STATUSES",
]

ORDER_STATUSES = frozenset(
    {"pending", "new", "partially_filled", "filled", "cancelled", "rejected", "expired"}
)


def _symbol(name: str, value: Any, limit: int = SYMBOL_MAX) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise ValueError(f"{name}: longer than {limit} characters ({len(value)})")


def _lots(name: str, value: Any, *, positive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer (contracts or units), got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value}")


def _ts(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: must be a non-negative integer of nanoseconds, got {value!r}")


def _money(obj: Any, name: str, *, positive: bool = False, optional: bool = False) -> None:
    value = getattr(obj, name)
    if value is None and optional:
        return
    d = to_decimal(name, value)
    if positive and d <= 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")
    object.__setattr__(obj, name, d)


def _side(value: Any) -> None:
    if value not in ("buy", "sell"):
        raise ValueError(f"side: must be 'buy' or 'sell', got {value!r}")


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One execution of one of our orders.

    ``trade_id`` is the venue's trade id: a fill whose trade id is already stored is not stored
    again. ``edge`` is the signed edge versus ``theo`` per unit (positive = in our favour).
    ``id`` is assigned by the store (the fill log's order).
    """

    trade_id: str
    order_id: str
    instrument: str
    side: str
    price: Decimal
    quantity: int
    fee: Decimal = Decimal(0)
    exchange_ts_ns: int = 0
    local_ts_ns: int = 0
    theo: Decimal | None = None
    edge: Decimal | None = None
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _symbol("trade_id", self.trade_id)
        _symbol("order_id", self.order_id)
        _symbol("instrument", self.instrument)
        _side(self.side)
        _money(self, "price", positive=True)
        _lots("quantity", self.quantity)
        _money(self, "fee")
        _money(self, "theo", optional=True)
        _money(self, "edge", optional=True)
        _ts("exchange_ts_ns", self.exchange_ts_ns)
        _ts("local_ts_ns", self.local_ts_ns)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order as last known (the store keeps every state transition separately)."""

    order_id: str
    instrument: str
    side: str
    order_type: str
    time_in_force: str
    quantity: int
    price: Decimal | None = None
    filled_quantity: int = 0
    status: str = "new"
    client_id: str | None = None
    created_ts_ns: int = 0
    updated_ts_ns: int = 0

    def __post_init__(self) -> None:
        _symbol("order_id", self.order_id)
        _symbol("instrument", self.instrument)
        _side(self.side)
        _symbol("order_type", self.order_type, 16)
        _symbol("time_in_force", self.time_in_force, 8)
        _lots("quantity", self.quantity)
        _money(self, "price", positive=True, optional=True)
        _lots("filled_quantity", self.filled_quantity, positive=False)
        if not 0 <= self.filled_quantity <= self.quantity:
            raise ValueError(
                f"filled_quantity: must be in [0, quantity={self.quantity}], "
                f"got {self.filled_quantity}"
            )
        if self.status not in ORDER_STATUSES:
            raise ValueError(
                f"status: must be one of {sorted(ORDER_STATUSES)}, got {self.status!r}"
            )
        if self.client_id is not None:
            _symbol("client_id", self.client_id)
        _ts("created_ts_ns", self.created_ts_ns)
        _ts("updated_ts_ns", self.updated_ts_ns)


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """A position at one moment; it includes every fill with id <= ``last_fill_id``."""

    instrument: str
    quantity: int
    avg_price: Decimal
    realised_pnl: Decimal
    fees: Decimal
    last_fill_id: int
    ts_ns: int

    def __post_init__(self) -> None:
        _symbol("instrument", self.instrument)
        _lots("quantity", self.quantity, positive=False)
        _money(self, "avg_price")
        _money(self, "realised_pnl")
        _money(self, "fees")
        _lots("last_fill_id", self.last_fill_id, positive=False)
        _ts("ts_ns", self.ts_ns)


@dataclass(frozen=True, slots=True)
class DailyPnl:
    """One day's PnL for one book (an underlying, or ``"*"`` for the total), in money."""

    day: _dt.date
    book: str
    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    delta_pnl: Decimal = Decimal(0)
    gamma_pnl: Decimal = Decimal(0)
    vega_pnl: Decimal = Decimal(0)
    theta_pnl: Decimal = Decimal(0)
    residual_pnl: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if not isinstance(self.day, _dt.date) or isinstance(self.day, _dt.datetime):
            raise ValueError(f"day: must be a datetime.date, got {self.day!r}")
        _symbol("book", self.book, 32)
        for name in (
            "realised",
            "unrealised",
            "fees",
            "delta_pnl",
            "gamma_pnl",
            "vega_pnl",
            "theta_pnl",
            "residual_pnl",
        ):
            _money(self, name)


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One version of the market maker's configuration."""

    version: int
    config: dict
    author: str
    ts_ns: int
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class RiskRecord:
    """A limit breach (``kind="limit"``) or a breaker transition (``kind="breaker"``)."""

    kind: str
    name: str
    detail: str
    ts_ns: int
    from_state: str | None = None
    to_state: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("limit", "breaker"):
            raise ValueError(f"kind: must be 'limit' or 'breaker', got {self.kind!r}")
        _symbol("name", self.name)
        if not isinstance(self.detail, str) or len(self.detail) > 1000:
            raise ValueError("detail: must be a string of at most 1000 characters")
        _ts("ts_ns", self.ts_ns)
