"""Option pricing kernels: jitted, broadcasting over whole chains, differentiable.

Conventions (MISSION.md): expiry in years ACT/365F; rates and dividend yields continuously
compounded; vol annualised as a fraction; Greeks raw per one unit long (vega per 1.00 vol,
theta = dV/dt per calendar year, rho per 1.00 rate); :func:`to_desk_units` converts.
See docs/pricing.md.
"""

from ._bsm import black76_greeks as black76_greeks
from ._bsm import black76_price as black76_price
from ._bsm import black_scholes_scalar as black_scholes_scalar
from ._bsm import bsm_core_greeks as bsm_core_greeks
from ._bsm import bsm_core_greeks_packed as bsm_core_greeks_packed
from ._bsm import bsm_greeks as bsm_greeks
from ._bsm import bsm_greeks_analytic as bsm_greeks_analytic
from ._bsm import bsm_greeks_packed as bsm_greeks_packed
from ._bsm import bsm_price as bsm_price
from ._contract import SECONDS_PER_YEAR as SECONDS_PER_YEAR
from ._contract import ExerciseStyle as ExerciseStyle
from ._contract import OptionContract as OptionContract
from ._contract import year_fraction as year_fraction
from ._greeks import CoreGreeks as CoreGreeks
from ._greeks import DeskGreeks as DeskGreeks
from ._greeks import Greeks as Greeks
from ._greeks import autodiff_core_greeks as autodiff_core_greeks
from ._greeks import autodiff_greeks as autodiff_greeks
from ._greeks import to_desk_units as to_desk_units
from ._heston import heston_core_greeks as heston_core_greeks
from ._heston import heston_greeks as heston_greeks
from ._heston import heston_price as heston_price
from ._heston import heston_price_scalar as heston_price_scalar
from ._iv import IVStatus as IVStatus
from ._iv import implied_vol as implied_vol
from ._iv import implied_vol_black76 as implied_vol_black76
from ._lattice import AloScheme as AloScheme
from ._lattice import american_core_greeks as american_core_greeks
from ._lattice import american_greeks as american_greeks
from ._lattice import american_price as american_price
from ._mc import MCGreeks as MCGreeks
from ._mc import MCResult as MCResult
from ._mc import mc_greeks as mc_greeks
from ._mc import mc_price as mc_price
