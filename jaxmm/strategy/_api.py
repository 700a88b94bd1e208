"""Jitted public entry points: one quote from Python, or a batch of states in one call."""

from __future__ import annotations

from typing import Any

import jax

from ._types import MarketState, Quote

__all__ = ["quote", "quote_batch"]


@jax.jit
def quote(strategy: Any, state: MarketState) -> Quote:
    """``strategy.quote(state)`` compiled once per strategy type, static config and shapes.

    New parameter values or new state values of the same shapes reuse the compiled code (all
    strategy parameters are array leaves; only static configuration is in the tree structure).

    Example:
        >>> from jaxmm.strategy import AvellanedaStoikov, MarketState, quote
        >>> q = quote(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0), MarketState(mid=100.0))
        >>> float(q.bid) < 100.0 < float(q.ask)
        True
    """
    return strategy.quote(state)


@jax.jit
def quote_batch(strategy: Any, states: MarketState) -> Quote:
    """``jax.vmap(strategy.quote)(states)``: every leaf of ``states`` has the batch axis first.

    Build ``states`` with batched ``mid`` (the other scalar fields broadcast on construction).
    To batch over parameters instead, construct the strategy inside ``jax.vmap``::

        jax.vmap(lambda g: AvellanedaStoikov(g, k, sigma, T).quote(state))(gammas)

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.strategy import AvellanedaStoikov, MarketState, quote_batch
        >>> s = MarketState(mid=jnp.full(4, 100.0), inventory=jnp.arange(4.0), t=0.0)
        >>> quote_batch(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0), s).bid.shape
        (4,)
    """
    return jax.vmap(strategy.quote)(states)
