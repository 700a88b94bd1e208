"""Two-sided quote maintenance: the minimal set of actions from live quotes to targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from ..book import OrderType, Side, TimeInForce
from ._orders import ManagedOrder, OrderManager, OrderState
from ._protocol import OrderAck, OrderRequest

__all__ = ["Quote", "QuoteTarget", "QuoteAction", "QuoteManager", "QuoteReport"]

_new = tuple.__new__
_SIDES = (Side.BUY, Side.SELL)
_LIMIT = OrderType.LIMIT
_OPEN = OrderState.OPEN
_PARTIAL = OrderState.PARTIALLY_FILLED
_TERMINAL = frozenset(
    (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED)
)


class Quote(NamedTuple):
    """One side of a quote: price in ticks, size in lots."""

    price: int
    qty: int


class QuoteTarget(NamedTuple):
    """Wanted two-sided quote of one instrument; None pulls that side."""

    bid: Quote | None = None
    ask: Quote | None = None


_PULL = QuoteTarget(None, None)


class QuoteAction(NamedTuple):
    """One step of a quote refresh.

    ``kind`` is ``"new"``, ``"modify"`` or ``"cancel"``; ``price`` / ``qty`` are the new values
    (None in a modify = unchanged); ``client_id`` the managed order acted on (for ``"new"``,
    the id it will get).
    """

    kind: str
    symbol: str
    side: Side
    client_id: str | None
    price: int | None
    qty: int | None


class QuoteReport(NamedTuple):
    """Outcome of :meth:`QuoteManager.apply`."""

    actions: list[QuoteAction]
    acks: list[OrderAck]
    rejected: list[tuple[QuoteAction, OrderAck]]
    skipped: int  # sides left alone because a request on them is still in flight


class QuoteManager:
    """Keeps at most one working order per (instrument, side) equal to a target quote.

    :meth:`plan` compares targets with the live quotes and returns the fewest actions: an
    unchanged side costs nothing, a changed side one ``modify`` (or ``cancel`` + ``new`` when
    ``use_modify=False``), a pulled side one ``cancel``, a new side one ``new``. So a refresh
    that changes one strike touches one strike. Differences within ``price_tolerance`` ticks
    and ``qty_tolerance`` lots are ignored. The open quantity compared is the live order's
    *open* lots, so a partially filled quote is topped back up to its target (which sends it
    to the back of the queue, the book's rule for size increases).

    Args:
        order_manager: the :class:`OrderManager` tracking the quotes (a new one by default).
        price_tolerance, qty_tolerance: dead bands (ticks, lots), >= 0.
        use_modify: modify in place (default) or cancel and re-enter.
        post_only: send new quotes post-only (default True, so a stale quote never takes).
        tif: time in force of new quotes (GTC by default).

    Example:
        >>> qm = QuoteManager()
        >>> acts = qm.plan({"X": QuoteTarget(Quote(99, 5), Quote(101, 5))})
        >>> [(a.kind, a.side.name, a.price) for a in acts]
        [('new', 'BUY', 99), ('new', 'SELL', 101)]
    """

    def __init__(
        self,
        order_manager: OrderManager | None = None,
        *,
        price_tolerance: int = 0,
        qty_tolerance: int = 0,
        use_modify: bool = True,
        post_only: bool = True,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> None:
        for name, v in (("price_tolerance", price_tolerance), ("qty_tolerance", qty_tolerance)):
            if type(v) is not int or v < 0:
                raise ValueError(f"{name}: must be an int >= 0, got {v!r}")
        if tif not in (TimeInForce.GTC, TimeInForce.DAY):
            raise ValueError(f"tif: quotes must be GTC or DAY, got {tif!r}")
        self.om = order_manager if order_manager is not None else OrderManager()
        self.price_tolerance = price_tolerance
        self.qty_tolerance = qty_tolerance
        self.use_modify = use_modify
        self.post_only = post_only
        self.tif = tif
        self._slots: dict[str, list[str | None]] = {}  # symbol -> [bid client id, ask client id]
        self._n = 0

    def live(self, symbol: str, side: Side) -> ManagedOrder | None:
        """The order currently quoting ``side`` of ``symbol`` (None if none is live)."""
        slot = self._slots.get(symbol)
        cid = None if slot is None else slot[int(side)]
        if cid is None:
            return None
        mo = self.om._orders.get(cid)
        if mo is None or mo.state in _TERMINAL:
            slot[int(side)] = None
            return None
        return mo

    def _new_id(self) -> str:
        self._n += 1
        cid = f"q{self._n}"
        while cid in self.om._orders:
            self._n += 1
            cid = f"q{self._n}"
        return cid

    def plan(
        self, targets: Mapping[str, QuoteTarget], *, cancel_missing: bool = False
    ) -> list[QuoteAction]:
        """Actions that turn the live quotes into ``targets`` (pure: nothing is sent).

        Instruments absent from ``targets`` keep their quotes unless ``cancel_missing``.
        """
        return self._plan(targets, cancel_missing)[0]

    def _plan(
        self, targets: Mapping[str, QuoteTarget], cancel_missing: bool
    ) -> tuple[list[QuoteAction], int]:
        out: list[QuoteAction] = []
        append = out.append
        orders = self.om._orders
        slots = self._slots
        ptol = self.price_tolerance
        qtol = self.qty_tolerance
        use_modify = self.use_modify
        busy = 0
        items = list(targets.items())
        if cancel_missing:
            items += [(sym, _PULL) for sym in slots if sym not in targets]
        for symbol, tgt in items:
            slot = slots.get(symbol)
            for i in (0, 1):
                t = tgt[i]
                side = _SIDES[i]
                mo = None
                if slot is not None:
                    cid = slot[i]
                    if cid is not None:
                        mo = orders.get(cid)
                        if mo is None or mo.state in _TERMINAL:
                            slot[i] = None
                            mo = None
                if mo is None:
                    if t is not None:
                        append(_new(QuoteAction, ("new", symbol, side, self._new_id(), t[0], t[1])))
                    continue
                st = mo.state
                if st is not _OPEN and st is not _PARTIAL:
                    busy += 1
                    continue
                if t is None:
                    append(_new(QuoteAction, ("cancel", symbol, side, mo.client_id, None, None)))
                    continue
                dp = t[0] - mo.price
                dq = t[1] - (mo.qty - mo.filled)
                price_moves = dp > ptol or -dp > ptol
                qty_moves = dq > qtol or -dq > qtol
                if not price_moves and not qty_moves:
                    continue
                if use_modify:
                    append(
                        _new(
                            QuoteAction,
                            (
                                "modify",
                                symbol,
                                side,
                                mo.client_id,
                                t[0] if price_moves else None,
                                t[1] if qty_moves else None,
                            ),
                        )
                    )
                else:
                    append(_new(QuoteAction, ("cancel", symbol, side, mo.client_id, None, None)))
                    append(_new(QuoteAction, ("new", symbol, side, self._new_id(), t[0], t[1])))
        return out, busy

    async def apply(
        self, connector: Any, targets: Mapping[str, QuoteTarget], *, cancel_missing: bool = False
    ) -> QuoteReport:
        """Plan, send (one batch if the connector is a :class:`BatchConnector`, else one
        request after another) and apply the answers to the order manager."""
        actions, busy = self._plan(targets, cancel_missing)
        om = self.om
        now = om._clock()
        requests: list[Any] = []
        append = requests.append
        for a in actions:
            kind = a.kind
            if kind == "modify":
                append(om.request_modify(a.client_id, qty=a.qty, price=a.price, now=now))
            elif kind == "new":
                mo = om.create(
                    _new(
                        OrderRequest,
                        (
                            a.symbol,
                            a.side,
                            a.qty,
                            a.price,
                            _LIMIT,
                            self.tif,
                            None,
                            self.post_only,
                            None,
                            a.client_id,
                        ),
                    ),
                    a.client_id,
                    now=now,
                )
                slot = self._slots.get(a.symbol)
                if slot is None:
                    slot = self._slots[a.symbol] = [None, None]
                slot[int(a.side)] = mo.client_id
                append(mo.request)
            else:
                append(om.request_cancel(a.client_id, now=now))
        if callable(getattr(connector, "execute", None)):  # BatchConnector capability
            acks = await connector.execute(requests)
        else:
            acks = []
            for r, a in zip(requests, actions, strict=True):
                if a.kind == "modify":
                    acks.append(
                        await connector.modify(r.symbol, r.order_id, qty=r.qty, price=r.price)
                    )
                elif a.kind == "new":
                    acks.append(await connector.submit(r))
                else:
                    acks.append(await connector.cancel(r.symbol, r.order_id))
        rejected = []
        now = om._clock()
        for a, ack in zip(actions, acks, strict=True):
            kind = a.kind
            if kind == "modify":
                om.on_modify_ack(a.client_id, ack, now=now)
            elif kind == "new":
                om.on_ack(a.client_id, ack, now=now)
            else:
                om.on_cancel_ack(a.client_id, ack, now=now)
            if not ack.accepted:
                rejected.append((a, ack))
        return QuoteReport(actions, acks, rejected, busy)
