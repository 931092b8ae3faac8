"""What simulated cgminer-style daemons share: STATUS blocks, wire encoding, dispatch, caching."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from miners.sim.rig import Fault, SimRig

Reply = dict[str, Any]
Command = Callable[[SimRig, str | None, float], Reply]

NUL = b"\x00"


def status_block(when: float, code: int, msg: str, desc: str, kind: str = "S") -> list[Reply]:
    """The `STATUS` list every cgminer reply starts with."""
    return [{"STATUS": kind, "When": int(when), "Code": code, "Msg": msg, "Description": desc}]


def to_text(reply: Reply) -> bytes:
    """cgminer's text (non-JSON) reply: `STATUS=S,When=..,Code=..|SECTION,key=value,...|`."""
    parts: list[str] = []
    for st in reply.get("STATUS", []):
        parts.append(",".join(f"{k}={v}" for k, v in st.items()))
    for key, val in reply.items():
        if key in ("STATUS", "id") or not isinstance(val, list):
            continue
        for item in val:
            if isinstance(item, dict):
                parts.append(key + "," + ",".join(f"{k}={v}" for k, v in item.items()))
    return ("|".join(parts) + "|").encode()


def corrupt_json(body: bytes) -> bytes:
    """Drop one comma the way real firmwares do (`}{` between array items, or after `]`)."""
    for good, bad in ((b"},{", b"}{"), (b"}, {", b"}{"), (b'],"', b']"'), (b'], "', b'] "')):
        if good in body:
            return body.replace(good, bad, 1)
    return body.replace(b",", b"", 1)


class RpcFamily:
    """A cgminer-style JSON/text RPC daemon on TCP 4028. Subclasses fill `reads` and `controls`."""

    family = "cgminer"
    multi_command = True  # stock Antminer S19 bmminer refuses `a+b`
    spaced_json = False  # bmminer on the S19 writes Python-style `", "` separators

    def __init__(self) -> None:
        self.reads: dict[str, Command] = {}
        self.controls: dict[str, Command] = {}

    def description(self, rig: SimRig) -> str:
        """The `Description` every STATUS block carries."""
        return "cgminer 4.11.1"

    def encode(self, reply: Reply) -> bytes:
        """JSON bytes in this daemon's own spacing."""
        if self.spaced_json:
            return json.dumps(reply).encode()
        return json.dumps(reply, separators=(",", ":")).encode()

    def error(self, rig: SimRig, now: float, code: int, msg: str) -> Reply:
        """A STATUS E reply."""
        return {"STATUS": status_block(now, code, msg, self.description(rig), "E"), "id": 1}

    def reply(self, rig: SimRig, command: str, param: str | None, now: float) -> Reply:
        """The reply object for one command (no caching, no framing)."""
        fn = self.reads.get(command) or self.controls.get(command)
        if fn is None:
            return self.error(rig, now, 14, "Invalid command")
        return fn(rig, param, now)

    def handle(self, rig: SimRig, req: Reply, now: float) -> bytes:
        """Wire bytes (NUL-terminated) answering one parsed request."""
        text = bool(req.get("_text"))
        command = req.get("command")
        param = req.get("parameter")
        if param is not None and not isinstance(param, str):
            param = str(param)
        if not isinstance(command, str) or not command:
            return self._frame(self.error(rig, now, 23, "Missing JSON 'command'"), text, rig)
        if "+" in command:
            if not self.multi_command:
                return self._frame(self.error(rig, now, 14, "Invalid command"), text, rig)
            out: Reply = {}
            for part in command.split("+"):
                out[part] = [self.reply(rig, part, param, now)]
            out["id"] = 1
            return self._frame(out, text, rig)
        if command in self.reads and not text and not rig.ramping(now):
            key = (command, param)
            slot = int(now / rig.reply_cache_s) if rig.reply_cache_s > 0 else now
            hit = rig.cache.get(key)
            if hit is not None and hit[0] == slot:
                return hit[1]
            body = self._frame(self.reply(rig, command, param, now), text, rig)
            rig.cache[key] = (slot, body)
            return body
        return self._frame(self.reply(rig, command, param, now), text, rig)

    def _frame(self, reply: Reply, text: bool, rig: SimRig) -> bytes:
        body = to_text(reply) if text else self.encode(reply)
        if Fault.MALFORMED_JSON in rig.faults and not text:
            body = corrupt_json(body)
        return body + NUL


def mhs(ths: float) -> float:
    """TH/s as MH/s rounded like cgminer prints it."""
    return round(ths * 1_000_000.0, 2)


def ghs(ths: float) -> float:
    """TH/s as GH/s rounded like bmminer prints it."""
    return round(ths * 1000.0, 2)
