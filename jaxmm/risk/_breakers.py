"""Circuit breakers: explicit ACTIVE -> TRIPPED -> COOLDOWN -> ACTIVE state machines.

Every breaker shares one state machine (:class:`BreakerStateMachine`) and differs only in its
*condition*, evaluated on each update:

- ``ACTIVE``  --condition breached-->  ``TRIPPED``
- ``TRIPPED`` --condition clear and ``now >= tripped_at + min_halt``-->  ``COOLDOWN``
- ``COOLDOWN`` --condition breached-->  ``TRIPPED`` (the halt clock restarts)
- ``COOLDOWN`` --``now >= cooldown_start + cooldown``-->  ``ACTIVE``
- manual: :meth:`~BreakerStateMachine.trip` (any state -> TRIPPED, latched: it only leaves
  TRIPPED through :meth:`~BreakerStateMachine.reset`) and :meth:`~BreakerStateMachine.reset`
  (any state -> ACTIVE, clears the latch and the breaker's condition state).

Trading: ACTIVE allows full size (``size_factor`` 1), COOLDOWN allows ``cooldown_size_factor``
of normal size, TRIPPED allows nothing (0). Every transition emits a :class:`BreakerEvent` to
the listeners and is kept in ``events``. Time is in seconds (any epoch; UTC for the
daily-loss reset).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BreakerState",
    "BreakerEvent",
    "BreakerStateMachine",
    "DailyLossBreaker",
    "DrawdownBreaker",
    "ConsecutiveLossBreaker",
    "VolatilitySpikeBreaker",
    "GreeksUtilisationBreaker",
    "BreakerPanel",
]

DAY = 86400.0


class BreakerState(enum.Enum):
    """State of a breaker."""

    ACTIVE = "active"
    TRIPPED = "tripped"
    COOLDOWN = "cooldown"


@dataclass(frozen=True)
class BreakerEvent:
    """One state transition: breaker name, from/to state, reason, time (seconds)."""

    breaker: str
    old: BreakerState
    new: BreakerState
    reason: str
    ts: float


def _check_nonneg(name: str, x: float) -> float:
    x = float(x)
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name}: must be finite and >= 0, got {x!r}")
    return x


def _check_ts(ts: float) -> float:
    ts = float(ts)
    if not math.isfinite(ts):
        raise ValueError(f"now: must be finite, got {ts!r}")
    return ts


class BreakerStateMachine:
    """The shared state machine (transitions in the module docstring).

    Args:
        name: breaker name used in events.
        min_halt: minimum seconds in TRIPPED before COOLDOWN may start.
        cooldown: seconds in COOLDOWN before ACTIVE.
        cooldown_size_factor: fraction of normal size allowed in COOLDOWN, in [0, 1].

    Example:
        >>> sm = BreakerStateMachine("demo", min_halt=60, cooldown=30)
        >>> _ = sm.step(0.0, breached=True, reason="x")
        >>> _ = sm.step(61.0, breached=False)
        >>> _ = sm.step(91.0, breached=False)
        >>> [(e.old.value, e.new.value) for e in sm.events]
        [('active', 'tripped'), ('tripped', 'cooldown'), ('cooldown', 'active')]
    """

    def __init__(
        self,
        name: str,
        min_halt: float = 300.0,
        cooldown: float = 300.0,
        cooldown_size_factor: float = 0.5,
    ):
        self.name = name
        self.min_halt = _check_nonneg("min_halt", min_halt)
        self.cooldown = _check_nonneg("cooldown", cooldown)
        f = _check_nonneg("cooldown_size_factor", cooldown_size_factor)
        if f > 1:
            raise ValueError(f"cooldown_size_factor: must be <= 1, got {f!r}")
        self.cooldown_size_factor = f
        self.state = BreakerState.ACTIVE
        self.latched = False
        self._since = -math.inf
        self.events: list[BreakerEvent] = []
        self.listeners: list[Callable[[BreakerEvent], None]] = []

    def _go(self, new: BreakerState, reason: str, ts: float) -> BreakerEvent:
        ev = BreakerEvent(self.name, self.state, new, reason, ts)
        self.state = new
        self._since = ts
        self.events.append(ev)
        for fn in self.listeners:
            fn(ev)
        return ev

    def step(self, now: float, breached: bool, reason: str = "") -> BreakerEvent | None:
        """Advance with the condition's value at ``now``; returns the transition, if any."""
        now = _check_ts(now)
        s = self.state
        if s is BreakerState.ACTIVE:
            if breached:
                return self._go(BreakerState.TRIPPED, reason, now)
        elif s is BreakerState.TRIPPED:
            if not self.latched and not breached and now >= self._since + self.min_halt:
                return self._go(BreakerState.COOLDOWN, "condition clear, halt elapsed", now)
        else:
            if breached:
                return self._go(BreakerState.TRIPPED, reason, now)
            if now >= self._since + self.cooldown:
                return self._go(BreakerState.ACTIVE, "cooldown elapsed", now)
        return None

    def trip(self, now: float, reason: str = "manual") -> BreakerEvent | None:
        """Manual override: TRIPPED and latched until :meth:`reset`."""
        now = _check_ts(now)
        self.latched = True
        if self.state is BreakerState.TRIPPED:
            return None
        return self._go(BreakerState.TRIPPED, reason, now)

    def reset(self, now: float, reason: str = "manual reset") -> BreakerEvent | None:
        """Manual override: back to ACTIVE now (clears the latch)."""
        now = _check_ts(now)
        self.latched = False
        if self.state is BreakerState.ACTIVE:
            return None
        return self._go(BreakerState.ACTIVE, reason, now)

    @property
    def size_factor(self) -> float:
        """1 when ACTIVE, ``cooldown_size_factor`` in COOLDOWN, 0 when TRIPPED."""
        if self.state is BreakerState.ACTIVE:
            return 1.0
        if self.state is BreakerState.COOLDOWN:
            return self.cooldown_size_factor
        return 0.0

    @property
    def allows_trading(self) -> bool:
        """True unless TRIPPED (COOLDOWN trades at reduced size)."""
        return self.size_factor > 0.0


