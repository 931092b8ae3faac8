"""Plain cgminer 4.11.1 (an S9 on vnish): MHS keys, chains 6-8, and the `}{` missing comma in stats.

The missing comma between STATS[0] and STATS[1] is what this firmware really sends (see the
captured `stats_s9_nicehash_missing_comma.json`). Curtail is cgminer's own `ascdisable|N`.
"""

from __future__ import annotations

from typing import Any

from miners.sim.families.base import Reply, RpcFamily, mhs, status_block
from miners.sim.rig import SimRig

CHAIN_BASE = 6  # the S9 control board numbers its chains 6, 7, 8


class CgminerFamily(RpcFamily):
    """cgminer 4.11.1 with the privileged API open (api-allow W:)."""

    family = "cgminer"

    def __init__(self) -> None:
        super().__init__()
        self.reads = {
            "version": self.version,
            "summary": self.summary,
            "devs": self.devs,
            "stats": self.stats,
            "pools": self.pools,
        }
        self.controls = {
            "ascdisable": self.ascdisable,
            "ascenable": self.ascenable,
            "restart": self.restart,
        }

    def version(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return {
            "STATUS": status_block(now, 22, "CGMiner versions", self.description(rig)),
            "VERSION": [
                {
                    "CGMiner": "4.11.1",
                    "API": "3.7",
                    "Miner": "26.0.1.3",
                    "CompileTime": "Fri May  8 15:27:59 CST 2020",
                    "Type": "Antminer S9 (vnish 3.8.6)",
                }
            ],
            "id": 1,
        }

    def summary(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rate = mhs(rig.hashrate_ths(now))
        acc = rig.accepted_shares(now)
        return {
            "STATUS": status_block(now, 11, "Summary", self.description(rig)),
            "SUMMARY": [
                {
                    "Elapsed": rig.uptime_s(now),
                    "MHS av": rate,
                    "MHS 5s": rate,
                    "MHS 1m": rate,
                    "MHS 5m": rate,
                    "MHS 15m": rate,
                    "Found Blocks": 0,
                    "Getworks": acc // 2,
                    "Accepted": acc,
                    "Rejected": acc // 300,
                    "Hardware Errors": 297,
                    "Utility": 6.31,
                    "Discarded": 3437209,
                    "Stale": 0,
                    "Get Failures": 1,
                    "Local Work": 3854000,
                    "Remote Failures": 0,
                    "Network Blocks": 1169,
                    "Total MH": 2500575892.0,
                    "Work Utility": 415483.33,
                    "Difficulty Accepted": 15.84,
                    "Difficulty Rejected": 0.0,
                    "Difficulty Stale": 0.0,
                    "Best Share": 15.84,
                    "Device Hardware%": 0.0034,
                    "Device Rejected%": 0.0,
                    "Pool Rejected%": 0.0,
                    "Pool Stale%": 0.0,
                    "Last getwork": int(now),
                }
            ],
            "id": 1,
        }

    def _board_mhs(self, rig: SimRig, b: int, now: float) -> float:
        boards = rig.boards_present()
        if b >= boards or b in rig.disabled_boards:
            return 0.0
        enabled = max(1, boards - len(rig.disabled_boards & set(range(boards))))
        return mhs(rig.hashrate_ths(now) / enabled)

    def devs(self, rig: SimRig, _: str | None, now: float) -> Reply:
        devs = []
        for b in range(rig.model.boards):
            rate = self._board_mhs(rig, b, now)
            devs.append(
                {
                    "ASC": b,
                    "Name": "BC5",
                    "ID": b,
                    "Enabled": "N" if b in rig.disabled_boards else "Y",
                    "Status": "Alive" if b < rig.boards_present() else "Dead",
                    "Temperature": rig.board_temp_c(b, now),
                    "MHS av": rate,
                    "MHS 5s": rate,
                    "Accepted": rig.accepted_shares(now) // rig.model.boards,
                    "Rejected": 0,
                    "Hardware Errors": 1,
                    "Utility": 2.1,
                    "Last Share Pool": 0,
                    "Device Elapsed": rig.uptime_s(now),
                }
            )
        return {
            "STATUS": status_block(now, 9, f"{len(devs)} ASC(s)", self.description(rig)),
            "DEVS": devs,
            "id": 1,
        }

    def stats(self, rig: SimRig, _: str | None, now: float) -> Reply:
        m = rig.model
        s: dict[str, Any] = {
            "STATS": 0,
            "ID": "BC50",
            "Elapsed": rig.uptime_s(now),
            "GHS 5s": f"{rig.hashrate_ths(now) * 1000:.2f}",
            "GHS av": round(rig.hashrate_ths(now) * 1000, 2),
            "miner_count": m.boards,
            "frequency": "600",
            "fan_num": m.fans,
        }
        for f in range(8):
            s[f"fan{f + 1}"] = rig.fan_rpm(f - 4, now) if 4 <= f < 4 + m.fans else 0
        s["temp_num"] = m.boards
        for b in range(m.boards):
            c = CHAIN_BASE + b
            present = b < rig.boards_present()
            s[f"temp{c}"] = int(rig.board_temp_c(b, now)) if present else 0
            s[f"temp2_{c}"] = int(rig.board_temp_c(b, now)) + 15 if present else 0
            s[f"chain_acn{c}"] = m.chips_per_board if present else 0
            s[f"chain_rate{c}"] = f"{self._board_mhs(rig, b, now) / 1000:.2f}" if present else ""
        s["total_rateideal"] = round(m.nominal_ths * 1000 * rig.power_scale(), 2)
        s["temp_max"] = max(int(rig.board_temp_c(b, now)) + 15 for b in range(m.boards))
        s["build_version"] = "3.8.6"
        head = {
            "Cgminer": "4.11.1",
            "Miner": "26.0.1.3",
            "CompileTime": "Fri May  8 15:27:59 CST 2020",
            "Type": "Antminer S9 (vnish 3.8.6)",
        }
        return {
            "STATUS": status_block(now, 70, "CGMiner stats", self.description(rig)),
            "STATS": [head, s],
            "id": 1,
        }

    def encode(self, reply: Reply) -> bytes:
        body = super().encode(reply)
        if reply.get("STATS") and isinstance(reply["STATS"], list):
            # the vnish firmware's own bug: no comma between the first two STATS entries
            body = body.replace(b'"},{"STATS"', b'"}{"STATS"', 1)
        return body

    def pools(self, rig: SimRig, _: str | None, now: float) -> Reply:
        url, user = rig.active_pool()
        return {
            "STATUS": status_block(now, 7, "1 Pool(s)", self.description(rig)),
            "POOLS": [
                {
                    "POOL": 0,
                    "URL": url,
                    "Status": "Alive",
                    "Priority": 0,
                    "Quota": 1,
                    "Accepted": rig.accepted_shares(now),
                    "Rejected": 0,
                    "User": user,
                    "Stratum Active": True,
                }
            ],
            "id": 1,
        }

    def _asc(self, rig: SimRig, param: str | None, now: float) -> int | None:
        try:
            n = int(param or "")
        except ValueError:
            return None
        return n if 0 <= n < rig.model.boards else None

    def ascdisable(self, rig: SimRig, param: str | None, now: float) -> Reply:
        n = self._asc(rig, param, now)
        if n is None:
            return self.error(rig, now, 107, f"Invalid ASC id {param}")
        rig.disabled_boards.add(n)
        if len(rig.disabled_boards) >= rig.model.boards:
            rig.curtail(now)
        rig.cache.clear()
        desc = self.description(rig)
        return {"STATUS": status_block(now, 75, f"ASC {n} set disable flag", desc, "I"), "id": 1}

    def ascenable(self, rig: SimRig, param: str | None, now: float) -> Reply:
        n = self._asc(rig, param, now)
        if n is None:
            return self.error(rig, now, 107, f"Invalid ASC id {param}")
        rig.disabled_boards.discard(n)
        rig.resume(now)
        rig.cache.clear()
        desc = self.description(rig)
        return {"STATUS": status_block(now, 74, f"ASC {n} sent enable message", desc, "I"), "id": 1}

    def restart(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rig.reboot(now)
        return {"STATUS": status_block(now, 67, "Restart", self.description(rig)), "id": 1}
