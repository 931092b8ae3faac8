"""Whatsminer M31S (btminer): cgminer-style reads, API v2 token + AES privileged commands, API v3.

Reads follow the captured replies (summary with Power/Power_RT/Power Limit/MAC, edevs per board,
flat `Msg` replies for get_version/get_miner_info/status/get_token). Privileged commands arrive
as {"enc": 1, "data": ...}, are decrypted with the key derived from the rig's admin password and
the salt it handed out, checked against the token, and answered encrypted.
"""

from __future__ import annotations

import secrets
from typing import Any

from miners.drivers.btminer_crypto import aes_key, decrypt, encrypt, v2_token, v3_token
from miners.sim.families.base import Reply, RpcFamily, mhs, status_block
from miners.sim.rig import Fault, SimRig

V3_ACCOUNT = "super"


class WhatsminerFamily(RpcFamily):
    """btminer API 2.0.5 on TCP 4028 and API v3 (length-prefixed JSON) on its own port."""

    family = "whatsminer"

    def __init__(self) -> None:
        super().__init__()
        self.reads = {
            "summary": self.summary,
            "edevs": self.edevs,
            "devs": self.edevs,
            "pools": self.pools,
        }
        self.flat_reads = {
            "get_version": self.get_version,
            "get_miner_info": self.get_miner_info,
            "status": self.status,
        }
        # per rig: (time, salt, newsalt) of the last get_token, v3 salt
        self._tokens: dict[int, tuple[str, str, str]] = {}
        self._v3_salt: dict[int, str] = {}

    def description(self, rig: SimRig) -> str:
        return "btminer"

    def _flat(self, now: float, msg: Any, code: int = 131, kind: str = "S") -> Reply:
        return {"STATUS": kind, "When": int(now), "Code": code, "Msg": msg, "Description": ""}

    def handle(self, rig: SimRig, req: Reply, now: float) -> bytes:
        if "enc" in req:
            return self._frame_flat(self._privileged(rig, req, now), rig)
        cmd = req.get("cmd")
        if isinstance(cmd, str):
            flat = cmd in self.flat_reads or cmd == "get_token"
            if "+" in cmd or not flat:
                # the captured btminer quirk: `cmd` is only for the flat commands
                return self._frame(self.error(rig, now, 24, "Missing JSON 'command'"), False, rig)
            return self._frame_flat(self._flat_command(rig, cmd, now), rig)
        command = req.get("command")
        if isinstance(command, str) and (command in self.flat_reads or command == "get_token"):
            return self._frame_flat(self._flat_command(rig, command, now), rig)
        return super().handle(rig, req, now)

    def _frame_flat(self, reply: Reply, rig: SimRig) -> bytes:
        return self._frame(reply, False, rig)

    def _flat_command(self, rig: SimRig, cmd: str, now: float) -> Reply:
        if cmd == "get_token":
            salt, newsalt = secrets.token_urlsafe(6)[:8], secrets.token_urlsafe(6)[:8]
            t = str(int(now) % 10000)
            self._tokens[rig.index] = (t, salt, newsalt)
            return {
                "STATUS": "S",
                "When": int(now),
                "Code": 134,
                "Msg": {"time": t, "salt": salt, "newsalt": newsalt},
                "Description": "whatsminer v1.1",
            }
        return self.flat_reads[cmd](rig, None, now)

    def _privileged(self, rig: SimRig, req: Reply, now: float) -> Reply:
        issued = self._tokens.get(rig.index)
        if issued is None:
            return self._flat(now, "check token err", 135, "E")
        t, salt, newsalt = issued
        passwd_md5, sign = v2_token(rig.password, t, salt, newsalt)
        key = aes_key(passwd_md5)
        try:
            cmd = decrypt(key, str(req.get("data", "")))
        except ValueError:
            # wrong password: the rig cannot decrypt, so it answers in the clear
            return self._flat(now, "json error", 132, "E")
        if cmd.get("token") != sign:
            return {"enc": encrypt(key, self._flat(now, "check token err", 135, "E"))}
        reply = self._execute(rig, cmd, now)
        return {"enc": encrypt(key, reply)}

    def _execute(self, rig: SimRig, cmd: Reply, now: float) -> Reply:
        name = cmd.get("cmd")
        if name == "power_off":
            rig.curtail(now)
        elif name == "power_on":
            rig.resume(now)
        elif name == "adjust_power_limit":
            try:
                watts = float(cmd.get("power_limit", ""))
            except ValueError:
                return self._flat(now, "invalid power_limit", 14, "E")
            rig.set_power_limit(watts)
        elif name == "reboot" or name == "restart_btminer":
            rig.reboot(now)
        else:
            return self._flat(now, "invalid cmd", 14, "E")
        return self._flat(now, "API command OK")

    # --- reads ---

    def summary(self, rig: SimRig, _: str | None, now: float) -> Reply:
        ths = rig.hashrate_ths(now)
        rate = mhs(ths)
        acc = rig.accepted_shares(now)
        entry = {
            "Elapsed": rig.uptime_s(now),
            "MHS av": rate,
            "MHS 5s": rate,
            "MHS 1m": rate,
            "MHS 5m": rate,
            "MHS 15m": rate,
            "HS RT": rate,
            "Accepted": acc,
            "Rejected": 1,
            "Hardware Errors": 0,
            "Temperature": max(rig.board_temp_c(b, now) for b in range(rig.model.boards)),
            "freq_avg": 710,
            "Fan Speed In": rig.fan_rpm(0, now),
            "Fan Speed Out": rig.fan_rpm(1, now),
            "Voltage": 1206,
            "Power": int(rig.power_w(now)),
            "Power_RT": int(rig.power_w(now)),
            "Power Rate": round(rig.power_w(now) / ths, 2) if ths else 0.0,
            "Uptime": rig.uptime_s(now) + 1000,
            "Power Mode": "Normal",
            "Firmware Version": f"'{rig.model.firmware}'",
            "CB Platform": "ALLWINNER_H6OS",
            "CB Version": "V10",
            "MAC": rig.mac,
            "Factory GHS": int(rig.model.nominal_ths * 1000),
            "Power Limit": int(rig.power_limit_w),
            "Chip Temp Min": 48.0,
            "Chip Temp Max": max(rig.board_temp_c(b, now) + 20 for b in range(rig.model.boards)),
            "Chip Temp Avg": 73.87,
        }
        if Fault.OVERHEAT in rig.faults:
            entry.update({"Error Code 0": 360, "Error 0 Time": "", "Error Code Count": 1})
        return {
            "STATUS": status_block(now, 11, "Summary", self.description(rig)),
            "SUMMARY": [entry],
            "id": 1,
        }

    def edevs(self, rig: SimRig, _: str | None, now: float) -> Reply:
        boards = rig.boards_present()
        per = mhs(rig.hashrate_ths(now) / boards) if boards else 0.0
        devs = [
            {
                "ASC": b,
                "Name": "SM",
                "ID": b,
                "Slot": b,
                "Enabled": "Y",
                "Status": "Alive",
                "Temperature": rig.board_temp_c(b, now),
                "Chip Frequency": 686,
                "MHS av": per,
                "MHS 5s": per,
                "Accepted": rig.accepted_shares(now) // boards,
                "Rejected": 0,
                "Effective Chips": rig.model.chips_per_board,
                "PCB SN": f"{rig.serial}B{b}",
                "Chip Temp Min": 48.0,
                "Chip Temp Max": rig.board_temp_c(b, now) + 20,
                "Chip Temp Avg": rig.board_temp_c(b, now) + 8,
            }
            for b in range(boards)
        ]
        return {
            "STATUS": status_block(now, 9, f"{len(devs)} ASC(s)", self.description(rig)),
            "DEVS": devs,
            "id": 1,
        }

    def pools(self, rig: SimRig, _: str | None, now: float) -> Reply:
        url, user = rig.active_pool()
        pool = {
            "POOL": 1,
            "URL": url,
            "Status": "Alive",
            "Priority": 0,
            "Accepted": rig.accepted_shares(now),
            "Rejected": 1,
            "User": user,
            "Stratum Active": True,
        }
        return {
            "STATUS": status_block(now, 7, "1 Pool(s)", self.description(rig)),
            "POOLS": [pool],
            "id": 1,
        }

    def get_version(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return self._flat(now, {"api_ver": "2.0.5", "fw_ver": rig.model.firmware, "platform": "H6"})

    def get_miner_info(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return self._flat(now, {"hostname": rig.hostname, "ledstat": "auto", "mac": rig.mac})

    def status(self, rig: SimRig, _: str | None, now: float) -> Reply:
        off = "true" if rig.mode == "curtailed" else "false"
        msg = {
            "mineroff": off,
            "mineroff_reason": "power_off" if off == "true" else "",
            "FirmwareVersion": f"'{rig.model.firmware}'",
        }
        return self._flat(now, msg)

    # --- API v3 ---

    def handle_v3(self, rig: SimRig, req: Reply, now: float) -> Reply:
        """One API v3 request (already unframed)."""
        cmd = req.get("cmd")
        param = req.get("param")
        when = int(now)
        if Fault.MALFORMED_JSON in rig.faults:
            return {"code": -1, "when": when, "msg": "malformed", "desp": str(cmd)}
        if cmd == "get.device.info":
            if param == "salt":
                salt = self._v3_salt.setdefault(rig.index, secrets.token_hex(4))
                return {"code": 0, "when": when, "msg": {"salt": salt}, "desp": cmd}
            info = {
                "network": {"mac": rig.mac, "hostname": rig.hostname, "ip": rig.host},
                "miner": {"type": rig.model.model, "miner-sn": rig.serial},
                "system": {"api": "3.0.1", "fwversion": rig.model.firmware, "ledstatus": "auto"},
                "power": {"fanspeed": rig.fan_rpm(0, now)},
            }
            return {"code": 0, "when": when, "msg": info, "desp": cmd}
        if cmd == "get.miner.status":
            return {
                "code": 0,
                "when": when,
                "msg": self._v3_status(rig, str(param), now),
                "desp": cmd,
            }
        if isinstance(cmd, str) and cmd.startswith("set."):
            salt = self._v3_salt.get(rig.index, "")
            ts = req.get("ts")
            ok = (
                req.get("account") == V3_ACCOUNT
                and isinstance(ts, int)
                and abs(ts - now) < 120
                and req.get("token") == v3_token(cmd, rig.password, salt, ts)
            )
            if not salt or not ok:
                return {"code": -2, "when": when, "msg": "invalid token", "desp": cmd}
            return self._v3_set(rig, cmd, param, now)
        return {"code": -1, "when": when, "msg": f"unknown command {cmd}", "desp": str(cmd)}

    def _v3_status(self, rig: SimRig, what: str, now: float) -> dict[str, Any]:
        if what == "edevs":
            boards = rig.boards_present()
            per = rig.hashrate_ths(now) / boards if boards else 0.0
            edevs = [
                {
                    "id": b,
                    "hash-average": round(per, 3),
                    "chip-temp-min": 48.0,
                    "chip-temp-max": rig.board_temp_c(b, now) + 20,
                    "effective-chips": rig.model.chips_per_board,
                }
                for b in range(boards)
            ]
            return {"edevs": edevs}
        if what == "pools":
            url, user = rig.active_pool()
            return {"pools": [{"id": 1, "url": url, "account": user, "status": "alive"}]}
        return {
            "summary": {
                "elapsed": rig.uptime_s(now),
                "hash-realtime": round(rig.hashrate_ths(now), 3),
                "hash-average": round(rig.hashrate_ths(now), 3),
                "factory-hash": rig.model.nominal_ths,
                "power-realtime": int(rig.power_w(now)),
                "power-limit": int(rig.power_limit_w),
                "fan-speed-in": rig.fan_rpm(0, now),
                "fan-speed-out": rig.fan_rpm(1, now),
                "chip-temp-max": max(rig.board_temp_c(b, now) for b in range(rig.model.boards)),
                "miner-state": "stop" if rig.mode == "curtailed" else "running",
            }
        }

    def _v3_set(self, rig: SimRig, cmd: str, param: Any, now: float) -> Reply:
        when = int(now)
        if cmd == "set.miner.service":
            if param == "stop":
                rig.curtail(now)
            elif param == "start":
                rig.resume(now)
            elif param == "restart":
                rig.reboot(now)
            else:
                return {"code": -1, "when": when, "msg": f"bad param {param}", "desp": cmd}
        elif cmd == "set.miner.power_limit":
            try:
                rig.set_power_limit(float(param))
            except (TypeError, ValueError):
                return {"code": -1, "when": when, "msg": f"bad param {param}", "desp": cmd}
        elif cmd == "set.system.reboot":
            rig.reboot(now)
        else:
            return {"code": -1, "when": when, "msg": f"unknown command {cmd}", "desp": cmd}
        return {"code": 0, "when": when, "msg": "ok", "desp": cmd}
