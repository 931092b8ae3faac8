"""farmctl miners poll|scan|status and farmctl sim: the fleet side of the `miners` group."""

from __future__ import annotations

import typer

from controller.cli.miners_cmd import miners_app  # noqa: F401  (commands are added to this group)


def register(app: typer.Typer) -> None:
    """Attach the fleet commands (they live in the shared `miners` group) and `sim` to the root app."""
