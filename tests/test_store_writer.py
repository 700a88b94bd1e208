"""FillWriter and the fill write paths against real databases (SQLite files and the PostgreSQL
server on 127.0.0.1:5432, one scratch schema per test). Nothing is mocked; no timing asserted.
"""

from __future__ import annotations

import asyncio
import logging
import math
from decimal import Decimal

import asyncpg
import pytest
from _db import PG_URL, Backend

from jaxmm.store import FillRecord, FillWriter
from jaxmm.store._repo import PG_COPY_MIN


def fill(i: int, **kw) -> FillRecord:
    base = dict(
        trade_id=f"T{i}",
        order_id=f"O{i // 3}",
        instrument="BTC-20261225-100000-C",
        side="buy" if i % 2 else "sell",
        price=Decimal("512.25") + i,
        quantity=1 + i % 4,
        fee=Decimal("-0.015"),
        exchange_ts_ns=1_000 + i,
        local_ts_ns=2_000 + i,
    )
    base.update(kw)
    return FillRecord(**base)


def test_on_ack_sees_each_batch_after_commit_and_before_the_futures(backend):
    async def go():
        store = await backend.open()
        events: list[tuple[str, str]] = []
        batches: list[list[tuple[str, bool]]] = []

        def on_ack(acks):
            batches.append([(f.trade_id, new) for f, new in acks])
            events.extend(("on_ack", f.trade_id) for f, _ in acks)

        async with FillWriter(store, on_ack=on_ack) as writer:
            # no linger: one lone fill is committed without anything else arriving
            assert await asyncio.wait_for(writer.submit(fill(0)), 60) is True
            futs = [writer.submit(fill(i)) for i in (1, 2, 1, 3)]
            for f, tid in zip(futs, ("T1", "T2", "T1", "T3"), strict=True):
                f.add_done_callback(lambda _, t=tid: events.append(("future", t)))
            results = await asyncio.gather(*futs)
            again = await writer.submit(fill(2))
        assert results == [True, True, False, True] and again is False
        flat = [x for b in batches for x in b]
        assert flat == [
            ("T0", True),
            ("T1", True),
            ("T2", True),
            ("T1", False),
            ("T3", True),
            ("T2", False),
        ]
        for tid in ("T1", "T2", "T3"):  # the hook runs before the engine sees the future
            assert events.index(("on_ack", tid)) < events.index(("future", tid))
        stored = await store.get_fills()
        assert [f.trade_id for f in stored] == ["T0", "T1", "T2", "T3"]
        await store.close()

    asyncio.run(go())


def test_a_rejected_fill_is_isolated_and_the_rest_of_its_batch_is_stored(backend):
    async def go():
        store = await backend.open()
        bad = fill(5)
        object.__setattr__(bad, "side", "hold")  # bypass validation: the DB CHECK rejects it
        batch = [fill(i) for i in range(5)] + [bad] + [fill(i) for i in range(6, 10)]
        acked: list[str] = []
        async with FillWriter(store, on_ack=lambda a: acked.extend(f.trade_id for f, _ in a)) as w:
            futs = [w.submit(f) for f in batch]
            results = await asyncio.gather(*futs, return_exceptions=True)
        assert isinstance(results[5], Exception)
        assert "check" in str(results[5]).lower() or "constraint" in str(results[5]).lower()
        assert results[:5] + results[6:] == [True] * 9
        ids = sorted(f.trade_id for f in await store.get_fills())
        assert ids == sorted(f"T{i}" for i in range(10) if i != 5) == sorted(acked)
        await store.close()

    asyncio.run(go())


def test_batches_respect_max_batch_and_the_time_budget_floor(tmp_path):
    async def go():
        store = await Backend("sqlite", tmp_path).open()
        sizes: list[int] = []
        async with FillWriter(store, max_batch=7, on_ack=lambda a: sizes.append(len(a))) as w:
            await asyncio.gather(*(w.submit(fill(i)) for i in range(50)))
        assert sum(sizes) == 50 and max(sizes) == 7
        # a budget far below one fill's commit time caps batches at the floor of 64 fills
        sizes.clear()
        async with FillWriter(
            store, batch_budget_ms=1e-6, on_ack=lambda a: sizes.append(len(a))
        ) as w:
            assert w.batch_cap == 64
            await asyncio.gather(*(w.submit(fill(i)) for i in range(100, 400)))
            assert w.stats()["fills"] == 300.0
        assert sum(sizes) == 300 and sizes[0] == 64 and max(sizes) == 64
        assert await store.count_fills() == 350
        await store.close()

    asyncio.run(go())


