"""Edge validation shared by jaxmm's public entry points.

Policy (docs/architecture.md): values that arrive from the host — Python numbers, lists and
NumPy arrays — are checked before they enter a kernel, and a bad one raises ``ValueError``
whose message names the argument and the bound it broke. JAX arrays and tracers are already
inside the computation: they are not pulled back to the host for checking (that would force a
device sync on every call); kernels turn bad values into NaN or a per-element status instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["is_host_value", "check_values", "check_broadcast", "as_host_array"]


def is_host_value(x: Any) -> bool:
    """True for Python scalars, sequences and NumPy arrays; False for JAX arrays and tracers."""
    return not isinstance(x, jax.Array | jax.core.Tracer)


def as_host_array(name: str, x: Any) -> np.ndarray:
    """``np.asarray`` with a message that names the argument when the value is not numeric."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy's own message is appended
        raise ValueError(f"{name}: cannot be converted to an array ({exc})") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    return arr


def check_values(
    name: str,
    x: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    finite: bool = True,
) -> None:
    """Raise ``ValueError`` naming ``name`` if a host value breaks a bound.

    ``gt``/``ge``/``le`` are strict-greater, greater-or-equal and less-or-equal bounds. NaN
    always fails; ``finite=True`` also rejects infinities. JAX arrays are not checked (see the
    module docstring).
    """
    if not is_host_value(x):
        return
    arr = as_host_array(name, x)
    if np.issubdtype(arr.dtype, np.bool_):
        return
    if arr.size == 0:
        return
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name}: must be finite, got infinity")
    if gt is not None and not (arr > gt).all():
        raise ValueError(f"{name}: must be > {gt}, got min {arr.min()!r}")
    if ge is not None and not (arr >= ge).all():
        raise ValueError(f"{name}: must be >= {ge}, got min {arr.min()!r}")
    if le is not None and not (arr <= le).all():
        raise ValueError(f"{name}: must be <= {le}, got max {arr.max()!r}")


def check_broadcast(arrays: Mapping[str, Any]) -> tuple[int, ...]:
    """Return the broadcast shape of the named arguments, or raise naming the one that fails."""
    shape: tuple[int, ...] = ()
    for name, x in arrays.items():
        s = np.shape(x)
        try:
            shape = np.broadcast_shapes(shape, s)
        except ValueError:
            others = {k: np.shape(v) for k, v in arrays.items()}
            raise ValueError(
                f"{name}: shape {s} does not broadcast with the other arguments {others}"
            ) from None
    return shape
