"""Instrument definition and the float/Decimal <-> integer ticks and lots conversion.

The order book works only in integers: a price is a number of ticks, a quantity a number of
lots. This module is the edge where external numbers become integers, with one documented
rule (see :meth:`Instrument.price_to_ticks`).
"""

from __future__ import annotations

import math
from decimal import Context, Decimal, InvalidOperation
from numbers import Real
from typing import Any

__all__ = ["Instrument", "to_decimal", "FLOAT_GRID_TOLERANCE", "FEE_RATE_SCALE"]

#: A float is accepted as a multiple of a grid step when it lies within this fraction of one
#: step of the nearest multiple (one millionth of a tick / lot).
FLOAT_GRID_TOLERANCE = 1e-6

#: Fee rates are stored as integers in units of 1e-4 basis point (= 1e-8 of notional).
FEE_RATE_SCALE = 10_000

# Exact arithmetic context: wide enough that products of the integers the book produces never
# round (28 digits, the default, could).
_EXACT = Context(prec=120)


def to_decimal(name: str, x: Any) -> Decimal:
    """Convert an edge number to a finite ``Decimal``; floats go through their shortest repr.

    ``int``, ``str``, ``Decimal`` are converted exactly; a ``float`` is converted through
    ``repr`` (so ``0.1`` becomes ``Decimal("0.1")``, not the binary expansion). Booleans, NaN,
    infinities and non-numbers raise ``ValueError`` naming ``name``.

    Example:
        >>> to_decimal("tick_size", 0.01)
        Decimal('0.01')
    """
    if isinstance(x, bool):
        raise ValueError(f"{name}: expected a number, got bool {x!r}")
    if isinstance(x, Decimal):
        d = x
    elif isinstance(x, int):
        d = Decimal(x)
    elif isinstance(x, float):
        d = Decimal(repr(x)) if math.isfinite(x) else Decimal("NaN")
    elif isinstance(x, str):
        try:
            d = Decimal(x.strip())
        except InvalidOperation:
            raise ValueError(f"{name}: {x!r} is not a number") from None
    elif isinstance(x, Real):
        d = Decimal(repr(float(x)))
    else:
        raise ValueError(f"{name}: expected a number, got {type(x).__name__}")
    if not d.is_finite():
        raise ValueError(f"{name}: must be finite, got {x!r}")
    return d


def _positive_decimal(name: str, x: Any) -> Decimal:
    d = to_decimal(name, x)
    if d <= 0:
        raise ValueError(f"{name}: must be > 0, got {x!r}")
    return d


def _to_grid(name: str, x: Any, step: Decimal, step_f: float, what: str) -> int:
    """Number of ``step``s in ``x``: exact for Decimal/int/str, tolerance rule for floats."""
    if isinstance(x, bool):
        raise ValueError(f"{name}: expected a number, got bool {x!r}")
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{name}: must be finite, got {x!r}")
        q = x / step_f
        n = round(q)
        if abs(q - n) > FLOAT_GRID_TOLERANCE:
            raise ValueError(
                f"{name}: {x!r} is not a multiple of the {what} {step} "
                f"(float tolerance {FLOAT_GRID_TOLERANCE} {what})"
            )
        return int(n)
    d = to_decimal(name, x)
    q = _EXACT.divide(d, step)
    if q != q.to_integral_value():
        raise ValueError(f"{name}: {x!r} is not a multiple of the {what} {step}")
    return int(q)


