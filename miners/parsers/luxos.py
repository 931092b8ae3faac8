"""LuxOS (LUXminer) replies beyond cgminer's: `power`. `fans`/`temps` share BOSminer's shape."""

from __future__ import annotations

from typing import Any

from miners.parsers.base import StatusBuilder, num, positive
from miners.parsers.cgminer import rows_or_none


def parse_power(reply: Any, b: StatusBuilder, command: str = "power") -> None:
    """POWER: the rig's own power estimate in W (`Watts`)."""
    rows = rows_or_none(reply, "POWER", command, b)
    if not rows:
        return
    with b.guard(command, "power"):
        watts = positive(num(rows[0].get("Watts")))
        if watts is not None:
            b.set("power_w", watts)
            b.set("power_source", "reported")
