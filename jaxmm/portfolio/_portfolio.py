"""A portfolio: positions over many instruments and underlyings, fills log, marks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from ._greeks import PositionArrays
from ._position import Position
from ._types import Fill, Instrument

__all__ = ["Portfolio"]

VolSource = Mapping[str, float] | Callable[[str, float, float], float]


class Portfolio:
    """Positions per instrument, updated one fill at a time (pure Python, per event).

    Every fill is validated before anything changes: an unknown instrument, a NaN price or a
    non-positive quantity raises ``ValueError`` and leaves positions and the fill log exactly
    as they were. Accounting rules are those of :class:`Position`.

    Args:
        instruments: the tradable instruments (more can be added with :meth:`add_instrument`).

    Example:
        >>> from jaxmm.portfolio import Instrument, Fill, Side
        >>> pf = Portfolio([Instrument.spot("XYZ")])
        >>> _ = pf.apply_fill(Fill("XYZ", Side.BUY, 10, 100, fee=1))
        >>> _ = pf.apply_fill(Fill("XYZ", Side.SELL, 10, 101, fee=1))
        >>> pf.realised(), pf.fees(), pf.net_pnl({"XYZ": 101})
        (Decimal('10'), Decimal('2'), Decimal('8'))
    """

    def __init__(self, instruments: Iterable[Instrument] = ()):
        self._instruments: dict[str, Instrument] = {}
        self._positions: dict[str, Position] = {}
        self._fills: dict[str, list[Fill]] = {}
        for inst in instruments:
            self.add_instrument(inst)

    # --- registry -------------------------------------------------------------------------
    def add_instrument(self, instrument: Instrument) -> None:
        """Register an instrument (flat position). Raises if the id is already registered."""
        if not isinstance(instrument, Instrument):
            raise ValueError(f"instrument: expected an Instrument, got {type(instrument).__name__}")
        if instrument.id in self._instruments:
            raise ValueError(f"instrument: {instrument.id!r} is already registered")
        self._instruments[instrument.id] = instrument
        self._positions[instrument.id] = Position(instrument)
        self._fills[instrument.id] = []

    def instrument(self, instrument_id: str) -> Instrument:
        """The registered :class:`Instrument`; ``ValueError`` if unknown."""
        try:
            return self._instruments[instrument_id]
        except KeyError:
            raise ValueError(f"instrument: unknown instrument {instrument_id!r}") from None

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        """Read-only view of the registry."""
        return dict(self._instruments)

    @property
    def underlyings(self) -> tuple[str, ...]:
        """Distinct underlyings, in registration order."""
        return tuple(dict.fromkeys(i.underlying for i in self._instruments.values()))

    # --- events ---------------------------------------------------------------------------
    def apply_fill(self, fill: Fill) -> Position:
        """Apply one fill atomically and return the new :class:`Position`."""
        if not isinstance(fill, Fill):
            raise ValueError(f"fill: expected a Fill, got {type(fill).__name__}")
        self.instrument(fill.instrument)
        new = self._positions[fill.instrument].apply(fill)
        self._positions[fill.instrument] = new
        self._fills[fill.instrument].append(fill)
        return new

    def position(self, instrument_id: str) -> Position:
        """The current :class:`Position` (flat if never traded); ``ValueError`` if unknown."""
        self.instrument(instrument_id)
        return self._positions[instrument_id]

    @property
    def positions(self) -> Mapping[str, Position]:
        """Snapshot of all positions, flat ones included."""
        return dict(self._positions)

    def fills(self, instrument_id: str) -> tuple[Fill, ...]:
        """Every fill applied to this instrument, in order."""
        self.instrument(instrument_id)
        return tuple(self._fills[instrument_id])

    # --- PnL ------------------------------------------------------------------------------
    def realised(self) -> Decimal:
        """Total realised PnL in money (fees excluded)."""
        return sum((p.realised for p in self._positions.values()), Decimal(0))

    def fees(self) -> Decimal:
        """Total fees in money (rebates negative)."""
        return sum((p.fees for p in self._positions.values()), Decimal(0))

    def unrealised(self, marks: Mapping[str, Any]) -> Decimal:
        """Total unrealised PnL at ``marks`` (instrument id -> price per unit).

        Every non-flat position needs a mark (``ValueError`` naming the missing one); marks of
        flat positions are optional.
        """
        total = Decimal(0)
        for iid, pos in self._positions.items():
            if pos.qty == 0:
                continue
            if iid not in marks:
                raise ValueError(f"marks: no mark for open position {iid!r}")
            total += pos.unrealised(marks[iid])
        return total

    def net_pnl(self, marks: Mapping[str, Any]) -> Decimal:
        """``realised + unrealised(marks) - fees`` in money."""
        return self.realised() + self.unrealised(marks) - self.fees()

    # --- model marks and arrays ----------------------------------------------------------
    def model_marks(
        self,
        spot: Mapping[str, float],
        vol: VolSource,
        rate: float,
        dividend: Mapping[str, float] | float = 0.0,
    ) -> dict[str, float]:
        """Theoretical marks of every instrument from spots and a vol source (BSM).

        Args:
            spot: underlying id -> spot.
            vol: instrument id -> vol, or a surface ``vol(underlying, strike, expiry)``
                returning an annualised vol (e.g. a fitted surface's lookup).
            rate: continuously compounded rate.
            dividend: per underlying (mapping) or one yield for all.

        Returns:
            instrument id -> mark per unit (spot for an underlying, BSM price for an option).
        """
        from ..pricing import bsm_price

        marks: dict[str, float] = {}
        opts = [i for i in self._instruments.values() if i.is_option]
        for inst in self._instruments.values():
            if inst.underlying not in spot:
                raise ValueError(f"spot: no spot for underlying {inst.underlying!r}")
            if not inst.is_option:
                marks[inst.id] = float(spot[inst.underlying])
        if opts:
            s = np.array([spot[i.underlying] for i in opts], dtype=np.float64)
            v = np.array([self._vol_of(vol, i) for i in opts], dtype=np.float64)
            q = np.array([self._div_of(dividend, i.underlying) for i in opts], dtype=np.float64)
            k = np.array([i.strike for i in opts], dtype=np.float64)
            t = np.array([i.expiry for i in opts], dtype=np.float64)
            c = np.array([i.is_call for i in opts])
            prices = np.asarray(bsm_price(s, k, t, rate, q, v, c))
            for inst, p in zip(opts, prices, strict=True):
                marks[inst.id] = float(p)
        return marks

    @staticmethod
    def _vol_of(vol: VolSource, inst: Instrument) -> float:
        if callable(vol):
            x = float(vol(inst.underlying, inst.strike, inst.expiry))
        else:
            if inst.id not in vol:
                raise ValueError(f"vol: no vol for instrument {inst.id!r}")
            x = float(vol[inst.id])
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"vol: must be finite and >= 0 for {inst.id!r}, got {x!r}")
        return x

    @staticmethod
    def _div_of(dividend: Mapping[str, float] | float, underlying: str) -> float:
        if isinstance(dividend, Mapping):
            if underlying not in dividend:
                raise ValueError(f"dividend: no dividend for underlying {underlying!r}")
            return float(dividend[underlying])
        return float(dividend)

    def to_arrays(self, include_flat: bool = False) -> PositionArrays:
        """Struct-of-arrays view for :func:`portfolio_greeks` / :func:`pnl_attribution`.

        Rows are the open positions (all registered instruments with ``include_flat``), in
        registration order; ``units`` = signed qty x multiplier as float64.
        """
        rows = [
            (self._instruments[iid], pos.qty)
            for iid, pos in self._positions.items()
            if include_flat or pos.qty != 0
        ]
        return build_position_arrays(
            [r[0] for r in rows], [r[1] for r in rows], underlyings=self.underlyings
        )


def build_position_arrays(
    instruments: list[Instrument], qty: list[int], underlyings: tuple[str, ...] | None = None
) -> PositionArrays:
    """:class:`PositionArrays` for parallel lists of instruments and signed quantities.

    Example:
        >>> from jaxmm.portfolio import Instrument
        >>> pa = build_position_arrays([Instrument.spot("X")], [5])
        >>> pa.underlyings, float(pa.units[0])
        (('X',), 5.0)
    """
    if underlyings is None:
        underlyings = tuple(dict.fromkeys(i.underlying for i in instruments))
    u_index = {u: n for n, u in enumerate(underlyings)}
    expiries = tuple(sorted({i.expiry for i in instruments if i.is_option}))
    e_index = {e: n for n, e in enumerate(expiries)}
    n_e = len(expiries)
    return PositionArrays(
        strike=np.array([i.strike if i.is_option else 1.0 for i in instruments], np.float64),
        expiry=np.array([i.expiry if i.is_option else 0.0 for i in instruments], np.float64),
        is_call=np.array([bool(i.is_call) for i in instruments], bool),
        is_option=np.array([i.is_option for i in instruments], bool),
        units=np.array(
            [q * i.multiplier for i, q in zip(instruments, qty, strict=True)], np.float64
        ),
        underlying_index=np.array([u_index[i.underlying] for i in instruments], np.int32),
        expiry_index=np.array(
            [e_index[i.expiry] if i.is_option else n_e for i in instruments], np.int32
        ),
        underlyings=underlyings,
        expiries=expiries,
    )
