"""farmctl db upgrade|current: run and inspect the one migration history over every package."""

from __future__ import annotations

from pathlib import Path

import typer

db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)

ConfigOption = typer.Option(None, "--config", "-c", help="Farm config file (for its database url).")
UrlOption = typer.Option(None, "--url", help="Database URL; overrides the config.")


def resolve_database_url(config: Path | None, url: str | None) -> str:
    """The URL to use: --url, else the config's database (default SQLite under its data_dir)."""
    if url:
        return url
    if config is None:
        raise typer.BadParameter("give --config FILE or --url URL")
    from controller.cli.common import load_config_or_exit

    farm = load_config_or_exit(config)
    return farm.database_url(base_dir=config.resolve().parent)


@db_app.command("upgrade")
def upgrade(
    config: Path | None = ConfigOption,
    url: str | None = UrlOption,
    revision: str = typer.Option("head", help="Target revision."),
) -> None:
    """Apply migrations up to the newest revision (safe to run again)."""
    from controller import migrate

    target = resolve_database_url(config, url)
    migrate.upgrade(target, revision)
    from controller.storage import make_engine

    engine = make_engine(target)
    typer.echo(f"database at {migrate.current_revision(engine)} (head {migrate.head_revision()})")
    engine.dispose()


@db_app.command("current")
def current(config: Path | None = ConfigOption, url: str | None = UrlOption) -> None:
    """Print the database's revision and whether it is up to date."""
    from controller import migrate
    from controller.storage import make_engine

    engine = make_engine(resolve_database_url(config, url))
    now, head = migrate.current_revision(engine), migrate.head_revision()
    engine.dispose()
    state = "up to date" if now == head else "needs `farmctl db upgrade`"
    typer.echo(f"current {now or '(none)'} head {head}: {state}")


def register(app: typer.Typer) -> None:
    """Attach the `db` group to the root app."""
    app.add_typer(db_app, name="db")
