"""Rig models the simulator plays: real names, manufacturers' nominal hashrate and power."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimModel:
    """One rig model as a firmware family reports it."""

    family: str
    model: str
    nominal_ths: float
    nominal_w: float
    boards: int
    chips_per_board: int
    fans: int
    firmware: str
    sleep_w: float = 15.0  # control board and PSU standby while curtailed


# Nominal figures from the manufacturers' spec sheets; firmware strings from the captured replies.
MODELS: dict[str, SimModel] = {
    "antminer": SimModel("antminer", "Antminer S19 Pro", 110.0, 3250.0, 3, 114, 4, "49.0.1.3"),
    "braiins": SimModel("braiins", "Antminer S9", 13.5, 1323.0, 3, 63, 2, "0.2.0-36c56a9363"),
    "whatsminer": SimModel("whatsminer", "M31S", 76.0, 3344.0, 3, 105, 2, "20201202.22.REL"),
    "avalon": SimModel("avalon", "Avalon 1047", 37.0, 2380.0, 2, 120, 2, "1047-20051101_85dc6f0"),
    "luxos": SimModel(
        "luxos", "Antminer S19k Pro", 120.0, 2760.0, 3, 77, 4, "2025.4.8.220305-57b389c7"
    ),
    "cgminer": SimModel("cgminer", "Antminer S9", 13.5, 1323.0, 3, 63, 2, "cgminer 4.11.1"),
    "bitaxe": SimModel("bitaxe", "Bitaxe Supra", 0.65, 15.0, 1, 1, 1, "v2.4.5", sleep_w=2.5),
}

FAMILIES: tuple[str, ...] = tuple(MODELS)
