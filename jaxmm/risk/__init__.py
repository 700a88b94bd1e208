"""Risk: pre-trade limits, circuit breakers, alerts, VaR/ES, stress and auto-hedging.

Exact semantics of every limit and breaker are in docs/risk.md.
"""

from ..portfolio._types import Fill as Fill
from ..portfolio._types import Instrument as Instrument
from ..portfolio._types import Order as Order
from ..portfolio._types import Side as Side
from ._alerts import Alert as Alert
from ._alerts import AlertManager as AlertManager
from ._alerts import CallbackHandler as CallbackHandler
from ._alerts import CollectingHandler as CollectingHandler
from ._alerts import LogHandler as LogHandler
from ._alerts import Severity as Severity
from ._breakers import BreakerEvent as BreakerEvent
from ._breakers import BreakerPanel as BreakerPanel
from ._breakers import BreakerState as BreakerState
from ._breakers import BreakerStateMachine as BreakerStateMachine
from ._breakers import ConsecutiveLossBreaker as ConsecutiveLossBreaker
from ._breakers import DailyLossBreaker as DailyLossBreaker
from ._breakers import DrawdownBreaker as DrawdownBreaker
from ._breakers import GreeksUtilisationBreaker as GreeksUtilisationBreaker
from ._breakers import VolatilitySpikeBreaker as VolatilitySpikeBreaker
from ._hedge import GammaVegaHedge as GammaVegaHedge
from ._hedge import HedgeOrder as HedgeOrder
from ._hedge import Urgency as Urgency
from ._hedge import delta_hedge as delta_hedge
from ._hedge import gamma_vega_hedge as gamma_vega_hedge
from ._limits import Action as Action
from ._limits import Decision as Decision
from ._limits import GreekLimits as GreekLimits
from ._limits import LimitChecker as LimitChecker
from ._limits import RiskLimits as RiskLimits
from ._var import VarResult as VarResult
from ._var import historical_var as historical_var
from ._var import is_psd as is_psd
from ._var import min_variance_hedge as min_variance_hedge
from ._var import min_variance_hedge_ratio as min_variance_hedge_ratio
from ._var import monte_carlo_var as monte_carlo_var
from ._var import nearest_correlation as nearest_correlation
from ._var import normal_quantile as normal_quantile
from ._var import parametric_var as parametric_var
from ._var import revaluation_pnl as revaluation_pnl
from ._var import simulate_factor_returns as simulate_factor_returns
from ._var import stress_grid as stress_grid
from ._var import validate_correlation as validate_correlation
