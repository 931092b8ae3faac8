"""Per-family reply parsers behind one declarative table: family -> commands -> parser.

A driver fetches `FAMILIES[family].commands` (one reply dict per command, or the exception it
got) and calls `parse_status(family, replies)`. Each command parser is a pure function
`(reply, StatusBuilder) -> None` that fills the fields its reply carries; one unreadable field
becomes None plus an entry in `errors`, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from miners.parsers import antminer, avalon, bitaxe, braiins, cgminer, luxos, whatsminer
from miners.parsers.base import CommandParser, StatusBuilder
from miners.status import RigStatus

__all__ = [
    "FAMILIES",
    "FamilySpec",
    "StatusBuilder",
    "build_status",
    "parse_reply_fields",
    "parse_status",
    "parser_for",
]


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """What one firmware family needs: the commands to poll and the parser of each reply.

    `commands` is what a status poll requests, in priority order (an earlier reply wins a field
    two replies both carry); `parsers` also covers optional commands and action replies.
    """

    family: str
    make: str | None
    commands: tuple[str, ...]
    parsers: Mapping[str, CommandParser]
    transport: Literal["rpc", "http"] = "rpc"
    http_paths: Mapping[str, str] = field(default_factory=dict)


_CGMINER: dict[str, CommandParser] = {
    "summary": cgminer.parse_summary,
    "devs": cgminer.parse_devs,
    "edevs": cgminer.parse_devs,
    "pools": cgminer.parse_pools,
    "version": cgminer.parse_version,
    "stats": cgminer.parse_stats,
    "estats": cgminer.parse_stats,
    "devdetails": cgminer.parse_devdetails,
}

FAMILIES: dict[str, FamilySpec] = {
    "cgminer": FamilySpec(
        "cgminer", None, ("summary", "devs", "pools", "version", "stats"), _CGMINER
    ),
    "antminer": FamilySpec(
        "antminer",
        "Bitmain",
        ("summary", "stats", "pools", "version"),
        {**_CGMINER, "stats": antminer.parse_stats, "devs": antminer.parse_devs},
    ),
    "braiins": FamilySpec(
        "braiins",
        None,
        ("summary", "devs", "pools", "version", "fans", "temps", "tunerstatus"),
        {
            **_CGMINER,
            "fans": braiins.parse_fans,
            "temps": braiins.parse_temps,
            "tempctrl": braiins.parse_tempctrl,
            "tunerstatus": braiins.parse_tunerstatus,
        },
    ),
    "whatsminer": FamilySpec(
        "whatsminer",
        "MicroBT",
        ("summary", "edevs", "pools", "get_version", "get_miner_info"),
        {
            **_CGMINER,
            "summary": whatsminer.parse_summary,
            "get_version": whatsminer.parse_get_version,
            "get_miner_info": whatsminer.parse_get_miner_info,
            "get_error_code": whatsminer.parse_get_error_code,
        },
    ),
    "avalon": FamilySpec(
        "avalon",
        "Canaan",
        ("summary", "stats", "pools", "version"),
        {**_CGMINER, "stats": avalon.parse_stats, "estats": avalon.parse_stats},
    ),
    "luxos": FamilySpec(
        "luxos",
        None,
        ("summary", "devs", "pools", "version", "fans", "temps", "power"),
        {
            **_CGMINER,
            "fans": braiins.parse_fans,
            "temps": braiins.parse_temps,
            "power": luxos.parse_power,
        },
    ),
    "bitaxe": FamilySpec(
        "bitaxe",
        "Bitaxe",
        ("system_info",),
        {"system_info": bitaxe.parse_system_info},
        transport="http",
        http_paths={"system_info": "/api/system/info"},
    ),
    "innosilicon": FamilySpec(
        "innosilicon", "Innosilicon", ("summary", "devs", "pools", "version"), _CGMINER
    ),
    "auradine": FamilySpec(
        "auradine", "Auradine", ("summary", "devs", "pools", "version"), _CGMINER
    ),
}


def _spec(family: str) -> FamilySpec:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown rig family {family!r}; known: {', '.join(FAMILIES)}") from None


def parser_for(family: str, command: str) -> CommandParser:
    """The parser of `command`'s reply for `family`; action replies fall back to the ack parser."""
    parsers = _spec(family).parsers
    base = command.split("|", 1)[0].strip()
    return parsers.get(base, cgminer.parse_ack)


def parse_reply_fields(family: str, command: str, reply: Any, b: StatusBuilder) -> None:
    """Feed one command's reply into a builder (a failed request is recorded as an error)."""
    if isinstance(reply, BaseException):
        b.error(f"{command}: no reply ({reply})")
        return
    parser = parser_for(family, command)
    try:
        parser(reply, b, command)
    except Exception as exc:
        b.error(f"{command}: reply could not be parsed ({type(exc).__name__}: {exc})")


def build_status(family: str, replies: Mapping[str, Any]) -> StatusBuilder:
    """Run every reply through its parser in the family's priority order; returns the builder."""
    spec = _spec(family)
    b = StatusBuilder()
    b.status.family = family
    ordered = [c for c in spec.commands if c in replies]
    ordered += [c for c in replies if c not in spec.commands]
    for command in ordered:
        parse_reply_fields(family, command, replies[command], b)
    if b.status.make is None:
        model = b.status.model or ""
        b.status.make = "Bitmain" if model.startswith("Antminer") else spec.make
    b.finish()
    return b


def parse_status(family: str, replies: Mapping[str, Any]) -> RigStatus:
    """One RigStatus from a family's replies ({command: reply dict or the exception raised}).

    Never raises for bad replies (unknown family is a ValueError): unreadable fields are None
    and listed in `errors`. ip, port and last_seen are left for the driver to fill.
    """
    return build_status(family, replies).status