class DailyLossBreaker(BreakerStateMachine):
    """Trips when the day's NET PnL (realised + unrealised - fees) falls to ``-max_loss``.

    The day starts at ``reset_time`` seconds after UTC midnight. At the first update of a new
    day the baseline becomes the current net PnL; the condition is
    ``net_pnl - baseline <= -max_loss``: net PnL since the day's start, gains included (a day
    that has made 500 trips only after losing ``500 + max_loss`` from there).
    On a day roll the condition is clear, so a TRIPPED breaker proceeds to COOLDOWN once
    ``min_halt`` has elapsed.

    Example:
        >>> b = DailyLossBreaker(max_loss=1000.0, reset_time=0.0, min_halt=0.0, cooldown=0.0)
        >>> _ = b.update(10.0, net_pnl=500.0)       # first update sets the baseline: 500
        >>> _ = b.update(20.0, net_pnl=-600.0)      # -1100 on the day
        >>> b.state.value
        'tripped'
        >>> _ = b.update(DAY + 1.0, net_pnl=-600.0) # new day: baseline -600
        >>> b.state.value
        'cooldown'
    """

    def __init__(self, max_loss: float, reset_time: float = 0.0, **kw):
        super().__init__(kw.pop("name", "daily_loss"), **kw)
        self.max_loss = _check_nonneg("max_loss", max_loss)
        rt = _check_nonneg("reset_time", reset_time)
        if rt >= DAY:
            raise ValueError(f"reset_time: must be < 86400 seconds, got {rt!r}")
        self.reset_time = rt
        self._day: int | None = None
        self.baseline = 0.0

    def update(self, now: float, net_pnl: float) -> BreakerEvent | None:
        """Feed the current cumulative net PnL (money) at time ``now``."""
        now = _check_ts(now)
        pnl = float(net_pnl)
        if not math.isfinite(pnl):
            raise ValueError(f"net_pnl: must be finite, got {net_pnl!r}")
        day = math.floor((now - self.reset_time) / DAY)
        if self._day != day:
            self._day = day
            self.baseline = pnl
        day_pnl = pnl - self.baseline
        return self.step(now, day_pnl <= -self.max_loss, f"daily net PnL {day_pnl:.2f}")


