"""farmctl economics and farmctl plan ...: mining economics and hashing plans."""

from __future__ import annotations

import typer

plan_app = typer.Typer(help="Hashing plans: which rigs hash in which hour.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the `plan` group and the `economics` command to the root app."""
    app.add_typer(plan_app, name="plan")
