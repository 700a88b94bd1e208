"""A seeded simulated market (NumPy, host side): underlying paths, a moving smile, and takers
whose arrival intensity depends on the distance of our quotes from fair value.

Underlying models (time in years, ``dt`` per step; ``Z``, ``Z'`` standard normals):

- ``"gbm"``: ``S' = S exp((mu - sigma^2/2) dt + sigma sqrt(dt) Z)``;
- ``"ou"`` (mean-reverting in log price): ``x = ln S``,
  ``x' = m + (x - m) e^{-kappa dt} + sigma sqrt((1 - e^{-2 kappa dt}) / (2 kappa)) Z`` with
  ``m = ln(mean_level)`` (exact discretisation);
- ``"jump"`` (Merton 1976): GBM plus ``N ~ Poisson(lambda dt)`` jumps, each adding
  ``N(jump_mean, jump_std^2)`` to ``ln S``; the drift is compensated
  (``mu - lambda (e^{jump_mean + jump_std^2/2} - 1)``) so ``E[S'] = S e^{mu dt}``.

Smile: ``sigma(K, T) = max(level + skew ln(K / F(T)), vol_floor)``; ``level`` and ``skew``
follow OU processes (exact discretisation) around their initial values.

Takers (``take``): over one step, a market buy lifts our ask with probability
``1 - exp(-A exp(-k (ask - fair)) dt)`` and a market sell hits our bid with probability
``1 - exp(-A exp(-k (fair - bid)) dt)``; ``fair`` is the option's value at the TRUE smile and
spot. A quote on the wrong side of fair is hit more often than ``A dt`` (adverse selection);
fills take our whole quoted size on that side.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["UnderlyingModel", "SmileModel", "PriceTick", "SimulatedMarket", "TakerFlow"]

_MODELS = ("gbm", "ou", "jump")


def _finite(name: str, x: float, lo: float | None = None, strict: bool = False) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{name}: must be finite, got {x!r}")
    if lo is not None and (x <= lo if strict else x < lo):
        raise ValueError(f"{name}: must be {'>' if strict else '>='} {lo}, got {x!r}")
    return x


@dataclass(frozen=True)
class UnderlyingModel:
    """One underlying's price process (see the module docstring for the equations).

    Attributes:
        s0: initial price > 0.
        vol: ``sigma``, relative annualised vol >= 0.
        model: ``"gbm"``, ``"ou"`` or ``"jump"``.
        drift: ``mu`` per year (gbm, jump).
        kappa: mean-reversion speed per year > 0 (ou).
        mean_level: long-run price > 0 (ou; default ``s0``).
        jump_intensity: jumps per year >= 0 (jump).
        jump_mean, jump_std: log-jump mean and stdev (jump).

    Example:
        >>> UnderlyingModel(100.0, 0.2).model
        'gbm'
    """

    s0: float
    vol: float
    model: str = "gbm"
    drift: float = 0.0
    kappa: float = 5.0
    mean_level: float | None = None
    jump_intensity: float = 0.0
    jump_mean: float = 0.0
    jump_std: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in _MODELS:
            raise ValueError(f"model: must be one of {_MODELS}, got {self.model!r}")
        _finite("s0", self.s0, 0.0, strict=True)
        _finite("vol", self.vol, 0.0)
        _finite("drift", self.drift)
        _finite("kappa", self.kappa, 0.0, strict=True)
        if self.mean_level is not None:
            _finite("mean_level", self.mean_level, 0.0, strict=True)
        _finite("jump_intensity", self.jump_intensity, 0.0)
        _finite("jump_mean", self.jump_mean)
        _finite("jump_std", self.jump_std, 0.0)

    def step(self, s: float, dt: float, rng: np.random.Generator) -> float:
        """One step of length ``dt`` years from price ``s``."""
        z = rng.standard_normal()
        v = self.vol
        if self.model == "ou":
            m = math.log(self.mean_level if self.mean_level is not None else self.s0)
            e = math.exp(-self.kappa * dt)
            sd = v * math.sqrt((1.0 - e * e) / (2.0 * self.kappa))
            return math.exp(m + (math.log(s) - m) * e + sd * z)
        mu = self.drift
        jump = 0.0
        if self.model == "jump":
            lam = self.jump_intensity
            mu -= lam * (math.exp(self.jump_mean + 0.5 * self.jump_std**2) - 1.0)
            n = rng.poisson(lam * dt)
            if n:
                jump = n * self.jump_mean + math.sqrt(n) * self.jump_std * rng.standard_normal()
        return s * math.exp((mu - 0.5 * v * v) * dt + v * math.sqrt(dt) * z + jump)


@dataclass(frozen=True)
class SmileModel:
    """``sigma(K, T) = max(level + skew ln(K/F), vol_floor)`` with OU level and skew.

    Attributes:
        level, skew: initial ATM vol and skew (vol per unit log-moneyness).
        level_vol, skew_vol: their annualised OU diffusion (absolute units per sqrt(year)).
        kappa: OU mean-reversion speed per year (> 0).
        vol_floor: smallest vol returned (> 0).

    Example:
        >>> SmileModel(0.2, -0.1).vol(np.array([90.0, 110.0]), 0.5, 0.2, -0.1, forward=100.0)
        array([0.21053605, 0.19046898])
    """

    level: float
    skew: float = 0.0
    level_vol: float = 0.0
    skew_vol: float = 0.0
    kappa: float = 10.0
    vol_floor: float = 0.01

    def __post_init__(self) -> None:
        _finite("level", self.level, 0.0, strict=True)
        _finite("skew", self.skew)
        _finite("level_vol", self.level_vol, 0.0)
        _finite("skew_vol", self.skew_vol, 0.0)
        _finite("kappa", self.kappa, 0.0, strict=True)
        _finite("vol_floor", self.vol_floor, 0.0, strict=True)

    def vol(self, strike, expiry, level: float, skew: float, forward: float) -> np.ndarray:
        """Implied vol of ``strike`` (any shape) given the current level and skew."""
        del expiry  # the smile is the same at every expiry in this model
        k = np.log(np.asarray(strike, np.float64) / forward)
        return np.maximum(level + skew * k, self.vol_floor)

    def step(self, level: float, skew: float, dt: float, rng: np.random.Generator):
        """One OU step of (level, skew) towards their initial values."""
        e = math.exp(-self.kappa * dt)
        sd = math.sqrt((1.0 - e * e) / (2.0 * self.kappa))
        z1, z2 = rng.standard_normal(2)
        lv = self.level + (level - self.level) * e + self.level_vol * sd * z1
        sk = self.skew + (skew - self.skew) * e + self.skew_vol * sd * z2
        return max(lv, self.vol_floor), sk


@dataclass(frozen=True)
class PriceTick:
    """One simulated tick: underlying id, price, step index, time in years since the start."""

    underlying: str
    price: float
    step: int
    t: float


class SimulatedMarket:
    """Seeded, reproducible underlyings and smiles, advanced one step at a time.

    Args:
        underlyings: id -> :class:`UnderlyingModel`.
        smiles: id -> :class:`SmileModel` (optional per underlying).
        dt: step length in years (e.g. ``1 / (365 * 24 * 3600)`` for one second).
        seed: the seed of the one ``numpy.random.Generator`` used for everything.

    Example:
        >>> m = SimulatedMarket({"BTC": UnderlyingModel(100.0, 0.6)}, dt=1e-4, seed=7)
        >>> ticks = m.step()
        >>> ticks[0].underlying, ticks[0].step
        ('BTC', 1)
    """

    def __init__(
        self,
        underlyings: Mapping[str, UnderlyingModel],
        dt: float,
        seed: int,
        smiles: Mapping[str, SmileModel] | None = None,
    ):
        if not underlyings:
            raise ValueError("underlyings: need at least one")
        self.models = dict(underlyings)
        self.smiles = dict(smiles or {})
        for u in self.smiles:
            if u not in self.models:
                raise ValueError(f"smiles: unknown underlying {u!r}")
        self.dt = _finite("dt", dt, 0.0, strict=True)
        self.rng = np.random.default_rng(seed)
        self.prices = {u: m.s0 for u, m in self.models.items()}
        self.smile_state = {u: (s.level, s.skew) for u, s in self.smiles.items()}
        self.n = 0

    @property
    def t(self) -> float:
        """Years since the start."""
        return self.n * self.dt

    def step(self) -> list[PriceTick]:
        """Advance every underlying (and smile) by one step; returns the new ticks."""
        self.n += 1
        out = []
        for u, m in self.models.items():
            self.prices[u] = m.step(self.prices[u], self.dt, self.rng)
            if u in self.smiles:
                self.smile_state[u] = self.smiles[u].step(*self.smile_state[u], self.dt, self.rng)
            out.append(PriceTick(u, self.prices[u], self.n, self.t))
        return out

    def implied_vol(self, underlying: str, strike, expiry, forward: float | None = None):
        """The TRUE smile of ``underlying`` now (``forward`` defaults to the spot)."""
        if underlying not in self.smiles:
            raise ValueError(f"underlying: no smile for {underlying!r}")
        lv, sk = self.smile_state[underlying]
        f = self.prices[underlying] if forward is None else forward
        return self.smiles[underlying].vol(strike, expiry, lv, sk, f)

    async def ticks(self, n_steps: int, pause: float = 0.0) -> AsyncIterator[PriceTick]:
        """Async iterator over ``n_steps`` steps' ticks (yields control between steps)."""
        for _ in range(int(n_steps)):
            for tick in self.step():
                yield tick
            await asyncio.sleep(pause)


