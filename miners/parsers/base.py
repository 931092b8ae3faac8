"""Shared pieces of the reply parsers: number coercion, hashrate units, and the status builder.

Units rule: a hashrate key names its unit (`THS 5s`, `GHS av`, `MHS 1m`, `KHS`, `HS`); the value is
scaled to TH/s by that prefix. Values that are strings ("54997.01"), empty strings, `nan`/`inf`
(quoted or not) are handled here: empty and non-finite read as None, not as an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from miners.status import BoardStatus, PoolStatus, RigState, RigStatus

UNIT_TO_THS: dict[str, float] = {"THS": 1.0, "GHS": 1e-3, "MHS": 1e-6, "KHS": 1e-9, "HS": 1e-12}
# Windows tried for "current" and "average" hashrate, most preferred first.
CURRENT_WINDOWS: tuple[str, ...] = ("5s", "RT", "30s", "1m", "5m")
AVERAGE_WINDOWS: tuple[str, ...] = ("av", "avg", "30m", "15m")

_NONFINITE_TEXT = frozenset({"nan", "-nan", "inf", "-inf", "+inf", "infinity", "-infinity"})


def num(value: Any) -> float | None:
    """A finite float from a reply value; None for missing/empty/nan/inf; ValueError for junk."""
    kind = type(value)
    if kind is float:  # the common case first: this runs ~50 times per rig
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if value is None:
        return None
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        text = value.strip().strip("'\"").rstrip("%").strip()
        if not text or text.lower() in _NONFINITE_TEXT:
            return None
        out = float(text)
    else:
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return out if math.isfinite(out) else None


def integer(value: Any) -> int | None:
    """An int from a reply value (accepts "12", 12.0); None when missing or non-finite."""
    out = num(value)
    return None if out is None else round(out)


def text(value: Any) -> str | None:
    """A stripped non-empty string, or None."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


def positive(value: float | None) -> float | None:
    """The value when > 0, else None (firmwares write 0 for an absent sensor)."""
    return value if value is not None and value > 0 else None


def hashrate_ths(row: dict[str, Any], windows: Sequence[str]) -> float | None:
    """TH/s from the first `<UNIT> <window>` key present in `row` (see UNIT_TO_THS)."""
    for window in windows:
        for unit, scale in UNIT_TO_THS.items():
            key = f"{unit} {window}"
            if key in row:
                value = num(row[key])
                if value is not None:
                    return scaled(value, scale)
    return None


def scaled(value: float, scale: float) -> float:
    """value x scale rounded to 9 decimals (drops float noise, keeps MH/s-level precision)."""
    return round(value * scale, 9)


def unit_scale(unit: str | None, default: str = "GH") -> float:
    """TH/s per unit for a `rate_unit` value like "GH", "MH/s", "TH"."""
    label = (unit or default).upper().replace("/S", "").strip()
    if not label.endswith("HS"):
        label = label.rstrip("H") + "HS" if label != "H" else "HS"
    if label not in UNIT_TO_THS:
        raise ValueError(f"unknown hashrate unit {unit!r}")
    return UNIT_TO_THS[label]


def section(reply: Any, key: str) -> list[dict[str, Any]]:
    """The list under `key` (e.g. "SUMMARY"), tolerant of key case; ValueError when absent."""
    if not isinstance(reply, dict):
        raise ValueError(f"reply is a {type(reply).__name__}, not an object")
    for candidate in (key, key.lower(), key.capitalize()):
        rows = reply.get(candidate)
        if isinstance(rows, list):
            return [row for row in rows if isinstance(row, dict)]
        if isinstance(rows, dict):
            return [rows]
    raise ValueError(f"no {key} section in reply")


def reply_status(reply: Any) -> dict[str, Any] | None:
    """The STATUS entry of a reply (cgminer list form or btminer v2 top-level form)."""
    if not isinstance(reply, dict):
        return None
    status = reply.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        return status[0]
    if isinstance(status, str):
        return {
            "STATUS": status,
            "Code": reply.get("Code"),
            "Msg": reply.get("Msg"),
            "Description": reply.get("Description"),
        }
    return None


