"""What several command modules share: loading the config or exiting with its problems."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from controller.config import FarmConfig

EXIT_BAD_CONFIG = 2


def load_config_or_exit(path: Path) -> FarmConfig:
    """The validated config, or each problem on stderr and exit code 2."""
    from controller.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
