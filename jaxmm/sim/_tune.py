"""Gradient tuning of strategy parameters on the relaxed (expected-fill) simulator.

Relaxation (``relaxed=True`` in :func:`simulate`): in every step the random filled quantity of
each quote level is replaced by its expectation given the state, ``size x P(fill)`` (or the
expected partial fill), while the mid path stays random. Inventory and cash then follow the
expected-fill dynamics along each mid path, which are smooth in the quote prices, so any
objective of the result is differentiable in the strategy's parameters. For quotes that do not
depend on the inventory the relaxed mean PnL equals the exact simulator's mean PnL (PnL is
linear in the fills); for inventory-dependent quotes it is a mean-field approximation, which is
why tuned parameters are always re-evaluated on fresh paths of the exact simulator.

That mean-field limit has no fill noise: with quotes symmetric at ``q = 0`` the expected buy and
sell fills cancel and the inventory stays exactly 0, so a mean-variance or CARA objective never
sees inventory risk. ``tune(..., relaxed=Concrete(tau))`` tunes on the Concrete relaxation
instead (:class:`jaxmm.sim.Concrete`): random, smooth fills on the exact simulator's uniforms,
which keep the inventory variance (``docs/backtesting.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._engine import SimResult, _core, _relax, _rng, _validate

__all__ = ["TuneResult", "tune"]


class TuneResult(NamedTuple):
    """Output of :func:`tune`.

    Attributes:
        strategy: the strategy with the tuned parameters.
        history: objective value (relaxed simulator, the batch of that iteration) per iteration,
            NumPy array of shape ``(n_iter,)``.
        params: the tuned parameter values, one per selected leaf.
    """

    strategy: Any
    history: np.ndarray
    params: tuple


def tune(
    strategy: Any,
    objective: Callable[[SimResult], Any],
    market: Any,
    fills: Any,
    key: jax.Array,
    *,
    params: Callable[[Any], tuple],
    n_paths: int,
    n_steps: int,
    dt: Any,
    optimizer: Any = None,
    n_iter: int = 100,
    max_position: Any = None,
    latency_steps: int = 0,
    block: int = 1,
    rng: str = "jax",
    progress: bool = True,
    relaxed: Any = True,
) -> TuneResult:
    """Maximise ``objective(simulate(..., relaxed=relaxed))`` over selected positive parameters.

    Each selected leaf ``p`` is optimised as ``log p`` (so it stays > 0); iteration ``i`` uses
    fresh paths drawn from ``fold_in(key, i)`` (stochastic gradient ascent).

    Args:
        strategy: the starting strategy.
        objective: ``SimResult -> scalar`` to MAXIMISE, e.g.
            ``lambda r: mean_variance(r.pnl, 0.1)``.
        market, fills, n_paths, n_steps, dt, max_position, latency_steps, block, rng: as in
            :func:`simulate`.
        key: PRNG key.
        params: ``strategy -> tuple of leaves`` to tune (as in ``eqx.tree_at``), e.g.
            ``lambda s: (s.gamma,)``.
        optimizer: an ``optax`` gradient transformation (default ``optax.adam(0.05)``), applied
            to the log-parameters.
        n_iter: number of gradient steps.
        progress: show a ``tqdm`` progress bar.
        relaxed: the differentiable mode, as in :func:`simulate`: ``True`` (default, expected
            fills), ``"concrete"`` or :class:`Concrete` ``(tau)`` (random relaxed fills, keeps
            inventory risk; use it when the objective penalises variance). ``False`` is
            rejected (the exact simulator has zero gradient in the quote prices).

    Returns:
        :class:`TuneResult`.

    Example:
        >>> import jax
        >>> from jaxmm.sim import ArithmeticBrownian, PoissonFills, mean_variance, tune
        >>> from jaxmm.strategy import AvellanedaStoikov
        >>> out = tune(AvellanedaStoikov(0.5, 1.5, 2.0, 1.0), lambda r: mean_variance(r.pnl, 0.1),
        ...            ArithmeticBrownian(100.0, 2.0), PoissonFills(140.0, 1.5), jax.random.key(0),
        ...            params=lambda s: (s.gamma,), n_paths=64, n_steps=50, dt=0.02, n_iter=3,
        ...            progress=False)
        >>> out.history.shape
        (3,)
    """
    import optax

    _validate(n_paths, n_steps, dt, max_position, latency_steps, block)
    rng = _rng(rng)
    mode, tau = _relax(relaxed)
    if mode is False:
        raise ValueError("relaxed: tune needs a differentiable mode (True, 'concrete' or Concrete)")
    if isinstance(n_iter, bool) or int(n_iter) != n_iter or n_iter < 1:
        raise ValueError(f"n_iter: must be an integer >= 1, got {n_iter!r}")
    leaves = tuple(params(strategy))
    for j, leaf in enumerate(leaves):
        if not bool(jnp.all(jnp.asarray(leaf) > 0)):
            raise ValueError(f"params: selected leaf {j} must be > 0 (tuned in log space)")
    theta = tuple(jnp.log(jnp.asarray(leaf)) for leaf in leaves)
    opt = optimizer if optimizer is not None else optax.adam(0.05)
    mp = jnp.inf if max_position is None else max_position

    def build(th):
        return eqx.tree_at(params, strategy, tuple(jnp.exp(t) for t in th))

    def loss(th, k):
        res = _core(
            build(th), market, fills, k, dt, mp, 0.0, 0.0, tau, n_paths=int(n_paths),
            n_steps=int(n_steps), block=int(min(block, n_steps)), latency=int(latency_steps),
            relaxed=mode, record=False, mesh=None, rng=rng,
        )  # fmt: skip
        return -objective(res)

    @jax.jit
    def update(th, state, k):
        val, g = jax.value_and_grad(loss)(th, k)
        # optax mixes int step counts with float decays; allow that promotion locally, for
        # the optimiser only, whatever the caller's global promotion mode is.
        with jax.numpy_dtype_promotion("standard"):
            upd, state = opt.update(g, state, th)
            th = optax.apply_updates(th, upd)
        return th, state, -val

    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(theta)
    hist = np.empty(int(n_iter))
    it = range(int(n_iter))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(it, desc="tune", leave=False)
        it = bar
    for i in it:
        theta, state, val = update(theta, state, jax.random.fold_in(key, i))
        hist[i] = float(val)
        if bar is not None:
            bar.set_postfix(objective=f"{hist[i]:.4g}")
    best = build(theta)
    return TuneResult(best, hist, tuple(params(best)))
