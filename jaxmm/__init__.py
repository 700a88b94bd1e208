"""jaxmm — a JAX-based differentiable options pricing and market-making engine.

The public API lives in the sub-packages; ``ls jaxmm/`` shows the architecture:

- :mod:`jaxmm.pricing` — BSM / Black-76 / lattice / Monte Carlo / Heston pricing, autodiff
  Greeks and a vectorised implied-volatility solver.
- :mod:`jaxmm.vol` — realised estimators, GARCH, SVI / SSVI / Heston calibration, ``VolSurface``.
- :mod:`jaxmm.book`, :mod:`jaxmm.execution` — pure-Python order books (integer ticks and lots),
  option-chain books, connectors, order and quote managers.
- :mod:`jaxmm.strategy` — Avellaneda-Stoikov, GLFT, grid, adaptive, depth-based quoting kernels;
  fill-intensity and parameter estimation.
- :mod:`jaxmm.portfolio` — positions, PnL, fees, batched portfolio Greeks, PnL attribution.
- :mod:`jaxmm.risk` — post-trade limits, circuit breakers, alerts, VaR/ES, hedging.
- :mod:`jaxmm.analytics` — order-flow imbalance, VPIN, trade classification, markouts, metrics.
- :mod:`jaxmm.sim` — vmapped, differentiable market-making simulator.
- :mod:`jaxmm.backtest` — event-driven replay of L2/L3 streams through the order book, with
  queue-position, latency and fee models.
- :mod:`jaxmm.engine`, :mod:`jaxmm.feeds` — Greeks-aware chain quoting, Greeks risk manager,
  simulated market.
- :mod:`jaxmm.events` — typed events and a broadcaster with replayable history.
- :mod:`jaxmm.store` — SQLite / PostgreSQL persistence (needs the ``store`` extra; import it
  explicitly: ``import jaxmm.store``).

jaxmm never changes global JAX flags on import. Pricing runs in float64 when the caller has
enabled 64-bit mode (``jaxmm.enable_float64()`` is a one-line convenience for that) and in the
dtype JAX gives otherwise.
"""

from ._config import enable_float64 as enable_float64
from ._config import float64_enabled as float64_enabled

__version__ = "0.1.0"

from . import analytics as analytics
from . import backtest as backtest
from . import book as book
from . import engine as engine
from . import events as events
from . import execution as execution
from . import feeds as feeds
from . import portfolio as portfolio
from . import pricing as pricing
from . import risk as risk
from . import sim as sim
from . import strategy as strategy
from . import vol as vol
