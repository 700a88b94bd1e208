"""``python -m jaxmm.store upgrade|downgrade|current [--url URL]`` — schema migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from ._migrate import current_revision, downgrade, head_revision, upgrade
from ._repo import default_url


async def _main(args: argparse.Namespace) -> int:
    engine = create_async_engine(args.url)
    try:
        if args.command == "upgrade":
            await upgrade(engine, args.revision or "head")
        elif args.command == "downgrade":
            await downgrade(engine, args.revision or "base")
        print(f"database revision: {await current_revision(engine)} (head {head_revision()})")
    finally:
        await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmm.store", description=__doc__)
    p.add_argument("command", choices=["upgrade", "downgrade", "current"])
    p.add_argument("--url", default=None, help="database URL (default: the embedded SQLite)")
    p.add_argument("--revision", default=None, help="target revision (head / base / an id)")
    args = p.parse_args(argv)
    args.url = args.url or default_url()
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