class Instrument:
    """A tradable instrument and the conversion between external numbers and ticks/lots.

    Args:
        symbol: the instrument's symbol (any non-empty string; options use
            :class:`~jaxmm.book.OptionSymbol`'s scheme).
        tick_size: price increment, in the quote currency per unit (> 0).
        lot_size: quantity increment, in units of the instrument (> 0). Default 1.
        multiplier: contract multiplier: quote currency per (price unit x quantity unit).
            Default 1; 100 for US equity options.
        min_qty: smallest order size, in lots (int >= 1). Default 1.
        max_qty: largest order size, in lots (int >= min_qty), or None for no bound.
        quote_currency: label of the currency notional and fees are counted in.

    Conversion rule (``price_to_ticks``, ``qty_to_lots``): ``int``, ``Decimal`` and ``str``
    inputs must be exact multiples of the step; a ``float`` is accepted when it lies within
    ``FLOAT_GRID_TOLERANCE`` (1e-6) of a step of the nearest multiple, so ``0.1 + 0.2`` is on a
    0.01 grid but ``100.005`` is not. Failures raise ``ValueError`` naming the field.

    Example:
        >>> inst = Instrument("BTC-20261225-100000-C", tick_size="0.5", lot_size="0.1")
        >>> inst.price_to_ticks(1234.5), inst.qty_to_lots(0.3)
        (2469, 3)
        >>> inst.ticks_to_price(2469), inst.lots_to_qty(3)
        (Decimal('1234.5'), Decimal('0.3'))
    """

    __slots__ = (
        "symbol",
        "tick_size",
        "lot_size",
        "multiplier",
        "min_qty",
        "max_qty",
        "quote_currency",
        "_tick_f",
        "_lot_f",
        "_notional_unit",
        "_fee_unit",
    )

    def __init__(
        self,
        symbol: str,
        tick_size: Any,
        lot_size: Any = 1,
        multiplier: Any = 1,
        min_qty: int = 1,
        max_qty: int | None = None,
        quote_currency: str = "USD",
    ) -> None:
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol: must be a non-empty string, got {symbol!r}")
        self.symbol = symbol
        self.tick_size = _positive_decimal("tick_size", tick_size)
        self.lot_size = _positive_decimal("lot_size", lot_size)
        self.multiplier = _positive_decimal("multiplier", multiplier)
        if type(min_qty) is not int or min_qty < 1:
            raise ValueError(f"min_qty: must be an int >= 1 (lots), got {min_qty!r}")
        if max_qty is not None and (type(max_qty) is not int or max_qty < min_qty):
            raise ValueError(f"max_qty: must be None or an int >= min_qty, got {max_qty!r}")
        self.min_qty = min_qty
        self.max_qty = max_qty
        self.quote_currency = quote_currency
        self._tick_f = float(self.tick_size)
        self._lot_f = float(self.lot_size)
        #: quote currency per (1 tick x 1 lot)
        self._notional_unit = _EXACT.multiply(
            _EXACT.multiply(self.tick_size, self.lot_size), self.multiplier
        )
        #: quote currency per unit of an integer fee (ticks x lots x rate in 1e-4 bp)
        self._fee_unit = _EXACT.divide(self._notional_unit, Decimal(10_000 * FEE_RATE_SCALE))

    def __repr__(self) -> str:
        return (
            f"Instrument({self.symbol!r}, tick_size={self.tick_size}, lot_size={self.lot_size}, "
            f"multiplier={self.multiplier}, min_qty={self.min_qty}, max_qty={self.max_qty})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instrument):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__[:7])

    def __hash__(self) -> int:
        return hash((self.symbol, self.tick_size, self.lot_size, self.multiplier))

    # -- edge conversion ---------------------------------------------------------------------
    def price_to_ticks(self, price: Any, name: str = "price") -> int:
        """Price (quote currency per unit) -> integer ticks (>= 1); ``ValueError`` naming ``name``.

        Example:
            >>> Instrument("X", tick_size=0.01).price_to_ticks(0.1 + 0.2)
            30
        """
        n = _to_grid(name, price, self.tick_size, self._tick_f, "tick_size")
        if n < 1:
            raise ValueError(f"{name}: must be > 0, got {price!r}")
        return n

    def qty_to_lots(self, qty: Any, name: str = "qty") -> int:
        """Quantity (units) -> integer lots (>= 1); ``ValueError`` naming ``name``.

        Example:
            >>> Instrument("X", tick_size=1, lot_size=10).qty_to_lots(250)
            25
        """
        n = _to_grid(name, qty, self.lot_size, self._lot_f, "lot_size")
        if n < 1:
            raise ValueError(f"{name}: must be > 0, got {qty!r}")
        return n

    def ticks_to_price(self, ticks: int) -> Decimal:
        """Integer ticks -> exact ``Decimal`` price."""
        return _EXACT.multiply(Decimal(ticks), self.tick_size)

    def lots_to_qty(self, lots: int) -> Decimal:
        """Integer lots -> exact ``Decimal`` quantity."""
        return _EXACT.multiply(Decimal(lots), self.lot_size)

    def notional(self, price_ticks: int, qty_lots: int) -> Decimal:
        """Exact notional ``price * qty * multiplier`` in the quote currency."""
        return _EXACT.multiply(Decimal(price_ticks * qty_lots), self._notional_unit)

    def fee_amount(self, fee_raw: int) -> Decimal:
        """Exact fee in the quote currency from the book's integer fee (see ``docs/book.md``)."""
        return _EXACT.multiply(Decimal(fee_raw), self._fee_unit)

    @staticmethod
    def fee_rate_to_int(rate_bps: Any, name: str = "fee_bps") -> int:
        """Fee rate in basis points (negative = rebate) -> integer units of 1e-4 bp.

        Rates finer than 1e-4 bp raise ``ValueError``. Example:
            >>> Instrument.fee_rate_to_int("-0.25")
            -2500
        """
        d = to_decimal(name, rate_bps)
        q = _EXACT.multiply(d, Decimal(FEE_RATE_SCALE))
        if q != q.to_integral_value():
            raise ValueError(f"{name}: {rate_bps!r} bp is finer than the 1e-4 bp fee resolution")
        return int(q)
