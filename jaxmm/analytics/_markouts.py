"""Realised spread, adverse selection and markouts of our fills at several horizons.

For a fill of OUR side ``s`` (+1 we bought, -1 we sold) at price ``p``, with mid ``m0`` at the
fill and ``m_h`` at ``t + h`` (the last mid observed at or before ``t + h``):

- effective half-spread (spread captured): ``s (m0 - p)``
- realised half-spread at ``h``: ``s (m_h - p)``
- adverse selection at ``h``: ``s (m0 - m_h)`` (positive = the market moved against us)

so ``effective = realised + adverse selection`` (the standard decomposition, seen from the
liquidity provider). Markout PnL = realised half-spread x qty x multiplier (money). Values at
horizons beyond the last mid, or fills before the first mid, are NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validate import as_host_array, check_values

__all__ = ["FillMarkouts", "fill_markouts"]


class FillMarkouts(NamedTuple):
    """Per-fill results: ``(n,)`` and ``(n, n_horizons)`` arrays (price units unless noted)."""

    effective: np.ndarray  # (n,) s (m0 - p)
    realised: np.ndarray  # (n, H) s (m_h - p)
    adverse: np.ndarray  # (n, H) s (m0 - m_h)
    pnl: np.ndarray  # (n, H) realised x qty x multiplier, money


def fill_markouts(
    fill_ts, fill_price, fill_side, fill_qty, mid_ts, mid, horizons, multiplier: float = 1.0
) -> FillMarkouts:
    """Spread decomposition and markouts of fills against a mid-price series.

    Args:
        fill_ts, fill_price, fill_side, fill_qty: ``(n,)`` fills (side +1/-1, qty > 0).
        mid_ts, mid: ``(m,)`` mid-price observations, ``mid_ts`` non-decreasing.
        horizons: ``(H,)`` horizons in the timestamps' unit (>= 0).
        multiplier: contract multiplier for the money markout.

    Example:
        >>> m = fill_markouts([0.0], [99.9], [1], [2], [0.0, 1.0, 5.0], [100.0, 100.05, 99.8],
        ...                   [1.0, 5.0])
        >>> m.effective.round(4).tolist(), m.realised.round(4).tolist()
        ([0.1], [[0.15, -0.1]])
    """
    ft = as_host_array("fill_ts", fill_ts).astype(np.float64).ravel()
    fp = as_host_array("fill_price", fill_price).astype(np.float64).ravel()
    fs = as_host_array("fill_side", fill_side).astype(np.float64).ravel()
    fq = as_host_array("fill_qty", fill_qty).astype(np.float64).ravel()
    mt = as_host_array("mid_ts", mid_ts).astype(np.float64).ravel()
    mm = as_host_array("mid", mid).astype(np.float64).ravel()
    hz = as_host_array("horizons", horizons).astype(np.float64).ravel()
    for name, a in (("fill_ts", ft), ("fill_price", fp), ("mid_ts", mt), ("mid", mm)):
        check_values(name, a)
    check_values("fill_qty", fq, gt=0.0)
    check_values("horizons", hz, ge=0.0)
    check_values("multiplier", multiplier, gt=0.0)
    if not np.isin(fs, [-1.0, 1.0]).all():
        raise ValueError("fill_side: must be +1 or -1")
    if len({ft.size, fp.size, fs.size, fq.size}) > 1:
        raise ValueError("fill_ts, fill_price, fill_side, fill_qty: lengths differ")
    if mt.size != mm.size or mt.size == 0:
        raise ValueError("mid_ts, mid: need equal, non-zero lengths")
    if (np.diff(mt) < 0).any():
        raise ValueError("mid_ts: must be non-decreasing")

    def mid_at(t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(mt, t, side="right") - 1
        out = mm[np.clip(i, 0, None)]
        return np.where((i >= 0) & (t <= mt[-1]), out, np.nan)

    m0 = mid_at(ft)
    mh = mid_at(ft[:, None] + hz[None, :])
    s = fs[:, None]
    realised = s * (mh - fp[:, None])
    return FillMarkouts(
        effective=fs * (m0 - fp),
        realised=realised,
        adverse=s * (m0[:, None] - mh),
        pnl=realised * (fq * float(multiplier))[:, None],
    )
