"""farmctl treasury ...: strategy backtests and selling. Heavy imports stay inside commands."""

from __future__ import annotations

import typer

# Shared group: controller.cli.sales_cmd adds live/paper selling commands to the same group.
treasury_app = typer.Typer(help="Sell mined coins: backtest, sell, ledger.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the `treasury` group to the root app."""
    app.add_typer(treasury_app, name="treasury")
