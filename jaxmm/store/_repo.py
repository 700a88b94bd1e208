"""The async repository: every read and write of jaxmm's records.

One :class:`Store` wraps one SQLAlchemy async engine — SQLite through aiosqlite (the embedded
default) or PostgreSQL through asyncpg (by URL). Every public write is one transaction: it
commits whole or not at all, and a record that fails validation is rejected before the
transaction starts. Fills are idempotent on the venue's ``trade_id``.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import (
    JSON,
    BigInteger,
    String,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..events import EventBase, parse_event
from ..portfolio import Fill, Instrument, Position, Side
from ._migrate import check_schema, upgrade
from ._records import (
    ConfigVersion,
    DailyPnl,
    FillRecord,
    OrderRecord,
    PositionSnapshot,
    RiskRecord,
)
from ._schema import (
    ConfigVersionRow,
    DailyPnlRow,
    EventRow,
    FillRow,
    OrderRow,
    OrderTransitionRow,
    PositionSnapshotRow,
    RiskRecordRow,
    UnderlyingPriceRow,
)
from ._types import quantize

__all__ = ["Store", "default_url", "Discrepancy", "FillSink", "PG_COPY_MIN"]

_log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a SQLite write waits for another connection's write transaction to end before it
fails with "database is locked" (sqlite3's default is 5 s). The engine writes through several
connections (the fill writer's own, the pool's for snapshots, orders and events), and on a disk
busy with other writes one commit (an ``fsync``: ``synchronous=FULL``) can hold the write lock
for seconds; a CI run once failed a stop's snapshot write that way after 5 s."""

_FILLS = FillRow.__table__
_ORDERS = OrderRow.__table__
_TRANSITIONS = OrderTransitionRow.__table__
_SNAPSHOTS = PositionSnapshotRow.__table__
_CONFIG = ConfigVersionRow.__table__
_PRICES = UnderlyingPriceRow.__table__
_PNL = DailyPnlRow.__table__
_EVENTS = EventRow.__table__
_RISK = RiskRecordRow.__table__


_FILL_COLUMNS = (
    "trade_id, order_id, instrument, side, price, quantity, fee, theo, edge, "
    "exchange_ts_ns, local_ts_ns"
)
_PG_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _jaxmm_fill_stage ("
    "ord integer, trade_id varchar(64), order_id varchar(64), instrument varchar(64), "
    "side varchar(4), price numeric(38,12), quantity numeric(38,12), fee numeric(38,12), "
    "theo numeric(38,12), edge numeric(38,12), exchange_ts_ns bigint, local_ts_ns bigint"
    ") ON COMMIT DELETE ROWS"
)
_PG_STAGE_INSERT = (
    f"INSERT INTO fills ({_FILL_COLUMNS}) SELECT {_FILL_COLUMNS} FROM _jaxmm_fill_stage "
    "ORDER BY ord ON CONFLICT (trade_id) DO NOTHING RETURNING trade_id"
)
_PG_UNNEST_INSERT = (
    f"INSERT INTO fills ({_FILL_COLUMNS}) SELECT {_FILL_COLUMNS} FROM unnest("
    "$1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::numeric[], "
    "$6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[], $10::bigint[], $11::bigint[]"
    f") WITH ORDINALITY AS u({_FILL_COLUMNS}, ord) "
    "ORDER BY ord ON CONFLICT (trade_id) DO NOTHING RETURNING trade_id"
)
PG_COPY_MIN = 1_000
"""PostgreSQL batches of at least this many fills go through COPY + a staging table; smaller
ones through one prepared ``INSERT ... SELECT FROM unnest(...)`` statement. Measured on this
machine (benchmarks/bench_store.py): unnest is ~3x faster for 1-10 fills, equal at ~500, and
COPY ~15-20% faster from ~2,000 fills up."""


def _q(d: Decimal | None) -> Decimal | None:
    return None if d is None else quantize(d)


