"""Small input types shared by :mod:`jaxmm.portfolio` and :mod:`jaxmm.risk`.

These are deliberately independent of :mod:`jaxmm.book` / :mod:`jaxmm.execution` (the engine
adapts between them). All are frozen dataclasses validated on construction: a bad value raises
``ValueError`` naming the field, so nothing invalid ever reaches a position.

Conventions: quantities are positive integers of contracts (options) or units (underlying);
the direction is carried by :class:`Side` (+1 buy, -1 sell). Prices are per one unit of the
instrument (an option premium per one unit of underlying, as the pricing kernels return it);
the contract ``multiplier`` turns it into money. Money fields accept ``int``, ``float``, ``str``
or ``Decimal`` and are stored as ``Decimal`` (``Decimal(str(x))`` for floats, so ``0.1`` is
exactly one tenth).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["Side", "InstrumentKind", "Instrument", "Fill", "Order", "to_decimal"]


class Side(enum.IntEnum):
    """Trade direction: ``BUY = +1``, ``SELL = -1`` (``int(side)`` is the sign)."""

    BUY = 1
    SELL = -1


class InstrumentKind(enum.Enum):
    """What an :class:`Instrument` is: the underlying itself, or a European option on it."""

    UNDERLYING = "underlying"
    OPTION = "option"


def to_decimal(name: str, x: Any) -> Decimal:
    """Convert a money value to ``Decimal`` (floats via ``str``), rejecting NaN and infinity.

    Example:
        >>> to_decimal("price", 0.1)
        Decimal('0.1')
    """
    if isinstance(x, bool):
        raise ValueError(f"{name}: expected a number, got bool")
    try:
        d = x if isinstance(x, Decimal) else Decimal(str(x))
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"{name}: expected a number, got {x!r}") from None
    if not d.is_finite():
        raise ValueError(f"{name}: must be finite, got {x!r}")
    return d


def _check_qty(name: str, qty: Any) -> None:
    if isinstance(qty, bool) or not isinstance(qty, int):
        raise ValueError(f"{name}: must be an integer number of lots, got {qty!r}")
    if qty <= 0:
        raise ValueError(f"{name}: must be > 0, got {qty!r}")


@dataclass(frozen=True)
class Instrument:
    """A tradable instrument: an underlying or a European option on one.

    Attributes:
        id: unique identifier (e.g. ``"SPX-20261218-C-4000"``).
        underlying: identifier of the underlying (for an underlying, usually its own id).
        kind: :class:`InstrumentKind`.
        strike: option strike (> 0), ``None`` for an underlying.
        expiry: option time to expiry in years, ACT/365F (>= 0), ``None`` for an underlying.
        is_call: True for a call, False for a put, ``None`` for an underlying.
        multiplier: units of underlying per contract (> 0); money = price x qty x multiplier.
        lot_size: the smallest tradable quantity step (>= 1); orders are multiples of it.

    Example:
        >>> opt = Instrument.option("C100", "XYZ", strike=100.0, expiry=0.5, is_call=True,
        ...                         multiplier=100)
        >>> opt.is_option, opt.multiplier
        (True, 100.0)
    """

    id: str
    underlying: str
    kind: InstrumentKind = InstrumentKind.UNDERLYING
    strike: float | None = None
    expiry: float | None = None
    is_call: bool | None = None
    multiplier: float = 1.0
    lot_size: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id: must be a non-empty string, got {self.id!r}")
        if not isinstance(self.underlying, str) or not self.underlying:
            raise ValueError(f"underlying: must be a non-empty string, got {self.underlying!r}")
        kind = InstrumentKind(self.kind)
        object.__setattr__(self, "kind", kind)
        mult = float(self.multiplier)
        if not (math.isfinite(mult) and mult > 0):
            raise ValueError(f"multiplier: must be finite and > 0, got {self.multiplier!r}")
        object.__setattr__(self, "multiplier", mult)
        _check_qty("lot_size", self.lot_size)
        if kind is InstrumentKind.OPTION:
            if self.strike is None or not (math.isfinite(self.strike) and self.strike > 0):
                raise ValueError(f"strike: must be finite and > 0, got {self.strike!r}")
            if self.expiry is None or not (math.isfinite(self.expiry) and self.expiry >= 0):
                raise ValueError(f"expiry: must be finite and >= 0 years, got {self.expiry!r}")
            if not isinstance(self.is_call, bool):
                raise ValueError(f"is_call: must be a bool for an option, got {self.is_call!r}")
            object.__setattr__(self, "strike", float(self.strike))
            object.__setattr__(self, "expiry", float(self.expiry))
        elif self.strike is not None or self.expiry is not None or self.is_call is not None:
            raise ValueError("strike/expiry/is_call: must be None for an underlying")

    @classmethod
    def option(
        cls,
        id: str,
        underlying: str,
        *,
        strike: float,
        expiry: float,
        is_call: bool,
        multiplier: float = 100.0,
        lot_size: int = 1,
    ) -> Instrument:
        """A European option (expiry in years, ACT/365F)."""
        return cls(
            id, underlying, InstrumentKind.OPTION, strike, expiry, is_call, multiplier, lot_size
        )

    @classmethod
    def spot(cls, id: str, *, multiplier: float = 1.0, lot_size: int = 1) -> Instrument:
        """The underlying itself (its own ``underlying``); delta 1 per unit, no other Greeks."""
        return cls(id, id, InstrumentKind.UNDERLYING, multiplier=multiplier, lot_size=lot_size)

    @property
    def is_option(self) -> bool:
        """True for an option."""
        return self.kind is InstrumentKind.OPTION


@dataclass(frozen=True)
class Fill:
    """One execution against us.

    Attributes:
        instrument: the :class:`Instrument` id.
        side: :class:`Side` (or +1 / -1) — our direction.
        qty: executed quantity, a positive integer (contracts or units).
        price: execution price per unit (>= 0, finite).
        fee: fee paid, in money (positive = cost, negative = maker rebate received).
        ts: timestamp in seconds (any epoch; used for ordering and reports only).

    Example:
        >>> f = Fill("C100", Side.BUY, 3, 2.5, fee=-0.06)
        >>> f.signed_qty, f.price, f.fee
        (3, Decimal('2.5'), Decimal('-0.06'))
    """

    instrument: str
    side: Side
    qty: int
    price: Decimal
    fee: Decimal = field(default=Decimal(0))
    ts: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.instrument, str) or not self.instrument:
            raise ValueError(f"instrument: must be a non-empty string, got {self.instrument!r}")
        try:
            object.__setattr__(self, "side", Side(self.side))
        except ValueError:
            raise ValueError(f"side: must be +1 (buy) or -1 (sell), got {self.side!r}") from None
        _check_qty("qty", self.qty)
        price = to_decimal("price", self.price)
        if price < 0:
            raise ValueError(f"price: must be >= 0, got {self.price!r}")
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "fee", to_decimal("fee", self.fee))
        if not math.isfinite(float(self.ts)):
            raise ValueError(f"ts: must be finite, got {self.ts!r}")

    @property
    def signed_qty(self) -> int:
        """``side x qty``: + for a buy, - for a sell."""
        return int(self.side) * self.qty


@dataclass(frozen=True)
class Order:
    """An order to be checked by :class:`jaxmm.risk.LimitChecker` before it is sent.

    Attributes:
        instrument: the :class:`Instrument` id.
        side: :class:`Side` (or +1 / -1).
        qty: requested quantity, a positive integer.

    Example:
        >>> Order("C100", Side.SELL, 5).signed_qty
        -5
    """

    instrument: str
    side: Side
    qty: int

    def __post_init__(self) -> None:
        if not isinstance(self.instrument, str) or not self.instrument:
            raise ValueError(f"instrument: must be a non-empty string, got {self.instrument!r}")
        try:
            object.__setattr__(self, "side", Side(self.side))
        except ValueError:
            raise ValueError(f"side: must be +1 (buy) or -1 (sell), got {self.side!r}") from None
        _check_qty("qty", self.qty)

    @property
    def signed_qty(self) -> int:
        """``side x qty``."""
        return int(self.side) * self.qty
