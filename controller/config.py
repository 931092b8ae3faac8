"""The farm's configuration: one TOML file, validated with pydantic.

Secrets never live in the file: a secret field holds a reference (`{ env = "NAME" }` or
`{ file = "/path" }`) that is resolved to a `SecretStr` only when used.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

RigFamily = Literal[
    "auto", "cgminer", "antminer", "braiins", "whatsminer", "avalon", "luxos", "bitaxe", "mqtt"
]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=_NAME)]


class ConfigError(Exception):
    """The configuration file cannot be used; `problems` lists every wrong field."""

    def __init__(self, path: Path, problems: list[ConfigProblem]) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s)")
        self.path = path
        self.problems = problems


class SecretRefError(Exception):
    """A secret reference could not be resolved (variable unset, file missing or empty)."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One wrong field: its dotted path, the value found and why it is wrong."""

    path: str
    value: Any
    reason: str

    def __str__(self) -> str:
        shown = "(missing)" if self.value is _MISSING else repr(self.value)
        return f"{self.path}: {shown}: {self.reason}"


_MISSING: Any = object()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where a secret comes from: an environment variable or a file. Never the value itself."""

    env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_literal(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                'secrets are not written in the config: use { env = "VAR" } or { file = "/path" }'
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def describe(self) -> str:
        """Where the secret is read from, safe to log."""
        return f"env:{self.env}" if self.env else f"file:{self.file}"

    def resolve(self) -> SecretStr:
        """Read the secret now; raises `SecretRefError` naming the source, never the value."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise SecretRefError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            value = self.file.read_text().strip()
        except OSError as exc:
            raise SecretRefError(f"secret file {self.file}: {exc.strerror}") from exc
        if not value:
            raise SecretRefError(f"secret file {self.file} is empty")
        return SecretStr(value)

    def resolve_or_none(self) -> SecretStr | None:
        """The secret, or None when its source is absent (for optional credentials)."""
        try:
            return self.resolve()
        except SecretRefError:
            return None


