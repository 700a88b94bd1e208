"""One instrument's position: average cost, realised/unrealised PnL, fees and rebates.

Accounting (average-cost method, the desk convention):

- Adding to a position (same sign, or from flat) moves the average price to the
  quantity-weighted mean of the old average and the fill price.
- Reducing a position by ``n`` closes ``n`` units at the fill price ``p``:
  ``realised += n x (p - avg) x sign(old qty) x multiplier``; the average is unchanged.
- A fill larger than the open quantity (a sign flip) closes the whole old position as above
  and opens the remainder at ``p`` (the new average is ``p``). Flat positions have average 0.
- Fees are accumulated separately (positive = paid, negative = rebate received) and are NOT
  part of realised PnL; ``net = realised + unrealised - fees``.

Money is ``Decimal``: realised PnL and fees are exact for decimal prices; the average price is
a quotient and is rounded to the ``decimal`` context precision (28 significant digits by
default), which bounds realised-PnL error by ~1e-28 relative to the traded notional.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ._types import Fill, Instrument, to_decimal

__all__ = ["Position"]

_ZERO = Decimal(0)


def _mult(m: float) -> Decimal:
    """The multiplier as a Decimal (integral multipliers exactly as integers)."""
    return Decimal(int(m)) if float(m).is_integer() else Decimal(str(m))


@dataclass(frozen=True)
class Position:
    """Immutable position in one instrument; :meth:`apply` returns the updated copy.

    Attributes:
        instrument: the :class:`Instrument`.
        qty: signed quantity (+ long, - short), integer contracts/units.
        avg_price: average open price per unit (``Decimal``; 0 when flat).
        realised: realised PnL in money (``Decimal``), fees excluded.
        fees: cumulative fees in money (``Decimal``; rebates negative).
        bought: total quantity bought; ``sold``: total quantity sold (both >= 0).

    Example:
        >>> from jaxmm.portfolio import Instrument, Fill, Side
        >>> p = Position(Instrument.spot("XYZ"))
        >>> p = p.apply(Fill("XYZ", Side.BUY, 10, 100)).apply(Fill("XYZ", Side.SELL, 4, 103))
        >>> p.qty, p.avg_price, p.realised
        (6, Decimal('100'), Decimal('12'))
    """

    instrument: Instrument
    qty: int = 0
    avg_price: Decimal = _ZERO
    realised: Decimal = _ZERO
    fees: Decimal = _ZERO
    bought: int = 0
    sold: int = 0

    def apply(self, fill: Fill) -> Position:
        """The position after ``fill`` (validated; raises ``ValueError`` on a mismatch)."""
        if fill.instrument != self.instrument.id:
            raise ValueError(
                f"fill.instrument: {fill.instrument!r} does not match position "
                f"{self.instrument.id!r}"
            )
        mult = _mult(self.instrument.multiplier)
        q, a, p = self.qty, self.avg_price, fill.price
        dq = fill.signed_qty
        realised = self.realised
        new_q = q + dq
        if q == 0 or (q > 0) == (dq > 0):
            new_avg = (a * abs(q) + p * abs(dq)) / abs(new_q)
        else:
            closed = min(abs(dq), abs(q))
            sign = 1 if q > 0 else -1
            realised += closed * (p - a) * sign * mult
            if new_q == 0:
                new_avg = _ZERO
            elif (new_q > 0) != (q > 0):
                new_avg = p  # flipped: the remainder opens at the fill price
            else:
                new_avg = a
        return replace(
            self,
            qty=new_q,
            avg_price=new_avg,
            realised=realised,
            fees=self.fees + fill.fee,
            bought=self.bought + (fill.qty if dq > 0 else 0),
            sold=self.sold + (fill.qty if dq < 0 else 0),
        )

    def unrealised(self, mark: Any) -> Decimal:
        """Unrealised PnL in money at ``mark`` (price per unit): ``qty (mark - avg) mult``."""
        m = to_decimal("mark", mark)
        if m < 0:
            raise ValueError(f"mark: must be >= 0, got {mark!r}")
        return self.qty * (m - self.avg_price) * _mult(self.instrument.multiplier)

    def net_pnl(self, mark: Any) -> Decimal:
        """``realised + unrealised(mark) - fees`` in money."""
        return self.realised + self.unrealised(mark) - self.fees
