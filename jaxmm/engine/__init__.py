"""The options market maker: Greeks-aware chain quoting, Greeks risk with auto-hedging, the
asyncio engine loop, several underlyings and term-structure arbitrage.

- :func:`quote_chain` quotes a whole chain in one jitted, vmapped call (per-option kernel
  :func:`quote_option`): a Greek-space Avellaneda-Stoikov reservation price plus the optimal
  half-spread under exponential fill intensity, then documented adjustment terms, operator
  controls, tick/lot rounding and post-trade limit caps (one-sided quoting).
- :class:`GreeksRiskManager` checks every order and fill on the post-trade state, re-marks
  Greeks on every market update, runs a Greeks circuit breaker and sends delta hedges.
- :class:`OptionsMarketMaker` (configured by :class:`MarketMakerConfig`) is the asyncio loop:
  tick or surface update -> re-mark and quote -> order diff through the execution layer ->
  fills from the book -> positions, PnL, Greeks -> risk checks and hedges -> events and the
  store. :func:`run_simulation` runs it against :class:`SimulatedTraders` on the simulated
  market.
- :class:`UnderlyingManager` (shared, correlation-aware risk view, total limits, capital
  allocation), :func:`find_arbitrage` (calendar and butterfly violations tradable after spread
  and fees), :func:`suggest_gamma_vega_hedge` (listed-option hedges).

Equations, units and rules: ``docs/engine.md`` and ``docs/multi_underlying.md``.
"""

from ._arb import ArbLeg as ArbLeg
from ._arb import ArbOpportunity as ArbOpportunity
from ._arb import BookQuote as BookQuote
from ._arb import capture_orders as capture_orders
from ._arb import find_arbitrage as find_arbitrage
from ._arb import find_butterfly_arbitrage as find_butterfly_arbitrage
from ._arb import find_calendar_arbitrage as find_calendar_arbitrage
from ._arb import publish_signals as publish_signals
from ._config import MAX_DIRECTIONAL_SKEW as MAX_DIRECTIONAL_SKEW
from ._config import MAX_SIZE_SCALAR as MAX_SIZE_SCALAR
from ._config import MAX_SPREAD_MULTIPLIER as MAX_SPREAD_MULTIPLIER
from ._config import AllocationConfig as AllocationConfig
from ._config import MarketMakerConfig as MarketMakerConfig
from ._config import OperatorControls as OperatorControls
from ._config import UnderlyingConfig as UnderlyingConfig
from ._config import option_symbol as option_symbol
from ._loop import OptionsMarketMaker as OptionsMarketMaker
from ._loop import build_exchange as build_exchange
from ._loop import interpolate_surface as interpolate_surface
from ._loop import remark_and_quote as remark_and_quote
from ._loop import same_expiry as same_expiry
from ._multi import ALLOCATION_MODES as ALLOCATION_MODES
from ._multi import TotalLimits as TotalLimits
from ._multi import UnderlyingManager as UnderlyingManager
from ._multi import equal_weights as equal_weights
from ._multi import inverse_vol_weights as inverse_vol_weights
from ._multi import pnl_covariance as pnl_covariance
from ._multi import pnl_risk as pnl_risk
from ._multi import risk_contributions as risk_contributions
from ._multi import risk_parity_weights as risk_parity_weights
from ._multi import target_weights as target_weights
from ._quote import CHAIN_FIELDS as CHAIN_FIELDS
from ._quote import LIMIT_FIELDS as LIMIT_FIELDS
from ._quote import MARKET_FIELDS as MARKET_FIELDS
from ._quote import PACKED_OUTPUT_FIELDS as PACKED_OUTPUT_FIELDS
from ._quote import PARAM_FIELDS as PARAM_FIELDS
from ._quote import ChainMarket as ChainMarket
from ._quote import ChainQuote as ChainQuote
from ._quote import OptionChain as OptionChain
from ._quote import QuoteLimits as QuoteLimits
from ._quote import QuoteParams as QuoteParams
from ._quote import QuoteStatus as QuoteStatus
from ._quote import pack_state as pack_state
from ._quote import quote_chain as quote_chain
from ._quote import quote_chain_packed as quote_chain_packed
from ._quote import quote_option as quote_option
from ._risk import GreeksRiskManager as GreeksRiskManager
from ._risk import HedgeConfig as HedgeConfig
from ._run import run_simulation as run_simulation
from ._run import simulated_market as simulated_market
from ._suggest import HedgeSuggestion as HedgeSuggestion
from ._suggest import ListedOption as ListedOption
from ._suggest import solve_pair as solve_pair
from ._suggest import suggest_gamma_vega_hedge as suggest_gamma_vega_hedge
from ._traders import SimulatedTraders as SimulatedTraders
