"""Order-flow and trade-flow imbalance, trade classification (tick, quote, Lee–Ready).

Host-side NumPy: these run once per batch of market events, not inside a kernel. Trade signs
are +1 buyer-initiated, -1 seller-initiated, 0 unknown.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_host_array, check_values

__all__ = [
    "order_flow_imbalance",
    "trade_flow_imbalance",
    "tick_rule",
    "quote_rule",
    "lee_ready",
]


def _vec(name: str, x, **bounds) -> np.ndarray:
    a = as_host_array(name, x).astype(np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {a.shape}")
    check_values(name, a, **bounds)
    return a


def _same_len(**arrays: np.ndarray) -> None:
    n = {k: v.size for k, v in arrays.items()}
    if len(set(n.values())) > 1:
        raise ValueError(f"{', '.join(n)}: lengths differ {n}")


def order_flow_imbalance(bid_price, bid_size, ask_price, ask_size) -> np.ndarray:
    """Per-event order-flow imbalance ``e_n`` of Cont, Kukanov & Stoikov (2014).

    From consecutive best-quote snapshots ``(P^B, q^B, P^A, q^A)`` (after each book event)::

        e_n = 1{P^B_n >= P^B_{n-1}} q^B_n - 1{P^B_n <= P^B_{n-1}} q^B_{n-1}
            - 1{P^A_n <= P^A_{n-1}} q^A_n + 1{P^A_n >= P^A_{n-1}} q^A_{n-1}

    Cont, R., Kukanov, A., Stoikov, S. (2014), "The price impact of order book events",
    J. Financial Econometrics 12(1), eq. (2). Sum ``e_n`` over an interval for that interval's
    OFI. Returns ``(n - 1,)``, in size units.

    Example:
        >>> order_flow_imbalance([100, 100, 101], [5, 7, 2], [102, 102, 102], [4, 4, 1]).tolist()
        [2.0, 5.0]
    """
    pb = _vec("bid_price", bid_price)
    qb = _vec("bid_size", bid_size, ge=0.0)
    pa = _vec("ask_price", ask_price)
    qa = _vec("ask_size", ask_size, ge=0.0)
    _same_len(bid_price=pb, bid_size=qb, ask_price=pa, ask_size=qa)
    bid = np.where(pb[1:] >= pb[:-1], qb[1:], 0.0) - np.where(pb[1:] <= pb[:-1], qb[:-1], 0.0)
    ask = np.where(pa[1:] <= pa[:-1], qa[1:], 0.0) - np.where(pa[1:] >= pa[:-1], qa[:-1], 0.0)
    return bid - ask


def trade_flow_imbalance(volume, sign) -> float:
    """``sum(sign x volume) / sum(volume)`` in [-1, 1]; 0 when there is no volume.

    Example:
        >>> trade_flow_imbalance([3, 1], [1, -1])
        0.5
    """
    v = _vec("volume", volume, ge=0.0)
    s = _vec("sign", sign)
    _same_len(volume=v, sign=s)
    tot = v.sum()
    return float((s * v).sum() / tot) if tot > 0 else 0.0


def tick_rule(price) -> np.ndarray:
    """Tick-test signs: uptick +1, downtick -1, zero tick repeats the last sign (first: 0).

    Example:
        >>> tick_rule([10.0, 10.1, 10.1, 10.0, 10.0]).tolist()
        [0, 1, 1, -1, -1]
    """
    p = _vec("price", price)
    out = np.zeros(p.size, dtype=np.int64)
    for i in range(1, p.size):
        d = p[i] - p[i - 1]
        out[i] = 1 if d > 0 else -1 if d < 0 else out[i - 1]
    return out


def quote_rule(price, bid, ask) -> np.ndarray:
    """Quote-rule signs: above the prevailing mid +1, below -1, at the mid 0.

    Example:
        >>> quote_rule([10.2, 10.0, 10.1], [10.0, 10.0, 10.0], [10.2, 10.2, 10.2]).tolist()
        [1, -1, 0]
    """
    p = _vec("price", price)
    b = _vec("bid", bid)
    a = _vec("ask", ask)
    _same_len(price=p, bid=b, ask=a)
    mid = 0.5 * (b + a)
    return np.sign(p - mid).astype(np.int64)


def lee_ready(price, bid, ask) -> np.ndarray:
    """Lee & Ready (1991) signs: the quote rule, and the tick rule for trades at the mid.

    Lee, C. M. C., Ready, M. J. (1991), "Inferring trade direction from intraday data",
    J. Finance 46(2). ``bid``/``ask`` must be the quotes prevailing at each trade (the caller
    applies any quote lag, e.g. the paper's 5 seconds).

    Example:
        >>> lee_ready([10.1, 10.15, 10.1], [10.0] * 3, [10.2] * 3).tolist()
        [0, 1, -1]
    """
    q = quote_rule(price, bid, ask)
    t = tick_rule(price)
    return np.where(q != 0, q, t)
