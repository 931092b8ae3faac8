"""The `RigDriver` protocol every firmware family implements, and the errors drivers raise."""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from miners.status import RigStatus


class Capability(enum.StrEnum):
    """An action a driver can perform on its rig."""

    CURTAIL = "curtail"
    RESUME = "resume"
    POWER_TARGET = "power_target"
    REBOOT = "reboot"
    RESTART_MINING = "restart_mining"


class RigError(Exception):
    """Base error for anything that went wrong talking to a rig; always names the rig."""

    def __init__(self, rig: str, message: str) -> None:
        super().__init__(f"{rig}: {message}")
        self.rig = rig


class RigUnsupportedAction(RigError):
    """The rig's firmware cannot perform the requested action."""


class RigActionNotVerified(RigError):
    """The action was sent but reading the state back did not confirm it."""


@runtime_checkable
class RigDriver(Protocol):
    """One rig, one firmware family. Actions raise `RigUnsupportedAction` when not capable."""

    family: str

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The actions this rig's firmware supports."""
        ...

    async def status(self) -> RigStatus:
        """Read the rig and return its normalized status (offline/error states, never raises)."""
        ...

    async def curtail(self) -> None:
        """Stop hashing (low-power sleep where the firmware has it); verified by reading back."""
        ...

    async def resume(self) -> None:
        """Start hashing again after a curtail; verified by reading back."""
        ...

    async def set_power_target(self, watts: int) -> None:
        """Set the rig's power limit in watts; verified by reading back."""
        ...

    async def reboot(self) -> None:
        """Reboot the rig's controller."""
        ...