def test_writer_survives_a_lost_postgresql_connection(tmp_path):
    b = Backend("postgresql", tmp_path)

    async def go():
        store = await b.open()
        async with FillWriter(store, max_batch=10) as w:
            assert all(await asyncio.gather(*(w.submit(fill(i)) for i in range(20))))
            pid = w._sink.backend_pid()
            assert pid is not None
            admin = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await admin.close()
            # the next batch fails on the dead connection, is retried on a fresh one
            results = await asyncio.gather(*(w.submit(fill(i)) for i in range(20, 60)))
            assert w._sink.backend_pid() not in (None, pid)
        assert all(results)
        fills = await store.get_fills()
        assert [f.trade_id for f in fills] == [f"T{i}" for i in range(60)]
        await store.close()

    try:
        asyncio.run(go())
    finally:
        asyncio.run(b.drop())


def test_postgresql_small_and_large_batches_store_identical_exact_values(tmp_path):
    """Both PostgreSQL paths (one unnest statement; COPY from PG_COPY_MIN fills up) round to 12
    decimals half-EVEN on the client, as the SQLite path does (PostgreSQL's own numeric rounding
    is half away from zero). Expected values worked by hand."""
    b = Backend("postgresql", tmp_path)
    tie_even = Decimal("100.12345678901250")  # ...012|50 -> 100.123456789012 (2 is even)
    tie_odd = Decimal("100.12345678901350")  # ...013|50 -> 100.123456789014 (3 is odd)

    async def go():
        store = await b.open()
        n = PG_COPY_MIN + 5
        for tag, count in (("s", 10), ("L", n)):
            batch = [
                fill(i, trade_id=f"{tag}{i}", price=tie_even if i % 2 else tie_odd)
                for i in range(count)
            ]
            batch.append(batch[3])  # a duplicate inside the batch is stored once
            new = await store.save_fills(batch)
            assert new == [f"{tag}{i}" for i in range(count)]
            got = await store.get_fills(limit=10**6, after_id=0)
            got = [f for f in got if f.trade_id.startswith(tag)]
            assert [f.trade_id for f in got] == [f"{tag}{i}" for i in range(count)]  # id order
            assert {f.price for f in got[1::2]} == {Decimal("100.123456789012")}
            assert {f.price for f in got[0::2]} == {Decimal("100.123456789014")}
            assert {f.fee for f in got} == {Decimal("-0.015")}
        await store.close()

    try:
        asyncio.run(go())
    finally:
        asyncio.run(b.drop())


def test_on_ack_failure_is_logged_and_does_not_block_acknowledgements(tmp_path, caplog):
    async def go():
        store = await Backend("sqlite", tmp_path).open()

        def broken(_acks):
            raise RuntimeError("journal disk full")

        async with FillWriter(store, on_ack=broken) as w:
            results = await asyncio.gather(*(w.submit(fill(i)) for i in range(3)))
        await store.close()
        return results

    with caplog.at_level(logging.ERROR, logger="jaxmm.store._writer"):
        assert asyncio.run(go()) == [True, True, True]
    assert "on_ack" in caplog.text


def test_lifecycle_and_bad_parameters(tmp_path):
    async def go():
        store = await Backend("sqlite", tmp_path).open()
        w = FillWriter(store)
        with pytest.raises(RuntimeError, match="not running"):
            w.submit(fill(0))
        await w.start()
        with pytest.raises(RuntimeError, match="already started"):
            await w.start()
        with pytest.raises(TypeError, match="fill"):
            w.submit("T1")  # type: ignore[arg-type]
        fut = w.submit(fill(0))
        await w.stop()  # flushes what is queued
        assert fut.result() is True
        with pytest.raises(RuntimeError, match="not running"):
            w.submit(fill(1))
        for kw, field in (
            ({"max_queue": 0}, "max_queue"),
            ({"max_batch": 0}, "max_batch"),
            ({"max_batch": 2.5}, "max_batch"),
            ({"retries": -1}, "retries"),
            ({"batch_budget_ms": 0.0}, "batch_budget_ms"),
            ({"batch_budget_ms": math.nan}, "batch_budget_ms"),
            ({"on_ack": 5}, "on_ack"),
        ):
            with pytest.raises(ValueError, match=field):
                FillWriter(store, **kw)
        await store.close()

    asyncio.run(go())
