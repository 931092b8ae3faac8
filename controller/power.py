"""Which power figure a rig gets: its meter's, else its own report, else its nameplate."""

from __future__ import annotations

import hardware
from controller.config import FarmConfig, RigConfig
from miners.meters import MeterBook, MeterConfig, RigPlacement, apply_power, resolve_power
from miners.status import RigStatus


def meter_book(config: FarmConfig) -> MeterBook:
    """The configured meters, ready to be fed by MQTT messages."""
    return MeterBook(MeterConfig(m.id, m.kind, m.scope, m.target) for m in config.meters)


def placements(rigs: list[RigConfig]) -> dict[str, RigPlacement]:
    """Rack and nameplate power of every rig (for meter sharing and the nameplate fallback)."""
    out = {}
    for rig in rigs:
        model = hardware.lookup(rig.model)
        out[rig.name] = RigPlacement(rack=rig.rack, nameplate_w=model.power_w if model else None)
    return out


def resolve_fleet_power_placed(
    statuses: dict[str, RigStatus],
    placed: dict[str, RigPlacement],
    book: MeterBook,
    silence_s: float,
) -> dict[str, RigStatus]:
    """Each rig's status with `power_w`/`power_source` set: meter > reported > nameplate.

    A silent meter is skipped and flagged in the rig's errors, never trusted stale.
    `placed` is `placements(rigs)`, computed once per fleet.
    """
    resolved = resolve_power(statuses, placed, book, silence_s=silence_s)
    out = {}
    for name, status in statuses.items():
        # Fill the poll's own status object rather than keep a second copy of every rig's
        # status (thousands of rigs): the poller's last good reading gains the power it lacked.
        with_power = apply_power(status, resolved[name])
        status.power_w, status.power_source = with_power.power_w, with_power.power_source
        status.efficiency_jth, status.errors = with_power.efficiency_jth, with_power.errors
        out[name] = status
    return out
