"""Where one test's database lives: a SQLite file in ``tmp_path`` or a fresh schema on the
PostgreSQL server on 127.0.0.1:5432 (database ``test``, trust auth; dropped afterwards), so
tests never leak into each other. Nothing is mocked. The ``backend`` fixture (conftest.py) is
parametrised over both.
"""

from __future__ import annotations

import os
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG_URL = os.environ.get("JAXMM_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


class Backend:
    """One test's database; ``open()`` must be awaited inside the test's event loop."""

    def __init__(self, kind: str, tmp_path, name: str = "store"):
        self.kind = kind
        if kind == "sqlite":
            self.url, self.schema = f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}", None
        else:
            self.url, self.schema = PG_URL, f"t_{uuid.uuid4().hex[:12]}"

    def engine(self):
        """A SQLAlchemy async engine on this database (and schema)."""
        if self.schema is None:
            return create_async_engine(self.url)
        return create_async_engine(
            self.url, connect_args={"server_settings": {"search_path": self.schema}}
        )

    async def open(self, migrate: bool = True):
        from jaxmm.store import Store

        return await Store.open(self.url, migrate=migrate, schema=self.schema)

    async def drop(self) -> None:
        if self.schema is not None:
            eng = create_async_engine(self.url)
            async with eng.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            await eng.dispose()
