"""farmctl forecast ...: price data and day-ahead forecasts. Heavy imports stay inside commands."""

from __future__ import annotations

import typer

forecast_app = typer.Typer(help="Electricity price data and day-ahead forecasts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the `forecast` group to the root app."""
    app.add_typer(forecast_app, name="forecast")
