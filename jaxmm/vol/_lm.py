"""A fixed-iteration Levenberg-Marquardt least-squares solver, vmappable, in pure JAX.

One problem: minimise ``0.5 |r(z)|^2`` over unconstrained ``z`` (``n_par``), ``r`` of length
``n_res``. Each iteration forms the Jacobian by forward mode (``jax.jacfwd``; ``n_par`` is small),
solves ``(J'J + lam diag(J'J) + lam eps I) dz = -J'r`` (Marquardt's scaling), accepts the step
only if the loss decreases, and adapts ``lam`` (x 0.3 on success, x 10 on failure). Iterations
run in ``lax.while_loop`` (bounded, stops at convergence) so a batch of problems (slices x
starts) is one ``vmap`` and compiles once.
Progress reporting is done by the caller, between chunks of iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class LMState(NamedTuple):
    """Solver carry (one problem; batch dims are added by vmap)."""

    z: Array  # (n_par,) current parameters
    loss: Array  # () 0.5 |r|^2 at z
    lam: Array  # () damping
    iterations: Array  # () int32, iterations that changed or tested z before convergence
    converged: Array  # () bool, relative loss change and gradient below tolerance


def lm_init(residual: Callable[[Array], Array], z0: Array) -> LMState:
    r = residual(z0)
    loss = 0.5 * jnp.sum(r * r)
    loss = jnp.where(jnp.isfinite(loss), loss, jnp.asarray(jnp.inf, z0.dtype))
    return LMState(
        z0,
        loss,
        jnp.asarray(1e-2, z0.dtype),
        jnp.asarray(0, jnp.int32),
        jnp.bool_(False),
    )


def _with_primal(residual: Callable[[Array], Array]) -> Callable[[Array], tuple[Array, Array]]:
    def f(z):
        r = residual(z)
        return r, jax.lax.stop_gradient(r)

    return f


def lm_run(
    residual: Callable[[Array], Array],
    state: LMState,
    n_steps: int,
    tol: float = 1e-12,
    xtol: float = 1e-10,
    jac_and_residual: Callable[[Array], tuple[Array, Array]] | None = None,
) -> LMState:
    """Run up to ``n_steps`` LM iterations from ``state``; stops once converged.

    Convergence (any of): an accepted step that lowers the loss by at most ``tol`` relative or
    moves ``z`` by at most ``xtol`` relative; a gradient ``J'r`` below ``1e-10 (1 + loss)``; a
    damping above 1e12 (no descent direction left). ``jac_and_residual(z) -> (J, r)`` replaces
    the default forward-mode Jacobian (e.g. row-wise reverse mode when every residual is an
    independent scalar function, as for option quotes). Under ``vmap`` the loop runs until every
    problem in the batch has converged (or the budget is spent); converged problems stop moving.
    """
    dtype = state.z.dtype
    n_par = state.z.shape[0]
    eye = jnp.eye(n_par, dtype=dtype)

    def cond(c):
        i, s = c
        return (i < n_steps) & ~s.converged

    def step(s: LMState):
        # one forward pass gives both r and J (the primal rides along as aux)
        if jac_and_residual is None:
            jac, r = jax.jacfwd(_with_primal(residual), has_aux=True)(s.z)
        else:
            jac, r = jac_and_residual(s.z)
        jac = jnp.where(jnp.isfinite(jac), jac, jnp.zeros_like(jac))
        r = jnp.where(jnp.isfinite(r), r, jnp.zeros_like(r))
        jtj = jac.T @ jac
        g = jac.T @ r
        a = jtj + s.lam * (jnp.diag(jnp.diag(jtj)) + 1e-9 * eye)
        dz = -jnp.linalg.solve(a, g)
        dz = jnp.where(jnp.all(jnp.isfinite(dz)), dz, jnp.zeros_like(dz))
        r_new = residual(s.z + dz)
        loss_new = 0.5 * jnp.sum(r_new * r_new)
        ok = jnp.isfinite(loss_new) & (loss_new < s.loss)
        small = (s.loss - jnp.where(ok, loss_new, s.loss)) <= tol * (s.loss + tol)
        gsmall = jnp.max(jnp.abs(g)) <= 1e-10 * (1.0 + s.loss)
        tiny_step = jnp.max(jnp.abs(dz)) <= xtol * (xtol + jnp.max(jnp.abs(s.z)))
        conv = s.converged | (ok & (small | tiny_step)) | gsmall | (s.lam > 1e12)
        keep = s.converged
        z = jnp.where(keep | ~ok, s.z, s.z + dz)
        loss = jnp.where(keep | ~ok, s.loss, loss_new)
        lam = jnp.where(ok, jnp.maximum(s.lam * 0.3, 1e-15), s.lam * 10.0)
        it = s.iterations + jnp.where(keep, 0, 1).astype(jnp.int32)
        return LMState(z, loss, jnp.where(keep, s.lam, lam), it, conv)

    _, out = jax.lax.while_loop(cond, lambda c: (c[0] + 1, step(c[1])), (0, state))
    return out
