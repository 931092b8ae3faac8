"""Rigs that speak MQTT: telemetry in, commands out, acknowledged by request id.

Topic layout (prefix configurable, default `farm`), one subtree per rig:

    farm/<site>/<rig>/telemetry     rig -> controller, JSON `TelemetryPayload`, QoS 1
    farm/<site>/<rig>/availability  rig -> controller, "online"/"offline", retained, last will
    farm/<site>/<rig>/cmd           controller -> rig, JSON `{"id", "action", ...}`, QoS 1
    farm/<site>/<rig>/ack           rig -> controller, JSON `{"id", "ok", "error", ...}`, QoS 1

`MqttRigHub` holds one subscription for the whole fleet and the latest telemetry per rig;
`MqttRigDriver` is one rig behind the same `RigDriver` protocol as the RPC drivers. An action
that is not acknowledged within the timeout fails with a `RigError` that says so; an
acknowledged curtail/resume/power target is then verified against the rig's next telemetry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from miners.driver import Capability, RigActionNotVerified, RigError, RigUnsupportedAction
from miners.status import BoardStatus, PoolStatus, RigState, RigStatus

logger = logging.getLogger(__name__)

FAMILY = "mqtt"
DEFAULT_PREFIX = "farm"
# A telemetry message larger than this is refused before parsing (a rig's sample is ~1 KB).
MAX_PAYLOAD_BYTES = 64 * 1024
TopicKind = Literal["telemetry", "availability", "cmd", "ack"]
_KINDS: frozenset[str] = frozenset(("telemetry", "availability", "cmd", "ack"))


class MqttPayloadError(ValueError):
    """A payload could not be accepted; the message names the topic and what was wrong."""


class MqttTransport(Protocol):
    """What the hub needs from an MQTT connection (the controller's `MqttClient` fits)."""

    def subscribe(self, topic_filter: str, handler: Callable[[Any], None], qos: int = 1) -> None:
        """Route messages matching `topic_filter` to `handler(msg)` (msg has .topic, .payload)."""
        ...

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        msg_id: str | None = None,
    ) -> Any:
        """Publish one message."""
        ...


def _valid_segment(name: str, what: str) -> str:
    if not name or any(c in name for c in "/+#") or len(name) > 64:
        raise ValueError(f"{what} {name!r} is not a valid topic segment (no / + #, 1-64 chars)")
    return name


@dataclass(frozen=True, slots=True)
class RigTopics:
    """The topic layout `<prefix>/<site>/<rig>/<kind>`."""

    prefix: str = DEFAULT_PREFIX

    def topic(self, site: str, rig: str, kind: TopicKind) -> str:
        """Topic of one rig's `kind` channel."""
        return f"{self.prefix}/{_valid_segment(site, 'site')}/{_valid_segment(rig, 'rig')}/{kind}"

    def filter(self, kind: TopicKind, site: str = "+") -> str:
        """Subscription filter for `kind` of every rig (of one site, or all)."""
        return f"{self.prefix}/{site}/+/{kind}"

    def parse(self, topic: str) -> tuple[str, str, TopicKind] | None:
        """(site, rig, kind) of a topic in this layout, or None when it is not one."""
        parts = topic.split("/")
        pre = self.prefix.split("/")
        if len(parts) != len(pre) + 3 or parts[: len(pre)] != pre:
            return None
        site, rig, kind = parts[len(pre) :]
        if kind not in _KINDS or not site or not rig:
            return None
        return site, rig, kind  # type: ignore[return-value]


class BoardPayload(BaseModel):
    """One hashboard in a telemetry payload."""

    model_config = ConfigDict(extra="ignore")
    index: int = Field(ge=0)
    hashrate_ths: float | None = Field(default=None, ge=0)
    temp_c: float | None = None
    chip_temp_c: float | None = None
    chips: int | None = Field(default=None, ge=0)
    expected_chips: int | None = Field(default=None, ge=0)


class PoolPayload(BaseModel):
    """One pool in a telemetry payload."""

    model_config = ConfigDict(extra="ignore")
    url: str | None = None
    user: str | None = None
    status: str | None = None
    accepted: int | None = Field(default=None, ge=0)
    rejected: int | None = Field(default=None, ge=0)


