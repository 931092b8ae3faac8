"""Per-family reply builders of the simulator, keyed by family name."""

from __future__ import annotations

from typing import Any

from miners.sim.families.antminer import AntminerFamily
from miners.sim.families.avalon import AvalonFamily
from miners.sim.families.bitaxe import BitaxeFamily
from miners.sim.families.braiins import BraiinsFamily
from miners.sim.families.cgminer import CgminerFamily
from miners.sim.families.luxos import LuxosFamily
from miners.sim.families.whatsminer import WhatsminerFamily

HANDLERS: dict[str, Any] = {
    "antminer": AntminerFamily(),
    "avalon": AvalonFamily(),
    "bitaxe": BitaxeFamily(),
    "braiins": BraiinsFamily(),
    "cgminer": CgminerFamily(),
    "luxos": LuxosFamily(),
    "whatsminer": WhatsminerFamily(),
}
