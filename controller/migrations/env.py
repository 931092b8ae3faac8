"""Alembic environment: one history over the tables of every farmctl package."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy.types import TypeDecorator

from controller.migrate import include_name
from controller.storage import all_metadata, make_engine

config = context.config
target_metadata = all_metadata()
_OUR_PACKAGES = {"controller", "miners", "forecasting", "treasury", "hardware"}


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render our own column types by module path and import that module in the revision."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        module = type(obj).__module__
        if module.split(".")[0] in _OUR_PACKAGES:
            autogen_context.imports.add(f"import {module}")
    return False


def run_migrations_offline() -> None:
    """Emit SQL without a database connection (`alembic upgrade --sql`)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_name=include_name,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection; batch mode so SQLite can alter tables."""
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_name=include_name,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
