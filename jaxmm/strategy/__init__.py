"""Market-making strategies as pure, vmappable, differentiable JAX kernels.

Every strategy is an ``equinox.Module`` whose continuous parameters are array leaves and whose
shape-determining configuration is static; ``strategy.quote(state)`` maps one
:class:`MarketState` to one :class:`Quote` and is jittable, vmappable over states and over
parameter batches, and differentiable in the continuous parameters. Units and equations:
``docs/strategies.md``.

- :class:`AvellanedaStoikov`, :class:`AvellanedaStoikovInfinite` — Avellaneda & Stoikov (2008);
- :class:`GLFT` — Guéant, Lehalle & Fernandez-Tapia (2013) / Guéant (2017): exact
  (matrix exponential), asymptotic and closed-form quotes with bounded inventory;
- :class:`Grid`, :class:`AdaptiveSpread`, :class:`DepthBased` — heuristic quoting;
- :class:`QuoteConstraints`, :class:`Ladder`, :class:`QuotePipeline` — operator
  post-processing (clamps, fee floor, tick/lot rounding, size shaping, ladders);
- :mod:`jaxmm.strategy.calibration` — ``(A, k)`` from fills with censoring, ``gamma`` from an
  inventory half-life, ``sigma`` estimators and a volatility-regime classifier.
"""

from . import calibration as calibration
from ._adaptive import AdaptiveSpread as AdaptiveSpread
from ._api import quote as quote
from ._api import quote_batch as quote_batch
from ._avellaneda_stoikov import AvellanedaStoikov as AvellanedaStoikov
from ._avellaneda_stoikov import AvellanedaStoikovInfinite as AvellanedaStoikovInfinite
from ._avellaneda_stoikov import liquidity_term as liquidity_term
from ._depth import DepthBased as DepthBased
from ._glft import GLFT as GLFT
from ._grid import Grid as Grid
from ._postprocess import Ladder as Ladder
from ._postprocess import QuoteConstraints as QuoteConstraints
from ._postprocess import QuotePipeline as QuotePipeline
from ._postprocess import round_to_increment as round_to_increment
from ._types import BookLevels as BookLevels
from ._types import MarketState as MarketState
from ._types import Quote as Quote
from ._units import DAYS_PER_YEAR as DAYS_PER_YEAR
from ._units import HOURS_PER_YEAR as HOURS_PER_YEAR
from ._units import MINUTES_PER_YEAR as MINUTES_PER_YEAR
from ._units import SECONDS_PER_YEAR as SECONDS_PER_YEAR
from ._units import absolute_sigma as absolute_sigma
from ._units import relative_annual_vol as relative_annual_vol
from .calibration import ASK as ASK
from .calibration import BID as BID
from .calibration import BinStatus as BinStatus
from .calibration import EmpiricalIntensity as EmpiricalIntensity
from .calibration import EwmaSigma as EwmaSigma
from .calibration import FitStatus as FitStatus
from .calibration import GammaFit as GammaFit
from .calibration import IntensityFit as IntensityFit
from .calibration import SigmaEstimate as SigmaEstimate
from .calibration import VolRegime as VolRegime
from .calibration import classify_vol_regime as classify_vol_regime
from .calibration import empirical_intensity as empirical_intensity
from .calibration import ewma_sigma as ewma_sigma
from .calibration import fit_intensity as fit_intensity
from .calibration import fit_intensity_regression as fit_intensity_regression
from .calibration import gamma_from_half_life as gamma_from_half_life
from .calibration import mean_reversion_rate as mean_reversion_rate
from .calibration import realized_sigma as realized_sigma
from .calibration import simulate_fills as simulate_fills
