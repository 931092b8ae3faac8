"""Stock Antminer (bmminer) as on an S19 Pro: RPC replies shaped like the captures, and the web API.

Quirks kept from the real firmware: `a+b` multi-commands answered with STATUS E, Python-style spaced
JSON, temps as dash-joined strings, chain rates as strings, and a web API behind HTTP digest auth
where `miner-mode` 1 is sleep and 0 is normal.
"""

from __future__ import annotations

import json
from typing import Any

from miners.sim.families.base import Reply, RpcFamily, ghs, status_block
from miners.sim.http import DigestGate, HttpReply, HttpRequest, json_reply
from miners.sim.rig import SimRig

REALM = "antMiner Configuration"
BACKUP_POOL = "stratum+tcp://backup.pool.example:443"


class AntminerFamily(RpcFamily):
    """bmminer 1.0.0 / Miner 49.0.1.3 on an S19 Pro."""

    family = "antminer"
    multi_command = False
    spaced_json = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = DigestGate(REALM)
        self.reads = {
            "version": self.version,
            "summary": self.summary,
            "stats": self.stats,
            "pools": self.pools,
            "devs": self.devs,
        }

    def description(self, rig: SimRig) -> str:
        return "cgminer 1.0.0"

    def version(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return {
            "STATUS": status_block(now, 22, "CGMiner versions", self.description(rig)),
            "VERSION": [
                {
                    "BMMiner": "1.0.0",
                    "API": "3.1",
                    "Miner": rig.model.firmware,
                    "CompileTime": "Wed Oct 21 10:18:10 CST 2020",
                    "Type": rig.model.model,
                }
            ],
            "id": 1,
        }

    def summary(self, rig: SimRig, _: str | None, now: float) -> Reply:
        rate = ghs(rig.hashrate_ths(now))
        accepted = rig.accepted_shares(now)
        return {
            "STATUS": status_block(now, 11, "Summary", self.description(rig)),
            "SUMMARY": [
                {
                    "Elapsed": rig.uptime_s(now),
                    "GHS 5s": rate,
                    "GHS av": rate,
                    "GHS 30m": rate,
                    "Found Blocks": 0,
                    "Getwork": accepted // 2,
                    "Accepted": accepted,
                    "Rejected": accepted // 400,
                    "Hardware Errors": 562,
                    "Utility": 4.82,
                    "Discarded": 4528177,
                    "Stale": 1,
                    "Get Failures": 1,
                    "Local Work": 4532155,
                    "Remote Failures": 0,
                    "Network Blocks": 82,
                    "Total MH": 5643633754730.0,
                    "Work Utility": 1554353.85,
                    "Difficulty Accepted": 1305083904.0,
                    "Difficulty Rejected": 2490368.0,
                    "Difficulty Stale": 0.0,
                    "Best Share": 12904207043,
                    "Device Hardware%": 0.0,
                    "Device Rejected%": 0.0,
                    "Pool Rejected%": 0.0,
                    "Pool Stale%": 0.0,
                    "Last getwork": int(now),
                }
            ],
            "id": 1,
        }

    def stats(self, rig: SimRig, _: str | None, now: float) -> Reply:
        m = rig.model
        boards = rig.boards_present()  # a dead chain still has its slot, with 0 ASICs found
        total = ghs(rig.hashrate_ths(now))
        per_board = total / boards if boards else 0.0
        s: dict[str, Any] = {
            "STATS": 0,
            "ID": "BTM_SOC0",
            "Elapsed": rig.uptime_s(now),
            "Calls": 0,
            "Wait": 0,
            "Max": 0,
            "Min": 99999999,
            "GHS 5s": total,
            "GHS av": total,
            "rate_30m": total,
            "Mode": 2,
            "miner_count": m.boards,
            "frequency": 525,
            "fan_num": m.fans,
        }
        for f in range(m.fans):
            s[f"fan{f + 1}"] = rig.fan_rpm(f, now)
        s["temp_num"] = m.boards
        temps = [int(rig.board_temp_c(b, now)) if b < boards else 0 for b in range(4)]
        for b in range(m.boards):  # as captured: temp1, temp2_1, temp2, temp2_2, ...
            s[f"temp{b + 1}"] = temps[b]
            s[f"temp2_{b + 1}"] = temps[b] + 5 if temps[b] else 0
        for b in range(4):
            t = temps[b]
            s[f"temp_pcb{b + 1}"] = f"{t - 13}-{t - 29}-{t}-{t - 10}" if t else "0-0-0-0"
            s[f"temp_chip{b + 1}"] = f"{t - 8}-{t - 24}-{t + 5}-{t - 5}" if t else "0-0-0-0"
            s[f"temp_pic{b + 1}"] = f"{t - 23}-{t - 39}-{t - 10}-{t - 20}" if t else "0-0-0-0"
        s["total_rateideal"] = ghs(m.nominal_ths * rig.power_scale())
        s["rate_unit"] = "GH"
        s["total_freqavg"] = 525
        s["total_acn"] = m.chips_per_board * boards
        s["total rate"] = total
        s["temp_max"] = max(temps)
        s["no_matching_work"] = 1
        mark = "xxx" if max(temps) >= 88 else "ooo"
        for b in range(4):
            in_slot = b < m.boards
            alive = b < boards
            s[f"chain_acn{b + 1}"] = m.chips_per_board if alive else 0
            acs = " " + " ".join([mark] * (m.chips_per_board // 3)) if alive else ""
            s[f"chain_acs{b + 1}"] = acs
            s[f"chain_hw{b + 1}"] = 1 if alive else 0
            rate = f"{per_board:.2f}" if alive else ("0.00" if in_slot else "")
            s[f"chain_rate{b + 1}"] = rate
        for b in range(4):
            s[f"freq{b + 1}"] = 525 if b < boards else 0
        s["miner_version"] = m.firmware
        s["miner_id"] = rig.serial
        head = {
            "BMMiner": "1.0.0",
            "Miner": m.firmware,
            "CompileTime": "Fri Dec 11 11:23:44 CST 2020",
            "Type": m.model,
        }
        return {
            "STATUS": status_block(now, 70, "CGMiner stats", self.description(rig)),
            "STATS": [head, s],
            "id": 1,
        }

    def pools(self, rig: SimRig, _: str | None, now: float) -> Reply:
        url, user = rig.active_pool()
        hashing = rig.level(now) > 0
        accepted = rig.accepted_shares(now)
        pools = []
        for i, (u, w) in enumerate([(url, user), (BACKUP_POOL, rig.pool_user)]):
            pools.append(
                {
                    "POOL": i,
                    "URL": u,
                    "Status": "Alive",
                    "Priority": i,
                    "Quota": 1,
                    "Long Poll": "N",
                    "Getworks": 22 if i == 0 else 5,
                    "Accepted": accepted if i == 0 else 0,
                    "Rejected": accepted // 400 if i == 0 else 0,
                    "Discarded": 296,
                    "Stale": 0,
                    "Get Failures": 0,
                    "Remote Failures": 0,
                    "User": w,
                    "Last Share Time": str(int(now)) if hashing and i == 0 else "0",
                    "Diff": "32.8K",
                    "Diff1 Shares": 0,
                    "Proxy Type": "",
                    "Proxy": "",
                    "Difficulty Accepted": 0.0,
                    "Difficulty Rejected": 0.0,
                    "Difficulty Stale": 0.0,
                    "Last Share Difficulty": 0.0,
                    "Has Stratum": True,
                    "Stratum Active": i == 0,
                    "Stratum URL": u.split("://")[-1].split(":")[0] if i == 0 else "",
                    "Has GBT": False,
                    "Best Share": 0.0,
                    "Pool Rejected%": 0.0,
                    "Pool Stale%%": 0.0,
                }
            )
        return {
            "STATUS": status_block(now, 7, f"{len(pools)} Pool(s)", self.description(rig)),
            "POOLS": pools,
            "id": 1,
        }

    def devs(self, rig: SimRig, _: str | None, now: float) -> Reply:
        return {
            "STATUS": status_block(now, 9, "1 ASC(s)", self.description(rig)),
            "DEVS": [
                {
                    "ASC": 0,
                    "Name": "BTM_SOC",
                    "ID": 0,
                    "Enabled": "Y",
                    "Status": "Alive",
                    "Tenperature": 0.0,
                    "MHS av": 0.0,
                    "MHS 5s": 0.0,
                    "Total MH": 0.0,
                    "Device Elapsed": rig.uptime_s(now),
                    "Accepted": rig.accepted_shares(now),
                    "Rejected": 11,
                    "Hardware Errors": 0,
                    "Utility": 0.0,
                }
            ],
            "id": 1,
        }

    # --- web API (/cgi-bin/*.cgi behind digest auth) ---

    def miner_conf(self, rig: SimRig) -> Reply:
        """What get_miner_conf.cgi returns; `bitmain-work-mode` mirrors `miner-mode`."""
        return {
            "pools": [
                {"url": rig.pool_url, "user": rig.pool_user, "pass": "x"},
                {"url": BACKUP_POOL, "user": rig.pool_user, "pass": "x"},
            ],
            "api-listen": True,
            "api-network": True,
            "api-groups": "A:stats:pools:devs:summary:version",
            "api-allow": "A:0/0,W:*",
            "bitmain-fan-ctrl": False,
            "bitmain-fan-pwm": "100",
            "bitmain-use-vil": True,
            "bitmain-freq": "675",
            "bitmain-voltage": "1400",
            "bitmain-ccdelay": "0",
            "bitmain-pwth": "0",
            "bitmain-work-mode": "1" if rig.mode == "curtailed" else "0",
            "bitmain-freq-level": "100",
        }

    def system_info(self, rig: SimRig) -> Reply:
        """What get_system_info.cgi returns (the rig's MAC and serial live here, not in the RPC)."""
        return {
            "minertype": rig.model.model,
            "nettype": "DHCP",
            "netdevice": "eth0",
            "macaddr": rig.mac,
            "hostname": rig.hostname,
            "ipaddress": rig.host,
            "netmask": "255.255.255.0",
            "gateway": "",
            "dnsservers": "",
            "system_mode": "GNU/Linux",
            "system_kernel_version": "Linux 4.9.38 #1 SMP PREEMPT Fri Dec 11 11:12:16 CST 2020",
            "system_filesystem_version": "Fri Dec 11 11:23:44 CST 2020",
            "firmware_type": "Release",
            "serinum": rig.serial,
        }

    def handle_http(self, rig: SimRig, req: HttpRequest, now: float) -> HttpReply:
        """Digest-authenticated web API; anything unauthenticated gets the 401 challenge."""
        if not self.gate.check(req, rig.username, rig.password):
            return self.gate.challenge()
        return self.http(rig, req.method, req.path, req.body, now)

    def http(self, rig: SimRig, method: str, path: str, body: bytes, now: float) -> HttpReply:
        """Route one authenticated web request."""
        if path == "/cgi-bin/get_system_info.cgi":
            return json_reply(self.system_info(rig))
        if path == "/cgi-bin/get_miner_conf.cgi":
            return json_reply(self.miner_conf(rig))
        if path == "/cgi-bin/set_miner_conf.cgi" and method == "POST":
            try:
                conf = json.loads(body or b"{}")
                mode = int(conf["miner-mode"])
            except (ValueError, KeyError, TypeError):
                return json_reply({"stats": "error", "code": "M001", "msg": "Invalid param!"})
            if mode == 1:
                rig.curtail(now)
            elif mode == 0:
                rig.resume(now)
            else:
                return json_reply({"stats": "error", "code": "M001", "msg": "Invalid param!"})
            return json_reply({"stats": "success", "code": "M000", "msg": "OK!"})
        if path == "/cgi-bin/reboot.cgi":
            rig.reboot(now)
            return json_reply({"stats": "success", "code": "R000", "msg": "reboot ok"})
        return 404, {"Content-Type": "text/html"}, b"<html><body>404 Not Found</body></html>"