class TakerFlow:
    """Other traders' market orders against our quotes (module docstring for the rule).

    Args:
        intensity: ``A``, taker arrivals per year per side at zero distance from fair (>= 0).
        k: decay per unit of price distance (> 0).

    Example:
        >>> flow = TakerFlow(intensity=1e4, k=5.0)
        >>> rng = np.random.default_rng(0)
        >>> lifted, hit = flow.take(np.array([1.0]), np.array([1.2]), np.array([1.1]), 1e-3, rng)
        >>> lifted.dtype, hit.shape
        (dtype('bool'), (1,))
    """

    def __init__(self, intensity: float, k: float):
        self.intensity = _finite("intensity", intensity, 0.0)
        self.k = _finite("k", k, 0.0, strict=True)

    def probabilities(self, bid, ask, fair, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """(P(our ask is lifted), P(our bid is hit)) over ``dt`` years, elementwise."""
        bid, ask, fair = (np.asarray(x, np.float64) for x in (bid, ask, fair))
        lam_ask = self.intensity * np.exp(-self.k * (ask - fair))
        lam_bid = self.intensity * np.exp(-self.k * (fair - bid))
        return -np.expm1(-lam_ask * dt), -np.expm1(-lam_bid * dt)

    def take(self, bid, ask, fair, dt: float, rng: np.random.Generator):
        """Draw which asks are lifted (we SELL) and which bids are hit (we BUY) this step."""
        p_ask, p_bid = self.probabilities(bid, ask, fair, dt)
        u = rng.random((2,) + p_ask.shape)
        return u[0] < p_ask, u[1] < p_bid
