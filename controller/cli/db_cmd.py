"""farmctl commands: db. Heavy imports stay inside the command functions so `--help` is fast."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
