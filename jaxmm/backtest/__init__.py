"""Event-driven replay backtester: a market-event stream through a book, our orders queued.

Public API (rules in ``docs/backtesting.md``, section "Event replay (jaxmm.backtest)"):

- events: :data:`EVENT_DTYPE` / :data:`EVENT_COLUMNS` (columnar schema), :class:`EventKind`,
  :func:`make_events`, :func:`validate_events` (report), :func:`repair_events` (documented
  repair rules);
- files: :func:`load_events`, :func:`save_events` (CSV / Parquet), :func:`events_to_frame`,
  :func:`events_from_frame`;
- synthetic streams: :func:`poisson_times`, :func:`hawkes_times` (Ogata thinning),
  :func:`l2_stream_from_times`, :func:`poisson_l2_stream`, :func:`hawkes_l2_stream`;
- queue-position models: :class:`OptimisticQueue`, :class:`PessimisticQueue`,
  :class:`ProbabilisticQueue`;
- latency models: :class:`ConstantLatency`, :class:`EmpiricalLatency`;
- the backtester: :func:`replay` -> :class:`BacktestResult`; strategy interface
  :class:`MarketView` -> :class:`Quotes` or :class:`Place` / :class:`Cancel` actions;
  :class:`QuotingAdapter` plugs any ``jaxmm.strategy`` model in; :class:`OwnOrder`;
- report: :func:`summary`, :func:`summary_frame` (the simulator's metrics), :func:`plot` (PNG).

The replay loop is plain Python over columnar NumPy data (no JAX in the loop); JAX is used only
by :class:`QuotingAdapter` (to call the strategy kernel) and by :func:`summary`.
"""

from ._events import EVENT_COLUMNS as EVENT_COLUMNS
from ._events import EVENT_DTYPE as EVENT_DTYPE
from ._events import EventKind as EventKind
from ._events import make_events as make_events
from ._events import repair_events as repair_events
from ._events import validate_events as validate_events
from ._generate import hawkes_l2_stream as hawkes_l2_stream
from ._generate import hawkes_times as hawkes_times
from ._generate import l2_stream_from_times as l2_stream_from_times
from ._generate import poisson_l2_stream as poisson_l2_stream
from ._generate import poisson_times as poisson_times
from ._io import events_from_frame as events_from_frame
from ._io import events_to_frame as events_to_frame
from ._io import load_events as load_events
from ._io import save_events as save_events
from ._latency import ConstantLatency as ConstantLatency
from ._latency import EmpiricalLatency as EmpiricalLatency
from ._queue import OptimisticQueue as OptimisticQueue
from ._queue import PessimisticQueue as PessimisticQueue
from ._queue import ProbabilisticQueue as ProbabilisticQueue
from ._replay import BacktestResult as BacktestResult
from ._replay import Cancel as Cancel
from ._replay import MarketView as MarketView
from ._replay import OwnOrder as OwnOrder
from ._replay import Place as Place
from ._replay import Quotes as Quotes
from ._replay import QuotingAdapter as QuotingAdapter
from ._replay import replay as replay
from ._report import plot as plot
from ._report import summary as summary
from ._report import summary_frame as summary_frame

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_DTYPE",
    "BacktestResult",
    "Cancel",
    "ConstantLatency",
    "EmpiricalLatency",
    "EventKind",
    "MarketView",
    "OptimisticQueue",
    "OwnOrder",
    "PessimisticQueue",
    "Place",
    "ProbabilisticQueue",
    "QuotingAdapter",
    "Quotes",
    "events_from_frame",
    "events_to_frame",
    "hawkes_l2_stream",
    "hawkes_times",
    "l2_stream_from_times",
    "load_events",
    "make_events",
    "plot",
    "poisson_l2_stream",
    "poisson_times",
    "repair_events",
    "replay",
    "save_events",
    "summary",
    "summary_frame",
    "validate_events",
]
