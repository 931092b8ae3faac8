"""One Alembic history over every package's tables: upgrade, current revision, drift check."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from controller.partitions import is_partition_name
from controller.storage import all_metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config built in code (no alembic.ini to find), pointed at `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat '%' in URLs (e.g. PostgreSQL options).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent: an up-to-date database is left alone)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to `revision` (for rolling back a release)."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest revision in the history."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def include_name(name: str | None, type_: str, _parent: Mapping[Any, str | None]) -> bool:
    """Leave out tables Alembic does not own: each gateway's APScheduler job store, and the
    time partitions of a partitioned table (made by housekeeping, not declared as models)."""
    if type_ != "table" or name is None:
        return True
    return not (name.startswith("apscheduler_jobs") or is_partition_name(name))


def schema_drift(engine: Engine) -> list[object]:
    """Differences between the migrated database and the models (empty when they agree)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": include_name}
        )
        # Alembic accepts a sequence of MetaData here (as for target_metadata); its stub says one.
        return list(compare_metadata(ctx, all_metadata()))  # type: ignore[arg-type]
