"""The options market maker: Greeks-aware chain quoting and Greeks risk with auto-hedging.

- :func:`quote_chain` quotes a whole chain in one jitted, vmapped call (per-option kernel
  :func:`quote_option`): a Greek-space Avellaneda-Stoikov reservation price plus the optimal
  half-spread under exponential fill intensity, then documented adjustment terms, operator
  controls, tick/lot rounding and post-trade limit caps (one-sided quoting).
- :class:`GreeksRiskManager` checks every order and fill on the post-trade state, re-marks
  Greeks on every market update, runs a Greeks circuit breaker and sends delta hedges.

Equations, units and rules: ``docs/engine.md``.
"""

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