class DrawdownBreaker(BreakerStateMachine):
    """Trips when equity falls ``max_drawdown`` (money) below its running peak.

    The peak is the highest equity seen since construction or the last :meth:`reset`.

    Example:
        >>> b = DrawdownBreaker(max_drawdown=100.0)
        >>> _ = b.update(0.0, 1000.0); _ = b.update(1.0, 1200.0); _ = b.update(2.0, 1099.0)
        >>> b.state.value
        'tripped'
    """

    def __init__(self, max_drawdown: float, **kw):
        super().__init__(kw.pop("name", "drawdown"), **kw)
        self.max_drawdown = _check_nonneg("max_drawdown", max_drawdown)
        self.peak = -math.inf

    def update(self, now: float, equity: float) -> BreakerEvent | None:
        """Feed the current equity (money)."""
        e = float(equity)
        if not math.isfinite(e):
            raise ValueError(f"equity: must be finite, got {equity!r}")
        self.peak = max(self.peak, e)
        dd = self.peak - e
        return self.step(now, dd >= self.max_drawdown, f"drawdown {dd:.2f}")

    def reset(self, now: float, reason: str = "manual reset") -> BreakerEvent | None:
        """Manual reset; the peak restarts from the next update."""
        self.peak = -math.inf
        return super().reset(now, reason)


class ConsecutiveLossBreaker(BreakerStateMachine):
    """Trips after ``max_losses`` losing round trips in a row.

    A trade with PnL < 0 extends the streak, > 0 ends it, == 0 leaves it unchanged. The streak
    is cleared when the breaker trips (the condition is an event, not a level), so the breaker
    proceeds to COOLDOWN once ``min_halt`` has elapsed (checked on :meth:`record` or
    :meth:`tick`).

    Example:
        >>> b = ConsecutiveLossBreaker(max_losses=3, min_halt=10.0)
        >>> for t, p in enumerate([-1.0, -2.0, -0.5]): _ = b.record(float(t), p)
        >>> b.state.value
        'tripped'
    """

    def __init__(self, max_losses: int, **kw):
        super().__init__(kw.pop("name", "consecutive_losses"), **kw)
        if isinstance(max_losses, bool) or not isinstance(max_losses, int) or max_losses < 1:
            raise ValueError(f"max_losses: must be an integer >= 1, got {max_losses!r}")
        self.max_losses = max_losses
        self.streak = 0

    def record(self, now: float, trade_pnl: float) -> BreakerEvent | None:
        """Record one closed trade's PnL (money)."""
        p = float(trade_pnl)
        if not math.isfinite(p):
            raise ValueError(f"trade_pnl: must be finite, got {trade_pnl!r}")
        if p < 0:
            self.streak += 1
        elif p > 0:
            self.streak = 0
        breached = self.streak >= self.max_losses
        reason = f"{self.streak} consecutive losses"
        if breached:
            self.streak = 0
        return self.step(now, breached, reason)

    def tick(self, now: float) -> BreakerEvent | None:
        """Advance time without a trade."""
        return self.step(now, False)

    def reset(self, now: float, reason: str = "manual reset") -> BreakerEvent | None:
        """Manual reset; the streak is cleared."""
        self.streak = 0
        return super().reset(now, reason)


