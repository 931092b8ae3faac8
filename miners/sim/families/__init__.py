"""Per-family reply builders of the simulator, keyed by family name."""

from __future__ import annotations

from typing import Any

from miners.sim.families.antminer import AntminerFamily

HANDLERS: dict[str, Any] = {
    "antminer": AntminerFamily(),
}
