"""Alembic environment for jaxmm's store.

jaxmm runs migrations programmatically (``jaxmm.store.migrate``) and hands this script an open
synchronous connection in ``config.attributes["connection"]`` (an async engine's connection via
``run_sync``), so the same code migrates SQLite and PostgreSQL.
"""

from alembic import context

from jaxmm.store._schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("jaxmm migrations run through `python -m jaxmm.store upgrade --url URL`")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table_schema=config.attributes.get("schema"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
