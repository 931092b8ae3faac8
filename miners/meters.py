"""Power meters over MQTT (Tasmota, Shelly Gen2) and which power figure a rig is given.

Tasmota publishes `tele/<id>/SENSOR` with `{"ENERGY": {"Power": W, "Total": kWh, ...}}` and a
retained `tele/<id>/LWT` of `Online`/`Offline`. A Shelly Gen2 device publishes RPC notifications
on `<id>/events/rpc`: `NotifyFullStatus` carries every component, `NotifyStatus` only what
changed, so partial frames are overlaid on the last known state (never reset it); its
`<id>/online` topic is `true`/`false`. Readings are normalized to W and Wh.

A meter measures a rig, a rack or a PDU. For each rig, measured power wins over the power the
rig reports, which wins over its nameplate, and `power_source` says which was used. A meter
that has been silent longer than `silence_s` is not trusted: the rig falls back, and the
resolution carries `meter_silent=True` so an operator sees the meter is down.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from miners.status import PowerSource, RigStatus

logger = logging.getLogger(__name__)

MeterKind = Literal["tasmota", "shelly"]
MeterScope = Literal["rig", "rack", "pdu"]
MAX_METER_PAYLOAD_BYTES = 32 * 1024


class MeterPayloadError(ValueError):
    """A meter payload could not be understood; the message names the meter and the problem."""


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One normalized reading: power in W, cumulative energy in Wh."""

    meter_id: str
    power_w: float | None
    energy_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    time: datetime | None = None

    @property
    def energy_kwh(self) -> float | None:
        """Cumulative energy in kWh."""
        return None if self.energy_wh is None else self.energy_wh / 1000.0


