"""Operator commands received over MQTT and the acks sent back, as pydantic schemas."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

MAX_OVERRIDE = timedelta(days=7)
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^/+#]+$")]


class TargetRef(BaseModel):
    """What a command acts on: one rig, every rig of a rack, or every rig of a site."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["rig", "rack", "site"]
    id: Name
    site: Name | None = Field(default=None, description="site of the rig or rack, when ambiguous")


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(min_length=1, max_length=128)]
    target: TargetRef
    reason: Annotated[str, Field(max_length=500)] | None = None


class CurtailCommand(_Command):
    """Stop hashing on the target now (until a resume or the plan says otherwise)."""

    action: Literal["curtail"]


class ResumeCommand(_Command):
    """Hash again on the target now."""

    action: Literal["resume"]


class OverrideCommand(_Command):
    """Force the target's state for a window, whatever the hashing plan says."""

    action: Literal["override"]
    state: Literal["hashing", "curtailed"]
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _window(self) -> OverrideCommand:
        if self.end <= self.start:
            raise ValueError(
                f"override end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )
        if self.end - self.start > MAX_OVERRIDE:
            raise ValueError(
                f"override window {self.end - self.start} is longer than {MAX_OVERRIDE}"
            )
        return self


OperatorCommand = Annotated[
    CurtailCommand | ResumeCommand | OverrideCommand, Field(discriminator="action")
]
OPERATOR_COMMAND: TypeAdapter[CurtailCommand | ResumeCommand | OverrideCommand] = TypeAdapter(
    OperatorCommand
)


class CommandAck(BaseModel):
    """The answer to one operator command, published on the ack topic."""

    id: str | None
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    ts: AwareDatetime
