"""`farmctl --help` stays fast: the CLI module graph never imports the heavy libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("pandas", "sklearn", "ccxt", "numba", "matplotlib", "scipy", "paho", "apscheduler")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys, controller.cli.main as m\n"
        "try:\n    m.app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(n for n in {HEAVY!r} if n in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "farmctl" in out.stdout or "Usage" in out.stdout


def test_paper_venues_do_not_load_ccxt(tmp_path: Path) -> None:
    # ccxt is ~65 MB of RSS: a daemon selling on paper venues only must not carry it.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from controller.config import load_config\n"
        "from controller.cli.sales_cmd import venues_from_config\n"
        "farm = load_config(Path('config/farm.example.toml'))\n"
        f"venues = venues_from_config(farm, Path({str(tmp_path)!r}), live=False)\n"
        "print(len(venues), type(venues[0]).__name__, 'ccxt' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, kind, loaded = out.stdout.strip().splitlines()[-1].split()
    assert int(count) >= 1
    assert kind == "PaperVenue"
    assert loaded == "False"
