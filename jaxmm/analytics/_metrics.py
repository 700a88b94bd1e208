"""Live market-making metrics with a Prometheus exposition (``prometheus_client``).

Definitions (counts since construction):

- fill rate = fills / orders sent; cancel rate = cancels / orders sent (0 with no orders);
- quote uptime = time with a two-sided quote / time since the first quote-state update;
- spread captured = sum of ``s (mid - price) x qty x multiplier`` over fills (money).
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["LiveMetrics"]


class LiveMetrics:
    """Counters and ratios of a quoting session, exported to Prometheus.

    Each instance owns a ``CollectorRegistry`` (pass one to share); metric names are prefixed
    with ``namespace``.

    Example:
        >>> m = LiveMetrics()
        >>> m.on_quote_state(0.0, two_sided=True); m.on_order(); m.on_order()
        >>> m.on_fill(side=1, price=99.9, mid=100.0, qty=1)
        >>> m.on_quote_state(10.0, two_sided=False); m.on_quote_state(20.0, two_sided=False)
        >>> s = m.snapshot(20.0)
        >>> s["fill_rate"], s["quote_uptime"], round(s["spread_captured"], 6)
        (0.5, 0.5, 0.1)
        >>> b"jaxmm_fill_rate 0.5" in m.exposition(20.0)
        True
    """

    def __init__(self, namespace: str = "jaxmm", registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r, ns = self.registry, namespace
        self._orders = Counter("orders", "Orders sent", namespace=ns, registry=r)
        self._fills = Counter("fills", "Fills received", namespace=ns, registry=r)
        self._cancels = Counter("cancels", "Orders cancelled", namespace=ns, registry=r)
        self._fill_rate = Gauge("fill_rate", "Fills / orders sent", namespace=ns, registry=r)
        self._cancel_rate = Gauge("cancel_rate", "Cancels / orders sent", namespace=ns, registry=r)
        self._uptime = Gauge(
            "quote_uptime_ratio", "Share of time quoted two-sided", namespace=ns, registry=r
        )
        self._spread = Gauge(
            "spread_captured", "Spread captured on fills, money", namespace=ns, registry=r
        )
        self.orders = self.fills = self.cancels = 0
        self.spread_captured = 0.0
        self._t0: float | None = None
        self._t_last = 0.0
        self._two_sided = False
        self._up = 0.0

    def on_order(self, n: int = 1) -> None:
        """Count ``n`` orders sent."""
        self.orders += n
        self._orders.inc(n)

    def on_cancel(self, n: int = 1) -> None:
        """Count ``n`` cancels."""
        self.cancels += n
        self._cancels.inc(n)

    def on_fill(
        self, side: int, price: float, mid: float, qty: float, multiplier: float = 1.0
    ) -> None:
        """Count a fill of our ``side`` (+1/-1) and add its captured spread."""
        if side not in (1, -1):
            raise ValueError(f"side: must be +1 or -1, got {side!r}")
        vals = (price, mid, qty, multiplier)
        if not all(math.isfinite(float(x)) for x in vals):
            raise ValueError("price/mid/qty/multiplier: must be finite")
        if qty <= 0:
            raise ValueError(f"qty: must be > 0, got {qty!r}")
        self.fills += 1
        self._fills.inc()
        self.spread_captured += side * (mid - price) * qty * multiplier

    def on_quote_state(self, ts: float, two_sided: bool) -> None:
        """Record at ``ts`` whether we now quote both sides (uptime accounting)."""
        ts = float(ts)
        if not math.isfinite(ts):
            raise ValueError(f"ts: must be finite, got {ts!r}")
        if self._t0 is None:
            self._t0 = self._t_last = ts
        if ts < self._t_last:
            raise ValueError(f"ts: must be non-decreasing, got {ts} after {self._t_last}")
        if self._two_sided:
            self._up += ts - self._t_last
        self._t_last = ts
        self._two_sided = bool(two_sided)

    def snapshot(self, now: float) -> dict[str, float]:
        """Current counts and ratios at time ``now`` (uptime counted up to ``now``)."""
        up = self._up
        elapsed = 0.0
        if self._t0 is not None:
            if self._two_sided and now > self._t_last:
                up += now - self._t_last
            elapsed = max(now, self._t_last) - self._t0
        o = self.orders
        return {
            "orders": float(o),
            "fills": float(self.fills),
            "cancels": float(self.cancels),
            "fill_rate": self.fills / o if o else 0.0,
            "cancel_rate": self.cancels / o if o else 0.0,
            "quote_uptime": up / elapsed if elapsed > 0 else 0.0,
            "spread_captured": self.spread_captured,
        }

    def exposition(self, now: float) -> bytes:
        """Prometheus text exposition (gauges refreshed at ``now``)."""
        s = self.snapshot(now)
        self._fill_rate.set(s["fill_rate"])
        self._cancel_rate.set(s["cancel_rate"])
        self._uptime.set(s["quote_uptime"])
        self._spread.set(s["spread_captured"])
        return generate_latest(self.registry)
