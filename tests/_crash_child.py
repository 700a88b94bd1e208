"""The process that tests/test_store_crash.py kills: the options engine on the simulated market,
writing its fills to a store, with a journal of every acknowledged fill.

Usage: ``python tests/_crash_child.py URL SCHEMA JOURNAL SEED SECONDS`` (SCHEMA "" for none).

It runs :func:`jaxmm.engine.run_simulation` on the demo configuration (snapshots every 0.2 s)
with ``store=Store.open(URL, schema=SCHEMA)``. Every fill the engine's :class:`FillWriter`
acknowledges (after its commit) is appended to JOURNAL as one tab-separated line
``trade_id instrument side price quantity stored`` and the file is fsync'ed before the fill's
future resolves — so JOURNAL is a superset of what the engine saw acknowledged, and every line
in it was committed before it was written; ``JOURNAL.snap`` gets a line after each committed
position snapshot (the parent waits for one before it picks the moment to kill). The writer is
the engine's own; the journal comes in through the engine's ``on_fill_ack`` hook
(``run_simulation(..., on_fill_ack=...)``, passed to ``FillWriter``'s ``on_ack``). Prints
``DONE <fills acked>`` when the run ends normally.
"""

from __future__ import annotations

import asyncio
import os
import sys

from jaxmm.engine import MarketMakerConfig, run_simulation
from jaxmm.store import Store


def main() -> None:
    url, schema, journal, seed, seconds = sys.argv[1:6]
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def on_ack(acks) -> None:
        lines = "".join(
            f"{f.trade_id}\t{f.instrument}\t{f.side}\t{f.price}\t{f.quantity}\t{int(new)}\n"
            for f, new in acks
        )
        os.write(fd, lines.encode())
        os.fsync(fd)

    demo = MarketMakerConfig.demo().model_dump()
    config = MarketMakerConfig.model_validate({**demo, "snapshot_every_s": 0.2})

    async def go() -> int:
        store = await Store.open(url, migrate=True, schema=schema or None)
        save_snapshot = store.save_position_snapshot

        async def journaled_snapshot(snaps):  # tells the parent a snapshot is committed
            await save_snapshot(snaps)
            with open(journal + ".snap", "a") as f:
                f.write("SNAP\n")

        store.save_position_snapshot = journaled_snapshot  # type: ignore[method-assign]
        try:
            mm = await run_simulation(
                config,
                seconds=float(seconds),
                seed=int(seed),
                store=store,
                taker_intensity=2.0,
                on_fill_ack=on_ack,
            )
        finally:
            await store.close()
        return len(mm.acked_trade_ids)

    n = asyncio.run(go())
    os.close(fd)
    print("DONE", n, flush=True)


if __name__ == "__main__":
    main()
