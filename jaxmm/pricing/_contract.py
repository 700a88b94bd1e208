"""Option contracts as pytrees, and the ACT/365F expiry helper (the role of ``ExpirationDate``).

An :class:`OptionContract` holds arrays — one contract or a whole chain — so it can be passed
through ``jit``/``vmap`` and priced in one call. Exercise style is static configuration (it picks
the model), strike/expiry/call-put are data.
"""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_broadcast, check_values
from ._bsm import bsm_greeks, bsm_price
from ._greeks import Greeks

__all__ = ["ExerciseStyle", "OptionContract", "year_fraction", "SECONDS_PER_YEAR"]

SECONDS_PER_YEAR = 365.0 * 86400.0
"""ACT/365 Fixed: one year is 365 days of 86,400 seconds."""


class ExerciseStyle(enum.IntEnum):
    """When the holder may exercise."""

    EUROPEAN = 0
    AMERICAN = 1


def _to_utc_seconds(x: _dt.datetime) -> float:
    if x.tzinfo is None:
        return x.replace(tzinfo=_dt.UTC).timestamp()
    return x.timestamp()


def year_fraction(expiry: Any, now: Any = None) -> float | np.ndarray:
    """Time to expiry in years, ACT/365 Fixed (MISSION convention).

    Accepts:
      - a number (or array) of **calendar days** to expiry: ``days / 365``;
      - a ``datetime.date``: whole calendar days from ``now`` (a date; today if omitted) / 365;
      - a ``datetime.datetime``: exact seconds from ``now`` (a datetime; the current time if
        omitted) / (365 * 86400). Naive datetimes are read as UTC; aware ones are converted.
        Mixing naive and aware is allowed because both are mapped to UTC instants.

    Raises:
        ValueError: naming ``expiry`` when it lies before ``now`` (an expired contract is an
            input error at this edge; price an expired option with ``expiry=0``), or when the
            types of ``expiry`` and ``now`` do not fit together.

    Example:
        >>> import datetime as dt
        >>> year_fraction(73)
        0.2
        >>> year_fraction(dt.date(2027, 1, 1), now=dt.date(2026, 1, 1))
        1.0
        >>> year_fraction(dt.datetime(2026, 1, 2, 12), now=dt.datetime(2026, 1, 1))
        0.00410958904109589
    """
    if isinstance(expiry, _dt.datetime):
        if now is None:
            now = _dt.datetime.now(_dt.UTC)
        if not isinstance(now, _dt.datetime):
            raise ValueError("now: must be a datetime when expiry is a datetime")
        seconds = _to_utc_seconds(expiry) - _to_utc_seconds(now)
        if seconds < 0:
            raise ValueError(f"expiry: {expiry.isoformat()} is before now ({now.isoformat()})")
        return seconds / SECONDS_PER_YEAR
    if isinstance(expiry, _dt.date):
        if now is None:
            now = _dt.date.today()
        if isinstance(now, _dt.datetime):
            now = now.date()
        if not isinstance(now, _dt.date):
            raise ValueError("now: must be a date when expiry is a date")
        days = (expiry - now).days
        if days < 0:
            raise ValueError(f"expiry: {expiry.isoformat()} is before now ({now.isoformat()})")
        return days / 365.0
    check_values("expiry", expiry, ge=0.0)
    out = np.asarray(expiry, dtype=np.float64) / 365.0
    return float(out) if out.ndim == 0 else out


class OptionContract(eqx.Module):
    """One option or a chain of options (arrays broadcast together).

    Attributes:
        strike: strike price(s), > 0, in the underlying's currency.
        expiry: time(s) to expiry in years, ACT/365F (use :func:`year_fraction` or
            :meth:`from_dates`).
        is_call: True for calls, False for puts.
        style: :class:`ExerciseStyle` (static: it selects the pricing model).

    Example:
        >>> import jax.numpy as jnp
        >>> chain = OptionContract(strike=jnp.array([95.0, 100.0, 105.0]), expiry=0.5,
        ...                        is_call=True)
        >>> chain.price(spot=100.0, rate=0.02, dividend=0.0, vol=0.2).shape
        (3,)
    """

    strike: jax.Array
    expiry: jax.Array
    is_call: jax.Array
    style: ExerciseStyle = eqx.field(static=True, default=ExerciseStyle.EUROPEAN)

    def __init__(
        self,
        strike: Any,
        expiry: Any,
        is_call: Any,
        style: ExerciseStyle = ExerciseStyle.EUROPEAN,
    ):
        check_values("strike", strike, gt=0.0)
        check_values("expiry", expiry, ge=0.0)
        check_broadcast({"strike": strike, "expiry": expiry, "is_call": is_call})
        self.strike = jnp.asarray(strike)
        self.expiry = jnp.asarray(expiry)
        self.is_call = jnp.asarray(is_call).astype(bool)
        self.style = ExerciseStyle(style)

    @classmethod
    def from_dates(
        cls,
        strike: Any,
        expiry: _dt.date | _dt.datetime,
        is_call: Any,
        *,
        now: _dt.date | _dt.datetime | None = None,
        style: ExerciseStyle = ExerciseStyle.EUROPEAN,
    ) -> OptionContract:
        """Build a contract from an expiry date/datetime (ACT/365F from ``now``)."""
        return cls(strike, year_fraction(expiry, now), is_call, style)

    def price(self, spot: Any, rate: Any, dividend: Any, vol: Any, **model_kw: Any) -> jax.Array:
        """Model price: BSM for European exercise, the lattice for American.

        ``model_kw`` is passed to :func:`jaxmm.pricing.american_price` (e.g. ``steps``).
        """
        if self.style is ExerciseStyle.AMERICAN:
            from ._lattice import american_price

            return american_price(
                spot, self.strike, self.expiry, rate, dividend, vol, self.is_call, **model_kw
            )
        return bsm_price(spot, self.strike, self.expiry, rate, dividend, vol, self.is_call)

    def greeks(self, spot: Any, rate: Any, dividend: Any, vol: Any, **model_kw: Any) -> Greeks:
        """Price and Greeks (raw units, see :class:`jaxmm.pricing.Greeks`) for this contract."""
        if self.style is ExerciseStyle.AMERICAN:
            from ._lattice import american_greeks

            return american_greeks(
                spot, self.strike, self.expiry, rate, dividend, vol, self.is_call, **model_kw
            )
        return bsm_greeks(spot, self.strike, self.expiry, rate, dividend, vol, self.is_call)