def _number(value: Any, what: str, meter_id: str) -> float | None:
    """A float from a number or a list of numbers (multi-channel devices: summed)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise MeterPayloadError(f"meter {meter_id}: {what} is a boolean, expected a number")
    if isinstance(value, int | float):
        return float(value)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return float(sum(value))
    raise MeterPayloadError(f"meter {meter_id}: {what}={value!r} is not a number")


def _json_object(meter_id: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_METER_PAYLOAD_BYTES:
        raise MeterPayloadError(
            f"meter {meter_id}: payload of {len(payload)} bytes exceeds {MAX_METER_PAYLOAD_BYTES}"
        )
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MeterPayloadError(f"meter {meter_id}: payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MeterPayloadError(
            f"meter {meter_id}: payload is {type(data).__name__}, expected an object"
        )
    return data


def parse_tasmota_sensor(meter_id: str, payload: bytes, received: datetime) -> MeterReading:
    """Parse a Tasmota `tele/<id>/SENSOR` message (ENERGY.Power in W, ENERGY.Total in kWh).

    Tasmota's `Time` is device-local without a zone, so the reading is stamped `received`.
    """
    data = _json_object(meter_id, payload)
    energy = data.get("ENERGY")
    if not isinstance(energy, dict):
        raise MeterPayloadError(f"meter {meter_id}: Tasmota SENSOR without an ENERGY object")
    power = _number(energy.get("Power"), "ENERGY.Power", meter_id)
    total_kwh = _number(energy.get("Total"), "ENERGY.Total", meter_id)
    if power is None and total_kwh is None:
        raise MeterPayloadError(f"meter {meter_id}: Tasmota ENERGY has neither Power nor Total")
    voltage = energy.get("Voltage")
    return MeterReading(
        meter_id=meter_id,
        power_w=power,
        energy_wh=None if total_kwh is None else total_kwh * 1000.0,
        # several channels share one supply: their voltages are not summed
        voltage_v=float(voltage[0] if isinstance(voltage, list) else voltage)
        if isinstance(voltage, int | float | list) and voltage != []
        else None,
        current_a=_number(energy.get("Current"), "ENERGY.Current", meter_id),
        time=received,
    )


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


class ShellyState:
    """The last known status of one Shelly Gen2 device, built from its RPC notifications."""

    def __init__(self, meter_id: str) -> None:
        self.meter_id = meter_id
        self.status: dict[str, Any] = {}
        self.full = False

    def apply(self, payload: bytes, received: datetime) -> MeterReading | None:
        """Overlay one `<id>/events/rpc` frame; the reading after it (None if no power known)."""
        frame = _json_object(self.meter_id, payload)
        method = frame.get("method")
        params = frame.get("params")
        if method not in ("NotifyStatus", "NotifyFullStatus", "NotifyEvent"):
            raise MeterPayloadError(f"meter {self.meter_id}: Shelly frame with method {method!r}")
        if not isinstance(params, dict):
            raise MeterPayloadError(
                f"meter {self.meter_id}: Shelly {method} without a params object"
            )
        if method == "NotifyEvent":
            return None  # button presses, scripts: nothing about power
        if method == "NotifyFullStatus":
            self.status = copy.deepcopy(params)
            self.full = True
        else:
            _deep_merge(self.status, params)
        return self.reading(received)

    def reading(self, received: datetime) -> MeterReading | None:
        """Power and energy summed over metering components (switch, pm1, em, emdata)."""
        power: float | None = None
        energy: float | None = None
        voltage: float | None = None
        current: float | None = None
        for key, comp in sorted(self.status.items()):
            if not isinstance(comp, dict):
                continue
            kind = key.split(":", 1)[0]
            if kind in ("switch", "pm1", "cover", "light"):
                p = _number(comp.get("apower"), f"{key}.apower", self.meter_id)
                aenergy = comp.get("aenergy")
                e = (
                    _number(aenergy.get("total"), f"{key}.aenergy.total", self.meter_id)
                    if isinstance(aenergy, dict)
                    else None
                )
                c = _number(comp.get("current"), f"{key}.current", self.meter_id)
            elif kind == "em":
                p = _number(comp.get("total_act_power"), f"{key}.total_act_power", self.meter_id)
                e = None
                c = _number(comp.get("total_current"), f"{key}.total_current", self.meter_id)
            elif kind == "emdata":
                p, c = None, None
                e = _number(comp.get("total_act"), f"{key}.total_act", self.meter_id)
            else:
                continue
            if p is not None:
                power = (power or 0.0) + p
            if e is not None:
                energy = (energy or 0.0) + e
            if c is not None:
                current = (current or 0.0) + c
            v = comp.get("voltage", comp.get("a_voltage"))
            if voltage is None and isinstance(v, int | float):
                voltage = float(v)
        if power is None and energy is None:
            return None
        ts = self.status.get("ts")
        when = datetime.fromtimestamp(float(ts), UTC) if isinstance(ts, int | float) else received
        return MeterReading(self.meter_id, power, energy, voltage, current, when)


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """One meter: its device id, kind, and what it measures (`scope` + `target` id)."""

    meter_id: str
    kind: MeterKind
    scope: MeterScope
    target: str

    def topics(self) -> dict[str, str]:
        """Data and availability topics of this meter."""
        if self.kind == "tasmota":
            return {"data": f"tele/{self.meter_id}/SENSOR", "lwt": f"tele/{self.meter_id}/LWT"}
        return {"data": f"{self.meter_id}/events/rpc", "lwt": f"{self.meter_id}/online"}


@dataclass(slots=True)
class _MeterView:
    reading: MeterReading | None = None
    received_mono: float | None = None
    online: bool | None = None


class MeterBook:
    """Latest reading of every configured meter, fed by MQTT messages."""

    def __init__(
        self, meters: Iterable[MeterConfig], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.meters = {m.meter_id: m for m in meters}
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[str, _MeterView] = {m: _MeterView() for m in self.meters}
        self._shelly: dict[str, ShellyState] = {
            m.meter_id: ShellyState(m.meter_id) for m in self.meters.values() if m.kind == "shelly"
        }
        self._routes: dict[str, tuple[str, str]] = {}
        for meter in self.meters.values():
            for role, topic in meter.topics().items():
                self._routes[topic] = (meter.meter_id, role)
        self.dropped = 0

    def topics(self) -> list[str]:
        """Every topic to subscribe to."""
        return sorted(self._routes)

    def subscribe(self, transport: Any, qos: int = 0) -> None:
        """Subscribe `transport` (has `subscribe(filter, handler, qos)`) to every meter topic."""
        for topic in self.topics():
            transport.subscribe(topic, self.on_message, qos)

    def on_message(self, msg: Any) -> None:
        """Handler for a paho message; malformed payloads are logged and dropped."""
        self.handle(msg.topic, bytes(msg.payload))

    def handle(
        self, topic: str, payload: bytes, received: datetime | None = None
    ) -> MeterReading | None:
        """Feed one message; returns the new reading when it carried one."""
        route = self._routes.get(topic)
        if route is None:
            self.dropped += 1
            logger.warning("meter message on unknown topic=%s dropped", topic)
            return None
        meter_id, role = route
        meter = self.meters[meter_id]
        received = received or datetime.now(UTC)
        if role == "lwt":
            text = payload.decode(errors="replace").strip().lower()
            if text not in ("online", "offline", "true", "false"):
                self.dropped += 1
                logger.warning(
                    "meter %s availability %r not understood; dropped", meter_id, text[:40]
                )
                return None
            with self._lock:
                self._views[meter_id].online = text in ("online", "true")
            return None
        try:
            with self._lock:
                if meter.kind == "tasmota":
                    reading: MeterReading | None = parse_tasmota_sensor(meter_id, payload, received)
                else:
                    reading = self._shelly[meter_id].apply(payload, received)
                if reading is not None:
                    view = self._views[meter_id]
                    view.reading = reading
                    view.received_mono = self._clock()
            return reading
        except MeterPayloadError as exc:
            self.dropped += 1
            logger.warning("meter payload dropped topic=%s: %s", topic, exc)
            return None

    def fresh_reading(self, meter_id: str, silence_s: float) -> MeterReading | None:
        """The meter's reading when it is online and spoke within `silence_s`, else None."""
        with self._lock:
            view = self._views.get(meter_id)
            if view is None or view.reading is None or view.received_mono is None:
                return None
            if view.online is False or self._clock() - view.received_mono > silence_s:
                return None
            return view.reading

    def silent_for(self, meter_id: str) -> float | None:
        """Seconds since the meter's last reading (None when it never sent one)."""
        with self._lock:
            view = self._views.get(meter_id)
            if view is None or view.received_mono is None:
                return None
            return self._clock() - view.received_mono


