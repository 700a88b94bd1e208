"""NumPy/SciPy closed-form BSM price and first-order Greeks (Haug 2007, ch. 2), vectorised.

Raw units, as jaxmm: vega per 1.00 vol, theta = dV/dt per year, rho = dV/dr per 1.00 (q fixed).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

__all__ = ["core_greeks", "price", "implied_vol_newton"]

_INV_SQRT_2PI = 0.3989422804014327


def price(s, k, t, r, q, v, is_call):
    """Vectorised generalised BSM price (``is_call`` bool array)."""
    w = np.where(is_call, 1.0, -1.0)
    sd = v * np.sqrt(t)
    d1 = (np.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    return w * (s * np.exp(-q * t) * ndtr(w * d1) - k * np.exp(-r * t) * ndtr(w * d2))


def core_greeks(s, k, t, r, q, v, is_call):
    """(price, delta, gamma, vega, theta, rho), each an array of the broadcast shape."""
    w = np.where(is_call, 1.0, -1.0)
    sqrt_t = np.sqrt(t)
    sd = v * sqrt_t
    d1 = (np.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    dq = np.exp(-q * t)
    dr = np.exp(-r * t)
    n1 = ndtr(w * d1)
    n2 = ndtr(w * d2)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    sdq = s * dq
    kdr = k * dr
    value = w * (sdq * n1 - kdr * n2)
    delta = w * dq * n1
    gamma = dq * pdf / (s * sd)
    vega = sdq * pdf * sqrt_t
    theta = -sdq * pdf * v / (2.0 * sqrt_t) + w * (q * sdq * n1 - r * kdr * n2)
    rho = w * t * kdr * n2
    return value, delta, gamma, vega, theta, rho


def implied_vol_newton(p, s, k, t, r, q, is_call, n_iter=40):
    """Vectorised safeguarded Newton (bracketing bisection fallback), fixed iteration count."""
    lo = np.full(np.shape(p), 1e-4)
    hi = np.full(np.shape(p), 5.0)
    v = np.full(np.shape(p), 0.3)
    for _ in range(n_iter):
        val, _, _, vega, _, _ = core_greeks(s, k, t, r, q, v, is_call)
        f = val - p
        hi = np.where(f > 0, v, hi)
        lo = np.where(f <= 0, v, lo)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = v - f / vega
        ok = (step > lo) & (step < hi) & np.isfinite(step)
        v = np.where(ok, step, 0.5 * (lo + hi))
    return v
