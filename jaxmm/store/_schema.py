"""The relational schema of jaxmm's records (SQLAlchemy 2 declarative models).

Money and prices are ``Numeric(38, 12)`` columns and travel as ``decimal.Decimal`` — never
binary floats. Timestamps are integer nanoseconds since the Unix epoch (``BigInteger``), the
same clock the events use; ``exchange_ts_ns`` is the venue's time, ``local_ts_ns`` ours.
The schema is created and evolved only by the Alembic migrations in ``migrations/``; this
module is their single source of truth (the initial migration is generated from it and checked
against it in the tests).
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ._types import ExactDecimal

__all__ = [
    "Base",
    "FillRow",
    "OrderRow",
    "OrderTransitionRow",
    "PositionSnapshotRow",
    "ConfigVersionRow",
    "UnderlyingPriceRow",
    "DailyPnlRow",
    "EventRow",
    "RiskRecordRow",
    "SYMBOL_MAX",
    "MONEY",
]

SYMBOL_MAX = 64
"""Longest instrument symbol accepted (``BTC-20261225-100000-C`` is 21)."""

MONEY = ExactDecimal()
"""Exact decimal column type for prices, quantities, fees and PnL (see ``ExactDecimal``)."""

_naming = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = _naming


class FillRow(Base):
    """One execution of one of our orders. ``trade_id`` (the venue's) is unique: idempotency."""

    __tablename__ = "fills"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    trade_id: Mapped[str] = mapped_column(String(64), nullable=False)
    order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    instrument: Mapped[str] = mapped_column(String(SYMBOL_MAX), nullable=False)
    side: Mapped[str] = mapped_column(String(4), nullable=False)
    price: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    quantity: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    fee: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    theo: Mapped[Decimal | None] = mapped_column(MONEY)
    edge: Mapped[Decimal | None] = mapped_column(MONEY)
    exchange_ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    local_ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (
        UniqueConstraint("trade_id"),
        CheckConstraint("side in ('buy', 'sell')", name="side"),
        CheckConstraint("CAST(quantity AS DOUBLE PRECISION) > 0", name="quantity_positive"),
        CheckConstraint("CAST(price AS DOUBLE PRECISION) > 0", name="price_positive"),
        Index("ix_fills_instrument_ts", "instrument", "exchange_ts_ns"),
        Index("ix_fills_ts", "exchange_ts_ns"),
    )


class OrderRow(Base):
    """An order as last known; its history lives in ``order_transitions``."""

    __tablename__ = "orders"
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    instrument: Mapped[str] = mapped_column(String(SYMBOL_MAX), nullable=False)
    side: Mapped[str] = mapped_column(String(4), nullable=False)
    order_type: Mapped[str] = mapped_column(String(16), nullable=False)
    time_in_force: Mapped[str] = mapped_column(String(8), nullable=False)
    price: Mapped[Decimal | None] = mapped_column(MONEY)
    quantity: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    filled_quantity: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (
        CheckConstraint("side in ('buy', 'sell')", name="side"),
        CheckConstraint("CAST(quantity AS DOUBLE PRECISION) > 0", name="quantity_positive"),
        CheckConstraint(
            "CAST(filled_quantity AS DOUBLE PRECISION) >= 0"
            " AND CAST(filled_quantity AS DOUBLE PRECISION)"
            " <= CAST(quantity AS DOUBLE PRECISION)",
            name="no_overfill",
        ),
    )


class OrderTransitionRow(Base):
    """One state change of one order (the audit trail)."""

    __tablename__ = "order_transitions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), nullable=False)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(200))
    ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (Index("ix_order_transitions_order", "order_id", "id"),)


class PositionSnapshotRow(Base):
    """A position at one moment; ``last_fill_id`` is the newest fill it includes."""

    __tablename__ = "position_snapshots"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    instrument: Mapped[str] = mapped_column(String(SYMBOL_MAX), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    avg_price: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    realised_pnl: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    fees: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    last_fill_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (Index("ix_position_snapshots_instrument", "instrument", "id"),)


class ConfigVersionRow(Base):
    """Every version of the market maker's configuration, with its time and author."""

    __tablename__ = "config_versions"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    config: Mapped[dict] = mapped_column(JSON, nullable=False)
    author: Mapped[str] = mapped_column(String(64), nullable=False)
    comment: Mapped[str | None] = mapped_column(String(500))
    ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)


class UnderlyingPriceRow(Base):
    """A recorded underlying price (tick)."""

    __tablename__ = "underlying_prices"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    underlying: Mapped[str] = mapped_column(String(32), nullable=False)
    price: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (
        CheckConstraint("CAST(price AS DOUBLE PRECISION) > 0", name="price_positive"),
        Index("ix_underlying_prices_und_ts", "underlying", "ts_ns"),
    )


class DailyPnlRow(Base):
    """Daily PnL per book (an underlying, or ``"*"`` for the total) with its attribution."""

    __tablename__ = "daily_pnl"
    day: Mapped[_dt.date] = mapped_column(Date, primary_key=True)
    book: Mapped[str] = mapped_column(String(32), primary_key=True)
    realised: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    unrealised: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    fees: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    delta_pnl: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    gamma_pnl: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    vega_pnl: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    theta_pnl: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    residual_pnl: Mapped[Decimal] = mapped_column(MONEY, nullable=False)


class EventRow(Base):
    """The event log, keyed by the broadcaster's sequence number."""

    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    local_ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (Index("ix_events_ts", "local_ts_ns"),)


class RiskRecordRow(Base):
    """A risk-limit breach or a circuit-breaker transition."""

    __tablename__ = "risk_records"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(1000), nullable=False)
    ts_ns: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (CheckConstraint("kind in ('limit', 'breaker')", name="kind"),)
