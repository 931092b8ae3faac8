"""LuxOS (LUXminer) on an S19k Pro: GHS keys, `logon` sessions, `curtail` sleep/wakeup, profiles."""

from __future__ import annotations

import secrets

from miners.sim.families.base import Reply, RpcFamily, ghs, status_block
from miners.sim.rig import SimRig

# (name, share of nominal watts) as LuxOS lists its frequency-step profiles
PROFILES = (("-2", 0.8), ("-1", 0.9), ("default", 1.0))


class LuxosFamily(RpcFamily):
    """LUXminer 2025.4.8 API; privileged commands take the session id as the first parameter."""

    family = "luxos"

    def __init__(self) -> None:
        super().__init__()
        self.reads = {
            "version": self.version,
            "summary": self.summary,
            "pools": self.pools,
            "devs": self.devs,
            "config": self.config,
            "profiles": self.profiles,
            "power": self.power,
            "fans": self.fans,
            "temps": self.temps,
        }
        self.controls = {
            "logon": self.logon,
            "session": self.session,
            "curtail": self.curtail,
            "profileset": self.profileset,
            "rebootdevice": self.rebootdevice,
        }

    def description(self, rig: SimRig) -> str:
        return f"LUXminer {rig.model.firmware}"

    def version(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return {
            "STATUS": status_block(now, 22, "LUXminer versions", self.description(rig)),
            "VERSION": [
                {
                    "API": "3.7",
                    "CompileTime": "Tue Apr  8 22:05:35 UTC 2025",
                    "LUXminer": rig.model.firmware,
                    "Miner": rig.model.firmware.split("-")[0],
                    "Type": rig.model.model,
                }
            ],
            "id": 1,
        }

    def summary(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rate = ghs(rig.hashrate_ths(now))
        acc = rig.accepted_shares(now)
        entry = {
            "Accepted": acc,
            "Elapsed": rig.uptime_s(now),
            "GHS 15m": rate,
            "GHS 1m": rate,
            "GHS 24h": rate,
            "GHS 30m": rate,
            "GHS 5m": rate,
            "GHS 5s": rate,
            "GHS av": rate,
            "Hardware Errors": 0,
            "Rejected": 1,
            "Total MH": 56917916.07,
        }
        return {
            "STATUS": status_block(now, 11, "Summary", self.description(rig)),
            "SUMMARY": [entry],
            "id": 1,
        }

    def pools(self, rig: SimRig, _: str | None, now: float) -> Reply:
        url, user = rig.active_pool()
        pool = {
            "POOL": 0,
            "URL": url,
            "User": user,
            "Status": "Alive",
            "Priority": 0,
            "Accepted": rig.accepted_shares(now),
            "Rejected": 1,
            "Stratum Active": True,
        }
        return {
            "STATUS": status_block(now, 7, "1 Pool(s)", self.description(rig)),
            "POOLS": [pool],
            "id": 1,
        }

    def devs(self, rig: SimRig, _: str | None, now: float) -> Reply:
        boards = rig.boards_present()
        per = ghs(rig.hashrate_ths(now) / boards) if boards else 0.0
        devs = [
            {
                "ASC": b,
                "Name": "BTM",
                "ID": b,
                "Enabled": "Y",
                "Status": "Alive",
                "Temperature": rig.board_temp_c(b, now),
                "GHS 5s": per,
                "GHS av": per,
                "Accepted": rig.accepted_shares(now) // boards,
                "Rejected": 0,
            }
            for b in range(boards)
        ]
        return {
            "STATUS": status_block(now, 9, f"{len(devs)} ASC(s)", self.description(rig)),
            "DEVS": devs,
            "id": 1,
        }

    def config(self, rig: SimRig, _: str | None, now: float) -> Reply:
        entry = {
            "ASC Count": rig.boards_present(),
            "MACAddr": rig.mac.lower(),
            "Hostname": rig.hostname,
            "Model": rig.model.model,
            "Profile": rig.profile,
            "SerialNumber": rig.serial,
            "CurtailMode": "sleep" if rig.mode == "curtailed" else "none",
            "RedLed": "off",
            "IsAtmEnabled": False,
        }
        return {
            "STATUS": status_block(now, 33, "LUXminer config", self.description(rig)),
            "CONFIG": [entry],
            "id": 1,
        }

    def profiles(self, rig: SimRig, _: str | None, now: float) -> Reply:
        items = [
            {
                "Profile Name": name,
                "Watts": int(rig.model.nominal_w * share),
                "Hashrate": round(rig.model.nominal_ths * share, 2),
                "IsDynamic": False,
                "Step": name if name != "default" else "0",
            }
            for name, share in PROFILES
        ]
        return {
            "STATUS": status_block(now, 333, "Profiles", self.description(rig)),
            "PROFILES": items,
            "id": 1,
        }

    def power(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return {
            "STATUS": status_block(now, 335, "Power", self.description(rig)),
            "POWER": [{"PSU": True, "Watts": int(rig.power_w(now))}],
            "id": 1,
        }

    def fans(self, rig: SimRig, _: str | None, now: float) -> Reply:
        fans = [{"ID": f, "RPM": rig.fan_rpm(f, now), "Speed": 50} for f in range(rig.model.fans)]
        return {
            "STATUS": status_block(now, 202, f"{len(fans)} Fan(s)", self.description(rig)),
            "FANS": fans,
            "id": 1,
        }

    def temps(self, rig: SimRig, _: str | None, now: float) -> Reply:
        temps = []
        for b in range(rig.boards_present()):
            t = rig.board_temp_c(b, now)
            temps.append({"ID": b, "Board": t, "TopLeft": t, "BottomRight": t + 8.0})
        return {
            "STATUS": status_block(now, 201, f"{len(temps)} Temp(s)", self.description(rig)),
            "TEMPS": temps,
            "id": 1,
        }

    def logon(self, rig: SimRig, _: str | None, now: float) -> Reply:
        if rig.session_id:
            return self.error(rig, now, 301, "Another session is active")
        rig.session_id = secrets.token_hex(4)
        return {
            "STATUS": status_block(now, 312, "Session created", self.description(rig)),
            "SESSION": [{"SessionID": rig.session_id}],
            "id": 1,
        }

    def session(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return {
            "STATUS": status_block(now, 313, "Session", self.description(rig)),
            "SESSION": [{"SessionID": rig.session_id}],
            "id": 1,
        }

    def _args(self, rig: SimRig, param: str | None) -> list[str] | None:
        parts = (param or "").split(",")
        if not rig.session_id or parts[0] != rig.session_id:
            return None
        return parts[1:]

    def curtail(self, rig: SimRig, param: str | None, now: float) -> Reply:
        args = self._args(rig, param)
        if args is None:
            return self.error(rig, now, 300, "Invalid session id")
        if args[:1] == ["sleep"]:
            rig.curtail(now)
        elif args[:1] == ["wakeup"]:
            rig.resume(now)
        else:
            return self.error(rig, now, 302, f"Invalid curtail mode {args[:1]}")
        return {
            "STATUS": status_block(now, 344, "Curtail", self.description(rig)),
            "CURTAIL": [{"Mode": args[0], "Result": "success"}],
            "id": 1,
        }

    def profileset(self, rig: SimRig, param: str | None, now: float) -> Reply:
        args = self._args(rig, param)
        if args is None:
            return self.error(rig, now, 300, "Invalid session id")
        shares = dict(PROFILES)
        name = args[0] if args else ""
        if name not in shares:
            return self.error(rig, now, 331, f"Profile {name} not found")
        rig.profile = name
        rig.set_power_limit(rig.model.nominal_w * shares[name])
        return {
            "STATUS": status_block(now, 332, "Profile set", self.description(rig)),
            "PROFILE": [{"Profile": name, "Result": "success"}],
            "id": 1,
        }

    def rebootdevice(self, rig: SimRig, param: str | None, now: float) -> Reply:
        if self._args(rig, param) is None:
            return self.error(rig, now, 300, "Invalid session id")
        rig.session_id = ""
        rig.reboot(now)
        return {"STATUS": status_block(now, 341, "Reboot", self.description(rig)), "id": 1}
