"""A chain sharded across devices prices like the unsharded chain (4 forced CPU devices).

XLA's host device count must be set before JAX starts, so this runs in a subprocess.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jaxmm.pricing as jp

    assert len(jax.devices()) == 4, jax.devices()
    n = 4 * 250
    rng = np.random.default_rng(0)
    args = [rng.uniform(80, 120, n), rng.uniform(80, 120, n), rng.uniform(0.05, 2, n),
            rng.uniform(-0.01, 0.05, n), rng.uniform(0, 0.03, n), rng.uniform(0.1, 0.6, n),
            rng.uniform(size=n) < 0.5]
    mesh = Mesh(np.array(jax.devices()), ("chain",))
    spec = NamedSharding(mesh, P("chain"))
    sharded = [jax.device_put(jnp.asarray(a), spec) for a in args]
    g = jp.bsm_greeks(*sharded)
    assert len(g.delta.sharding.device_set) == 4, g.delta.sharding
    ref = jp.bsm_greeks(*[jnp.asarray(a) for a in args])
    for f in g._fields:
        np.testing.assert_allclose(np.asarray(getattr(g, f)), np.asarray(getattr(ref, f)),
                                   rtol=1e-13, atol=1e-15)
    print("SHARDED-OK")
    """
)


def test_chain_sharded_across_four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED-OK" in out.stdout
