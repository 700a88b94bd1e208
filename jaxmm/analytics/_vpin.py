"""VPIN with equal-volume buckets and bulk volume classification (Easley, López de Prado, O'Hara).

Easley, D., López de Prado, M. M., O'Hara, M. (2012), "Flow toxicity and liquidity in a
high-frequency world", Review of Financial Studies 25(5):

1. Bulk volume classification (BVC): a bar (time or trade bar) with volume ``V`` and price
   change ``dP`` has buy volume ``V N(dP / sigma_dP)`` and sell volume the rest.
2. Volume buckets of size ``V_b``: bars are poured in order; a bar that overflows a bucket is
   split — the part that fills the bucket goes there, the remainder (with the same buy
   fraction) into the next bucket(s). Only complete buckets are returned.
3. ``VPIN = sum_{last n buckets} |V_buy - V_sell| / (n V_b)``.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import as_host_array, check_values

__all__ = ["bvc_buy_fraction", "volume_buckets", "vpin"]


def bvc_buy_fraction(price_change, sigma: float | None = None) -> np.ndarray:
    """Bulk-volume buy fraction ``N(dP / sigma)`` per bar.

    ``sigma`` defaults to the sample standard deviation (ddof=1) of ``price_change``.

    Example:
        >>> bvc_buy_fraction([0.0, 1.0], sigma=1.0).round(4).tolist()
        [0.5, 0.8413]
    """
    dp = as_host_array("price_change", price_change).astype(np.float64).ravel()
    check_values("price_change", dp)
    if sigma is None:
        if dp.size < 2:
            raise ValueError("price_change: need >= 2 bars to estimate sigma")
        sigma = float(np.std(dp, ddof=1))
    check_values("sigma", sigma, gt=0.0)
    z = dp / float(sigma)
    return np.array([0.5 * math.erfc(-x / math.sqrt(2.0)) for x in z])


def volume_buckets(volume, buy_fraction, bucket_volume: float) -> tuple[np.ndarray, np.ndarray]:
    """Buy and sell volume of each complete equal-volume bucket (overflow split forward).

    Args:
        volume: ``(n,)`` bar volumes (>= 0).
        buy_fraction: ``(n,)`` buy share of each bar in [0, 1] (BVC, or 1/0 from trade signs).
        bucket_volume: bucket size ``V_b`` (> 0).

    Returns:
        ``(buy, sell)``, each ``(n_complete_buckets,)``; ``buy + sell == bucket_volume``.

    Example:
        >>> b, s = volume_buckets([3, 5, 2], [1.0, 0.0, 0.5], 5.0)
        >>> b.tolist(), s.tolist()
        ([3.0, 1.0], [2.0, 4.0])
    """
    v = as_host_array("volume", volume).astype(np.float64).ravel()
    f = as_host_array("buy_fraction", buy_fraction).astype(np.float64).ravel()
    check_values("volume", v, ge=0.0)
    check_values("buy_fraction", f, ge=0.0, le=1.0)
    check_values("bucket_volume", bucket_volume, gt=0.0)
    if v.size != f.size:
        raise ValueError(f"volume, buy_fraction: lengths differ ({v.size} vs {f.size})")
    keep = v > 0
    v, f = v[keep], f[keep]
    # cumulative buy volume is piecewise linear in cumulative volume: read it at the boundaries
    cum_v = np.concatenate([[0.0], np.cumsum(v)])
    cum_b = np.concatenate([[0.0], np.cumsum(v * f)])
    n_full = int(math.floor(cum_v[-1] / bucket_volume + 1e-12))
    edges = bucket_volume * np.arange(n_full + 1)
    b_at = np.interp(edges, cum_v, cum_b)
    buy = np.diff(b_at)
    return buy, bucket_volume - buy


def vpin(buy, sell, window: int) -> np.ndarray:
    """Rolling VPIN over ``window`` buckets: mean of ``|buy - sell| / (buy + sell)``.

    Returns ``(n_buckets - window + 1,)``; element ``j`` covers buckets ``j .. j+window-1``.

    Example:
        >>> vpin([3.0, 1.0, 5.0], [2.0, 4.0, 0.0], window=2).round(6).tolist()
        [0.4, 0.8]
    """
    b = as_host_array("buy", buy).astype(np.float64).ravel()
    s = as_host_array("sell", sell).astype(np.float64).ravel()
    check_values("buy", b, ge=0.0)
    check_values("sell", s, ge=0.0)
    if b.size != s.size:
        raise ValueError("buy, sell: lengths differ")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window: must be an integer >= 1, got {window!r}")
    tot = b + s
    if (tot <= 0).any():
        raise ValueError("buy + sell: every bucket needs positive volume")
    imb = np.abs(b - s) / tot
    if imb.size < window:
        return np.zeros(0)
    c = np.concatenate([[0.0], np.cumsum(imb)])
    return (c[window:] - c[:-window]) / window
