"""py_vollib_vectorized 0.1.1 (with py_lets_be_rational 1.0.0): prices, Greeks, implied vols.

Its Greeks are finite differences in desk units: vega per vol point, theta per calendar day
(a one-day forward difference), rho per 1% — converted here to jaxmm's raw units (x100, x365,
x100). Its BSM rho bumps the dividend yield together with the rate (a known pitfall), so its
rho is not dV/dr with q fixed.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import py_vollib_vectorized as pvv

__all__ = ["core_greeks", "implied_vols", "VERSIONS"]

VERSIONS = {
    "py_vollib_vectorized": version("py_vollib_vectorized"),
    "py_lets_be_rational": version("py_lets_be_rational"),
    "py_vollib": version("py_vollib"),
}


def _flags(is_call):
    return np.where(is_call, "c", "p")


def core_greeks(s, k, t, r, q, v, is_call) -> np.ndarray:
    """(6, n): price, delta, gamma, vega, theta, rho in raw units (see module docstring)."""
    flags = _flags(is_call)
    price = pvv.vectorized_black_scholes_merton(flags, s, k, t, r, v, q, return_as="numpy")
    g = pvv.get_all_greeks(flags, s, k, t, r, v, q, model="black_scholes_merton", return_as="dict")
    g = {name: np.asarray(val, dtype=np.float64) for name, val in g.items()}
    return np.stack(
        [
            np.asarray(price, dtype=np.float64).reshape(-1),
            g["delta"],
            g["gamma"],
            100.0 * g["vega"],
            365.0 * g["theta"],
            100.0 * g["rho"],
        ]
    )


def implied_vols(prices, s, k, t, r, q, is_call) -> np.ndarray:
    """Let's Be Rational implied vols (NaN where it reports none)."""
    out = pvv.vectorized_implied_volatility(
        prices, s, k, t, r, _flags(is_call), q=q, model="black_scholes_merton", return_as="numpy"
    )
    return np.asarray(out, dtype=np.float64)
