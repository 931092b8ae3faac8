"""One simulated rig: identity, hashing/curtailed state with ramps, power target and faults."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from miners.sim.catalog import MODELS, SimModel


class Fault(enum.StrEnum):
    """Misbehaviours a simulated rig can be told to show."""

    HANG = "hang"  # accept the connection, never answer
    RESET = "reset"  # accept, then reset the connection (RST)
    SLOW_DRIP = "slow_drip"  # answer a few bytes at a time, far slower than any read timeout
    GARBAGE = "garbage"  # answer random binary bytes
    MALFORMED_JSON = "malformed_json"  # answer JSON with a missing comma
    OVERHEAT = "overheat"  # boards at 88-97 C, hashing stopped by the firmware's protection
    DEAD_FAN = "dead_fan"  # one fan at 0 rpm
    MISSING_BOARD = "missing_board"  # the last hashboard is not detected
    FOREIGN_POOL = "foreign_pool"  # the active pool was switched to someone else's


TRANSPORT_FAULTS = frozenset(
    {Fault.HANG, Fault.RESET, Fault.SLOW_DRIP, Fault.GARBAGE, Fault.MALFORMED_JSON}
)
FOREIGN_POOL_URL = "stratum+tcp://foreign.pool.example:3333"
FOREIGN_POOL_USER = "thief.worker1"


@dataclass(slots=True)
class Ramp:
    """Linear ramp of the hashing level (0 = stopped, 1 = full) between two instants."""

    start_level: float
    end_level: float
    t0: float
    duration_s: float

    def level(self, now: float) -> float:
        """Hashing level at `now`."""
        if self.duration_s <= 0 or now >= self.t0 + self.duration_s:
            return self.end_level
        frac = max(0.0, (now - self.t0) / self.duration_s)
        return self.start_level + (self.end_level - self.start_level) * frac


@dataclass(slots=True)
class SimRig:
    """A simulated rig. Any change a reply would show clears its reply cache."""

    index: int
    family: str
    host: str
    port: int | None
    http_port: int | None = None
    v3_port: int | None = None
    model: SimModel = field(default=MODELS["antminer"])
    mac: str = ""
    serial: str = ""
    hostname: str = ""
    username: str = "root"
    password: str = "root"
    pool_url: str = "stratum+tcp://btc.pool.example:3333"
    pool_user: str = "farm.rig"
    mode: str = "hashing"  # "hashing" or "curtailed", as the firmware's own flag
    power_limit_w: float = 0.0
    frequency_mhz: int = 490
    core_voltage_mv: int = 1166
    profile: str = "default"
    ramp_up_s: float = 5.0
    ramp_down_s: float = 1.0
    reboot_s: float = 2.0
    boot_time: float = 0.0
    down_until: float = 0.0
    latency_s: float = 0.0
    # Read replies are rebuilt at most once per this many seconds (bmminer too refreshes its
    # stats every few seconds); any state change clears the cache at once.
    reply_cache_s: float = 1.0
    faults: set[Fault] = field(default_factory=set)
    disabled_boards: set[int] = field(default_factory=set)  # cgminer ascdisable
    session_id: str = ""  # LuxOS logon session
    version: int = 0
    ramp: Ramp = field(default_factory=lambda: Ramp(1.0, 1.0, 0.0, 0.0))
    cache: dict[Any, tuple[Any, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.power_limit_w:
            self.power_limit_w = self.model.nominal_w
        if not self.boot_time:
            self.boot_time = time.time() - 3600.0 - self.index % 997

    @property
    def name(self) -> str:
        """host:port the rig is reached at (its HTTP port for HTTP-only rigs)."""
        return f"{self.host}:{self.port if self.port is not None else self.http_port}"

    def _changed(self) -> None:
        self.version += 1
        self.cache.clear()

    def level(self, now: float) -> float:
        """Hashing level 0..1 right now (ramps, overheat protection and missing boards included)."""
        if Fault.OVERHEAT in self.faults:
            return 0.0
        lvl = self.ramp.level(now)
        if self.disabled_boards:
            lvl *= max(0, self.model.boards - len(self.disabled_boards)) / self.model.boards
        if Fault.MISSING_BOARD in self.faults and self.model.boards > 1:
            lvl *= (self.model.boards - 1) / self.model.boards
        return lvl

    def ramping(self, now: float) -> bool:
        """True while a curtail or resume ramp is still moving."""
        return now < self.ramp.t0 + self.ramp.duration_s

    def power_scale(self) -> float:
        """Share of nominal hashrate and power allowed by the power target."""
        return min(1.0, self.power_limit_w / self.model.nominal_w)

    def hashrate_ths(self, now: float) -> float:
        """Current hashrate in TH/s."""
        return self.model.nominal_ths * self.power_scale() * self.level(now)

    def power_w(self, now: float) -> float:
        """Current wall power in watts: standby draw plus the hashing share."""
        full = min(self.power_limit_w, self.model.nominal_w)  # the limit caps the wall draw
        hashing = (full - self.model.sleep_w) * self.level(now)
        return round(self.model.sleep_w + hashing, 1)

    def uptime_s(self, now: float) -> int:
        """Seconds since the last (simulated) boot."""
        return max(0, int(now - self.boot_time))

    def board_temp_c(self, board: int, now: float) -> float:
        """Board temperature: idle at 30 C, hashing near 62 C, 88-97 C when overheating."""
        if Fault.OVERHEAT in self.faults:
            return 88.0 + 4 * board
        return round(30.0 + 32.0 * self.level(now) + board * 1.5, 1)

    def fan_rpm(self, fan: int, now: float) -> int:
        """Fan speed; fans stop while curtailed (sleep mode) and one is dead with DEAD_FAN."""
        if Fault.DEAD_FAN in self.faults and fan == 0:
            return 0
        if Fault.OVERHEAT in self.faults:
            return 6000 + 60 * fan
        if self.mode == "curtailed" and not self.ramping(now):
            return 0
        return int(2400 + 2400 * self.level(now) + 60 * fan)

    def boards_present(self) -> int:
        """Hashboards the firmware detects."""
        if Fault.MISSING_BOARD in self.faults and self.model.boards > 1:
            return self.model.boards - 1
        return self.model.boards

    def active_pool(self) -> tuple[str, str]:
        """(url, user) of the pool the rig is hashing on."""
        if Fault.FOREIGN_POOL in self.faults:
            return FOREIGN_POOL_URL, FOREIGN_POOL_USER
        return self.pool_url, self.pool_user

    def accepted_shares(self, now: float) -> int:
        """A share counter that grows with uptime and hashrate."""
        return int(self.uptime_s(now) * self.hashrate_ths(now) / 60.0)

    # --- control (what the firmware does when a command arrives) ---

    def curtail(self, now: float) -> None:
        """Enter sleep: hashrate and power fall over `ramp_down_s`."""
        if self.mode == "curtailed":
            return
        self.ramp = Ramp(self.ramp.level(now), 0.0, now, self.ramp_down_s)
        self.mode = "curtailed"
        self._changed()

    def resume(self, now: float) -> None:
        """Leave sleep: hashrate ramps back over `ramp_up_s`."""
        if self.mode == "hashing":
            return
        self.ramp = Ramp(self.ramp.level(now), 1.0, now, self.ramp_up_s)
        self.mode = "hashing"
        self._changed()

    def set_power_limit(self, watts: float) -> None:
        """Apply a power target (clamped to the model's nominal power)."""
        self.power_limit_w = float(max(100.0, min(watts, self.model.nominal_w)))
        self._changed()

    def reboot(self, now: float) -> None:
        """Go down for `reboot_s`, then boot and ramp up from zero in the mode kept on flash."""
        self.down_until = now + self.reboot_s
        self.boot_time = now + self.reboot_s
        end = 1.0 if self.mode == "hashing" else 0.0
        self.ramp = Ramp(0.0, end, now + self.reboot_s, self.ramp_up_s)
        self._changed()

    def set_fault(self, fault: Fault | str, on: bool = True) -> None:
        """Switch one fault on or off."""
        f = Fault(fault)
        if on:
            self.faults.add(f)
        else:
            self.faults.discard(f)
        self._changed()

    def clear_faults(self) -> None:
        """Remove every fault."""
        self.faults.clear()
        self._changed()

    def manifest(self) -> dict[str, Any]:
        """Endpoints and identity of this rig, as written to the simulator's manifest."""
        return {
            "index": self.index,
            "family": self.family,
            "model": self.model.model,
            "host": self.host,
            "port": self.port,
            "http_port": self.http_port,
            "v3_port": self.v3_port,
            "mac": self.mac,
            "serial": self.serial,
        }
