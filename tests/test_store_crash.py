"""Crash durability with the engine in the loop: SIGKILL the market maker at a random moment,
check the books, restart it on the same database.

tests/_crash_child.py runs ``jaxmm.engine.run_simulation`` (engine + simulated feed + simulated
traders) on the demo configuration with a store, and journals every fill its ``FillWriter``
acknowledged (after the commit; fsync'ed before the engine sees the acknowledgement). The test
waits for the first acknowledgements and the first committed position snapshot, sleeps a seeded
random delay (0-2 s), SIGKILLs the child, then:

- every journaled fill is in the database, with the instrument, side, price and quantity the
  engine acknowledged;
- no trade id is stored twice;
- ``Store.reconcile()`` is clean (each newest snapshot equals the fill log rebuilt up to it);
- the positions rebuilt from the whole log equal the newest snapshot plus the fills stored
  after it (``jaxmm.portfolio.Position`` arithmetic, independent of ``rebuild_positions``).

Then it restarts the child on the same database for one simulated second: it must run to the
end, store new fills (every fill it acknowledged is in the database as acknowledged: trade ids
carry the engine's session id, so no new fill clashes with a stored one), still store no trade
id twice, and its snapshots must reconcile with the log (the engine restores its positions
from the fill log on start).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jaxmm.portfolio import Fill, Instrument, Position, Side
from jaxmm.store import Store

PG_URL = os.environ.get("JAXMM_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
CHILD = Path(__file__).with_name("_crash_child.py")
SEED = int(os.environ.get("JAXMM_CRASH_SEED", "20240901"))


def _spawn(url: str, schema: str | None, journal: Path, seed: int, seconds: float):
    """The child, its output in files beside the journal (a pipe could fill and block it)."""
    log = journal.with_suffix(".log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), url, schema or "", str(journal), str(seed), str(seconds)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def _nonempty(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _output(journal: Path) -> str:
    return journal.with_suffix(".log").read_text()[-3000:]


def _journal(path: Path) -> list[tuple[str, str, str, Decimal, int, bool]]:
    """Complete lines only (a line cut by the kill was committed too, but is not counted)."""
    data = path.read_text() if path.exists() else ""
    out = []
    for line in data.split("\n")[:-1]:
        tid, inst, side, price, qty, new = line.split("\t")
        out.append((tid, inst, side, Decimal(price), int(qty), new == "1"))
    return out


def _same(fill, inst: str, side: str, price: Decimal, qty: int) -> bool:
    return (fill.instrument, fill.side, fill.price, fill.quantity) == (inst, side, price, qty)


async def _check_books(store: Store) -> dict:
    fills = await store.get_fills(limit=10**7)
    ids = [f.trade_id for f in fills]
    assert len(ids) == len(set(ids)), "a trade id is stored twice"
    assert await store.reconcile() == []
    # newest snapshot + the fills after it == the whole log rebuilt
    snaps = await store.latest_position_snapshots()
    rebuilt = await store.rebuild_positions()
    for inst in sorted(set(snaps) | set(rebuilt)):
        s = snaps.get(inst)
        pos = Position(Instrument.spot(inst))
        after = 0
        if s is not None:
            pos = Position(Instrument.spot(inst), s.quantity, s.avg_price, s.realised_pnl, s.fees)
            after = s.last_fill_id or 0
        closed = 0
        for f in fills:
            if f.instrument == inst and f.id > after:
                side = Side.BUY if f.side == "buy" else Side.SELL
                pos = pos.apply(Fill(inst, side, f.quantity, f.price, fee=f.fee))
                closed += f.quantity
        r = rebuilt.get(inst, Position(Instrument.spot(inst)))
        assert pos.qty == r.qty, inst
        assert pos.fees == r.fees, inst
        # the snapshot's realised PnL and average price are stored to 12 decimals: its own
        # realised PnL is off by at most 0.5e-12 and the realised PnL of the later fills by
        # at most (quantity closed) x 0.5e-12
        assert abs(pos.realised - r.realised) <= Decimal(closed + 1) * Decimal("1e-12"), inst
        assert abs(pos.avg_price - r.avg_price) <= Decimal("1e-11"), inst
    return {f.trade_id: f for f in fills}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_engine_sigkill_loses_no_acknowledged_fill_and_restarts(kind, tmp_path):
    schema = f"crash_{uuid.uuid4().hex[:10]}" if kind == "postgresql" else None
    url = PG_URL if schema else f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
    rng = random.Random(f"{SEED}-{kind}")
    delay = rng.uniform(0.0, 2.0)  # after the first acknowledgement and the first snapshot
    journal1, journal2 = tmp_path / "acks1.tsv", tmp_path / "acks2.tsv"
    proc = _spawn(url, schema, journal1, seed=rng.randrange(1000), seconds=600.0)
    proc2 = None
    try:
        deadline = time.monotonic() + 40
        snap = Path(f"{journal1}.snap")
        while not (_nonempty(journal1) and _nonempty(snap)):
            assert proc.poll() is None, _output(journal1)
            assert time.monotonic() < deadline, "no acknowledged fill and snapshot within 40 s"
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, _output(journal1)
        acked = _journal(journal1)
        assert acked, "nothing acknowledged before the kill"

        async def after_crash():
            store = await Store.open(url, migrate=False, schema=schema)
            try:
                stored = await _check_books(store)
                snapshots = await store.latest_position_snapshots()
            finally:
                await store.close()
            for tid, inst, side, price, qty, was_new in acked:
                assert tid in stored, f"acknowledged fill {tid} lost (delay {delay:.2f} s)"
                if was_new:  # acknowledged as newly stored: it is this very fill
                    assert _same(stored[tid], inst, side, price, qty), tid
            return stored, snapshots

        stored1, snaps1 = asyncio.run(after_crash())
        assert len(stored1) >= len(acked) and snaps1, (len(stored1), len(snaps1))

        # restart on the same database: the engine continues and stores new fills
        proc2 = _spawn(url, schema, journal2, seed=rng.randrange(1000, 2000), seconds=1.0)
        proc2.wait(timeout=90)
        assert proc2.returncode == 0, _output(journal2)
        assert "DONE" in _output(journal2)
        acked2 = _journal(journal2)

        async def after_restart():
            store = await Store.open(url, migrate=False, schema=schema)
            try:
                fills = await store.get_fills(limit=10**7)
                reconciled = await store.reconcile() == []
            finally:
                await store.close()
            return {f.trade_id: f for f in fills}, len(fills), reconciled

        stored2, n2, reconciled2 = asyncio.run(after_restart())
        assert n2 == len(stored2), "a trade id is stored twice"
        assert all(tid in stored2 for tid in stored1)
        new = [a for a in acked2 if a[5]]
        assert new and n2 == len(stored1) + len(new)
        for tid, inst, side, price, qty, _new in new:
            assert _same(stored2[tid], inst, side, price, qty), tid
        # fills of the restarted engine acknowledged as "already stored" are the same fills
        # (trade ids carry the engine's session id: no clash with the first session's ids)
        assert all(a[5] for a in acked2), [a[0] for a in acked2 if not a[5]][:3]
        for tid, inst, side, price, qty, _new in acked2:
            assert _same(stored2[tid], inst, side, price, qty), f"trade id clash: {tid}"
        # the restarted engine restored its positions from the log: its snapshots reconcile
        assert reconciled2, "post-restart snapshots do not reconcile"
    finally:
        for p in (proc, proc2):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if schema:

            async def drop():
                eng = create_async_engine(url)
                async with eng.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                await eng.dispose()

            asyncio.run(drop())
