"""The database: engine factory (SQLite WAL or PostgreSQL), every package's tables, migrations."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# Modules that declare tables. Each domain package owns its tables on its own MetaData;
# a table module not listed here would be invisible to Alembic.
TABLE_MODULES: tuple[str, ...] = (
    "controller.tables",
    "controller.mqtt.tables",
    "miners.tables",
    "forecasting.tables",
    "treasury.tables",
)


def all_metadata() -> list[MetaData]:
    """The MetaData of every package, in a stable order (one Alembic history covers them all).

    Importing every table module registers its tables; modules that extend a package's Base
    (e.g. controller.mqtt.tables) share that package's MetaData.
    """
    found: list[MetaData] = []
    for name in TABLE_MODULES:
        module = importlib.import_module(name)
        metadata = getattr(module, "metadata", None) or module.Base.metadata
        if all(metadata is not m for m in found):
            found.append(metadata)
    return found


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        # WAL lets readers (CLI, metrics) run while the daemon writes; busy_timeout makes a
        # second writer wait instead of failing at once with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


def make_engine(url: str, *, busy_timeout_ms: int = 5_000, echo: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and its parent folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True)
    raise ValueError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (they are handed across threads)."""
    return sessionmaker(engine, expire_on_commit=False)
