"""Market data for the market maker: a seeded simulated market (NumPy, host side).

- :class:`SimulatedMarket`: GBM / mean-reverting / jump-diffusion underlyings
  (:class:`UnderlyingModel`) and moving smiles (:class:`SmileModel`), stepped or iterated
  asynchronously (:class:`PriceTick`);
- :class:`TakerFlow`: other traders' market orders against our quotes with intensities that
  decay with the distance from fair value (adverse selection included).

Not built yet: the ``MarketDataFeed`` protocol with reconnect/backoff and the WebSocket client.
Equations: the module docstring of ``jaxmm.feeds._sim``.
"""

from ._sim import PriceTick as PriceTick
from ._sim import SimulatedMarket as SimulatedMarket
from ._sim import SmileModel as SmileModel
from ._sim import TakerFlow as TakerFlow
from ._sim import UnderlyingModel as UnderlyingModel
