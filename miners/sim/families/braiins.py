"""Braiins OS+ (BOSminer+) on an S9: MHS keys, chains 6-8, fans/temps/tunerstatus, pause/resume."""

from __future__ import annotations

from miners.sim.families.base import Reply, RpcFamily, mhs, status_block
from miners.sim.rig import SimRig


class BraiinsFamily(RpcFamily):
    """BOSminer+ 0.2.0 API: cgminer commands plus fans, temps, tempctrl, tunerstatus, pause, resume."""

    family = "braiins"

    def __init__(self) -> None:
        super().__init__()
        self.reads = {
            "version": self.version,
            "summary": self.summary,
            "devs": self.devs,
            "fans": self.fans,
            "temps": self.temps,
            "tempctrl": self.tempctrl,
            "tunerstatus": self.tunerstatus,
            "pools": self.pools,
        }
        self.controls = {"pause": self.pause, "resume": self.resume}

    def description(self, rig: SimRig) -> str:
        return f"BOSminer+ {rig.model.firmware}"

    def version(self, rig: SimRig, _: str | None, now: float) -> Reply:
        desc = self.description(rig)
        return {
            "STATUS": status_block(now, 22, "BOSminer+ versions", desc),
            "VERSION": [{"API": "3.7", "BOSminer+": rig.model.firmware}],
            "id": 1,
        }

    def summary(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rate = mhs(rig.hashrate_ths(now))
        acc = rig.accepted_shares(now)
        return {
            "STATUS": status_block(now, 11, "Summary", self.description(rig)),
            "SUMMARY": [
                {
                    "Accepted": acc,
                    "Best Share": 65536,
                    "Device Hardware%": 0.0016,
                    "Device Rejected%": 0.0,
                    "Difficulty Accepted": 10027008.0,
                    "Difficulty Rejected": 0.0,
                    "Difficulty Stale": 0.0,
                    "Discarded": 0,
                    "Elapsed": rig.uptime_s(now),
                    "Found Blocks": 0,
                    "Get Failures": 0,
                    "Getworks": acc // 2,
                    "Hardware Errors": 186,
                    "Last getwork": int(now),
                    "Local Work": 17131300,
                    "MHS 15m": rate,
                    "MHS 1m": rate,
                    "MHS 24h": rate,
                    "MHS 5m": rate,
                    "MHS 5s": rate,
                    "MHS av": rate,
                    "Network Blocks": 0,
                    "Pool Rejected%": 0.0,
                    "Pool Stale%": 0.0,
                    "Rejected": 0,
                    "Remote Failures": 0,
                    "Stale": 0,
                    "Total MH": 44121202599.4,
                    "Utility": 2.49,
                    "Work Utility": 184349.06,
                }
            ],
            "id": 1,
        }

    def devs(self, rig: SimRig, _: str | None, now: float) -> Reply:
        boards = rig.boards_present()
        per = mhs(rig.hashrate_ths(now) / boards) if boards else 0.0
        nominal = mhs(rig.model.nominal_ths / rig.model.boards)
        devs = [
            {
                "ASC": b,
                "Accepted": 0,
                "Device Elapsed": rig.uptime_s(now),
                "Device Hardware%": 0.0,
                "Enabled": "Y",
                "Hardware Errors": 0,
                "ID": 6 + b,
                "MHS 15m": per,
                "MHS 1m": per,
                "MHS 5m": per,
                "MHS 5s": per,
                "MHS av": per,
                "Name": "",
                "Nominal MHS": nominal,
                "Rejected": 0,
                "Status": "Alive",
                "Temperature": 0.0,
            }
            for b in range(boards)
        ]
        return {
            "STATUS": status_block(now, 9, f"{len(devs)} ASC(s)", self.description(rig)),
            "DEVS": devs,
            "id": 1,
        }

    def fans(self, rig: SimRig, _: str | None, now: float) -> Reply:
        fans = [
            {
                "FAN": f,
                "ID": f,
                "RPM": rig.fan_rpm(f, now) if f < rig.model.fans else 0,
                "Speed": 40,
            }
            for f in range(4)
        ]
        return {
            "STATUS": status_block(now, 202, "4 Fan(s)", self.description(rig)),
            "FANS": fans,
            "id": 1,
        }

    def temps(self, rig: SimRig, _: str | None, now: float) -> Reply:
        temps = [
            {"Board": rig.board_temp_c(b, now), "Chip": 0.0, "ID": 6 + b, "TEMP": b}
            for b in range(rig.boards_present())
        ]
        return {
            "STATUS": status_block(now, 201, f"{len(temps)} Temp(s)", self.description(rig)),
            "TEMPS": temps,
            "id": 1,
        }

    def tempctrl(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return {
            "STATUS": status_block(now, 200, "Temperature control", self.description(rig)),
            "TEMPCTRL": [{"Dangerous": 110, "Hot": 100, "Mode": "Automatic", "Target": 89}],
            "id": 1,
        }

    def tunerstatus(self, rig: SimRig, _: str | None, now: float) -> Reply:
        watts = rig.power_w(now)
        boards = rig.boards_present()
        chain_w = int((watts - rig.model.sleep_w) / boards) if boards else 0
        chains = [
            {
                "ApproximatePowerConsumptionWatt": chain_w,
                "HashchainIndex": 6 + b,
                "Iteration": 0,
                "LoadedProfileCreatedOn": 1595938289,
                "PowerLimitWatt": int(rig.power_limit_w / rig.model.boards),
                "StageElapsed": 78,
                "Status": "Stable",
                "TunerRunning": False,
                "TuningElapsed": 98,
            }
            for b in range(boards)
        ]
        return {
            "STATUS": status_block(now, 203, "Tuner Status", self.description(rig)),
            "TUNERSTATUS": [
                {
                    "ApproximateChainPowerConsumption": chain_w * boards,
                    "ApproximateMinerPowerConsumption": int(watts),
                    "DynamicPowerScaling": "Disabled",
                    "PowerLimit": int(rig.power_limit_w),
                    "TunerChainStatus": chains,
                }
            ],
            "id": 1,
        }

    def pools(self, rig: SimRig, _: str | None, now: float) -> Reply:
        url, user = rig.active_pool()
        return {
            "STATUS": status_block(now, 7, "1 Pool(s)", self.description(rig)),
            "POOLS": [
                {
                    "POOL": 0,
                    "URL": url,
                    "User": user,
                    "Status": "Alive",
                    "Priority": 0,
                    "Accepted": rig.accepted_shares(now),
                    "Rejected": 0,
                    "Stratum Active": True,
                }
            ],
            "id": 1,
        }

    def pause(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rig.curtail(now)
        return {
            "STATUS": status_block(now, 204, "Pause", self.description(rig)),
            "PAUSE": [True],
            "id": 1,
        }

    def resume(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rig.resume(now)
        return {
            "STATUS": status_block(now, 205, "Resume", self.description(rig)),
            "RESUME": [True],
            "id": 1,
        }
