"""Monte-Carlo market-making simulator (JAX): scan over time, vmap over paths and parameters.

- :func:`simulate` / :func:`sweep` — paths of any ``jaxmm.strategy`` strategy against a mid
  model and a fill model, with fees, latency and the risk layer's position limit;
- mid models :class:`ArithmeticBrownian`, :class:`GBM`, :class:`JumpDiffusion`,
  :class:`RegimeSwitching`, :class:`FairValuePath`; fill model :class:`PoissonFills`;
- :func:`summary` — PnL, Sharpe/Sortino, drawdown, fill ratio, PnL decomposition, utilities;
- :func:`tune` — gradient tuning of strategy parameters in a relaxed mode (expected fills, or
  :class:`Concrete` relaxed-Bernoulli fills that keep inventory risk).

Every rule is written down in ``docs/backtesting.md``.
"""

from ._engine import SimResult as SimResult
from ._engine import Symmetric as Symmetric
from ._engine import simulate as simulate
from ._engine import sweep as sweep
from ._fills import Concrete as Concrete
from ._fills import PoissonFills as PoissonFills
from ._market import GBM as GBM
from ._market import ArithmeticBrownian as ArithmeticBrownian
from ._market import FairValuePath as FairValuePath
from ._market import JumpDiffusion as JumpDiffusion
from ._market import RegimeSwitching as RegimeSwitching
from ._metrics import cara_utility as cara_utility
from ._metrics import certainty_equivalent as certainty_equivalent
from ._metrics import mean_variance as mean_variance
from ._metrics import summary as summary
from ._metrics import summary_frame as summary_frame
from ._tune import TuneResult as TuneResult
from ._tune import tune as tune
