"""Option symbol scheme ``UNDERLYING-YYYYMMDD-STRIKE-C|P`` (parse and format, both strict).

Rules (one canonical spelling per contract, so a symbol is a dictionary key):

- ``UNDERLYING``: 1-16 characters, uppercase ASCII letters and digits, starting with a letter.
- ``YYYYMMDD``: a real calendar date (``20261225``).
- ``STRIKE``: a positive decimal in plain notation with no sign, no exponent, no leading zeros
  (``0.5`` is fine, ``00.5`` is not) and no trailing fractional zeros: ``100000``,
  ``450.5``, ``0.25`` are canonical; ``100000.0``, ``450.50``, ``1e5``, ``+450`` are rejected.
  Formatting a strike always yields its canonical spelling.
- ``C`` (call) or ``P`` (put).
"""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal
from typing import Any, NamedTuple

from ._instrument import to_decimal

__all__ = ["OptionSymbol", "format_strike", "parse_expiry"]

_SYMBOL_RE = re.compile(r"([^-]*)-([^-]*)-([^-]*)-([^-]*)")
_UNDERLYING_RE = re.compile(r"[A-Z][A-Z0-9]{0,15}")
_DATE_RE = re.compile(r"\d{8}")
_STRIKE_RE = re.compile(r"(?:0|[1-9]\d*)(?:\.\d*[1-9])?")


def format_strike(strike: Any) -> str:
    """Canonical text of a positive strike (plain notation, no trailing fractional zeros).

    Example:
        >>> format_strike(100000), format_strike("450.50"), format_strike(0.25)
        ('100000', '450.5', '0.25')
    """
    d = to_decimal("strike", strike)
    if d <= 0:
        raise ValueError(f"strike: must be > 0, got {strike!r}")
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def parse_expiry(expiry: Any) -> _dt.date:
    """``datetime.date``, ``datetime.datetime`` (date part) or ``"YYYYMMDD"`` -> ``date``.

    Example:
        >>> parse_expiry("20261225")
        datetime.date(2026, 12, 25)
    """
    if isinstance(expiry, _dt.datetime):
        return expiry.date()
    if isinstance(expiry, _dt.date):
        return expiry
    if isinstance(expiry, str) and _DATE_RE.fullmatch(expiry):
        try:
            return _dt.date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:]))
        except ValueError:
            raise ValueError(f"expiry: {expiry!r} is not a calendar date") from None
    raise ValueError(f"expiry: expected a date or 'YYYYMMDD', got {expiry!r}")


class OptionSymbol(NamedTuple):
    """A parsed option symbol; ``str(sym)`` formats it back (canonical).

    Example:
        >>> s = OptionSymbol.parse("SPY-20261218-450.5-P")
        >>> s.underlying, s.expiry.isoformat(), s.strike, s.right
        ('SPY', '2026-12-18', Decimal('450.5'), 'P')
        >>> str(OptionSymbol.make("BTC", "20261225", 100000, "C"))
        'BTC-20261225-100000-C'
    """

    underlying: str
    expiry: _dt.date
    strike: Decimal
    right: str  # "C" or "P"

    @classmethod
    def make(cls, underlying: str, expiry: Any, strike: Any, right: str) -> OptionSymbol:
        """Validated constructor from parts (strike normalised to its canonical value)."""
        if not isinstance(underlying, str) or not _UNDERLYING_RE.fullmatch(underlying):
            raise ValueError(
                f"underlying: {underlying!r} must be 1-16 uppercase letters/digits "
                "starting with a letter"
            )
        if right not in ("C", "P"):
            raise ValueError(f"right: must be 'C' or 'P', got {right!r}")
        return cls(underlying, parse_expiry(expiry), Decimal(format_strike(strike)), right)

    @classmethod
    def parse(cls, symbol: str) -> OptionSymbol:
        """Strict parse; ``ValueError`` naming the offending part."""
        if not isinstance(symbol, str):
            raise ValueError(f"symbol: expected a string, got {type(symbol).__name__}")
        m = _SYMBOL_RE.fullmatch(symbol)
        if m is None:
            raise ValueError(
                f"symbol: {symbol!r} is not UNDERLYING-YYYYMMDD-STRIKE-C|P (four '-' parts)"
            )
        und, date, strike, right = m.groups()
        if not _UNDERLYING_RE.fullmatch(und):
            raise ValueError(
                f"symbol: underlying {und!r} in {symbol!r} must be 1-16 uppercase "
                "letters/digits starting with a letter"
            )
        if not _DATE_RE.fullmatch(date):
            raise ValueError(f"symbol: expiry {date!r} in {symbol!r} must be YYYYMMDD")
        try:
            expiry = _dt.date(int(date[:4]), int(date[4:6]), int(date[6:]))
        except ValueError:
            raise ValueError(f"symbol: expiry {date!r} in {symbol!r} is not a date") from None
        if not _STRIKE_RE.fullmatch(strike) or strike == "0":
            raise ValueError(
                f"symbol: strike {strike!r} in {symbol!r} must be a positive decimal in "
                "canonical form (no sign, exponent, leading zeros or trailing fractional zeros)"
            )
        if right not in ("C", "P"):
            raise ValueError(f"symbol: right {right!r} in {symbol!r} must be C or P")
        return cls(und, expiry, Decimal(strike), right)

    def __str__(self) -> str:
        e = self.expiry
        return (
            f"{self.underlying}-{e.year:04d}{e.month:02d}{e.day:02d}-"
            f"{format_strike(self.strike)}-{self.right}"
        )

    @property
    def is_call(self) -> bool:
        """True for a call."""
        return self.right == "C"
