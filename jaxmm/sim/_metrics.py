"""Performance metrics of simulated market-making paths, and utility objectives.

Conventions (``docs/backtesting.md``):

- PnL is mark-to-market, ``x + q s`` minus its initial value, in price x quantity units; no
  capital base is assumed, so Sharpe and Sortino are ratios of PnL changes, not of returns.
- Sharpe: per path, ``mean(r) / std(r) * sqrt(steps_per_year)`` of the per-step PnL changes
  ``r`` (population std, ``ddof = 0``), with ``steps_per_year = 1 / (dt * time_unit_years)``;
  the reported value is the mean over paths. Sortino replaces ``std(r)`` by the downside
  deviation ``sqrt(mean(min(r, 0)^2))``. ``terminal_sharpe`` is ``mean / std`` of terminal PnL
  across paths (not annualised).
- CARA utility ``-E[exp(-gamma PnL)]`` and its certainty equivalent
  ``-(1/gamma) log E[exp(-gamma PnL)]`` (computed with ``logsumexp``); mean-variance
  ``E[PnL] - (gamma/2) Var[PnL]``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array

from ._engine import SimResult

__all__ = ["summary", "summary_frame", "cara_utility", "certainty_equivalent", "mean_variance"]


def cara_utility(pnl: Array, gamma: Any) -> Array:
    """``-mean(exp(-gamma pnl))`` over the last axis (paths).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.sim import cara_utility
        >>> round(float(cara_utility(jnp.array([0.0, 0.0]), 0.5)), 6)
        -1.0
    """
    pnl = jnp.asarray(pnl)
    return -jnp.mean(jnp.exp(-jnp.asarray(gamma).astype(pnl.dtype) * pnl), axis=-1)


def certainty_equivalent(pnl: Array, gamma: Any) -> Array:
    """``-(1/gamma) log mean(exp(-gamma pnl))`` over the last axis, computed stably.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.sim import certainty_equivalent
        >>> round(float(certainty_equivalent(jnp.array([1.0, 1.0]), 2.0)), 6)
        1.0
    """
    pnl = jnp.asarray(pnl)
    g = jnp.asarray(gamma).astype(pnl.dtype)
    n = jnp.asarray(pnl.shape[-1], pnl.dtype)
    return -(logsumexp(-g * pnl, axis=-1) - jnp.log(n)) / g


def mean_variance(pnl: Array, gamma: Any) -> Array:
    """``mean(pnl) - gamma/2 var(pnl)`` over the last axis (population variance).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.sim import mean_variance
        >>> float(mean_variance(jnp.array([0.0, 2.0]), 1.0))  # 1 - 0.5 * 1
        0.5
    """
    pnl = jnp.asarray(pnl)
    return jnp.mean(pnl, axis=-1) - 0.5 * jnp.asarray(gamma).astype(pnl.dtype) * jnp.var(
        pnl, axis=-1
    )


def summary(
    result: SimResult,
    *,
    dt: float,
    n_steps: int,
    time_unit_years: float = 1.0,
    risk_aversion: float = 0.1,
) -> dict[str, Array]:
    """Metrics of a :class:`SimResult`, reduced over paths (a sweep keeps its params axis).

    Args:
        result: from :func:`simulate` or :func:`sweep`.
        dt, n_steps: the simulation's step length (model time units) and step count.
        time_unit_years: length of the model time unit in years (1.0: ``t`` is in years).
        risk_aversion: ``gamma`` of the CARA and mean-variance utilities.

    Returns:
        A dict of arrays: ``pnl_mean``, ``pnl_std``, ``terminal_sharpe``, ``sharpe``,
        ``sortino``, ``max_drawdown`` (mean over paths), ``max_drawdown_steps`` (mean),
        ``inventory_mean``, ``inventory_std``, ``inventory_q05`` ... ``inventory_q95``
        (terminal inventory quantiles), ``abs_inventory_mean``, ``fill_ratio`` (fill steps /
        live side-steps), ``spread_captured`` and ``inventory_pnl`` and ``fees`` (means),
        ``cara_utility``, ``certainty_equivalent``, ``mean_variance``.

    Example:
        >>> import jax
        >>> from jaxmm.sim import ArithmeticBrownian, PoissonFills, simulate, summary
        >>> from jaxmm.strategy import AvellanedaStoikov
        >>> r = simulate(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0), ArithmeticBrownian(100.0, 2.0),
        ...              PoissonFills(140.0, 1.5), jax.random.key(0), 50, n_steps=100, dt=0.01)
        >>> m = summary(r, dt=0.01, n_steps=100)
        >>> bool(m["pnl_mean"] > 0)
        True
    """
    pnl = result.pnl
    dtp = pnl.dtype
    n = jnp.asarray(n_steps, dtp)
    ann = jnp.sqrt(jnp.asarray(1.0 / (dt * time_unit_years), dtp))
    m1 = result.step_pnl_sum / n
    var = jnp.maximum(result.step_pnl_sumsq / n - m1 * m1, 0.0)
    down = jnp.sqrt(result.step_pnl_downsq / n)
    sd = jnp.sqrt(var)
    sharpe = jnp.where(sd > 0, m1 / jnp.where(sd > 0, sd, 1.0), 0.0) * ann
    sortino = jnp.where(down > 0, m1 / jnp.where(down > 0, down, 1.0), 0.0) * ann
    std = jnp.std(pnl, axis=-1)
    quoted = result.bid_quoted + result.ask_quoted
    filled = result.bid_fills + result.ask_fills
    qs = jnp.quantile(result.inventory, jnp.asarray([0.05, 0.25, 0.5, 0.75, 0.95], dtp), axis=-1)
    out = {
        "pnl_mean": jnp.mean(pnl, axis=-1),
        "pnl_std": std,
        "terminal_sharpe": jnp.mean(pnl, axis=-1) / std,
        "sharpe": jnp.mean(sharpe, axis=-1),
        "sortino": jnp.mean(sortino, axis=-1),
        "max_drawdown": jnp.mean(result.max_drawdown, axis=-1),
        "max_drawdown_steps": jnp.mean(result.max_drawdown_steps, axis=-1),
        "inventory_mean": jnp.mean(result.inventory, axis=-1),
        "inventory_std": jnp.std(result.inventory, axis=-1),
        "abs_inventory_mean": jnp.mean(result.abs_inventory_mean, axis=-1),
        "fill_ratio": jnp.sum(filled, axis=-1) / jnp.maximum(jnp.sum(quoted, axis=-1), 1.0),
        "spread_captured": jnp.mean(result.spread_captured, axis=-1),
        "inventory_pnl": jnp.mean(result.inventory_pnl, axis=-1),
        "fees": jnp.mean(result.fees, axis=-1),
        "cara_utility": cara_utility(pnl, risk_aversion),
        "certainty_equivalent": certainty_equivalent(pnl, risk_aversion),
        "mean_variance": mean_variance(pnl, risk_aversion),
    }
    for name, qv in zip(("q05", "q25", "q50", "q75", "q95"), qs, strict=True):
        out[f"inventory_{name}"] = qv
    return out


def summary_frame(result: SimResult, **kwargs: Any):
    """:func:`summary` as a ``pandas.DataFrame`` (one row; a sweep gives one row per set).

    Example:
        >>> import jax
        >>> from jaxmm.sim import ArithmeticBrownian, PoissonFills, simulate, summary_frame
        >>> from jaxmm.strategy import AvellanedaStoikov
        >>> r = simulate(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0), ArithmeticBrownian(100.0, 2.0),
        ...              PoissonFills(140.0, 1.5), jax.random.key(0), 50, n_steps=100, dt=0.01)
        >>> summary_frame(r, dt=0.01, n_steps=100).shape[0]
        1
    """
    import pandas as pd

    m = {k: np.atleast_1d(np.asarray(v)) for k, v in summary(result, **kwargs).items()}
    return pd.DataFrame(m)