class VolatilitySpikeBreaker(BreakerStateMachine):
    """Trips when short-window realised vol exceeds ``ratio`` x long-window realised vol.

    Realised vol = root-mean-square of log returns between consecutive prices (no mean
    removal) over the last ``short_window`` and ``long_window`` returns; the condition is
    evaluated only once ``long_window`` returns are available. The long window contains the
    short one, so one isolated jump can raise the ratio to at most ``sqrt(long / short)``:
    choose ``ratio`` below that for single-jump sensitivity.

    Example:
        >>> b = VolatilitySpikeBreaker(short_window=2, long_window=6, ratio=1.5)
        >>> for t, p in enumerate([100, 100.1, 100, 100.1, 100, 100.1, 100, 104, 100]):
        ...     _ = b.update(float(t), float(p))
        >>> b.state.value
        'tripped'
    """

    def __init__(self, short_window: int, long_window: int, ratio: float, **kw):
        super().__init__(kw.pop("name", "volatility_spike"), **kw)
        if not (
            isinstance(short_window, int)
            and isinstance(long_window, int)
            and 1 <= short_window < long_window
        ):
            raise ValueError(
                f"short_window/long_window: need integers 1 <= short < long, got "
                f"{short_window!r}, {long_window!r}"
            )
        self.short_window, self.long_window = short_window, long_window
        self.ratio = _check_nonneg("ratio", ratio)
        self._ret: deque[float] = deque(maxlen=long_window)
        self._last: float | None = None

    def update(self, now: float, price: float) -> BreakerEvent | None:
        """Feed the next price (> 0)."""
        p = float(price)
        if not (math.isfinite(p) and p > 0):
            raise ValueError(f"price: must be finite and > 0, got {price!r}")
        if self._last is not None:
            self._ret.append(math.log(p / self._last))
        self._last = p
        breached, reason = False, ""
        if len(self._ret) == self.long_window:
            r = list(self._ret)
            long_v = math.sqrt(math.fsum(x * x for x in r) / len(r))
            short = r[-self.short_window :]
            short_v = math.sqrt(math.fsum(x * x for x in short) / len(short))
            breached = short_v > self.ratio * long_v
            reason = f"short vol {short_v:.3g} vs long vol {long_v:.3g}"
        return self.step(now, breached, reason)


class GreeksUtilisationBreaker(BreakerStateMachine):
    """Trips when any limit utilisation (``|measure| / limit``) reaches ``threshold``.

    Feed it :meth:`jaxmm.risk.LimitChecker.utilisation`.

    Example:
        >>> b = GreeksUtilisationBreaker(threshold=0.9)
        >>> _ = b.update(0.0, {"greeks.vega:XYZ": 0.95})
        >>> b.state.value
        'tripped'
    """

    def __init__(self, threshold: float = 0.9, **kw):
        super().__init__(kw.pop("name", "greeks_utilisation"), **kw)
        self.threshold = _check_nonneg("threshold", threshold)

    def update(self, now: float, utilisation: dict[str, float]) -> BreakerEvent | None:
        """Feed the current utilisation map."""
        worst = max(utilisation.items(), key=lambda kv: kv[1], default=("", 0.0))
        return self.step(now, worst[1] >= self.threshold, f"{worst[0]} at {worst[1]:.1%}")


class BreakerPanel:
    """A set of breakers: trading size is the minimum of their size factors.

    Example:
        >>> panel = BreakerPanel([DrawdownBreaker(100.0), ConsecutiveLossBreaker(2)])
        >>> _ = panel["consecutive_losses"].record(0.0, -1.0)
        >>> _ = panel["consecutive_losses"].record(1.0, -1.0)
        >>> panel.size_factor, panel.allows_trading
        (0.0, False)
    """

    def __init__(self, breakers: list[BreakerStateMachine]):
        self._b = {b.name: b for b in breakers}
        if len(self._b) != len(breakers):
            raise ValueError("breakers: names must be unique")

    def __getitem__(self, name: str) -> BreakerStateMachine:
        return self._b[name]

    @property
    def size_factor(self) -> float:
        """Minimum size factor over the breakers (1.0 for an empty panel)."""
        return min((b.size_factor for b in self._b.values()), default=1.0)

    @property
    def allows_trading(self) -> bool:
        """False if any breaker is TRIPPED."""
        return self.size_factor > 0.0

    def events(self) -> list[BreakerEvent]:
        """All transitions of all breakers, in time order."""
        return sorted((e for b in self._b.values() for e in b.events), key=lambda e: e.ts)