class FarmSection(_Strict):
    """The farm as a whole and where farmctl keeps its state."""

    name: Name = "farm"
    data_dir: Path = Path("var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"


class RackConfig(_Strict):
    """A rack (or PDU) of rigs inside a site."""

    id: Name
    pdu_capacity_w: float | None = Field(default=None, gt=0)


class SiteConfig(_Strict):
    """A site: one gateway's share of the farm, with its own power contract."""

    id: Name
    name: str = ""
    timezone: str = "UTC"
    racks: list[RackConfig] = Field(default_factory=list)
    max_power_kw: float | None = Field(default=None, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class RigCredentials(_Strict):
    """Login for a rig's privileged API or web UI; the password is a secret reference."""

    username: str = "root"
    password: SecretRef | None = None


class RigConfig(_Strict):
    """One rig: where it is, what it is, how to log in."""

    name: Name
    site: Name
    rack: Name | None = None
    address: str = Field(description="host or host:port (RPC 4028, HTTP 80, or MQTT rig id)")
    family: RigFamily = "auto"
    model: str | None = None
    mac: str | None = Field(default=None, pattern=r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
    http_port: int | None = Field(
        default=None, ge=1, le=65535, description="web UI port (Antminer sleep mode, AxeOS)"
    )
    credentials: RigCredentials = Field(default_factory=RigCredentials)

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
        if port:
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"port {port!r} is not a TCP port (1-65535)")
        else:
            host = value
        if not host:
            raise ValueError("host is empty")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError as exc:
                raise ValueError(f"{host!r} is not a valid IPv4 address") from exc
        elif not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
            raise ValueError(f"{host!r} is not a valid host name")
        return value


class MqttConfig(_Strict):
    """The MQTT broker farmctl publishes to and listens on."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # unset: farmctl-<gateway id>; "{gateway}" is replaced by it (controller/mqtt/client.py)
    client_id: str | None = Field(
        default=None, max_length=64, pattern=r"^(?:[A-Za-z0-9_.-]|\{gateway\})+$"
    )
    username: str | None = None
    password: SecretRef | None = None
    tls: bool = False
    ca_file: Path | None = None
    topic_prefix: str = Field(default="farm", pattern=r"^[^#+]+$")
    session_expiry_s: int = Field(default=86_400, ge=0)
    ha_discovery: bool = False
    ha_prefix: str = Field(default="homeassistant", pattern=r"^[^#+]+$")
    max_payload_bytes: int = Field(default=65_536, gt=0)
    bridge_prefix: str = Field(default="farmctl", pattern=r"^[^#+/][^#+]*$")
    meter_silence_s: float = Field(default=120.0, gt=0)


class MeterConfigModel(_Strict):
    """A power meter on MQTT and what it measures: one rig, a rack, or a PDU."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    kind: Literal["tasmota", "shelly"]
    scope: Literal["rig", "rack", "pdu"]
    target: Name


class DatabaseConfig(_Strict):
    """Where state is stored: empty url means a SQLite file under farm.data_dir."""

    url: str = ""
    busy_timeout_ms: int = Field(default=5_000, ge=0)
    telemetry_retention_days: int = Field(default=30, ge=1)
    # PostgreSQL only: "native" day partitions that housekeeping creates ahead and drops past
    # retention; "timescaledb" when rig_telemetry was converted to a hypertable (docs/scaling.md)
    telemetry_partitioning: Literal["native", "timescaledb"] = "native"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return value


class ElectricityConfig(_Strict):
    """The power contract: market, zone and tariff the planner prices hours with."""

    market: Literal["ercot", "entsoe", "epftoolbox", "csv", "fixed"] = "ercot"
    zone: str = "LZ_WEST"
    tariff: Literal["real_time", "day_ahead", "fixed"] = "real_time"
    fixed_price_per_mwh: float | None = None
    adder_per_mwh: float = Field(default=0.0, description="delivery charges on top of energy")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    prices_csv: Path | None = None
    entsoe_token: SecretRef | None = None
    ercot_subscription_key: SecretRef | None = None
    ercot_token: SecretRef | None = None
    api_url: str | None = Field(
        default=None, description="market API base URL (a mirror or test server)"
    )

    @model_validator(mode="after")
    def _fixed_needs_price(self) -> ElectricityConfig:
        if self.tariff == "fixed" and self.fixed_price_per_mwh is None:
            raise ValueError("tariff 'fixed' needs fixed_price_per_mwh")
        if self.market == "csv" and self.prices_csv is None:
            raise ValueError("market 'csv' needs prices_csv")
        return self


class PlannerConfig(_Strict):
    """Constraints on switching rigs on and off."""

    horizon_hours: int = Field(default=36, ge=1, le=48)
    min_on_hours: int = Field(default=1, ge=1)
    min_off_hours: int = Field(default=1, ge=1)
    switch_cost_usd_per_mw: float = Field(default=5.0, ge=0)
    max_switches_per_day: int = Field(default=6, ge=0)
    deadband_scale: float = Field(
        default=0.5, ge=0, description="share of the forecast spread a switch must clear"
    )
    hashprice_usd_per_th_day: float | None = Field(default=None, gt=0)
    stagger_batch: int = Field(default=20, ge=1)
    stagger_delay_s: float = Field(default=2.0, ge=0)


class StrategyConfig(_Strict):
    """Weight-and-momentum parameters (see docs/treasury.md)."""

    mode: Literal["sell_only", "two_way"] = "sell_only"
    band_method: Literal["rolling_quantile", "rolling_minmax", "fixed"] = "rolling_quantile"
    band_lookback_hours: int = Field(default=24 * 30, ge=2)
    band_low_quantile: float = Field(default=0.1, ge=0, le=1)
    band_high_quantile: float = Field(default=0.9, ge=0, le=1)
    pmin: float | None = Field(default=None, gt=0)
    pmax: float | None = Field(default=None, gt=0)
    momentum_window_hours: int = Field(default=24, ge=1)
    momentum_strength: float = Field(default=0.5, ge=0)
    stop_loss_fraction: float = Field(default=0.0, ge=0, lt=1)
    decision_interval_minutes: int = Field(default=60, ge=1)
    min_trade_fraction: float = Field(default=0.002, ge=0, lt=1)

    @model_validator(mode="after")
    def _band(self) -> StrategyConfig:
        if self.band_low_quantile >= self.band_high_quantile:
            raise ValueError("band_low_quantile must be below band_high_quantile")
        if self.band_method == "fixed":
            if self.pmin is None or self.pmax is None:
                raise ValueError("band_method 'fixed' needs pmin and pmax")
            if self.pmin >= self.pmax:
                raise ValueError("pmin must be below pmax")
        return self


class RiskConfig(_Strict):
    """Hard limits in front of every venue."""

    max_order_btc: float = Field(default=0.5, gt=0)
    max_sold_per_day_btc: float = Field(default=2.0, gt=0)
    price_band_fraction: float = Field(default=0.05, gt=0, lt=1)
    kill_switch_file: Path | None = None
    max_exposure_per_venue_btc: float | None = Field(default=None, gt=0)


class VenueConfig(_Strict):
    """One exchange account (a ccxt id) or the paper venue."""

    id: Name
    exchange: str = Field(default="paper", pattern=r"^[a-z0-9_]+$")
    api_key: SecretRef | None = None
    api_secret: SecretRef | None = None
    taker_fee: float = Field(default=0.0026, ge=0, lt=0.05)
    maker_fee: float = Field(default=0.0016, ge=0, lt=0.05)


class TreasuryConfig(_Strict):
    """Selling mined coins. Dry run unless `live = true` and `dry_run = false`."""

    enabled: bool = True
    pair: str = Field(default="BTC/USD", pattern=r"^[A-Z0-9]+/[A-Z0-9]+$")
    dry_run: bool = True
    live: bool = False
    venues: list[VenueConfig] = Field(default_factory=lambda: [VenueConfig(id="paper")])
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)

    @model_validator(mode="after")
    def _live_is_explicit(self) -> TreasuryConfig:
        if self.live and self.dry_run:
            raise ValueError("live = true needs dry_run = false as well (two explicit switches)")
        return self


class MqttReportConfig(_Strict):
    """Publish reports and alerts on the farm's broker."""

    enabled: bool = True
    topic: str = Field(default="farm/reports", pattern=r"^[^#+]+$")


class WebhookReportConfig(_Strict):
    """POST reports and alerts as JSON to a URL."""

    enabled: bool = False
    url: SecretRef | None = None
    format: Literal["plain", "slack", "telegram"] = "plain"
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _needs_url(self) -> WebhookReportConfig:
        if self.enabled and self.url is None:
            raise ValueError("webhook reports are enabled but url is not set")
        return self


class EmailReportConfig(_Strict):
    """Send reports and alerts by email over SMTP."""

    enabled: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretRef | None = None
    sender: str = "farmctl@localhost"
    recipients: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _recipients(self) -> EmailReportConfig:
        if self.enabled and not self.recipients:
            raise ValueError("email reports are enabled but recipients is empty")
        for address in self.recipients:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
                raise ValueError(f"{address!r} is not an email address")
        return self


class ReportsConfig(_Strict):
    """Where sale reports and alerts go, and how often alerts may repeat."""

    mqtt: MqttReportConfig = Field(default_factory=MqttReportConfig)
    webhook: WebhookReportConfig = Field(default_factory=WebhookReportConfig)
    email: EmailReportConfig = Field(default_factory=EmailReportConfig)
    alert_min_interval_s: int = Field(default=900, ge=0)


class SchedulerConfig(_Strict):
    """Intervals of the daemon's recurring jobs."""

    poll_interval_s: int = Field(default=30, ge=1)
    reconcile_interval_s: int = Field(default=60, ge=1)
    treasury_interval_s: int = Field(default=300, ge=1)
    price_ingest_interval_s: int = Field(default=3600, ge=60)
    replan_interval_s: int = Field(default=3600, ge=60)
    misfire_grace_s: int = Field(default=30, ge=1)


class MetricsConfig(_Strict):
    """The Prometheus endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=1, le=65535)


class FarmConfig(_Strict):
    """The whole configuration file."""

    farm: FarmSection = Field(default_factory=FarmSection)
    sites: list[SiteConfig] = Field(min_length=1)
    rigs: list[RigConfig] = Field(default_factory=list)
    meters: list[MeterConfigModel] = Field(default_factory=list)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    electricity: ElectricityConfig = Field(default_factory=ElectricityConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    treasury: TreasuryConfig = Field(default_factory=TreasuryConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    def database_url(self, base_dir: Path | None = None) -> str:
        """The SQLAlchemy URL: the configured one, else a SQLite file under `farm.data_dir`."""
        if self.database.url:
            return self.database.url
        data_dir = self.farm.data_dir
        if not data_dir.is_absolute() and base_dir is not None:
            data_dir = base_dir / data_dir
        return f"sqlite:///{data_dir / 'farmctl.db'}"


def _cross_checks(raw: dict[str, Any]) -> list[ConfigProblem]:
    """Checks that span sections (site/rack references, unique names), on the raw document so
    they are reported together with field errors."""
    problems: list[ConfigProblem] = []

    def items(value: Any) -> list[dict[str, Any]]:
        return [v if isinstance(v, dict) else {} for v in value] if isinstance(value, list) else []

    def duplicates(rows: list[dict[str, Any]], key: str, path: str, what: str) -> None:
        seen: set[Any] = set()
        for i, row in enumerate(rows):
            value = row.get(key)
            if isinstance(value, str) and value in seen:
                problems.append(ConfigProblem(f"{path}[{i}].{key}", value, f"duplicate {what}"))
            seen.add(value)

    sites = items(raw.get("sites"))
    duplicates(sites, "id", "sites", "site id")
    racks = {s.get("id"): {r.get("id") for r in items(s.get("racks"))} for s in sites}
    rigs = items(raw.get("rigs"))
    duplicates(rigs, "name", "rigs", "rig name")
    for i, rig in enumerate(rigs):
        site, rack = rig.get("site"), rig.get("rack")
        if isinstance(site, str) and site not in racks:
            known = sorted(str(k) for k in racks)
            problems.append(
                ConfigProblem(f"rigs[{i}].site", site, f"no such site (sites: {known})")
            )
        elif isinstance(rack, str) and rack not in racks.get(site, set()):
            problems.append(
                ConfigProblem(f"rigs[{i}].rack", rack, f"no such rack in site {site!r}")
            )
    treasury = raw.get("treasury") if isinstance(raw.get("treasury"), dict) else {}
    assert isinstance(treasury, dict)
    rig_names = {r.get("name") for r in rigs}
    rack_ids = {rack for site_racks in racks.values() for rack in site_racks}
    for i, meter in enumerate(items(raw.get("meters"))):
        scope, target = meter.get("scope"), meter.get("target")
        if scope == "rig" and target not in rig_names:
            problems.append(ConfigProblem(f"meters[{i}].target", target, "no such rig"))
        elif scope == "rack" and target not in rack_ids:
            problems.append(ConfigProblem(f"meters[{i}].target", target, "no such rack"))
    venues = items(treasury.get("venues"))
    duplicates(venues, "id", "treasury.venues", "venue id")
    if treasury.get("live") is True:
        for i, venue in enumerate(venues):
            if venue.get("exchange", "paper") != "paper" and not (
                venue.get("api_key") and venue.get("api_secret")
            ):
                problems.append(
                    ConfigProblem(
                        f"treasury.venues[{i}]",
                        venue.get("id"),
                        "live selling needs api_key and api_secret",
                    )
                )
    return problems


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "function-after", "function-before")):
            continue  # pydantic's internal validator frames are not part of the user's path
        else:
            out += f".{part}" if out else part
    return out or "(root)"


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def problems_from_validation(exc: ValidationError, raw: dict[str, Any]) -> list[ConfigProblem]:
    """One problem per pydantic error, with the dotted path and the value from the file."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key (misspelled? see config/farm.example.toml)"
        problems.append(ConfigProblem(_dotted(loc), _lookup(raw, loc), reason))
    return problems


def parse_config(raw: dict[str, Any], source: Path) -> FarmConfig:
    """Validate an already-parsed TOML document; raises `ConfigError` with every problem."""
    problems = _cross_checks(raw)
    try:
        config = FarmConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, problems_from_validation(exc, raw) + problems) from None
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: Path) -> FarmConfig:
    """Read and validate a TOML config file; raises `ConfigError` listing every wrong field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            path, [ConfigProblem("(file)", str(path), exc.strerror or str(exc))]
        ) from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [ConfigProblem("(syntax)", _MISSING, str(exc))]) from exc
    return parse_config(raw, path)


def unresolved_secrets(config: FarmConfig) -> list[str]:
    """Secret references whose source is absent right now (safe to print: no values)."""
    missing: list[str] = []

    def visit(model: BaseModel, path: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            here = f"{path}.{name}" if path else name
            if isinstance(value, SecretRef):
                if value.resolve_or_none() is None:
                    missing.append(f"{here} ({value.describe()})")
            elif isinstance(value, BaseModel):
                visit(value, here)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, BaseModel):
                        visit(item, f"{here}[{i}]")

    visit(config, "")
    return missing
