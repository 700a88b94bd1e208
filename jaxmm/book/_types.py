"""Enumerations and errors shared by the order book, the chain and the execution layer.

Every enumeration is an ``IntEnum`` so that the book can compare plain integers on its hot
path; the enum members are what the public API returns and accepts.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "Side",
    "OrderType",
    "TimeInForce",
    "STPMode",
    "OrderStatus",
    "CancelReason",
    "RejectRule",
    "BookError",
    "OrderRejected",
    "UnknownOrderError",
]


class Side(IntEnum):
    """Order side. ``BUY`` rests on the bid side, ``SELL`` on the ask side.

    Example:
        >>> Side.BUY.opposite
        <Side.SELL: 1>
    """

    BUY = 0
    SELL = 1

    @property
    def opposite(self) -> Side:
        """The other side."""
        return Side(self ^ 1)


class OrderType(IntEnum):
    """``LIMIT`` carries a price in ticks; ``MARKET`` carries none and never rests."""

    LIMIT = 0
    MARKET = 1


class TimeInForce(IntEnum):
    """How long an order may live.

    - ``GTC``: good till cancelled; rests until filled or cancelled.
    - ``GTD``: good till date; rests until ``expire_ns`` (integer nanoseconds, book clock).
    - ``DAY``: rests until the end of the book's trading session (``session_end(now)``).
    - ``IOC``: immediate or cancel; fills what it can now, the rest is cancelled.
    - ``FOK``: fill or kill; fills its whole quantity now or is rejected, atomically.
    """

    GTC = 0
    GTD = 1
    DAY = 2
    IOC = 3
    FOK = 4


class STPMode(IntEnum):
    """Self-trade prevention, applied when taker and maker have the same (non-None) owner.

    - ``NONE``: the two orders trade with each other.
    - ``CANCEL_TAKER``: the taker's remaining quantity is cancelled; fills already done stand.
    - ``CANCEL_MAKER``: the resting order is cancelled and matching continues behind it.
    - ``CANCEL_BOTH``: the resting order and the taker's remaining quantity are cancelled.
    """

    NONE = 0
    CANCEL_TAKER = 1
    CANCEL_MAKER = 2
    CANCEL_BOTH = 3


class OrderStatus(IntEnum):
    """Book-side status of an order (what the matching engine knows)."""

    NEW = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    CANCELLED = 3
    EXPIRED = 4
    REJECTED = 5


class CancelReason(IntEnum):
    """Why quantity left the book without trading."""

    USER = 0  #: an explicit ``cancel`` (or a modify that reduced the quantity)
    MASS = 1  #: ``cancel_all``
    UNFILLED = 2  #: the unfilled rest of an IOC or market order
    STP = 3  #: self-trade prevention
    EXPIRED = 4  #: GTD expiry time or DAY session end reached


class RejectRule(StrEnum):
    """The admission rule an order broke, in the order the rules are checked."""

    SIDE = "side"
    TYPE = "type"
    TICK = "tick"
    LOT = "lot"
    SIZE = "size"
    EXPIRY = "expiry"
    POST_ONLY = "post_only"
    FOK = "fok"


class BookError(ValueError):
    """Base class of every error the book raises; the book is unchanged when one is raised."""


class OrderRejected(BookError):
    """An order (or a modify) broke an admission rule; ``rule`` names it.

    Example:
        >>> try:
        ...     raise OrderRejected(RejectRule.TICK, "price must be an int >= 1 tick")
        ... except OrderRejected as e:
        ...     e.rule
        <RejectRule.TICK: 'tick'>
    """

    def __init__(self, rule: RejectRule, message: str) -> None:
        super().__init__(f"rejected [{rule.value}]: {message}")
        self.rule = rule


class UnknownOrderError(BookError):
    """The order id was never assigned by this book, or the order is no longer live."""
