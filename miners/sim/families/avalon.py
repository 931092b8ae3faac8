"""Canaan Avalon 1047 (cgminer 4.11.1): stats/estats with the packed `MM ID0` string, ascset controls.

`ascset|0,softoff,<ts>` / `softon` put the rig to (and wake it from) idle; the MM ID string then
reads `SYSTEMSTATU[Work: In Idle, ...]`. `ascset|0,workmode,set,N` picks the work mode and
`ascset|0,reboot,0` reboots the controller.
"""

from __future__ import annotations

from miners.sim.families.base import Reply, RpcFamily, mhs, status_block
from miners.sim.rig import SimRig

WORKMODE_SHARE = {0: 0.75, 1: 1.0}  # Avalon 1047: 0 = normal (lower power), 1 = performance


class AvalonFamily(RpcFamily):
    """Canaan cgminer: JSON and text mode, multi-commands with the `{"summary":[...]}` layout."""

    family = "avalon"

    def __init__(self) -> None:
        super().__init__()
        self.reads = {
            "version": self.version,
            "summary": self.summary,
            "stats": self.stats,
            "estats": self.stats,
            "pools": self.pools,
        }
        self.controls = {"ascset": self.ascset}

    def version(self, rig: SimRig, _: str | None, now: float) -> Reply:
        info = {
            "CGMiner": "4.11.1",
            "API": "3.7",
            "STM8": "20.08.01",
            "PROD": "AvalonMiner 1047",
            "MODEL": "1047",
            "HWTYPE": "MM3v2_X3",
            "SWTYPE": "MM314",
            "VERSION": "20051101_85dc6f0",
            "LOADER": "d0d779de.00",
            "DNA": "020100008b2bdbc3",
            "MAC": rig.mac,
            "UPAPI": "2",
        }
        return {
            "STATUS": status_block(now, 22, "CGMiner versions", self.description(rig)),
            "VERSION": [info],
            "id": 1,
        }

    def summary(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rate = mhs(rig.hashrate_ths(now))
        entry = {
            "Elapsed": rig.uptime_s(now),
            "MHS av": rate,
            "MHS 30s": rate,
            "MHS 1m": rate,
            "MHS 5m": rate,
            "MHS 15m": rate,
            "Found Blocks": 0,
            "Getworks": 13,
            "Accepted": rig.accepted_shares(now),
            "Rejected": 0,
            "Hardware Errors": 0,
            "Utility": 2.32,
        }
        return {
            "STATUS": status_block(now, 11, "Summary", self.description(rig)),
            "SUMMARY": [entry],
            "id": 1,
        }

    def mm_id(self, rig: SimRig, now: float) -> str:
        """The packed `MM ID0` string, field order as in the captured 1047 reply."""
        boards = rig.boards_present()
        ghs = rig.hashrate_ths(now) * 1000.0
        per = [f"{ghs / boards:.2f}" if b < boards else "0.00" for b in range(rig.model.boards)]
        temps = [int(rig.board_temp_c(b, now)) for b in range(boards)]
        work = "In Idle" if rig.mode == "curtailed" else "In Work"
        watts = int(rig.power_w(now))
        fan1, fan2 = rig.fan_rpm(0, now), rig.fan_rpm(1, now)
        mode = 1 if rig.power_limit_w >= rig.model.nominal_w else 0
        return (
            f"Ver[1047-20051101_85dc6f0_0332654] DNA[02010000cb231da8] MEMFREE[1413136.0] "
            f"NETFAIL[0 0 0 0 0 0 0 0] SYSTEMSTATU[Work: {work}, Hash Board: {boards} ] "
            f"Elapsed[{rig.uptime_s(now)}] BOOTBY[0x0C.00000001] LW[37060] MH[0 0] HW[0] "
            f"DH[1.063%] Temp[28] TMax[{max(temps, default=0)}] "
            f"TAvg[{sum(temps) // max(1, len(temps))}] Fan1[{fan1}] Fan2[{fan2}] FanR[47%] "
            f"Vo[328] PS[0 1212 1315 174 {watts} 1320] GHSmm[{ghs:.2f}] GHSavg[{ghs:.2f}] "
            f"WU[351687.39] Freq[661.56] Led[0] MGHS[{' '.join(per)}] "
            f"MTmax[{' '.join(str(t + 5) for t in temps)}] MTavg[{' '.join(map(str, temps))}] "
            f"TA[240] ECHU[512 512] ECMM[0] CRC[0 0] MPO[{int(rig.power_limit_w)}] "
            f"WORKMODE[{mode}]"
        )

    def stats(self, rig: SimRig, _: str | None, now: float) -> Reply:
        entry = {
            "STATS": 0,
            "ID": "AVA100",
            "Elapsed": rig.uptime_s(now),
            "Calls": 0,
            "Wait": 0.0,
            "Max": 0.0,
            "Min": 99999999.0,
            "MM ID0": self.mm_id(rig, now),
            "MM Count": 1,
            "Smart Speed": 1,
            "Voltage Level Offset": 0,
            "Nonce Mask": 25,
        }
        return {
            "STATUS": status_block(now, 70, "CGMiner stats", self.description(rig)),
            "STATS": [entry],
            "id": 1,
        }

    def pools(self, rig: SimRig, _: str | None, now: float) -> Reply:
        url, user = rig.active_pool()
        pool = {
            "POOL": 0,
            "URL": url,
            "Status": "Alive",
            "Priority": 0,
            "Accepted": rig.accepted_shares(now),
            "Rejected": 0,
            "User": user,
            "Stratum Active": True,
        }
        return {
            "STATUS": status_block(now, 7, "1 Pool(s)", self.description(rig)),
            "POOLS": [pool],
            "id": 1,
        }

    def ascset(self, rig: SimRig, param: str | None, now: float) -> Reply:
        parts = (param or "").split(",")
        desc = self.description(rig)
        if len(parts) < 2 or parts[0] != "0":
            return self.error(rig, now, 119, "Missing ASC parameter")
        action = parts[1]
        if action == "softoff":
            rig.curtail(now)
            msg = f"ASC 0 set info: success softoff:{parts[2] if len(parts) > 2 else int(now)}"
        elif action == "softon":
            rig.resume(now)
            msg = f"ASC 0 set info: success softon:{parts[2] if len(parts) > 2 else int(now)}"
        elif action == "workmode" and len(parts) == 4 and parts[2] == "set":
            try:
                mode = int(parts[3])
            except ValueError:
                return self.error(rig, now, 119, f"Invalid workmode {parts[3]}")
            if mode not in WORKMODE_SHARE:
                return self.error(rig, now, 119, f"Invalid workmode {mode}")
            rig.set_power_limit(rig.model.nominal_w * WORKMODE_SHARE[mode])
            msg = f"ASC 0 set info: success workmode:{mode}"
        elif action == "reboot":
            rig.reboot(now)
            msg = "ASC 0 set info: success reboot"
        elif action == "led":
            msg = "ASC 0 set OK"
        else:
            return self.error(rig, now, 119, f"Unknown ascset option {action}")
        return {"STATUS": status_block(now, 118, msg, desc, "I"), "id": 1}