class TelemetryPayload(BaseModel):
    """What a rig (or its agent) publishes on `.../telemetry`: the `RigStatus` field names.

    `id` is unique per message (dedup key), `ts` is when the sample was taken (timezone-aware).
    Unknown keys are ignored so agents can add fields without breaking older controllers.
    """

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=128)
    ts: AwareDatetime
    state: RigState
    state_reason: str | None = None
    mac: str | None = Field(default=None, max_length=17)
    serial: str | None = None
    hostname: str | None = None
    make: str | None = None
    model: str | None = None
    firmware: str | None = None
    hashrate_ths: float | None = Field(default=None, ge=0)
    hashrate_avg_ths: float | None = Field(default=None, ge=0)
    expected_hashrate_ths: float | None = Field(default=None, ge=0)
    power_w: float | None = Field(default=None, ge=0)
    power_target_w: int | None = Field(default=None, ge=0)
    boards: list[BoardPayload] = Field(default_factory=list, max_length=16)
    fans_rpm: list[int] = Field(default_factory=list, max_length=16)
    pools: list[PoolPayload] = Field(default_factory=list, max_length=8)
    uptime_s: int | None = Field(default=None, ge=0)
    errors: list[str] = Field(default_factory=list, max_length=32)
    capabilities: list[Capability] | None = None


