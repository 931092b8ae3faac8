"""farmctl miners ...: the `miners` command group (probe, decode, control). Heavy imports stay inside commands."""

from __future__ import annotations

import typer

# Shared group: controller.cli.fleet_cmd adds poll/scan/status to the same group.
miners_app = typer.Typer(help="Talk to rigs: probe, decode replies, poll, scan, control.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the `miners` group to the root app."""
    app.add_typer(miners_app, name="miners")
