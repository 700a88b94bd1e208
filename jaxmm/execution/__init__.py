"""jaxmm.execution — connector protocol, in-process venue, order and quote management.

- :class:`ExchangeConnector`: the async protocol a venue adapter implements (ticks and lots,
  the book's order types and time-in-force one to one); :class:`BatchConnector` adds batches.
- :class:`InProcessExchange` / :class:`InProcessConnector`: a venue over :mod:`jaxmm.book`
  whose orders really rest and fill, with simulated order-entry and response latency.
- :class:`OrderManager`: client ids <-> venue ids, a validated state machine, fills applied
  exactly once, no overfill, fill VWAP, timeouts and retention.
- :class:`QuoteManager`: the minimal cancels / modifies / new orders from live to target
  two-sided quotes.
- :class:`LatencyTracker`: rolling p50 / p95 / p99 / max per operation.

No JAX import here. Rules are stated in ``docs/book.md``.
"""

from ._inprocess import InProcessConnector as InProcessConnector
from ._inprocess import InProcessExchange as InProcessExchange
from ._latency import LatencyStats as LatencyStats
from ._latency import LatencyTracker as LatencyTracker
from ._latency import nearest_rank as nearest_rank
from ._orders import TRANSITIONS as TRANSITIONS
from ._orders import DuplicateClientIdError as DuplicateClientIdError
from ._orders import IllegalTransitionError as IllegalTransitionError
from ._orders import ManagedOrder as ManagedOrder
from ._orders import OrderManager as OrderManager
from ._orders import OrderManagerError as OrderManagerError
from ._orders import OrderState as OrderState
from ._orders import OverfillError as OverfillError
from ._orders import UnknownClientIdError as UnknownClientIdError
from ._protocol import BatchConnector as BatchConnector
from ._protocol import CancelRequest as CancelRequest
from ._protocol import DepthSnapshot as DepthSnapshot
from ._protocol import ExchangeConnector as ExchangeConnector
from ._protocol import FillReport as FillReport
from ._protocol import ModifyRequest as ModifyRequest
from ._protocol import OrderAck as OrderAck
from ._protocol import OrderRequest as OrderRequest
from ._protocol import OrderStatusReport as OrderStatusReport
from ._protocol import Unsubscribe as Unsubscribe
from ._quotes import Quote as Quote
from ._quotes import QuoteAction as QuoteAction
from ._quotes import QuoteManager as QuoteManager
from ._quotes import QuoteReport as QuoteReport
from ._quotes import QuoteTarget as QuoteTarget

__all__ = [
    "BatchConnector",
    "CancelRequest",
    "DepthSnapshot",
    "DuplicateClientIdError",
    "ExchangeConnector",
    "FillReport",
    "IllegalTransitionError",
    "InProcessConnector",
    "InProcessExchange",
    "LatencyStats",
    "LatencyTracker",
    "ManagedOrder",
    "ModifyRequest",
    "OrderAck",
    "OrderManager",
    "OrderManagerError",
    "OrderRequest",
    "OrderState",
    "OrderStatusReport",
    "OverfillError",
    "Quote",
    "QuoteAction",
    "QuoteManager",
    "QuoteReport",
    "QuoteTarget",
    "TRANSITIONS",
    "Unsubscribe",
    "nearest_rank",
]
