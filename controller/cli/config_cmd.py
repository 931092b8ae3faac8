"""farmctl config check: validate a config file, one precise line per wrong field."""

from __future__ import annotations

from pathlib import Path

import typer

config_app = typer.Typer(help="Check the farm configuration file.", no_args_is_help=True)

EXIT_BAD_CONFIG = 2


@config_app.command("check")
def check(
    file: Path = typer.Argument(..., help="The TOML config file to validate."),
    secrets: bool = typer.Option(
        False, "--secrets", help="Also fail when a referenced secret (env var or file) is absent."
    ),
) -> None:
    """Print OK, or each wrong field as `path: value: reason`, and exit 2."""
    from controller.config import ConfigError, load_config, unresolved_secrets

    try:
        config = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=False)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    missing = unresolved_secrets(config)
    if missing and secrets:
        for item in missing:
            typer.echo(f"{item}: secret source absent")
        raise typer.Exit(EXIT_BAD_CONFIG)
    typer.echo("OK")
    for item in missing:
        typer.echo(f"note: {item} is not available here (needed at run time)", err=True)


def register(app: typer.Typer) -> None:
    """Attach the `config` group to the root app."""
    app.add_typer(config_app, name="config")
