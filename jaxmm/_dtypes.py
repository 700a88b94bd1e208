"""Floating dtype resolution for kernels, valid under JAX's strict promotion mode."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["common_float_dtype", "as_float"]


def common_float_dtype(*xs: Any) -> np.dtype:
    """The floating dtype a kernel computes in for these inputs.

    The widest floating dtype among array inputs (so float32 inputs stay float32 and any
    float64 input makes it float64); JAX's default float when no input is a floating array
    (Python numbers, ints, bools). Canonicalised, so float64 becomes float32 when 64-bit mode
    is off. Resolved from static dtypes only: costs nothing inside ``jit``.
    """
    best: np.dtype | None = None
    for x in xs:
        dt = getattr(x, "dtype", None)
        if dt is None or getattr(x, "weak_type", False):
            continue
        dt = np.dtype(dt)
        if not np.issubdtype(dt, np.floating):
            continue
        if best is None or dt.itemsize > best.itemsize:
            best = dt
    if best is None:
        best = np.dtype(jnp.asarray(0.0).dtype)
    return np.dtype(jax.dtypes.canonicalize_dtype(best))


def as_float(x: Any, dtype: np.dtype) -> jax.Array:
    """Cast ``x`` to ``dtype`` (explicitly, so strict promotion never trips)."""
    return jnp.asarray(x).astype(dtype)
