"""`farmctl --help` stays fast: the CLI module graph never imports the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

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
