"""OptionContract pytree and the ACT/365F expiry helper."""

import datetime as dt

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.pricing._bsm import bsm_price
from jaxmm.pricing._contract import ExerciseStyle, OptionContract, year_fraction


def test_year_fraction_days_dates_datetimes():
    assert year_fraction(365) == 1.0
    assert year_fraction(1) == pytest.approx(1 / 365)
    np.testing.assert_allclose(year_fraction(np.array([0, 73, 730])), [0.0, 0.2, 2.0])
    # 2028 is a leap year: ACT/365F counts 366 days as 366/365 years.
    assert year_fraction(dt.date(2029, 1, 1), now=dt.date(2028, 1, 1)) == pytest.approx(366 / 365)
    t = year_fraction(dt.datetime(2026, 3, 1, 16, 0), now=dt.datetime(2026, 3, 1, 4, 0))
    assert t == pytest.approx(0.5 / 365)


def test_year_fraction_timezones_are_instants():
    ny = dt.timezone(dt.timedelta(hours=-5))
    expiry = dt.datetime(2026, 6, 19, 16, 0, tzinfo=ny)  # 21:00 UTC
    now = dt.datetime(2026, 6, 19, 20, 0)  # naive = UTC
    assert year_fraction(expiry, now) == pytest.approx(3600 / (365 * 86400))


def test_year_fraction_rejects_expired_and_bad_types():
    with pytest.raises(ValueError, match="expiry: .* is before now"):
        year_fraction(dt.date(2020, 1, 1), now=dt.date(2021, 1, 1))
    with pytest.raises(ValueError, match="expiry: must be >= 0"):
        year_fraction(-3)
    with pytest.raises(ValueError, match="now: must be a datetime"):
        year_fraction(dt.datetime(2027, 1, 1), now=3)


def test_contract_prices_like_bsm_and_is_a_pytree():
    c = OptionContract(
        strike=jnp.array([90.0, 100.0, 110.0]), expiry=0.5, is_call=[True, False, True]
    )
    want = bsm_price(
        100.0, jnp.array([90.0, 100.0, 110.0]), 0.5, 0.01, 0.0, 0.3, jnp.array([True, False, True])
    )
    np.testing.assert_allclose(np.asarray(c.price(100.0, 0.01, 0.0, 0.3)), np.asarray(want))
    leaves = jax.tree_util.tree_leaves(c)
    assert len(leaves) == 3  # style is static

    @eqx.filter_jit
    def total_vega(contract, vol):
        return contract.greeks(100.0, 0.01, 0.0, vol).vega.sum()

    assert float(total_vega(c, 0.3)) > 0


def test_contract_from_dates_and_validation():
    c = OptionContract.from_dates(
        100.0, dt.date(2027, 1, 1), True, now=dt.date(2026, 1, 1), style=ExerciseStyle.EUROPEAN
    )
    assert float(c.expiry) == 1.0
    with pytest.raises(ValueError, match="strike: must be > 0"):
        OptionContract(strike=0.0, expiry=1.0, is_call=True)
    with pytest.raises(ValueError, match="does not broadcast"):
        OptionContract(strike=np.ones(3), expiry=np.ones(2), is_call=True)
