"""Programmatic Alembic migrations for SQLite and PostgreSQL (async engines)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "SchemaMismatch",
    "upgrade",
    "downgrade",
    "current_revision",
    "head_revision",
    "check_schema",
]

SCRIPT_LOCATION = str(Path(__file__).with_name("migrations"))


class SchemaMismatch(RuntimeError):
    """The database's schema revision is not the one this jaxmm expects."""


def _config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this jaxmm."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (an empty database starts from nothing)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(_config(c), revision))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    """Migrate the database down to ``revision`` (``base`` drops every jaxmm table)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(_config(c), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision, or None for a database jaxmm never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def check_schema(engine: AsyncEngine, url_for_message: str) -> None:
    """Raise :class:`SchemaMismatch`, with the command to run, unless the schema is at head."""
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        what = "has no jaxmm schema"
    else:
        known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
        what = (
            f"is at revision {current}"
            if current in known
            else f"is at revision {current}, which this jaxmm does not know (newer jaxmm?)"
        )
    raise SchemaMismatch(
        f"database {what}; jaxmm expects {head}. "
        f"Migrate it with: python -m jaxmm.store upgrade --url '{url_for_message}'"
    )
