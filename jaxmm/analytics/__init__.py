"""Market-microstructure analytics: OFI, trade flow, VPIN/BVC, trade signs, markouts, metrics.

Host-side NumPy over event batches; definitions and papers in each function's docstring and in
docs/risk.md.
"""

from ._flow import lee_ready as lee_ready
from ._flow import order_flow_imbalance as order_flow_imbalance
from ._flow import quote_rule as quote_rule
from ._flow import tick_rule as tick_rule
from ._flow import trade_flow_imbalance as trade_flow_imbalance
from ._markouts import FillMarkouts as FillMarkouts
from ._markouts import fill_markouts as fill_markouts
from ._metrics import LiveMetrics as LiveMetrics
from ._vpin import bvc_buy_fraction as bvc_buy_fraction
from ._vpin import volume_buckets as volume_buckets
from ._vpin import vpin as vpin
