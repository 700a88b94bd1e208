"""Column types: exact decimals on every backend."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.types import TypeDecorator

from ..portfolio._types import to_decimal

__all__ = ["ExactDecimal", "SCALE", "quantize"]

SCALE = Decimal("1e-12")
"""Money columns keep 12 decimal places (NUMERIC(38, 12))."""
_LIMIT = Decimal("1e26")
_CONTEXT = Context(prec=38, rounding=ROUND_HALF_EVEN)


def quantize(d: Decimal) -> Decimal:
    """Round to the column scale (12 places, half-even), as every backend stores it.

    Raises ``ValueError`` beyond 26 integer digits (the column's precision).
    """
    if abs(d) >= _LIMIT:
        raise ValueError(f"value: {d} exceeds NUMERIC(38, 12)")
    return d.quantize(SCALE, context=_CONTEXT)


class ExactDecimal(TypeDecorator):
    """``NUMERIC(38, 12)`` on PostgreSQL; canonical decimal text on SQLite (which has no exact
    numeric type and would otherwise store binary floats). Python side: ``Decimal`` both ways.
    Values are rounded to 12 places (half-even) on the way in, on both backends, so the two
    store identical numbers.

    Do not ``ORDER BY`` these columns on SQLite (text order); the repositories never do.
    """

    impl = Numeric(38, 12, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 12, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        d = quantize(to_decimal("value", value))
        if dialect.name == "sqlite":
            return format(d, "f")
        return d

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)
