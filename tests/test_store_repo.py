"""jaxmm.store against real databases: SQLite files and the PostgreSQL server on 127.0.0.1:5432.

Each PostgreSQL test gets its own schema (dropped afterwards), so tests never leak into each
other. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from jaxmm.events import EventBroadcaster, OrderFilled, PriceUpdated
from jaxmm.store import (
    DailyPnl,
    FillRecord,
    FillWriter,
    OrderRecord,
    PositionSnapshot,
    RiskRecord,
    SchemaMismatch,
    Store,
    WriterBackpressure,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from jaxmm.store._schema import Base


def fill(i: int, **kw) -> FillRecord:
    base = dict(
        trade_id=f"T{i}",
        order_id=f"O{i // 3}",
        instrument="BTC-20261225-100000-C" if i % 2 else "ETH-20261225-4000-P",
        side="buy" if i % 3 else "sell",
        price=Decimal("512.25") + i,
        quantity=1 + i % 4,
        fee=Decimal("-0.015"),
        exchange_ts_ns=1_000 + i,
        local_ts_ns=2_000 + i,
    )
    base.update(kw)
    return FillRecord(**base)


def run(coro):
    return asyncio.run(coro)


# --------------------------------------------------------------------------- migrations


def test_migrations_upgrade_from_empty_and_downgrade_back(backend):
    async def go():
        eng = backend.engine()
        if backend.schema:
            async with eng.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{backend.schema}"'))
        assert await current_revision(eng) is None
        await upgrade(eng)
        assert await current_revision(eng) == head_revision()
        async with eng.connect() as conn:
            # the migrated schema is exactly the models' schema
            diffs = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert diffs == []
        assert {"fills", "orders", "events", "config_versions", "daily_pnl"} <= tables
        await downgrade(eng)
        async with eng.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert tables <= {"alembic_version"}
        await eng.dispose()

    run(go())


def test_refuses_unmigrated_database_and_names_the_command(backend):
    async def go():
        if backend.schema:
            eng = create_async_engine(backend.url)
            async with eng.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{backend.schema}"'))
            await eng.dispose()
        with pytest.raises(SchemaMismatch, match="python -m jaxmm.store upgrade --url"):
            await backend.open(migrate=False)
        store = await backend.open(migrate=True)
        await store.close()
        # a revision this jaxmm does not know (a newer jaxmm migrated the database)
        eng = backend.engine()
        async with eng.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
        await eng.dispose()
        with pytest.raises(SchemaMismatch, match="does not know"):
            await backend.open(migrate=False)

    run(go())


# --------------------------------------------------------------------------- fills


def test_fills_are_exact_idempotent_and_filterable(backend):
    async def go():
        store = await backend.open()
        big = Decimal("12345678901234567890.123456789012")
        first = [fill(i) for i in range(10)] + [fill(10, price=big, fee=Decimal("0.1"))]
        assert len(await store.save_fills(first)) == 11
        assert await store.save_fills(first[:5]) == []  # known trade ids: not stored twice
        assert await store.save_fill(first[0]) is False
        assert await store.count_fills() == 11
        got = await store.get_fills()
        assert [f.trade_id for f in got] == [f"T{i}" for i in range(11)]
        assert got[10].price == big and got[10].fee == Decimal("0.1")  # no binary floats
        assert got[3] == first[3]
        window = await store.get_fills(1_002, 1_005, instrument="BTC-20261225-100000-C")
        assert [f.trade_id for f in window] == ["T3"]
        page1 = await store.get_fills(limit=4)
        page2 = await store.get_fills(after_id=page1[-1].id, limit=4)
        assert [f.trade_id for f in page1 + page2] == [f"T{i}" for i in range(8)]
        await store.close()

    run(go())


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(price=float("nan")), "price: must be finite"),
        (dict(price=-1), "price: must be > 0"),
        (dict(quantity=-3), "quantity: must be > 0"),
        (dict(quantity=1.5), "quantity: must be an integer"),
        (dict(instrument="X" * 65), "instrument: longer than 64"),
        (dict(side="hold"), "side: must be 'buy' or 'sell'"),
        (dict(exchange_ts_ns=-1), "exchange_ts_ns"),
    ],
)
def test_bad_fill_is_rejected_before_any_write(kw, match):
    with pytest.raises(ValueError, match=match):
        fill(1, **kw)


def test_failed_batch_rolls_back_whole(backend):
    async def go():
        store = await backend.open()
        good = fill(1)
        bad = fill(2)
        object.__setattr__(bad, "side", "hold")  # bypass validation: the DB CHECK must catch it
        with pytest.raises(Exception, match="(?i)check|constraint"):
            await store.save_fills([good, bad])
        assert await store.count_fills() == 0  # the good fill was not half-applied
        await store.close()

    run(go())


# --------------------------------------------------------------------------- orders, positions


def test_order_state_transitions_are_recorded(backend):
    async def go():
        store = await backend.open()
        o = OrderRecord("O1", "BTC-20261225-100000-C", "buy", "limit", "GTC", 5, price="10.5")
        await store.save_order(o)
        await store.save_order(
            OrderRecord(
                "O1",
                o.instrument,
                "buy",
                "limit",
                "GTC",
                5,
                price="10.5",
                filled_quantity=2,
                status="partially_filled",
                updated_ts_ns=5,
            )
        )
        await store.save_order(
            OrderRecord(
                "O1",
                o.instrument,
                "buy",
                "limit",
                "GTC",
                5,
                price="10.5",
                filled_quantity=2,
                status="cancelled",
                updated_ts_ns=9,
            ),
            reason="operator",
        )
        got = await store.get_order("O1")
        assert got.status == "cancelled" and got.filled_quantity == 2
        assert got.price == Decimal("10.5")
        assert await store.get_order_transitions("O1") == [
            (None, "new", 0),
            ("new", "partially_filled", 5),
            ("partially_filled", "cancelled", 9),
        ]
        assert await store.get_order("nope") is None
        await store.close()

    run(go())
    with pytest.raises(ValueError, match="filled_quantity: must be in"):
        OrderRecord("O1", "X", "buy", "limit", "GTC", 5, filled_quantity=6)
    with pytest.raises(ValueError, match="status: must be one of"):
        OrderRecord("O1", "X", "buy", "limit", "GTC", 5, status="weird")


def test_positions_rebuilt_from_fills_reconcile_with_snapshots(backend):
    async def go():
        store = await backend.open()
        fills = [
            fill(1, instrument="A", side="buy", quantity=10, price="100", fee="0.5"),
            fill(2, instrument="A", side="sell", quantity=4, price="103", fee="0.5"),
            fill(3, instrument="A", side="sell", quantity=10, price="101", fee="0"),  # flips
            fill(4, instrument="B", side="sell", quantity=3, price="7.25", fee="-0.01"),
        ]
        await store.save_fills(fills)
        ids = {f.trade_id: f.id for f in await store.get_fills()}
        pos = await store.rebuild_positions()
        a = pos["A"]
        # hand computation: buy 10 @100; sell 4 @103 -> +12; sell 10 @101: close 6 -> +6,
        # open 4 short @101
        assert (a.qty, a.avg_price, a.realised, a.fees) == (-4, Decimal(101), Decimal(18), 1)
        snap_a = PositionSnapshot("A", -4, Decimal(101), Decimal(18), Decimal(1), ids["T3"], 1)
        snap_b = PositionSnapshot(
            "B", -3, Decimal("7.25"), Decimal(0), Decimal("-0.01"), ids["T4"], 1
        )
        await store.save_position_snapshot([snap_a, snap_b])
        assert await store.reconcile() == []
        # a later fill is not part of the snapshot: still reconciles up to last_fill_id
        await store.save_fill(fill(5, instrument="A", side="buy", quantity=1, price="99"))
        assert await store.reconcile() == []
        # a wrong snapshot is reported
        await store.save_position_snapshot(
            PositionSnapshot("B", -2, Decimal("7.25"), Decimal(0), Decimal("-0.01"), ids["T4"], 2)
        )
        assert await store.reconcile() == [("B", "quantity", -2, -3)]
        await store.close()

    run(go())


# --------------------------------------------------------------------------- config, pnl, events


def test_config_versions_survive_restart_and_concurrent_writers(backend):
    async def go():
        store = await backend.open()
        assert await store.get_config() is None
        v1 = await store.put_config({"spread_mult": 1.0}, author="alice")
        results = await asyncio.gather(
            *(store.put_config({"spread_mult": 1.0 + i}, author="bob") for i in range(8))
        )
        assert v1 == 1 and sorted(results) == list(range(2, 10))
        await store.close()
        store = await backend.open(migrate=False)  # a restart
        latest = await store.get_config()
        assert latest.version == 9
        hist = await store.config_history()
        assert [h.version for h in hist] == list(range(1, 10))
        assert hist[0].config == {"spread_mult": 1.0} and hist[0].author == "alice"
        assert (await store.get_config(1)).config == {"spread_mult": 1.0}
        with pytest.raises(ValueError, match="author"):
            await store.put_config({}, author="")
        await store.close()

    run(go())


def test_daily_pnl_prices_risk_records_and_exports(backend, tmp_path):
    async def go():
        store = await backend.open()
        day = dt.date(2026, 11, 24)
        await store.save_daily_pnl(DailyPnl(day, "*", "10.5", "-2.25", "0.3", delta_pnl="1.1"))
        await store.save_daily_pnl(DailyPnl(day, "*", "11.5", "-2.25", "0.3"))  # replaces
        await store.save_daily_pnl(DailyPnl(day, "BTC", "1", "2", "0"))
        rows = await store.get_daily_pnl(day)
        assert [(r.book, r.realised) for r in rows] == [("*", Decimal("11.5")), ("BTC", 1)]
        await store.save_underlying_price("BTC", "64000.5", 10)
        await store.save_underlying_price("BTC", 64001, 20)
        assert await store.get_underlying_prices("BTC") == [
            (10, Decimal("64000.5")),
            (20, Decimal("64001")),
        ]
        with pytest.raises(ValueError, match="price: must be > 0"):
            await store.save_underlying_price("BTC", 0, 30)
        await store.record_risk(
            RiskRecord("breaker", "daily_loss", "tripped", 5, "active", "tripped")
        )
        assert (await store.get_risk_records())[0].to_state == "tripped"
        await store.save_fills([fill(i) for i in range(3)])
        assert await store.export_fills(tmp_path / "f.csv") == 3
        assert await store.export_fills(tmp_path / "f.parquet") == 3
        import pandas as pd

        df = pd.read_parquet(tmp_path / "f.parquet")
        assert df["price"].tolist() == ["512.25", "513.25", "514.25"]
        assert await store.export_daily_pnl(tmp_path / "p.csv", [day]) == 2
        with pytest.raises(ValueError, match="suffix"):
            await store.export_fills(tmp_path / "f.xlsx")
        await store.close()

    run(go())


def test_event_log_round_trip_idempotent_and_retention(backend):
    async def go():
        store = await backend.open()
        bus = EventBroadcaster()
        events = [
            bus.publish(PriceUpdated(underlying="BTC", price=100.0 + i, local_ts_ns=i))
            for i in range(5)
        ]
        events.append(
            bus.publish(
                OrderFilled(
                    order_id="o", trade_id="t", side="buy", price=1.5, quantity=2, local_ts_ns=9
                )
            )
        )
        assert await store.append_events(events) == 6
        assert await store.append_events(events[:2]) == 0
        back = await store.read_events(from_seq=3)
        assert back == events[3:]
        assert await store.purge(before_ns=3) == {"events": 3, "underlying_prices": 0}
        assert [e.seq for e in await store.read_events()] == [4, 5, 6]
        with pytest.raises(ValueError, match="seq"):
            await store.append_events([PriceUpdated(underlying="X", price=1.0)])
        await store.close()

    run(go())


# --------------------------------------------------------------------------- writer, concurrency


def test_writer_acks_only_committed_fills_under_concurrency(backend):
    async def go():
        store = await backend.open()
        async with FillWriter(store, max_batch=64) as writer:

            async def producer(p):
                acks = []
                for i in range(100):
                    acks.append(writer.submit(fill(p * 1000 + i)))
                    if i % 10 == 0:
                        await asyncio.sleep(0)
                return await asyncio.gather(*acks)

            async def reader():
                seen = 0
                for _ in range(20):
                    seen = max(seen, await store.count_fills())
                    await asyncio.sleep(0.001)
                return seen

            results = await asyncio.gather(*(producer(p) for p in range(6)), reader())
            acked = sum(sum(r) for r in results[:6])
            # a duplicate submitted again is acknowledged False, never stored twice
            dup = await writer.submit(fill(0))
        assert acked == 600 and dup is False
        assert await store.count_fills() == 600
        assert writer.batches_committed >= 600 // 64
        await store.close()

    run(go())


def test_writer_backpressure_is_reported_not_dropped(tmp_path):
    async def go():
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", migrate=True)
        writer = FillWriter(store, max_queue=5)
        await writer.start()
        futs = [writer.submit(fill(i)) for i in range(5)]
        with pytest.raises(WriterBackpressure, match="queue full"):
            writer.submit(fill(99))
        assert all(await asyncio.gather(*futs))
        await writer.stop()
        assert await store.count_fills() == 5
        await store.close()

    run(go())


def test_a_sqlite_write_waits_out_another_connections_long_write(tmp_path):
    """Another connection holds SQLite's write lock for 6 s (longer than sqlite3's default
    5 s busy timeout): the store's snapshot write waits for it instead of failing with
    "database is locked" (a stop's snapshot write failed that way once in CI)."""
    import sqlite3
    import threading

    from jaxmm.store._repo import SQLITE_BUSY_TIMEOUT_S

    path = tmp_path / "busy.db"
    held_s = 6.0
    assert SQLITE_BUSY_TIMEOUT_S > held_s > 5.0

    async def go():
        store = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=True)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held
        other.execute("INSERT INTO position_snapshots (instrument, quantity, avg_price, "
                      "realised_pnl, fees, last_fill_id, ts_ns) "
                      "VALUES ('ETH-20261225-4000-P', 1, 1, 0, 0, 0, 1)")  # fmt: skip
        release = threading.Timer(held_s, lambda: other.execute("COMMIT"))
        release.start()
        t0 = asyncio.get_running_loop().time()
        snap = PositionSnapshot("BTC-20261225-100000-C", 3, Decimal("512.25"),
                                Decimal("0"), Decimal("0"), 0, 5)  # fmt: skip
        try:
            await store.save_position_snapshot(snap)
            waited = asyncio.get_running_loop().time() - t0
            latest = await store.latest_position_snapshots()
        finally:
            release.join()
            other.close()
            await store.close()
        assert waited >= held_s - 0.5  # it did wait for the other write, then wrote
        assert set(latest) == {"ETH-20261225-4000-P", "BTC-20261225-100000-C"}
        assert latest["BTC-20261225-100000-C"].quantity == 3

    run(go())
