"""Volatility: realised estimators, EWMA, GARCH(1,1), SVI/SSVI and Heston calibration, surfaces.

Conventions (MISSION.md): expiry in years ACT/365F; volatility annualised as a fraction;
log-moneyness ``k = ln(K / F)`` with ``F`` the forward; total implied variance
``w(k, T) = sigma_BS(k, T)^2 T``. See docs/volatility.md.
"""

from ._garch import GarchResult as GarchResult
from ._garch import GarchStatus as GarchStatus
from ._garch import fit_garch as fit_garch
from ._garch import garch_backcast as garch_backcast
from ._heston_fit import HestonFit as HestonFit
from ._heston_fit import fit_heston as fit_heston
from ._realised import close_to_close as close_to_close
from ._realised import ewma_variance as ewma_variance
from ._realised import garman_klass as garman_klass
from ._realised import parkinson as parkinson
from ._realised import rogers_satchell as rogers_satchell
from ._realised import yang_zhang as yang_zhang
from ._ssvi import SSVI as SSVI
from ._ssvi import SSVIFit as SSVIFit
from ._ssvi import fit_ssvi as fit_ssvi
from ._surface import ArbitrageReport as ArbitrageReport
from ._surface import VolSurface as VolSurface
from ._surface import detect_arbitrage as detect_arbitrage
from ._svi import SVI as SVI
from ._svi import SVIFit as SVIFit
from ._svi import SVIStatus as SVIStatus
from ._svi import butterfly_violations as butterfly_violations
from ._svi import fit_svi as fit_svi
from ._svi import quote_mask as quote_mask
