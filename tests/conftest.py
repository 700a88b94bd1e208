"""Test-suite configuration: strict numerics, set here and never in the library.

- float64 everywhere (``jax_enable_x64``), as the accuracy targets assume;
- strict dtype promotion, so an accidental float32/float64 or int/float mix is an error;
- warnings are errors (pyproject ``filterwarnings``).
"""

import asyncio
import os

import jax
import pytest
from _db import Backend
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """The test's database on SQLite and on PostgreSQL (tests/_db.py); dropped afterwards."""
    b = Backend(request.param, tmp_path)
    yield b
    asyncio.run(b.drop())
