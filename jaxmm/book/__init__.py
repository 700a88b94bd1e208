"""jaxmm.book — a pure-Python, integer tick/lot, price-time priority order book.

- :class:`Instrument` converts external prices/sizes to integer ticks/lots (the only edge).
- :class:`OrderBook` matches limit, market, IOC, FOK and post-only orders with self-trade
  prevention and maker/taker fees, publishes sequenced events and rebuilds from a snapshot.
- :class:`OptionChainBook` holds call/put books per underlying, expiry and strike, addressed
  by ``UNDERLYING-YYYYMMDD-STRIKE-C|P`` (:class:`OptionSymbol`).

No JAX import here: the book runs at the edge. Rules are stated in ``docs/book.md``.
"""

from ._book import NS_PER_DAY as NS_PER_DAY
from ._book import OrderBook as OrderBook
from ._book import Subscription as Subscription
from ._book import utc_session_end as utc_session_end
from ._chain import ChainTotals as ChainTotals
from ._chain import OptionChainBook as OptionChainBook
from ._chain import StrikeQuotes as StrikeQuotes
from ._instrument import FEE_RATE_SCALE as FEE_RATE_SCALE
from ._instrument import FLOAT_GRID_TOLERANCE as FLOAT_GRID_TOLERANCE
from ._instrument import Instrument as Instrument
from ._records import Bar as Bar
from ._records import BookSnapshot as BookSnapshot
from ._records import Fill as Fill
from ._records import Impact as Impact
from ._records import Level as Level
from ._records import LevelUpdate as LevelUpdate
from ._records import OrderInfo as OrderInfo
from ._records import OrderUpdate as OrderUpdate
from ._records import SubmitResult as SubmitResult
from ._symbols import OptionSymbol as OptionSymbol
from ._symbols import format_strike as format_strike
from ._symbols import parse_expiry as parse_expiry
from ._types import BookError as BookError
from ._types import CancelReason as CancelReason
from ._types import OrderRejected as OrderRejected
from ._types import OrderStatus as OrderStatus
from ._types import OrderType as OrderType
from ._types import RejectRule as RejectRule
from ._types import Side as Side
from ._types import STPMode as STPMode
from ._types import TimeInForce as TimeInForce
from ._types import UnknownOrderError as UnknownOrderError

__all__ = [
    "NS_PER_DAY",
    "Bar",
    "BookError",
    "BookSnapshot",
    "CancelReason",
    "ChainTotals",
    "FEE_RATE_SCALE",
    "FLOAT_GRID_TOLERANCE",
    "Fill",
    "Impact",
    "Instrument",
    "Level",
    "LevelUpdate",
    "OptionChainBook",
    "OptionSymbol",
    "OrderBook",
    "OrderInfo",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "RejectRule",
    "STPMode",
    "Side",
    "StrikeQuotes",
    "SubmitResult",
    "Subscription",
    "TimeInForce",
    "UnknownOrderError",
    "format_strike",
    "parse_expiry",
    "utc_session_end",
]
