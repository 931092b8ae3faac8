"""farmctl treasury sell|ledger|... and farmctl report: venues, orders, ledger and sale reports."""

from __future__ import annotations

import typer

from controller.cli.treasury_cmd import treasury_app  # noqa: F401  (commands are added to this group)


def register(app: typer.Typer) -> None:
    """Attach the sales commands (in the shared `treasury` group) and `report` to the root app."""
