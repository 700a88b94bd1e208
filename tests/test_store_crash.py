"""Crash durability: SIGKILL a writer process at a random moment, restart, and check the books.

The child process plays the engine's part: it streams fills through ``FillWriter``, prints
``ACK <trade_id>`` only once a fill's commit is acknowledged, keeps positions in memory from the
acknowledged fills (``jaxmm.portfolio.Position``) and writes position snapshots every 50 fills.
After the kill: every acknowledged fill is in the database, nothing is duplicated, the newest
snapshots equal the fill log rebuilt up to them, and a restart that resubmits everything
(idempotent) completes the log exactly.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jaxmm.store import Store

PG_URL = os.environ.get("JAXMM_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
N_FILLS = 600

CHILD = textwrap.dedent(
    """
    import asyncio, random, sys
    from decimal import Decimal
    from sqlalchemy import func, select
    from jaxmm.portfolio import Fill, Instrument, Position, Side
    from jaxmm.store import FillRecord, FillWriter, PositionSnapshot, Store
    from jaxmm.store._schema import FillRow

    url, schema, n = sys.argv[1], (sys.argv[2] or None), int(sys.argv[3])

    def make(i):
        rng = random.Random(i)
        return FillRecord(
            trade_id=f"T{i:06d}", order_id=f"O{i // 4}", instrument=rng.choice("ABC"),
            side=rng.choice(["buy", "sell"]), price=Decimal(rng.randint(9000, 11000)) / 100,
            quantity=rng.randint(1, 5), fee=Decimal(rng.randint(-5, 20)) / 1000,
            exchange_ts_ns=i, local_ts_ns=i)

    async def main():
        store = await Store.open(url, migrate=True, schema=schema)
        positions = {}
        async with FillWriter(store, max_batch=16) as writer:
            for start in range(0, n, 50):
                batch = [make(i) for i in range(start, min(n, start + 50))]
                acks = [writer.submit(f) for f in batch]
                for f, ack in zip(batch, acks):
                    await ack
                    print("ACK", f.trade_id, flush=True)
                    pos = positions.get(f.instrument) or Position(Instrument.spot(f.instrument))
                    side = Side.BUY if f.side == "buy" else Side.SELL
                    positions[f.instrument] = pos.apply(
                        Fill(f.instrument, side, f.quantity, f.price, fee=f.fee))
                async with store.engine.connect() as conn:
                    last_id = (await conn.execute(select(func.max(FillRow.id)))).scalar()
                await store.save_position_snapshot([
                    PositionSnapshot(k, p.qty, p.avg_price, p.realised, p.fees, last_id, start)
                    for k, p in positions.items()])
                print("SNAP", last_id, flush=True)
        await store.close()
        print("DONE", flush=True)

    asyncio.run(main())
    """
)


def _spawn(url: str, schema: str | None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, schema or "", str(N_FILLS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigkill_loses_no_acknowledged_fill_and_books_reconcile(kind, tmp_path):
    schema = f"crash_{uuid.uuid4().hex[:10]}" if kind == "postgresql" else None
    url = PG_URL if schema else f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    kill_after = random.Random(kind).randint(60, 450)  # a random moment, reproducible per run
    acked: list[str] = []
    proc = _spawn(url, schema)
    try:
        for line in proc.stdout:
            if line.startswith("ACK "):
                acked.append(line.split()[1])
                if len(acked) >= kill_after:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]

        async def check_after_crash():
            store = await Store.open(url, migrate=False, schema=schema)
            fills = await store.get_fills(limit=10**6)
            ids = [f.trade_id for f in fills]
            assert set(acked) <= set(ids)  # every acknowledged fill survived
            assert len(ids) == len(set(ids))  # nothing duplicated
            assert await store.reconcile() == []
            await store.close()
            return len(ids)

        stored_after_crash = asyncio.run(check_after_crash())
        assert stored_after_crash >= len(acked)

        # restart: the engine replays its fills; idempotent writes complete the log exactly
        proc2 = _spawn(url, schema)
        out, err = proc2.communicate(timeout=240)
        assert proc2.returncode == 0, err[-2000:]
        assert out.rstrip().endswith("DONE")

        async def check_after_restart():
            store = await Store.open(url, migrate=False, schema=schema)
            fills = await store.get_fills(limit=10**6)
            assert [f.trade_id for f in fills] == sorted(f.trade_id for f in fills)
            assert len(fills) == N_FILLS == len({f.trade_id for f in fills})
            assert await store.reconcile() == []
            await store.close()

        asyncio.run(check_after_restart())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if schema:

            async def drop():
                eng = create_async_engine(url)
                async with eng.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                await eng.dispose()

            asyncio.run(drop())
