"""Market data for the market maker (host side: asyncio and NumPy, no JAX).

- :class:`MarketDataFeed`: the protocol, three async iterators of :class:`UnderlyingPrice`,
  :class:`TradePrint` and :class:`SurfaceUpdate` plus ``close``; :func:`merge` interleaves a
  feed's three streams in ``local_ts_ns`` order;
- :class:`SimulatedFeed`: the protocol over :class:`SimulatedMarket` (GBM / mean-reverting /
  jump-diffusion underlyings, :class:`UnderlyingModel`, and moving smiles,
  :class:`SmileModel`), seeded and reproducible, stepped in lock step with its readers;
- :class:`WebSocketFeed`: a client of the documented JSON message format (:func:`parse_message`,
  :func:`format_message`), and :func:`serve_feed`, which publishes any feed over WebSocket;
- :class:`ReconnectingFeed` with :class:`Backoff`: reconnect on connection loss (including
  :class:`HeartbeatTimeout`) with exponential backoff and jitter;
- :class:`TakerFlow`: other traders' market orders against our quotes with intensities that
  decay with the distance from fair value (adverse selection included).

Equations of the simulated market: the module docstring of ``jaxmm.feeds._sim``. Message
format, timestamps, reconnect rules: docs/feeds.md.
"""

from ._protocol import FeedEvent as FeedEvent
from ._protocol import MarketDataFeed as MarketDataFeed
from ._protocol import SurfaceUpdate as SurfaceUpdate
from ._protocol import TradePrint as TradePrint
from ._protocol import UnderlyingPrice as UnderlyingPrice
from ._protocol import merge as merge
from ._reconnect import CONNECTION_ERRORS as CONNECTION_ERRORS
from ._reconnect import Backoff as Backoff
from ._reconnect import ReconnectFailed as ReconnectFailed
from ._reconnect import ReconnectingFeed as ReconnectingFeed
from ._sim import PriceTick as PriceTick
from ._sim import SimulatedMarket as SimulatedMarket
from ._sim import SmileModel as SmileModel
from ._sim import TakerFlow as TakerFlow
from ._sim import UnderlyingModel as UnderlyingModel
from ._simfeed import SimulatedFeed as SimulatedFeed
from ._ws import FeedServer as FeedServer
from ._ws import HeartbeatTimeout as HeartbeatTimeout
from ._ws import MalformedMessage as MalformedMessage
from ._ws import WebSocketFeed as WebSocketFeed
from ._ws import format_message as format_message
from ._ws import heartbeat_message as heartbeat_message
from ._ws import parse_message as parse_message
from ._ws import serve_feed as serve_feed
