"""The last fleet poll as a JSON file: written by `farmctl miners poll`, read by `miners status`.

Written atomically (temp file + rename) so a reader never sees half a poll.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from miners.status import RIG_STATES, BoardStatus, PoolStatus, RigStatus

FORMAT_VERSION = 1


class PollFileError(ValueError):
    """The poll file is missing, unreadable or not in the expected format."""


@dataclass(slots=True)
class PollSnapshot:
    """One fleet poll: when it ran, how long it took, every rig's status."""

    polled_at: datetime
    elapsed_s: float
    rigs: list[RigStatus]


def status_from_dict(data: dict[str, Any]) -> RigStatus:
    """Inverse of `RigStatus.to_dict` (raises PollFileError naming the bad field)."""
    try:
        state = data.get("state", "offline")
        if state not in RIG_STATES:
            raise PollFileError(f"rig state {state!r} is not one of {RIG_STATES}")
        fields = dict(data)
        fields["boards"] = [BoardStatus(**b) for b in data.get("boards") or []]
        fields["pools"] = [PoolStatus(**p) for p in data.get("pools") or []]
        seen = data.get("last_seen")
        fields["last_seen"] = datetime.fromisoformat(seen) if seen else None
        return RigStatus(**fields)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PollFileError):
            raise
        raise PollFileError(f"bad rig record {data.get('ip')}:{data.get('port')}: {exc}") from exc


def write_poll(path: Path, snapshot: PollSnapshot) -> None:
    """Write the snapshot to `path` atomically (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "format": FORMAT_VERSION,
        "polled_at": snapshot.polled_at.isoformat(),
        "elapsed_s": round(snapshot.elapsed_s, 4),
        "rigs": [s.to_dict() for s in snapshot.rigs],
    }
    fd, tmp = tempfile.mkstemp(prefix=".poll-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_poll(path: Path) -> PollSnapshot:
    """Read a snapshot written by `write_poll`."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PollFileError(f"no poll recorded yet at {path} (run `farmctl miners poll`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise PollFileError(f"cannot read poll file {path}: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT_VERSION:
        raise PollFileError(f"{path}: not a farmctl poll file (format {FORMAT_VERSION})")
    try:
        polled_at = datetime.fromisoformat(body["polled_at"])
        elapsed = float(body["elapsed_s"])
        rigs = [status_from_dict(r) for r in body["rigs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise PollFileError(f"{path}: {exc}") from exc
    return PollSnapshot(polled_at, elapsed, rigs)
