"""Bitaxe Supra on AxeOS: HTTP only. GET /api/system/info, PATCH /api/system, POST /api/system/restart.

AxeOS has no sleep mode: there is nothing to curtail. Settings (frequency, coreVoltage) apply
after a restart on the real device; the simulator applies them at once.
"""

from __future__ import annotations

import json
from typing import Any

from miners.sim.http import HttpReply, HttpRequest, json_reply, text_reply
from miners.sim.rig import Fault, SimRig

NOMINAL_FREQ_MHZ = 490
SETTABLE = {"frequency", "coreVoltage", "fanspeed", "autofanspeed", "hostname"}


class BitaxeFamily:
    """AxeOS v2.4.5 HTTP API (no auth, as shipped)."""

    family = "bitaxe"

    def info(self, rig: SimRig, now: float) -> dict[str, Any]:
        """GET /api/system/info, shaped like the captured BM1368 reply (hashRate in GH/s)."""
        ghs = rig.hashrate_ths(now) * 1000.0 * rig.frequency_mhz / NOMINAL_FREQ_MHZ
        url, user = rig.active_pool()
        host_port = url.split("://")[-1]
        return {
            "ASICModel": "BM1368",
            "asicCount": 1,
            "autofanspeed": 1,
            "bestDiff": "483k",
            "bestSessionDiff": "0",
            "boardVersion": "401",
            "coreVoltage": rig.core_voltage_mv,
            "coreVoltageActual": rig.core_voltage_mv + 6,
            "current": 521.25,
            "fallbackStratumPort": 3333,
            "fallbackStratumURL": "btc2.example.pool",
            "fallbackStratumUser": rig.pool_user,
            "fanrpm": rig.fan_rpm(0, now),
            "fanspeed": 35,
            "freeHeap": 8443612,
            "frequency": rig.frequency_mhz,
            "hashRate": round(ghs, 2),
            "hostname": rig.hostname,
            "idfVersion": "v5.4",
            "isUsingFallbackStratum": 0,
            "macAddr": rig.mac,
            "overheat_mode": 1 if Fault.OVERHEAT in rig.faults else 0,
            "power": round(rig.power_w(now), 2),
            "runningPartition": "factory",
            "sharesAccepted": rig.accepted_shares(now),
            "sharesRejected": 0,
            "smallCoreCount": 1276,
            "ssid": "farm",
            "stratumDiff": 1000,
            "stratumPort": int(host_port.rsplit(":", 1)[-1]) if ":" in host_port else 3333,
            "stratumURL": host_port.rsplit(":", 1)[0],
            "stratumUser": user,
            "temp": rig.board_temp_c(0, now),
            "uptimeSeconds": rig.uptime_s(now),
            "version": rig.model.firmware,
            "voltage": 5175,
            "vrTemp": 48,
            "wifiStatus": "Connected!",
        }

    def handle_http(self, rig: SimRig, req: HttpRequest, now: float) -> HttpReply:
        """Route one AxeOS request."""
        if req.path == "/api/system/info" and req.method == "GET":
            body = json.dumps(self.info(rig, now)).encode()
            if Fault.MALFORMED_JSON in rig.faults:
                body = body.replace(b', "', b' "', 1)
            return 200, {"Content-Type": "application/json"}, body
        if req.path == "/api/system/restart" and req.method == "POST":
            rig.reboot(now)
            return text_reply("System will restart shortly.")
        if req.path == "/api/system" and req.method == "PATCH":
            try:
                patch = json.loads(req.body or b"{}")
                if not isinstance(patch, dict):
                    raise ValueError("not an object")
            except ValueError:
                return text_reply("Invalid JSON", 400)
            unknown = set(patch) - SETTABLE
            if unknown:
                return text_reply(f"Unknown settings {sorted(unknown)}", 400)
            if "frequency" in patch:
                rig.frequency_mhz = int(patch["frequency"])
            if "coreVoltage" in patch:
                rig.core_voltage_mv = int(patch["coreVoltage"])
            if "hostname" in patch:
                rig.hostname = str(patch["hostname"])
            rig.cache.clear()
            return json_reply({})
        return text_reply("Not found", 404)
