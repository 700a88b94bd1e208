"""Explicit, opt-in process configuration. Nothing here runs on import."""

from __future__ import annotations

import jax

__all__ = ["enable_float64", "float64_enabled"]


def enable_float64() -> None:
    """Turn on JAX 64-bit mode for this process (``jax_enable_x64``).

    jaxmm never flips this flag itself: importing a library must not change how the rest of a
    program computes. Call this once at start-up (before creating arrays) to get float64
    pricing, implied vols and calibration, which is what jaxmm's accuracy figures assume.

    Example:
        >>> import jaxmm
        >>> jaxmm.enable_float64()
        >>> jaxmm.float64_enabled()
        True
    """
    jax.config.update("jax_enable_x64", True)


def float64_enabled() -> bool:
    """Whether JAX 64-bit mode is on, i.e. whether jaxmm kernels compute in float64."""
    return bool(jax.config.read("jax_enable_x64"))