async def _pg_save_fills(raw: Any, fills: Sequence[FillRecord]) -> list[str]:
    """Store ``fills`` in one transaction on the asyncpg connection ``raw``; the trade ids
    newly stored, in submission order.

    Small batches: ONE prepared statement (cached per connection by asyncpg) run outside any
    explicit transaction block, so PostgreSQL runs it as its own transaction and commits it
    before answering (the driver returns at ReadyForQuery, after the commit): one round trip.
    Large batches: COPY into a per-session temporary staging table, then one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, inside one explicit transaction. Same
    semantics either way: all or nothing, idempotent on ``trade_id``, ids in submission order.
    """
    if len(fills) >= PG_COPY_MIN:
        records = [
            (
                i,
                f.trade_id,
                f.order_id,
                f.instrument,
                f.side,
                _q(f.price),
                Decimal(f.quantity),
                _q(f.fee),
                _q(f.theo),
                _q(f.edge),
                f.exchange_ts_ns,
                f.local_ts_ns,
            )
            for i, f in enumerate(fills)
        ]
        async with raw.transaction():  # the driver's own transaction: all or nothing
            await raw.execute(_PG_STAGE_DDL)
            await raw.copy_records_to_table("_jaxmm_fill_stage", records=records)
            rows = await raw.fetch(_PG_STAGE_INSERT)
        return [r[0] for r in rows]
    rows = await raw.fetch(
        _PG_UNNEST_INSERT,
        [f.trade_id for f in fills],
        [f.order_id for f in fills],
        [f.instrument for f in fills],
        [f.side for f in fills],
        [_q(f.price) for f in fills],
        [Decimal(f.quantity) for f in fills],
        [_q(f.fee) for f in fills],
        [_q(f.theo) for f in fills],
        [_q(f.edge) for f in fills],
        [f.exchange_ts_ns for f in fills],
        [f.local_ts_ns for f in fills],
    )
    return [r[0] for r in rows]


def _fill_rows(fills: Sequence[FillRecord]) -> list[dict[str, Any]]:
    return [
        {
            "trade_id": f.trade_id,
            "order_id": f.order_id,
            "instrument": f.instrument,
            "side": f.side,
            "price": f.price,
            "quantity": Decimal(f.quantity),
            "fee": f.fee,
            "theo": f.theo,
            "edge": f.edge,
            "exchange_ts_ns": f.exchange_ts_ns,
            "local_ts_ns": f.local_ts_ns,
        }
        for f in fills
    ]


def _check_fills(fills: Sequence[FillRecord]) -> None:
    for f in fills:
        if not isinstance(f, FillRecord):
            raise TypeError(f"fills: expected FillRecord, got {type(f).__name__}")


def default_url() -> str:
    """The embedded default: a SQLite file ``jaxmm.db`` in the user's data directory."""
    path = Path(platformdirs.user_data_dir("jaxmm")) / "jaxmm.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{path}"


def _redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _fill_from_row(r: Any) -> FillRecord:
    return FillRecord(
        trade_id=r.trade_id,
        order_id=r.order_id,
        instrument=r.instrument,
        side=r.side,
        price=r.price,
        quantity=int(r.quantity),
        fee=r.fee,
        exchange_ts_ns=r.exchange_ts_ns,
        local_ts_ns=r.local_ts_ns,
        theo=r.theo,
        edge=r.edge,
        id=r.id,
    )


class Discrepancy(tuple):
    """``(instrument, field, snapshot_value, rebuilt_value)`` from :meth:`Store.reconcile`."""

    __slots__ = ()

    def __new__(cls, instrument: str, field: str, snapshot: Any, rebuilt: Any):
        return super().__new__(cls, (instrument, field, snapshot, rebuilt))


