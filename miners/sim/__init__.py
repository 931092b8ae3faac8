"""Rig simulator: many rigs of mixed firmware families on real TCP/HTTP ports of 127.0.0.1."""

from miners.sim.rig import Fault, SimRig
from miners.sim.simulator import DEFAULT_LOGINS, Simulator, parse_mix

__all__ = ["DEFAULT_LOGINS", "Fault", "SimRig", "Simulator", "parse_mix"]
