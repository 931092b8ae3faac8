"""Developer helper: autogenerate a migration from the models (`python -m controller.make_migration MSG`)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from controller.migrate import alembic_config


def main(message: str) -> None:
    """Upgrade a scratch SQLite database to head, then autogenerate the difference to the models."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "schema change")
