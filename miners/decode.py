"""Decode one saved raw rig reply: detect its command and family, return the fields it carries.

Operators paste a rig's reply into a file when reporting a problem; `farmctl miners decode`
runs it through the same repair and parsers the poller uses, so what it prints is what the
fleet sees. Detection order: explicit `--command`/`--family`, then the reply's content
(section keys, STATUS Msg, daemon Description), then hints in the file path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miners.jsonrepair import JsonRepairError, loads_lenient
from miners.parsers import FAMILIES, StatusBuilder, parse_reply_fields
from miners.parsers.base import reply_status
from miners.rpc import parse_text_reply
from miners.status import RigStatus

__all__ = ["DecodeError", "DecodedReply", "decode_file", "decode_reply", "detect_command"]

# Section key -> command, for cgminer-style replies.
_SECTIONS: dict[str, str] = {
    "SUMMARY": "summary",
    "DEVS": "devs",
    "POOLS": "pools",
    "STATS": "stats",
    "VERSION": "version",
    "DEVDETAILS": "devdetails",
    "FANS": "fans",
    "TEMPS": "temps",
    "TEMPCTRL": "tempctrl",
    "TUNERSTATUS": "tunerstatus",
    "POWER": "power",
    "PAUSE": "pause",
    "RESUME": "resume",
    "CONFIG": "config",
    "COIN": "coin",
}
# Daemon/firmware strings in STATUS Description or VERSION -> family.
_FAMILY_MARKERS: tuple[tuple[str, str], ...] = (
    ("bosminer", "braiins"),
    ("luxminer", "luxos"),
    ("btminer", "whatsminer"),
    ("whatsminer", "whatsminer"),
    ("gcminer", "auradine"),
    ("innominer", "innosilicon"),
    ("avalon", "avalon"),
    ("antminer", "antminer"),
    ("bmminer", "antminer"),
    ("cgminer 1.0.0", "antminer"),  # stock bmminer calls itself "cgminer 1.0.0"
)
_BITAXE_KEYS = frozenset({"ASICModel", "hashRate", "stratumURL"})
# Non-status fields a decode shows when the reply carried them, in RigStatus order.
_FIELD_ORDER = [
    "mac",
    "serial",
    "hostname",
    "family",
    "make",
    "model",
    "firmware",
    "state",
    "state_reason",
    "hashrate_ths",
    "hashrate_avg_ths",
    "expected_hashrate_ths",
    "boards",
    "fans_rpm",
    "power_w",
    "power_source",
    "efficiency_jth",
    "pools",
    "uptime_s",
    "errors",
]


class DecodeError(ValueError):
    """The saved reply cannot be read at all; names the file and the fault."""


@dataclass
class DecodedReply:
    """What one saved reply says: command, family, how it was read, and its fields."""

    source: str
    command: str
    family: str
    format: str  # "json", "json (repaired: rule, ...)", "text"
    repairs: list[str]
    fields: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    status: RigStatus | None = None  # the whole RigStatus built from this one reply

    def full_dict(self) -> dict[str, Any]:
        """Metadata plus every RigStatus key (null where this reply does not carry it)."""
        out = {k: v for k, v in self.to_dict().items() if k not in self.fields}
        if self.status is not None:
            out.update(self.status.to_dict())
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: metadata plus the normalized fields (documented RigStatus keys)."""
        out: dict[str, Any] = {
            "source": self.source,
            "command": self.command,
            "family": self.family,
            "format": self.format,
            "repairs": self.repairs,
        }
        out.update(self.fields)
        if self.extras:
            out["extras"] = self.extras
        if self.note:
            out["note"] = self.note
        return out