def parse_telemetry(topic: str, payload: bytes) -> TelemetryPayload:
    """Validate one telemetry payload; `MqttPayloadError` names the topic and the problem."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MqttPayloadError(
            f"{topic}: payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        return TelemetryPayload.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise MqttPayloadError(f"{topic}: invalid telemetry at {where}: {first['msg']}") from None


def telemetry_to_status(site: str, rig: str, t: TelemetryPayload) -> RigStatus:
    """The normalized `RigStatus` of one telemetry sample (power from the rig: `reported`)."""
    efficiency = None
    if t.power_w and t.hashrate_ths and t.state == "hashing":
        efficiency = round(t.power_w / t.hashrate_ths, 3)
    return RigStatus(
        mac=t.mac.lower() if t.mac else None,
        serial=t.serial,
        hostname=t.hostname or rig,
        family=FAMILY,
        make=t.make,
        model=t.model,
        firmware=t.firmware,
        state=t.state,
        state_reason=t.state_reason,
        hashrate_ths=t.hashrate_ths,
        hashrate_avg_ths=t.hashrate_avg_ths,
        expected_hashrate_ths=t.expected_hashrate_ths,
        boards=[BoardStatus(**b.model_dump()) for b in t.boards],
        fans_rpm=list(t.fans_rpm),
        power_w=t.power_w,
        power_source="reported" if t.power_w is not None else None,
        efficiency_jth=efficiency,
        pools=[PoolStatus(**p.model_dump()) for p in t.pools],
        uptime_s=t.uptime_s,
        errors=list(t.errors),
        last_seen=t.ts,
    )


@dataclass(slots=True)
class _RigView:
    telemetry: TelemetryPayload | None = None
    received_mono: float = 0.0
    available: bool | None = None


@dataclass(slots=True)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[dict[str, Any]]


class MqttRigHub:
    """One fleet-wide subscription to rig telemetry, availability and acks."""

    def __init__(
        self,
        transport: MqttTransport,
        *,
        prefix: str = DEFAULT_PREFIX,
        site: str = "+",
        stale_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.topics = RigTopics(prefix)
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._rigs: dict[tuple[str, str], _RigView] = {}
        self._waiters: dict[str, _Waiter] = {}
        self.dropped = 0
        transport.subscribe(self.topics.filter("telemetry", site), self._on_telemetry, 1)
        transport.subscribe(self.topics.filter("availability", site), self._on_availability, 1)
        transport.subscribe(self.topics.filter("ack", site), self._on_ack, 1)

    # ---- paho thread -------------------------------------------------------------------------
    def _on_telemetry(self, msg: Any) -> None:
        parsed = self.topics.parse(msg.topic)
        if parsed is None:
            self.dropped += 1
            logger.warning("mqtt rig telemetry on unknown topic=%s dropped", msg.topic)
            return
        site, rig, _ = parsed
        try:
            telemetry = parse_telemetry(msg.topic, msg.payload)
        except MqttPayloadError as exc:
            self.dropped += 1
            logger.warning("mqtt rig telemetry dropped: %s", exc)
            return
        with self._lock:
            view = self._rigs.setdefault((site, rig), _RigView())
            if view.telemetry is not None and telemetry.ts < view.telemetry.ts:
                return  # a redelivered older sample must not overwrite a newer one
            view.telemetry = telemetry
            view.received_mono = self._clock()

    def _on_availability(self, msg: Any) -> None:
        parsed = self.topics.parse(msg.topic)
        if parsed is None:
            return
        text = bytes(msg.payload).decode(errors="replace").strip().lower()
        if text not in ("online", "offline"):
            self.dropped += 1
            logger.warning(
                "mqtt availability topic=%s payload=%r not online/offline", msg.topic, text[:40]
            )
            return
        with self._lock:
            self._rigs.setdefault(parsed[:2], _RigView()).available = text == "online"

    def _on_ack(self, msg: Any) -> None:
        try:
            ack = json.loads(msg.payload)
            request_id = ack["id"]
        except (ValueError, KeyError, TypeError):
            self.dropped += 1
            logger.warning("mqtt ack on topic=%s malformed; dropped", msg.topic)
            return
        with self._lock:
            waiter = self._waiters.pop(str(request_id), None)
        if waiter is None:
            logger.info("mqtt ack topic=%s id=%s matches no pending command", msg.topic, request_id)
            return
        waiter.loop.call_soon_threadsafe(_set_result, waiter.future, ack)

    # ---- queries -----------------------------------------------------------------------------
    def rigs(self) -> list[tuple[str, str]]:
        """(site, rig) of every rig heard from so far."""
        with self._lock:
            return sorted(self._rigs)

    def telemetry(self, site: str, rig: str) -> TelemetryPayload | None:
        """The latest telemetry sample of a rig (None before the first)."""
        with self._lock:
            view = self._rigs.get((site, rig))
            return view.telemetry if view else None

    def status(self, site: str, rig: str) -> RigStatus:
        """The rig's current normalized status: offline when it said so, went silent or is unknown."""
        with self._lock:
            view = self._rigs.get((site, rig))
            telemetry = view.telemetry if view else None
            available = view.available if view else None
            age = self._clock() - view.received_mono if view and telemetry else None
        if telemetry is None:
            why = "rig went offline (last will)" if available is False else "no telemetry yet"
            return RigStatus(
                hostname=rig, family=FAMILY, state="offline", state_reason=why, errors=[why]
            )
        status = telemetry_to_status(site, rig, telemetry)
        reason: str | None = None
        if available is False:
            reason = "rig went offline (last will / availability topic)"
        elif age is not None and age > self.stale_after_s:
            reason = f"no telemetry for {age:.0f}s (limit {self.stale_after_s:.0f}s)"
        if reason is None:
            return status
        # identity kept, live values cleared: an old hashrate must never look current
        return RigStatus(
            mac=status.mac,
            serial=status.serial,
            hostname=status.hostname,
            family=FAMILY,
            make=status.make,
            model=status.model,
            firmware=status.firmware,
            state="offline",
            state_reason=reason,
            expected_hashrate_ths=status.expected_hashrate_ths,
            errors=[reason],
            last_seen=status.last_seen,
        )

    # ---- commands ----------------------------------------------------------------------------
    async def command(
        self, site: str, rig: str, action: str, timeout_s: float, **params: Any
    ) -> dict[str, Any]:
        """Send one command and wait for its ack; `RigError` when none arrives within the timeout."""
        loop = asyncio.get_running_loop()
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        with self._lock:
            self._waiters[request_id] = _Waiter(loop, future)
        now = datetime.now(UTC)
        body = {
            "id": request_id,
            "action": action,
            "ts": now.isoformat(),
            # an agent that comes back late must not act on a command nobody waits for any more
            "expires_at": (now + timedelta(seconds=timeout_s)).isoformat(),
            **params,
        }
        name = f"{site}/{rig}"
        try:
            self.transport.publish(
                self.topics.topic(site, rig, "cmd"), json.dumps(body), qos=1, msg_id=request_id
            )
            async with asyncio.timeout(timeout_s):
                ack = await future
        except TimeoutError:
            raise RigError(
                name,
                f"{action}: no ack on {self.topics.topic(site, rig, 'ack')} within {timeout_s:.1f}s",
            ) from None
        finally:
            with self._lock:
                self._waiters.pop(request_id, None)
        if not ack.get("ok", False):
            error = str(ack.get("error") or "rig refused without a reason")
            if ack.get("unsupported"):
                raise RigUnsupportedAction(name, f"{action}: {error}")
            raise RigError(name, f"{action} refused: {error}")
        return ack

    def driver(self, site: str, rig: str, **kwargs: Any) -> MqttRigDriver:
        """A `RigDriver` for one rig of this hub."""
        return MqttRigDriver(self, site, rig, **kwargs)


