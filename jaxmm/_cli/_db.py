"""``jaxmm db upgrade|downgrade|current [--db URL] [--revision REV]``: store schema migrations.

Delegates to :mod:`jaxmm.store`'s Alembic migrations (the same functions as
``python -m jaxmm.store``). The default database is the embedded SQLite file
(:func:`jaxmm.store._repo.default_url`); ``upgrade`` goes to ``head`` and ``downgrade`` to
``base`` unless ``--revision`` says otherwise. Prints the revision afterwards.
"""

from __future__ import annotations

import argparse
import asyncio

from ._common import CliError

__all__ = ["migrate", "run_db"]


async def migrate(action: str, url: str, revision: str | None = None) -> tuple[str | None, str]:
    """Run ``action`` on ``url``; returns ``(current revision, head revision)``."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from jaxmm.store._migrate import current_revision, downgrade, head_revision, upgrade

    if action not in ("upgrade", "downgrade", "current"):
        raise CliError(f"action: must be upgrade, downgrade or current, got {action!r}")
    try:
        engine = create_async_engine(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends: a bad URL
        raise CliError(f"db: cannot use database URL {url!r} ({exc})") from None
    try:
        if action == "upgrade":
            await upgrade(engine, revision or "head")
        elif action == "downgrade":
            await downgrade(engine, revision or "base")
        return await current_revision(engine), head_revision()
    finally:
        await engine.dispose()


def run_db(args: argparse.Namespace) -> int:
    """``jaxmm db``: see the module docstring."""
    try:
        from jaxmm.store._repo import default_url
    except ImportError as exc:
        raise CliError(f"db needs the store extra (pip install 'jaxmm[store]'): {exc}") from None
    url = args.db or default_url()
    current, head = asyncio.run(migrate(args.action, url, args.revision))
    print(f"database revision: {current or 'none (empty schema)'} (head {head})")
    return 0
