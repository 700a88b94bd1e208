"""Unit conversion for the market-making models' volatility (MISSION conventions).

Avellaneda–Stoikov and GLFT model the mid price as an arithmetic Brownian motion
``dS = sigma dW``: their ``sigma`` is an *absolute* price volatility, in price units per
square root of the model's time unit (the unit of ``t`` and ``horizon``). Quoted volatilities
are relative and annualised (0.2 = 20 % per year, ACT/365F). Over the short horizons of
market making the two are related, to first order, by ``sigma_abs = S * sigma_rel *
sqrt(time_unit_in_years)``; :func:`absolute_sigma` is the one place that conversion lives.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array

from .._validate import check_values
from ._types import as_float, cast, float_dtype

__all__ = [
    "SECONDS_PER_YEAR",
    "MINUTES_PER_YEAR",
    "HOURS_PER_YEAR",
    "DAYS_PER_YEAR",
    "absolute_sigma",
    "relative_annual_vol",
]

#: ACT/365 Fixed: one year is 365 days of 86 400 seconds.
DAYS_PER_YEAR = 365.0
HOURS_PER_YEAR = DAYS_PER_YEAR * 24.0
MINUTES_PER_YEAR = HOURS_PER_YEAR * 60.0
SECONDS_PER_YEAR = MINUTES_PER_YEAR * 60.0


def absolute_sigma(mid: Any, rel_vol_annual: Any, time_unit_years: Any) -> Array:
    """Absolute price volatility per sqrt(time unit) from a relative annual volatility.

    ``sigma_abs = mid * rel_vol_annual * sqrt(time_unit_years)``: the standard deviation, in
    price units, of the mid-price change over one model time unit, to first order in the
    (small) time unit. This is the ``sigma`` that :class:`AvellanedaStoikov` and :class:`GLFT`
    expect.

    Args:
        mid: current price level ``S`` (> 0), price units.
        rel_vol_annual: annualised relative volatility (0.2 = 20 %), >= 0.
        time_unit_years: length of the model's time unit in years (ACT/365F), > 0; e.g.
            ``1 / SECONDS_PER_YEAR`` when ``t`` and ``horizon`` are in seconds.

    Returns:
        ``sigma_abs`` in price units per sqrt(time unit), in the floating dtype of ``mid``.

    Raises:
        ValueError: if a host input breaks its bound (message names the argument).

    Example:
        >>> from jaxmm.strategy import absolute_sigma, SECONDS_PER_YEAR
        >>> s = absolute_sigma(100.0, 0.2, 1.0 / SECONDS_PER_YEAR)  # per sqrt(second)
        >>> round(float(s), 6)
        0.003561
    """
    check_values("mid", mid, gt=0.0)
    check_values("rel_vol_annual", rel_vol_annual, ge=0.0)
    check_values("time_unit_years", time_unit_years, gt=0.0)
    mid = as_float(mid)
    dt = float_dtype(mid)
    return mid * cast(rel_vol_annual, dt) * jnp.sqrt(cast(time_unit_years, dt))


def relative_annual_vol(mid: Any, sigma_abs: Any, time_unit_years: Any) -> Array:
    """Inverse of :func:`absolute_sigma`: ``sigma_abs / (mid * sqrt(time_unit_years))``.

    Example:
        >>> from jaxmm.strategy import relative_annual_vol, SECONDS_PER_YEAR
        >>> round(float(relative_annual_vol(100.0, 0.0035614, 1.0 / SECONDS_PER_YEAR)), 4)
        0.2
    """
    check_values("mid", mid, gt=0.0)
    check_values("sigma_abs", sigma_abs, ge=0.0)
    check_values("time_unit_years", time_unit_years, gt=0.0)
    mid = as_float(mid)
    dt = float_dtype(mid)
    return cast(sigma_abs, dt) / (mid * jnp.sqrt(cast(time_unit_years, dt)))