class Store:
    """Async repository over SQLite or PostgreSQL.

    Open with :meth:`open`; the store refuses a database whose schema revision is not the one
    this jaxmm ships (:class:`jaxmm.store.SchemaMismatch`, whose message gives the migrate
    command) unless ``migrate=True``.

    Example:
        >>> import asyncio, tempfile, os
        >>> from jaxmm.store import Store, FillRecord
        >>> async def demo(path):
        ...     store = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=True)
        ...     fill = FillRecord("t1", "o1", "BTC-20261225-100000-C", "buy", "512.5", 2)
        ...     first, again = await store.save_fill(fill), await store.save_fill(fill)
        ...     n = len(await store.get_fills())
        ...     await store.close()
        ...     return first, again, n
        >>> asyncio.run(demo(os.path.join(tempfile.mkdtemp(), "x.db")))
        (True, False, 1)
    """

    def __init__(self, engine: AsyncEngine, url: str):
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name

    @classmethod
    async def open(
        cls,
        url: str | None = None,
        *,
        migrate: bool = False,
        schema: str | None = None,
        pool_size: int = 5,
    ) -> Store:
        """Connect to ``url`` (default :func:`default_url`) and check or migrate the schema.

        Args:
            url: ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://user@host/db``.
            migrate: upgrade the schema to head first (else refuse a mismatched schema).
            schema: PostgreSQL only — the schema (``search_path``) to use; it is created if
                missing. Lets tests and several books share one database.
        """
        url = url or default_url()
        kwargs: dict[str, Any] = {}
        if url.startswith("postgresql"):
            if schema is not None:
                kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
            kwargs["pool_size"] = pool_size
        elif schema is not None:
            raise ValueError("schema: only supported on PostgreSQL")
        else:  # SQLite: how long a write waits for another connection's write to commit
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_async_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if schema is not None:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        try:
            if migrate:
                await upgrade(engine)
            await check_schema(engine, _redact(url))
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, url)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    # ---------------------------------------------------------------- fills

    def _insert_ignore(self, table, index: list[str]):
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing(index_elements=index)

    async def save_fill(self, fill: FillRecord) -> bool:
        """Store one fill in its own transaction; False if its trade id was already stored.

        Returns only after the transaction has committed: a True/False answer is durable.
        """
        return bool(await self.save_fills([fill]))

    async def save_fills(self, fills: Sequence[FillRecord]) -> list[str]:
        """Store fills in ONE transaction; returns the trade ids newly stored (duplicates of
        stored trade ids are skipped). Commits before it returns."""
        if not fills:
            return []
        _check_fills(fills)
        async with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                raw = (await conn.get_raw_connection()).driver_connection
                return await _pg_save_fills(raw, fills)
            async with conn.begin():
                return await _sqlite_save_fills(conn, self._fill_insert(), fills)

    def _fill_insert(self):
        return self._insert_ignore(_FILLS, ["trade_id"]).returning(_FILLS.c.trade_id)

    def fill_sink(self) -> FillSink:
        """A :class:`FillSink`: one dedicated connection that commits fill batches (what
        :class:`jaxmm.store.FillWriter` writes through)."""
        return FillSink(self)

    async def get_fills(
        self,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        instrument: str | None = None,
        order_id: str | None = None,
        after_id: int = 0,
        limit: int = 10_000,
    ) -> list[FillRecord]:
        """Fills with ``start_ns <= exchange_ts_ns < end_ns`` in fill-log order (by id).

        Page with ``after_id`` (the last ``id`` of the previous page) and ``limit``.
        """
        if limit < 1:
            raise ValueError(f"limit: must be >= 1, got {limit}")
        q = select(_FILLS).where(_FILLS.c.id > after_id)
        if start_ns is not None:
            q = q.where(_FILLS.c.exchange_ts_ns >= start_ns)
        if end_ns is not None:
            q = q.where(_FILLS.c.exchange_ts_ns < end_ns)
        if instrument is not None:
            q = q.where(_FILLS.c.instrument == instrument)
        if order_id is not None:
            q = q.where(_FILLS.c.order_id == order_id)
        q = q.order_by(_FILLS.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [_fill_from_row(r) for r in (await conn.execute(q)).all()]

    async def count_fills(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(_FILLS))).scalar())

    # ---------------------------------------------------------------- orders

    async def save_order(self, order: OrderRecord, *, reason: str | None = None) -> None:
        """Insert or update an order and record its state transition, in one transaction.

        A transition is recorded when the order is new or its status changed.
        """
        values = {
            "order_id": order.order_id,
            "client_id": order.client_id,
            "instrument": order.instrument,
            "side": order.side,
            "order_type": order.order_type,
            "time_in_force": order.time_in_force,
            "price": order.price,
            "quantity": Decimal(order.quantity),
            "filled_quantity": Decimal(order.filled_quantity),
            "status": order.status,
            "created_ts_ns": order.created_ts_ns,
            "updated_ts_ns": order.updated_ts_ns,
        }
        async with self.engine.begin() as conn:
            prev = (
                await conn.execute(
                    select(_ORDERS.c.status).where(_ORDERS.c.order_id == order.order_id)
                )
            ).scalar_one_or_none()
            if prev is None:
                await conn.execute(insert(_ORDERS).values(**values))
            else:
                await conn.execute(
                    update(_ORDERS).where(_ORDERS.c.order_id == order.order_id).values(**values)
                )
            if prev != order.status:
                await conn.execute(
                    insert(_TRANSITIONS).values(
                        order_id=order.order_id,
                        from_status=prev,
                        to_status=order.status,
                        reason=reason,
                        ts_ns=order.updated_ts_ns,
                    )
                )

    async def get_order(self, order_id: str) -> OrderRecord | None:
        async with self.engine.connect() as conn:
            r = (
                await conn.execute(select(_ORDERS).where(_ORDERS.c.order_id == order_id))
            ).one_or_none()
        if r is None:
            return None
        return OrderRecord(
            order_id=r.order_id,
            instrument=r.instrument,
            side=r.side,
            order_type=r.order_type,
            time_in_force=r.time_in_force,
            quantity=int(r.quantity),
            price=r.price,
            filled_quantity=int(r.filled_quantity),
            status=r.status,
            client_id=r.client_id,
            created_ts_ns=r.created_ts_ns,
            updated_ts_ns=r.updated_ts_ns,
        )

    async def get_order_transitions(self, order_id: str) -> list[tuple[str | None, str, int]]:
        """``(from_status, to_status, ts_ns)`` in the order they happened."""
        q = (
            select(_TRANSITIONS.c.from_status, _TRANSITIONS.c.to_status, _TRANSITIONS.c.ts_ns)
            .where(_TRANSITIONS.c.order_id == order_id)
            .order_by(_TRANSITIONS.c.id)
        )
        async with self.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(q)).all()]

    # ---------------------------------------------------------------- positions

    async def save_position_snapshot(self, snaps: PositionSnapshot | Iterable[PositionSnapshot]):
        """Store one snapshot or a batch, in one transaction."""
        batch = [snaps] if isinstance(snaps, PositionSnapshot) else list(snaps)
        rows = [
            {
                "instrument": s.instrument,
                "quantity": Decimal(s.quantity),
                "avg_price": s.avg_price,
                "realised_pnl": s.realised_pnl,
                "fees": s.fees,
                "last_fill_id": s.last_fill_id,
                "ts_ns": s.ts_ns,
            }
            for s in batch
        ]
        if rows:
            async with self.engine.begin() as conn:
                await conn.execute(insert(_SNAPSHOTS), rows)

    async def latest_position_snapshots(self) -> dict[str, PositionSnapshot]:
        """The newest snapshot of every instrument."""
        newest = (
            select(func.max(_SNAPSHOTS.c.id)).group_by(_SNAPSHOTS.c.instrument).scalar_subquery()
        )
        q = select(_SNAPSHOTS).where(_SNAPSHOTS.c.id.in_(newest))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return {
            r.instrument: PositionSnapshot(
                instrument=r.instrument,
                quantity=int(r.quantity),
                avg_price=r.avg_price,
                realised_pnl=r.realised_pnl,
                fees=r.fees,
                last_fill_id=r.last_fill_id,
                ts_ns=r.ts_ns,
            )
            for r in rows
        }

    async def rebuild_positions(
        self,
        upto_fill_id: int | None = None,
        instruments: dict[str, Instrument] | None = None,
    ) -> dict[str, Position]:
        """Positions rebuilt from the fill log (average cost, ``jaxmm.portfolio.Position``).

        ``instruments`` supplies contract multipliers (default: multiplier 1, so realised PnL
        is in price x quantity units — the same convention as the snapshots the engine writes).
        """
        positions: dict[str, Position] = {}
        after = 0
        while True:
            page = await self.get_fills(after_id=after, limit=5_000)
            for f in page:
                if upto_fill_id is not None and f.id is not None and f.id > upto_fill_id:
                    return positions
                pos = positions.get(f.instrument)
                if pos is None:
                    inst = (instruments or {}).get(f.instrument) or Instrument.spot(f.instrument)
                    pos = Position(inst)
                side = Side.BUY if f.side == "buy" else Side.SELL
                positions[f.instrument] = pos.apply(
                    Fill(f.instrument, side, f.quantity, f.price, fee=f.fee)
                )
            if len(page) < 5_000:
                return positions
            after = page[-1].id or after

    async def reconcile(self) -> list[Discrepancy]:
        """Compare each instrument's newest snapshot with the fill log rebuilt up to that
        snapshot's ``last_fill_id``; an empty list means the books reconcile. Money is
        compared at the stored scale (12 decimal places)."""
        out: list[Discrepancy] = []
        for inst, snap in sorted((await self.latest_position_snapshots()).items()):
            rebuilt = (await self.rebuild_positions(upto_fill_id=snap.last_fill_id)).get(inst)
            qty = rebuilt.qty if rebuilt else 0
            # compare at the stored scale: the average price is a quotient (28 digits in memory)
            realised = quantize(rebuilt.realised if rebuilt else Decimal(0))
            fees = quantize(rebuilt.fees if rebuilt else Decimal(0))
            if qty != snap.quantity:
                out.append(Discrepancy(inst, "quantity", snap.quantity, qty))
            if realised != snap.realised_pnl:
                out.append(Discrepancy(inst, "realised_pnl", snap.realised_pnl, realised))
            if fees != snap.fees:
                out.append(Discrepancy(inst, "fees", snap.fees, fees))
        return out

    # ---------------------------------------------------------------- configuration

    async def put_config(self, config: dict, author: str, comment: str | None = None) -> int:
        """Store a new configuration version; returns its number (1, 2, ...). Every version
        is kept with its time and author."""
        if not isinstance(config, dict):
            raise ValueError(f"config: must be a dict, got {type(config).__name__}")
        if not isinstance(author, str) or not 0 < len(author) <= 64:
            raise ValueError("author: must be a non-empty string of at most 64 characters")
        from ..events import now_ns

        # The next version is computed inside the INSERT itself (one statement: SQLite's write
        # lock serialises it); PostgreSQL additionally locks the table against concurrent txns.
        next_version = select(
            func.coalesce(func.max(_CONFIG.c.version), 0) + 1,
            literal(config, JSON),
            literal(author),
            literal(comment, String),
            literal(now_ns(), BigInteger),
        )
        stmt = (
            insert(_CONFIG)
            .from_select(["version", "config", "author", "comment", "ts_ns"], next_version)
            .returning(_CONFIG.c.version)
        )
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.exec_driver_sql("LOCK TABLE config_versions IN EXCLUSIVE MODE")
            version = (await conn.execute(stmt)).scalar_one()
        return version

    async def get_config(self, version: int | None = None) -> ConfigVersion | None:
        """The given version, or the newest when ``version`` is None (None if none stored)."""
        q = select(_CONFIG)
        q = (
            q.where(_CONFIG.c.version == version)
            if version is not None
            else q.order_by(_CONFIG.c.version.desc()).limit(1)
        )
        async with self.engine.connect() as conn:
            r = (await conn.execute(q)).one_or_none()
        return (
            None if r is None else ConfigVersion(r.version, r.config, r.author, r.ts_ns, r.comment)
        )

    async def config_history(self) -> list[ConfigVersion]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_CONFIG).order_by(_CONFIG.c.version))).all()
        return [ConfigVersion(r.version, r.config, r.author, r.ts_ns, r.comment) for r in rows]

    # ---------------------------------------------------------------- prices, PnL, risk

    async def save_underlying_price(self, underlying: str, price: Any, ts_ns: int) -> None:
        from ..portfolio._types import to_decimal

        if not isinstance(underlying, str) or not 0 < len(underlying) <= 32:
            raise ValueError("underlying: must be a non-empty string of at most 32 characters")
        p = to_decimal("price", price)
        if p <= 0:
            raise ValueError(f"price: must be > 0, got {price!r}")
        async with self.engine.begin() as conn:
            await conn.execute(insert(_PRICES).values(underlying=underlying, price=p, ts_ns=ts_ns))

    async def get_underlying_prices(
        self, underlying: str, start_ns: int = 0, end_ns: int | None = None
    ) -> list[tuple[int, Decimal]]:
        q = select(_PRICES.c.ts_ns, _PRICES.c.price).where(
            _PRICES.c.underlying == underlying, _PRICES.c.ts_ns >= start_ns
        )
        if end_ns is not None:
            q = q.where(_PRICES.c.ts_ns < end_ns)
        async with self.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(q.order_by(_PRICES.c.ts_ns))).all()]

    async def save_daily_pnl(self, pnl: DailyPnl) -> None:
        """Insert or replace one day's PnL for one book."""
        values = {
            k: getattr(pnl, k)
            for k in (
                "day",
                "book",
                "realised",
                "unrealised",
                "fees",
                "delta_pnl",
                "gamma_pnl",
                "vega_pnl",
                "theta_pnl",
                "residual_pnl",
            )
        }
        async with self.engine.begin() as conn:
            await conn.execute(delete(_PNL).where(_PNL.c.day == pnl.day, _PNL.c.book == pnl.book))
            await conn.execute(insert(_PNL).values(**values))

    async def get_daily_pnl(self, day: _dt.date, book: str | None = None) -> list[DailyPnl]:
        """That day's PnL rows (every book, or one)."""
        q = select(_PNL).where(_PNL.c.day == day)
        if book is not None:
            q = q.where(_PNL.c.book == book)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q.order_by(_PNL.c.book))).all()
        return [DailyPnl(**r._mapping) for r in rows]

    async def record_risk(self, rec: RiskRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(_RISK).values(
                    kind=rec.kind,
                    name=rec.name,
                    detail=rec.detail,
                    ts_ns=rec.ts_ns,
                    from_state=rec.from_state,
                    to_state=rec.to_state,
                )
            )

    async def get_risk_records(self, start_ns: int = 0) -> list[RiskRecord]:
        q = select(_RISK).where(_RISK.c.ts_ns >= start_ns).order_by(_RISK.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            RiskRecord(r.kind, r.name, r.detail, r.ts_ns, r.from_state, r.to_state) for r in rows
        ]

    # ---------------------------------------------------------------- events

    async def append_events(self, events: Sequence[EventBase]) -> int:
        """Store published events (each must carry its ``seq``); idempotent on ``seq``.

        Returns how many were new.
        """
        rows = []
        for e in events:
            if not isinstance(e, EventBase) or e.seq is None:
                raise ValueError("events: every event must be a published jaxmm event with a seq")
            rows.append(
                {
                    "seq": e.seq,
                    "type": e.type,  # type: ignore[attr-defined]
                    "payload": e.model_dump(mode="json"),
                    "local_ts_ns": e.local_ts_ns,
                }
            )
        if not rows:
            return 0
        stmt = self._insert_ignore(_EVENTS, ["seq"]).returning(_EVENTS.c.seq)
        async with self.engine.begin() as conn:
            return len((await conn.execute(stmt, rows)).all())

    async def read_events(self, from_seq: int = 0, limit: int = 10_000) -> list[EventBase]:
        """Stored events with ``seq > from_seq``, in sequence order."""
        q = select(_EVENTS.c.payload).where(_EVENTS.c.seq > from_seq)
        q = q.order_by(_EVENTS.c.seq).limit(limit)
        async with self.engine.connect() as conn:
            return [parse_event(r[0]) for r in (await conn.execute(q)).all()]

    # ---------------------------------------------------------------- retention, export

    async def purge(self, before_ns: int) -> dict[str, int]:
        """Retention: delete events and underlying ticks older than ``before_ns``.

        Fills, orders, snapshots, configuration, daily PnL and risk records are the books of
        record and are never purged by jaxmm (docs/persistence.md).
        """
        out = {}
        async with self.engine.begin() as conn:
            r = await conn.execute(delete(_EVENTS).where(_EVENTS.c.local_ts_ns < before_ns))
            out["events"] = r.rowcount
            r = await conn.execute(delete(_PRICES).where(_PRICES.c.ts_ns < before_ns))
            out["underlying_prices"] = r.rowcount
        return out

    async def export_fills(self, path: str | Path, start_ns: int | None = None, end_ns=None):
        """Write fills to CSV or Parquet (by the file suffix) with pandas; returns the rows."""
        import pandas as pd

        fills = await self.get_fills(start_ns, end_ns, limit=10**9)
        df = pd.DataFrame(
            [
                {
                    "id": f.id,
                    "trade_id": f.trade_id,
                    "order_id": f.order_id,
                    "instrument": f.instrument,
                    "side": f.side,
                    "price": _text(f.price),
                    "quantity": f.quantity,
                    "fee": _text(f.fee),
                    "theo": _text(f.theo),
                    "edge": _text(f.edge),
                    "exchange_ts_ns": f.exchange_ts_ns,
                    "local_ts_ns": f.local_ts_ns,
                }
                for f in fills
            ]
        )
        _write_frame(df, Path(path))
        return len(df)

    async def export_daily_pnl(self, path: str | Path, days: Iterable[_dt.date]) -> int:
        """Write the daily PnL of the given days to CSV or Parquet; returns the rows."""
        import pandas as pd

        rows = []
        for d in days:
            for p in await self.get_daily_pnl(d):
                rows.append(
                    {k: (_text(v) if isinstance(v, Decimal) else v) for k, v in asdict(p).items()}
                )
        df = pd.DataFrame(rows)
        _write_frame(df, Path(path))
        return len(df)


