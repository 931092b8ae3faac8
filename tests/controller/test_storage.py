"""Storage: one Alembic history creates every package's tables on SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from controller import migrate
from controller.cli.main import app
from controller.storage import all_metadata, make_engine


def _model_tables() -> set[str]:
    return {name for md in all_metadata() for name in md.tables}


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'farm.db'}", busy_timeout_ms=4321)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 4321
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "sub" / "farm.db").exists()
    engine.dispose()


def _check_migrated(url: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision() is not None
        assert _model_tables() <= set(sa.inspect(engine).get_table_names())
        assert migrate.schema_drift(engine) == []
        migrate.upgrade(url)  # a second upgrade is a no-op
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_migrations_build_every_table_on_sqlite(tmp_path: Path) -> None:
    _check_migrated(f"sqlite:///{tmp_path / 'farm.db'}")


def test_migrations_build_every_table_on_postgresql(postgres_url: str) -> None:
    _check_migrated(postgres_url)


def test_each_package_owns_its_tables() -> None:
    owners = {}
    for md in all_metadata():
        for name in md.tables:
            assert name not in owners, f"table {name} declared twice"
            owners[name] = md
    assert "rig" in owners


def test_cli_db_upgrade_and_current(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    before = runner.invoke(app, ["db", "current", "--url", url])
    assert before.exit_code == 0 and "current (none)" in before.stdout
    up = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert up.exit_code == 0, up.output
    after = runner.invoke(app, ["db", "current", "--url", url])
    assert f"current {migrate.head_revision()}" in after.stdout and "up to date" in after.stdout