def _joined_parts(reply: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """A '+' multi-command reply ({"summary": [{...}], "pools": [{...}], "id": 1}) split up."""
    parts: dict[str, dict[str, Any]] = {}
    for key, value in reply.items():
        if key == "id":
            continue
        if (
            isinstance(value, list)
            and value
            and isinstance(value[0], dict)
            and "STATUS" in value[0]
            and key == key.lower()
        ):
            parts[key] = value[0]
        else:
            return None
    return parts or None


def detect_command(reply: Any, hint: str = "") -> str:
    """The command that produced `reply`, from its content, else from a file-name hint."""
    if isinstance(reply, dict):
        if set(reply) == {"enc"}:
            return "encrypted"
        parts = _joined_parts(reply)
        if parts:
            return "+".join(parts)
        for key, command in _SECTIONS.items():
            if key in reply:
                return command
        if _BITAXE_KEYS & set(reply):
            return "system_info"
        status = reply_status(reply)
        msg = status.get("Msg") if status else None
        if isinstance(msg, dict):
            if "fw_ver" in msg or "api_ver" in msg:
                return "get_version"
            if "salt" in msg:
                return "get_token"
            if "error_code" in msg:
                return "get_error_code"
            if "hostname" in msg or "mac" in msg:
                return "get_miner_info"
        if isinstance(msg, str) and re.match(r"ASC \d+ set", msg):
            return "ascset"
        if status and str(status.get("STATUS", "")).upper() in ("E", "F") and len(reply) <= 2:
            return "error"
    stem = Path(hint).stem.lower()
    for command in (*_SECTIONS.values(), "edevs", "ascset", "get_token", "system_info"):
        if re.search(rf"(^|[_\-.]){re.escape(command)}($|[_\-.])", stem):
            return command
    return "unknown"


def _descriptions(reply: Any) -> list[str]:
    """Every daemon/firmware string in a reply (STATUS Description, VERSION/STATS keys)."""
    found: list[str] = []
    if not isinstance(reply, dict):
        return found
    status = reply_status(reply)
    if status and status.get("Description"):
        found.append(str(status["Description"]))
    for key in ("VERSION", "STATS"):
        rows = reply.get(key)
        if isinstance(rows, list):
            for row in rows:
                if isinstance(row, dict):
                    found.extend(f"{k} {v}" for k, v in row.items() if k != "MM ID0")
                    if any(str(k).startswith("MM ID") for k in row):
                        found.append("avalon")
    devs = reply.get("DEVS")
    if isinstance(devs, list) and any(
        isinstance(d, dict) and str(d.get("Name", "")).startswith("BTM_SOC") for d in devs
    ):
        found.append("antminer")
    return found


def detect_family(reply: Any, command: str, hint: str = "") -> str:
    """The firmware family from the reply's content, else a family name in the path, else cgminer."""
    if command == "system_info":
        return "bitaxe"
    if command in ("get_version", "get_miner_info", "get_token", "get_error_code", "encrypted"):
        return "whatsminer"
    parts = _joined_parts(reply) if isinstance(reply, dict) else None
    for part in parts.values() if parts else [reply]:
        for text in _descriptions(part):
            lowered = text.lower()
            for marker, family in _FAMILY_MARKERS:
                if marker in lowered:
                    return family
    for part in reversed(Path(hint).parts):
        for family in FAMILIES:
            if family in part.lower():
                return family
    return "cgminer"


def _read(raw: bytes) -> tuple[Any, str, list[str]]:
    stripped = raw.strip().strip(b"\x00").strip()
    if stripped.startswith(b"STATUS="):
        try:
            return parse_text_reply(stripped.decode("utf-8", "replace")), "text", []
        except ValueError as exc:
            raise DecodeError(f"unreadable plain-text reply: {exc}") from exc
    try:
        value, rules = loads_lenient(raw)
    except JsonRepairError as exc:
        raise DecodeError(str(exc)) from exc
    return value, (f"json (repaired: {', '.join(rules)})" if rules else "json"), rules


def _fields(b: StatusBuilder) -> dict[str, Any]:
    full = b.status.to_dict()
    carried = set(b.touched)
    if "hashrate_ths" in carried or "state" in carried:
        carried |= {"state", "state_reason"}
    if b.status.errors:
        carried.add("errors")
    return {name: full[name] for name in _FIELD_ORDER if name in carried}


def decode_reply(
    raw: bytes | str,
    *,
    family: str | None = None,
    command: str | None = None,
    source: str = "<reply>",
) -> DecodedReply:
    """Decode one raw reply (JSON, malformed JSON or plain text); DecodeError if unreadable."""
    data = raw.encode() if isinstance(raw, str) else raw
    if not data.strip(b" \t\r\n\x00"):
        raise DecodeError(f"{source}: empty reply")
    try:
        value, fmt, rules = _read(data)
    except DecodeError as exc:
        raise DecodeError(f"{source}: {exc}") from exc
    if family is not None and family not in FAMILIES:
        raise DecodeError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    cmd = command or detect_command(value, source)
    fam = family or detect_family(value, cmd, source)
    b = StatusBuilder()
    b.status.family = fam
    note: str | None = None
    if cmd == "encrypted":
        note = "AES-encrypted privileged reply: readable only with the rig's admin password"
    elif cmd == "get_token":
        note = "btminer API v2 token reply (time/salt for privileged commands); no status fields"
    else:
        parts = _joined_parts(value) if "+" in cmd and isinstance(value, dict) else None
        for part_cmd, part in (parts or {cmd: value}).items():
            parse_reply_fields(fam, part_cmd, part, b)
    if b.status.make is None and b.status.model:
        model = b.status.model
        b.set("make", "Bitmain" if model.startswith("Antminer") else FAMILIES[fam].make)
    b.finish()
    b.touched.add("family")
    return DecodedReply(
        source=source,
        command=cmd,
        family=fam,
        format=fmt,
        repairs=rules,
        fields=_fields(b),
        extras=dict(b.extras),
        note=note,
        status=b.status,
    )


def decode_file(
    path: str | Path, *, family: str | None = None, command: str | None = None
) -> DecodedReply:
    """Decode the reply saved in `path` (see `decode_reply`)."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise DecodeError(f"{file}: cannot read file: {exc.strerror or exc}") from exc
    return decode_reply(raw, family=family, command=command, source=str(file))