@dataclass
class StatusBuilder:
    """Collects fields from several replies into one RigStatus; first writer of a field wins.

    `touched` records every field a reply carried (for `farmctl miners decode`); errors from
    one field never stop the others (see `guard`).
    """

    status: RigStatus = field(default_factory=RigStatus)
    touched: set[str] = field(default_factory=set)
    extras: dict[str, Any] = field(default_factory=dict)
    curtailed_reasons: list[str] = field(default_factory=list)
    fault_reasons: list[str] = field(default_factory=list)
    board_keys: dict[Any, BoardStatus] = field(default_factory=dict)

    def set(self, name: str, value: Any) -> None:
        """Set a top-level RigStatus field unless None or already set by an earlier reply."""
        if value is None:
            return
        if getattr(self.status, name) is None:
            setattr(self.status, name, value)
        self.touched.add(name)

    def set_list(self, name: str, values: list[Any]) -> None:
        """Set a list field (fans_rpm, pools) when the list is still empty."""
        if not values:
            return
        if not getattr(self.status, name):
            setattr(self.status, name, values)
        self.touched.add(name)

    def board(self, key: Any) -> BoardStatus:
        """The board for a firmware chain id/slot, created in arrival order (index 0, 1, ...)."""
        if not isinstance(key, str | int | float):
            key = repr(key)  # a junk id (list, dict) must not break the board lookup
        found = self.board_keys.get(key)
        if found is None:
            found = BoardStatus(index=len(self.status.boards))
            self.status.boards.append(found)
            self.board_keys[key] = found
        self.touched.add("boards")
        return found

    @staticmethod
    def set_board(board: BoardStatus, name: str, value: Any) -> None:
        """Set a board field unless None or already set."""
        if value is not None and getattr(board, name) is None:
            setattr(board, name, value)

    def error(self, message: str) -> None:
        """Record a decoded error text once."""
        if message not in self.status.errors:
            self.status.errors.append(message)
        self.touched.add("errors")

    def extra(self, name: str, value: Any) -> None:
        """A reading outside RigStatus (power limit, temperature targets) shown by decode."""
        if value is not None:
            self.extras.setdefault(name, value)

    def curtailed(self, reason: str) -> None:
        """The reply says the rig is deliberately not hashing (sleep, pause, soft-off)."""
        self.curtailed_reasons.append(reason)
        self.touched.add("state")

    def fault(self, reason: str) -> None:
        """The reply shows a hardware fault that explains zero hashrate."""
        self.fault_reasons.append(reason)
        self.touched.add("state")

    def guard(self, command: str, what: str) -> _Guard:
        """Context for one field's extraction; any failure leaves it None and records why."""
        return _Guard(self, command, what)

    def finish(self) -> RigStatus:
        """Derive state, state_reason and efficiency from what was collected."""
        st = self.status
        state, reason = derive_state(st.hashrate_ths, self.curtailed_reasons, self.fault_reasons)
        st.state, st.state_reason = state, reason
        if st.efficiency_jth is None and st.power_w:
            basis = st.hashrate_avg_ths or st.hashrate_ths
            if basis and basis > 0:
                st.efficiency_jth = round(st.power_w / basis, 3)
                self.touched.add("efficiency_jth")
        return st


class _Guard:
    """`with b.guard(cmd, what):` - a plain class, not @contextmanager: it runs ~40x per rig."""

    __slots__ = ("builder", "command", "what")

    def __init__(self, builder: StatusBuilder, command: str, what: str) -> None:
        self.builder = builder
        self.command = command
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # no failure, or KeyboardInterrupt/CancelledError: let it through
        self.builder.error(
            f"{self.command}: could not read {self.what} ({type(exc).__name__}: {exc})"
        )
        return True


def derive_state(
    hashrate: float | None, curtailed: list[str], faults: list[str]
) -> tuple[RigState, str]:
    """State rules: curtailed hint > hashing (rate > 0) > error (fault or unreadable) > idle."""
    if curtailed:
        return "curtailed", "; ".join(curtailed)
    if hashrate is not None and hashrate > 0:
        return "hashing", f"{hashrate:.3f} TH/s"
    if faults:
        prefix = "no hashrate" if hashrate is not None else "hashrate unreadable"
        return "error", f"{prefix}: " + "; ".join(faults)
    if hashrate is None:
        return "error", "hashrate could not be read from the replies"
    return "idle", "rig reports 0 TH/s with no fault"


def pool_from_row(row: dict[str, Any]) -> PoolStatus:
    """A cgminer-style POOLS row as PoolStatus (status lower-cased as reported)."""
    status = text(row.get("Status"))
    return PoolStatus(
        url=text(row.get("URL")),
        user=text(row.get("User")),
        status=status.lower() if status else None,
        accepted=integer(row.get("Accepted")),
        rejected=integer(row.get("Rejected")),
    )


# (reply, builder, command name) -> None; the command name prefixes error texts.
CommandParser = Callable[[Any, StatusBuilder, str], None]
