"""Positions and PnL: average cost, realised/unrealised PnL, fees, batched portfolio Greeks.

Pure Python where state changes per event (:class:`Portfolio`, :class:`Position`); JAX where
the work is a batch (:func:`portfolio_greeks`, :func:`pnl_attribution`). Conventions and the
exact accounting rules are in docs/risk.md.
"""

from ._greeks import Attribution as Attribution
from ._greeks import GreekTotals as GreekTotals
from ._greeks import PortfolioGreeks as PortfolioGreeks
from ._greeks import PositionArrays as PositionArrays
from ._greeks import pnl_attribution as pnl_attribution
from ._greeks import portfolio_greeks as portfolio_greeks
from ._portfolio import Portfolio as Portfolio
from ._portfolio import build_position_arrays as build_position_arrays
from ._position import Position as Position
from ._types import Fill as Fill
from ._types import Instrument as Instrument
from ._types import InstrumentKind as InstrumentKind
from ._types import Order as Order
from ._types import Side as Side
from ._types import to_decimal as to_decimal