def _set_result(future: asyncio.Future[dict[str, Any]], value: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(value)


DEFAULT_CAPABILITIES = frozenset(
    (Capability.CURTAIL, Capability.RESUME, Capability.POWER_TARGET, Capability.REBOOT)
)


class MqttRigDriver:
    """One MQTT rig behind the `RigDriver` protocol."""

    family = FAMILY

    def __init__(
        self,
        hub: MqttRigHub,
        site: str,
        rig: str,
        *,
        ack_timeout_s: float = 5.0,
        verify_timeout_s: float = 10.0,
    ) -> None:
        self.hub = hub
        self.site = _valid_segment(site, "site")
        self.rig = _valid_segment(rig, "rig")
        self.ack_timeout_s = ack_timeout_s
        self.verify_timeout_s = verify_timeout_s

    @property
    def name(self) -> str:
        """`site/rig`, as errors name it."""
        return f"{self.site}/{self.rig}"

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What the rig said it can do in its telemetry, else curtail/resume/power target/reboot."""
        telemetry = self.hub.telemetry(self.site, self.rig)
        if telemetry is not None and telemetry.capabilities is not None:
            return frozenset(telemetry.capabilities)
        return DEFAULT_CAPABILITIES

    async def status(self) -> RigStatus:
        """Latest telemetry as `RigStatus`; offline when silent or announced offline. Never raises."""
        return self.hub.status(self.site, self.rig)

    def _require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise RigUnsupportedAction(
                self.name, f"{capability.value} not in the rig's capabilities"
            )

    async def _verify(
        self, check: Callable[[TelemetryPayload], bool], what: str, after: datetime
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.verify_timeout_s
        while True:
            telemetry = self.hub.telemetry(self.site, self.rig)
            if telemetry is not None and telemetry.ts >= after and check(telemetry):
                return
            if loop.time() >= deadline:
                seen = telemetry.state if telemetry else "no telemetry"
                raise RigActionNotVerified(
                    self.name,
                    f"{what} acknowledged but telemetry within {self.verify_timeout_s:.0f}s shows {seen}",
                )
            await asyncio.sleep(0.05)

    async def curtail(self) -> None:
        """Ask the rig to stop hashing; verified by a later telemetry sample saying `curtailed`."""
        self._require(Capability.CURTAIL)
        sent = datetime.now(UTC) - timedelta(seconds=1)
        await self.hub.command(self.site, self.rig, "curtail", self.ack_timeout_s)
        await self._verify(lambda t: t.state == "curtailed", "curtail", sent)

    async def resume(self) -> None:
        """Ask the rig to hash again; verified by a later telemetry sample saying `hashing`."""
        self._require(Capability.RESUME)
        sent = datetime.now(UTC) - timedelta(seconds=1)
        await self.hub.command(self.site, self.rig, "resume", self.ack_timeout_s)
        await self._verify(lambda t: t.state == "hashing", "resume", sent)

    async def set_power_target(self, watts: int) -> None:
        """Set the rig's power limit; verified by `power_target_w` in a later telemetry sample."""
        self._require(Capability.POWER_TARGET)
        if watts <= 0:
            raise RigError(self.name, f"power target must be positive, got {watts} W")
        sent = datetime.now(UTC) - timedelta(seconds=1)
        await self.hub.command(
            self.site, self.rig, "set_power_target", self.ack_timeout_s, watts=watts
        )
        await self._verify(lambda t: t.power_target_w == watts, f"power target {watts} W", sent)

    async def reboot(self) -> None:
        """Ask the rig to reboot (acknowledged by the agent; not verified: the rig goes away)."""
        self._require(Capability.REBOOT)
        await self.hub.command(self.site, self.rig, "reboot", self.ack_timeout_s)
