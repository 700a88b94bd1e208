"""Typed events and their broadcaster (sequence numbers, bounded queues, replay).

See docs/events.md for the exact delivery semantics.
"""

from ._bus import EventBroadcaster as EventBroadcaster
from ._bus import SnapshotRequired as SnapshotRequired
from ._bus import SubscriberLagged as SubscriberLagged
from ._bus import Subscription as Subscription
from ._types import EVENT_TYPES as EVENT_TYPES
from ._types import AlertTriggered as AlertTriggered
from ._types import ArbitrageSignal as ArbitrageSignal
from ._types import CircuitBreakerTripped as CircuitBreakerTripped
from ._types import ConfigChanged as ConfigChanged
from ._types import Event as Event
from ._types import EventBase as EventBase
from ._types import GreeksUpdated as GreeksUpdated
from ._types import HedgeSent as HedgeSent
from ._types import OrderFilled as OrderFilled
from ._types import PriceUpdated as PriceUpdated
from ._types import QuoteUpdated as QuoteUpdated
from ._types import now_ns as now_ns
from ._types import parse_event as parse_event
