"""Where farmctl finds the shared real data (read in place, never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

_SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def _setting_dir(env_var: str, default: Path) -> Path | None:
    raw = os.environ.get(env_var)
    path = Path(raw).expanduser() if raw else default
    return path if path.is_dir() else None


def shared_data_dir() -> Path | None:
    """Real data: `FARMCTL_DATA_DIR`, else `../shared/data` beside the checkout when it exists."""
    return _setting_dir("FARMCTL_DATA_DIR", _SHARED / "data")


def miner_responses_dir() -> Path | None:
    """Recorded miner replies: `FARMCTL_MINER_RESPONSES_DIR`, else `../shared/miner-responses`."""
    return _setting_dir("FARMCTL_MINER_RESPONSES_DIR", _SHARED / "miner-responses")


def exchange_responses_dir() -> Path | None:
    """Recorded exchange replies: `FARMCTL_EXCHANGE_RESPONSES_DIR`, else `../shared/exchange-responses`."""
    return _setting_dir("FARMCTL_EXCHANGE_RESPONSES_DIR", _SHARED / "exchange-responses")
