"""Entry point of the `farmctl` command: builds the Typer app from the command modules."""

from __future__ import annotations

import typer

from controller.cli import (
    config_cmd,
    daemon_cmd,
    db_cmd,
    fleet_cmd,
    forecast_cmd,
    hardware_cmd,
    miners_cmd,
    override_cmd,
    plan_cmd,
    sales_cmd,
    site_cmd,
    treasury_cmd,
)

app = typer.Typer(
    name="farmctl",
    help="Operations controller for Bitcoin mining farms: rigs, power prices and plans, treasury.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (
    config_cmd,
    db_cmd,
    hardware_cmd,
    miners_cmd,
    fleet_cmd,
    forecast_cmd,
    plan_cmd,
    treasury_cmd,
    sales_cmd,
    override_cmd,
    site_cmd,
    daemon_cmd,
):
    module.register(app)


def main() -> None:
    """Run the CLI (console script `farmctl`)."""
    app()
