"""financepy 1.1.2: its numba-vectorised BSM ufuncs (value, delta, gamma, vega, theta, rho),
called on whole arrays, and its scalar implied-vol solver.

Its units are raw like jaxmm's (vega per 1.00 vol, theta per year, rho per 1.00). Its normal
CDF is a polynomial approximation (a known pitfall: up to ~1e-3 relative error on OTM options),
and the ufuncs are compiled with ``fastmath=True``.
"""

from __future__ import annotations

import contextlib
import io
from importlib.metadata import version

import numpy as np

with contextlib.redirect_stdout(io.StringIO()):  # financepy prints a banner on import
    from financepy.models import black_scholes_analytic as bsa
    from financepy.utils.global_types import OptionTypes

__all__ = ["core_greeks", "implied_vols", "VERSIONS"]

VERSIONS = {"financepy": version("financepy")}
_CALL = OptionTypes.EUROPEAN_CALL.value
_PUT = OptionTypes.EUROPEAN_PUT.value


def core_greeks(s, k, t, r, q, v, is_call) -> np.ndarray:
    """(6, n): value, delta, gamma, vega, theta, rho (six separate vectorised passes)."""
    kind = np.where(is_call, _CALL, _PUT).astype(np.int64)
    args = (s, t, k, r, q, v, kind)
    return np.stack(
        [
            bsa.european_value(*args),
            bsa.delta(*args),
            bsa.gamma(*args),
            bsa.vega(*args),
            bsa.theta(*args),
            bsa.rho(*args),
        ]
    )


def implied_vols(prices, s, k, t, r, q, is_call) -> np.ndarray:
    """financepy's scalar Newton/bisection solver, one Python call per option."""
    out = np.empty(len(prices))
    for i in range(len(prices)):
        kind = _CALL if is_call[i] else _PUT
        out[i] = bsa.implied_volatility(s[i], t[i], k[i], r[i], q[i], prices[i], kind)
    return out
