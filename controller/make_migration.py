"""Developer helper: autogenerate a migration from the models (`python -m controller.make_migration MSG`)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from controller.migrate import MIGRATIONS_DIR, alembic_config


def main(message: str) -> None:
    """Upgrade a scratch SQLite database to head, then autogenerate the difference to the models."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True)
    # Generated code follows the project's style like any other file.
    versions = str(MIGRATIONS_DIR / "versions")
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--fix", "--quiet", versions], check=False)
    subprocess.run([*ruff, "format", "--quiet", versions], check=False)


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "schema change")