async def _sqlite_save_fills(conn: Any, stmt: Any, fills: Sequence[FillRecord]) -> list[str]:
    result = await conn.execute(stmt, _fill_rows(fills))
    return [r[0] for r in result.all()]


class FillSink:
    """One dedicated database connection that commits batches of fills.

    :meth:`save` has the semantics of :meth:`Store.save_fills` (one transaction, idempotent on
    ``trade_id``, returns after the commit) without a pool checkout per batch; on PostgreSQL
    small batches are one prepared statement and one round trip (see ``PG_COPY_MIN``). The
    connection is opened on first use; after an error that leaves it in an unknown state
    (connection lost, cancelled mid-statement) it is discarded and the next :meth:`save` opens
    a fresh one. Not safe for concurrent use: one writer task owns it.

    Example:
        >>> import asyncio, tempfile, os
        >>> from jaxmm.store import Store, FillRecord
        >>> async def demo(path):
        ...     store = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=True)
        ...     sink = store.fill_sink()
        ...     fills = [FillRecord(f"t{i}", "o", "X", "buy", 1, 1) for i in (1, 2, 1)]
        ...     new = await sink.save(fills)   # the repeated t1 is stored once
        ...     await sink.close()
        ...     await store.close()
        ...     return new
        >>> asyncio.run(demo(os.path.join(tempfile.mkdtemp(), "s.db")))
        ['t1', 't2']
    """

    def __init__(self, store: Store):
        self.store = store
        self._conn: Any = None
        self._raw: Any = None
        self._stmt = store._fill_insert()

    async def _open(self) -> None:
        self._conn = await self.store.engine.connect()
        if self.store.dialect == "postgresql":
            self._raw = (await self._conn.get_raw_connection()).driver_connection

    def backend_pid(self) -> int | None:
        """PostgreSQL: the server process id of the open connection (None otherwise)."""
        if self._raw is None or self._raw.is_closed():
            return None
        return int(self._raw.get_server_pid())

    async def save(self, fills: Sequence[FillRecord]) -> list[str]:
        """Store ``fills`` in one transaction; the trade ids newly stored. Commits before it
        returns; on any error nothing of the batch is stored."""
        if not fills:
            return []
        _check_fills(fills)
        if self._conn is None:
            await self._open()
        try:
            if self._raw is not None:
                return await _pg_save_fills(self._raw, fills)
            async with self._conn.begin():
                return await _sqlite_save_fills(self._conn, self._stmt, fills)
        except Exception:
            if self._broken():
                await self._discard()
            raise
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            await self._discard()
            raise

    def _broken(self) -> bool:
        if self._raw is not None:
            return self._raw.is_closed() or self._raw.is_in_transaction()
        return bool(self._conn.invalidated or self._conn.closed)

    async def _discard(self) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is None:
            return
        try:
            await conn.invalidate()
            await conn.close()
        except Exception as exc:  # already gone: nothing left to release
            _log.debug("discarding fill-sink connection: %s", exc)

    async def close(self) -> None:
        """Return the connection to the store's pool."""
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            await conn.close()


def _text(d: Decimal | None) -> str | None:
    """Canonical decimal text (no exponent, no trailing zeros): the same on every backend."""
    if d is None:
        return None
    return format(d.normalize(), "f")


def _write_frame(df: Any, path: Path) -> None:
    """Money columns are written as decimal text: exact in both formats."""
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        raise ValueError(f"path: suffix must be .csv or .parquet, got {path.suffix!r}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL journal (readers do not block the writer), synchronous=FULL (a committed fill
    survives power loss), foreign keys on."""
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