@dataclass(frozen=True, slots=True)
class RigPlacement:
    """Where a rig hangs (rack, PDU) and its nameplate power, for meter mapping and fallback."""

    rack: str | None = None
    pdu: str | None = None
    nameplate_w: float | None = None


@dataclass(slots=True)
class PowerResolution:
    """The power figure chosen for one rig and why."""

    power_w: float | None
    source: PowerSource | None
    meter_id: str | None = None
    meter_silent: bool = False
    notes: list[str] = field(default_factory=list)


def _fallback(
    status: RigStatus, placement: RigPlacement
) -> tuple[float | None, PowerSource | None]:
    if status.state == "offline":
        return None, None
    if status.power_w is not None and status.power_source != "meter":
        return status.power_w, "reported"
    if status.state == "hashing" and placement.nameplate_w is not None:
        return placement.nameplate_w, "nameplate"
    return None, None


def resolve_power(
    statuses: Mapping[str, RigStatus],
    placements: Mapping[str, RigPlacement],
    book: MeterBook,
    *,
    silence_s: float = 120.0,
) -> dict[str, PowerResolution]:
    """Choose each rig's power: meter > reported > nameplate.

    A rig meter gives the rig its reading. A rack or PDU meter's reading is shared among the
    rigs behind it in proportion to their reported (else nameplate) power, equally when none
    is known. A silent meter is skipped and flagged.
    """
    out: dict[str, PowerResolution] = {}
    fallback: dict[str, tuple[float | None, PowerSource | None]] = {}
    for key, status in statuses.items():
        placement = placements.get(key, RigPlacement())
        fallback[key] = _fallback(status, placement)
        power, source = fallback[key]
        out[key] = PowerResolution(power, source)

    def flag_silent(meter: MeterConfig, keys: Iterable[str]) -> None:
        silent = book.silent_for(meter.meter_id)
        note = (
            f"meter {meter.meter_id} never reported"
            if silent is None
            else f"meter {meter.meter_id} silent for {silent:.0f}s (limit {silence_s:.0f}s) or offline"
        )
        for key in keys:
            res = out[key]
            if res.source != "meter":
                res.meter_silent = True
                res.notes.append(f"{note}; using {res.source or 'no'} power")

    # group meters first so that a rig's own meter, applied after, wins
    for scope in ("pdu", "rack", "rig"):
        for meter in book.meters.values():
            if meter.scope != scope:
                continue
            if scope == "rig":
                keys = [meter.target] if meter.target in statuses else []
            else:
                keys = [
                    k
                    for k in statuses
                    if getattr(placements.get(k, RigPlacement()), scope) == meter.target
                ]
            if not keys:
                continue
            reading = book.fresh_reading(meter.meter_id, silence_s)
            if reading is None or reading.power_w is None:
                flag_silent(meter, keys)
                continue
            if scope == "rig":
                out[keys[0]] = PowerResolution(reading.power_w, "meter", meter.meter_id)
                continue
            weights = {k: fallback[k][0] or 0.0 for k in keys}
            total_weight = sum(weights.values())
            for key in keys:
                share = weights[key] / total_weight if total_weight > 0 else 1.0 / len(keys)
                out[key] = PowerResolution(
                    round(reading.power_w * share, 1),
                    "meter",
                    meter.meter_id,
                    notes=[f"share of {scope} {meter.target} measured by {meter.meter_id}"],
                )
    return out


def apply_power(status: RigStatus, resolution: PowerResolution) -> RigStatus:
    """A copy of `status` carrying the resolved power, source, efficiency and any meter flag."""
    efficiency = status.efficiency_jth
    if resolution.power_w is not None and status.hashrate_ths and status.state == "hashing":
        efficiency = round(resolution.power_w / status.hashrate_ths, 3)
    errors = list(status.errors)
    if resolution.meter_silent:
        errors.extend(resolution.notes)
    return replace(
        status,
        power_w=resolution.power_w,
        power_source=resolution.source,
        efficiency_jth=efficiency,
        errors=errors,
    )
