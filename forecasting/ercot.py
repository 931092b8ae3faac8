"""ERCOT prices: the shared hub/load-zone hourly file and the public report API, DST-correct.

ERCOT runs on America/Chicago and labels hours by *hour ending* (HE 1..24, "01:00".."24:00"):
the wall-clock time at which the hour ends. On the spring DST day the clock jumps from 02:00 to
03:00, so HE 2 does not exist (a row for it raises
:class:`~forecasting.prices.NonexistentLocalTimeError`) and HE 3 is the hour 01:00 CST-03:00 CDT.
On the autumn day 01:00-02:00 happens twice: ERCOT repeats HE 2 and marks the second,
standard-time occurrence with ``DSTFlag = Y`` (some exports write it as ``02*``). Without a flag,
two rows for the same HE 2 are taken in order of appearance. A 23-hour day thus gives 23 UTC
hours and a 25-hour day 25, never shifted.

The shared file (electricity/SOURCES.md, section 2) has 24 rows on autumn DST days and no flag:
its single HE 2 is placed on the first (daylight-time) 01:00 hour and the repeated standard-time
hour is reported as a gap, since its real value is not in the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from forecasting.prices import (
    DuplicateHoursError,
    NonexistentLocalTimeError,
    PriceDataError,
    PriceKind,
    PriceSeries,
    check_fresh,
    local_day_hours,
    validate_hourly,
)

logger = logging.getLogger(__name__)

ERCOT_TZ = "America/Chicago"
HUBS = ("HB_BUSAVG", "HB_HOUSTON", "HB_HUBAVG", "HB_NORTH", "HB_PAN", "HB_SOUTH", "HB_WEST")
LOAD_ZONES = (
    "LZ_AEN",
    "LZ_CPS",
    "LZ_HOUSTON",
    "LZ_LCRA",
    "LZ_NORTH",
    "LZ_RAYBN",
    "LZ_SOUTH",
    "LZ_WEST",
)
SETTLEMENT_POINTS = HUBS + LOAD_ZONES

# Public API report paths (https://api.ercot.com/api/public-reports/...).
DAM_SPP_REPORT = "np4-190-cd/dam_stlmnt_pnt_prices"
RTM_SPP_REPORT = "np6-905-cd/spp_node_zone_hub"
DEFAULT_API_BASE = "https://api.ercot.com/api/public-reports"


class ErcotReportError(PriceDataError):
    """An ERCOT report (file or API reply) does not have the shape or values we expect."""


def ercot_file(data_dir: Path) -> Path:
    """Path of the shared ERCOT hub/load-zone hourly file under the shared data dir."""
    return data_dir / "electricity" / "ercot" / "ercot_hub_lz_hourly_2024_2026.csv.gz"


_HE_RE = re.compile(r"^\s*(\d{1,2})(?::00)?\s*(\*)?\s*$")


def parse_hour_ending(value: object) -> tuple[int, bool]:
    """Parse an hour-ending label: 5, "5", "05:00", "24:00" or "02*" -> (hour, repeated_flag)."""
    if isinstance(value, (int, np.integer)):
        return int(value), False
    if isinstance(value, float) and value.is_integer():
        return int(value), False
    match = _HE_RE.match(str(value))
    if not match:
        raise ErcotReportError(f"unreadable hour ending {value!r} (want 1..24, 'HH:00' or '02*')")
    hour = int(match.group(1))
    if not 1 <= hour <= 24:
        raise ErcotReportError(f"hour ending {value!r} outside 1..24")
    return hour, match.group(2) is not None


def parse_dst_flag(value: object) -> bool:
    """ERCOT's DSTFlag: Y/true marks the repeated (second, standard-time) autumn hour."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().upper()
    if text in ("Y", "TRUE", "1"):
        return True
    if text in ("N", "FALSE", "0", "", "NAN", "NONE"):
        return False
    raise ErcotReportError(f"unreadable DSTFlag {value!r} (want Y/N or true/false)")


def ercot_hours_to_utc(
    delivery_dates: Sequence[date] | Sequence[str] | pd.Series,
    hour_ending: Sequence[int] | pd.Series,
    repeated: Sequence[bool] | np.ndarray | None = None,
    tz: str = ERCOT_TZ,
) -> pd.DatetimeIndex:
    """UTC hour starts for (local delivery date, hour ending) rows, honouring DST (module doc).

    ``repeated`` marks rows that are the second occurrence of the autumn repeated hour (DSTFlag Y
    or "02*"). Without it, a second row for the same date and hour ending is taken as the repeat.
    """
    dates = pd.to_datetime(pd.Series(list(delivery_dates))).dt.date.to_numpy()
    he = np.asarray(list(hour_ending), dtype=np.int64)
    if len(dates) != len(he):
        raise ErcotReportError(f"{len(dates)} dates but {len(he)} hour endings")
    flags = np.zeros(len(he), dtype=bool) if repeated is None else np.asarray(repeated, dtype=bool)
    seen: set[tuple[date, int]] = set()
    out = np.empty(len(he), dtype="datetime64[ns]")
    day_cache: dict[date, np.ndarray] = {}
    for i, (day, h) in enumerate(zip(dates, he, strict=True)):
        starts = day_cache.get(day)
        if starts is None:
            starts = local_day_hours(day, tz).tz_localize(None).to_numpy()
            day_cache[day] = starts
        h = int(h)
        second = bool(flags[i]) or (repeated is None and (day, h) in seen)
        pos = _he_position(day, h, second, len(starts), tz)
        out[i] = starts[pos]
        seen.add((day, h))
    return pd.DatetimeIndex(out).tz_localize("UTC")


def _he_position(day: date, he: int, second: bool, n_hours: int, tz: str) -> int:
    """Index of hour ending ``he`` among the day's 23, 24 or 25 hours (module doc)."""
    if not 1 <= he <= 24:
        raise ErcotReportError(f"{day}: hour ending {he} outside 1..24")
    if second and not (n_hours == 25 and he == 2):
        raise DuplicateHoursError(
            f"{day} hour ending {he} appears as a repeated hour but only HE 2 repeats, "
            f"on the autumn DST day ({day} has {n_hours} hours in {tz})"
        )
    if n_hours == 24:
        return he - 1
    if n_hours == 23:  # spring: wall 02:00 never shows, so HE 2 does not exist
        if he == 2:
            raise NonexistentLocalTimeError(
                f"{day} hour ending 2 does not exist in {tz} (spring DST change, 23-hour day)"
            )
        return 0 if he == 1 else he - 2
    if n_hours == 25:  # autumn: HE 2 then the repeated HE 2 (DSTFlag Y / 02*)
        if he == 1:
            return 0
        if he == 2:
            return 2 if second else 1
        return he
    raise ErcotReportError(f"{day} has {n_hours} hours in {tz}; cannot place hour ending {he}")


@dataclass(frozen=True)
class ErcotPrices:
    """Day-ahead and real-time hourly prices of one ERCOT settlement point on one UTC grid."""

    zone: str
    day_ahead: PriceSeries
    real_time: PriceSeries

    def frame(self) -> pd.DataFrame:
        """Both series side by side (columns ``da``, ``rt``) on the full hourly UTC grid."""
        return pd.DataFrame({"da": self.day_ahead.prices, "rt": self.real_time.prices})


def load_ercot_hourly(path: Path, zone: str) -> ErcotPrices:
    """Load one hub or load zone's DA and RT hourly prices from the shared ERCOT file.

    Gaps (the missing spring weeks, NaN hours, the autumn repeated hour) stay explicit NaN on the
    full hourly UTC grid; callers decide how to treat them. Negative prices are kept.
    """
    if zone not in SETTLEMENT_POINTS:
        raise ErcotReportError(f"unknown ERCOT zone {zone!r}; choose one of {SETTLEMENT_POINTS}")
    frame = pd.read_csv(path)
    cols = ["delivery_date", "hour_ending", f"dam_lmp_{zone}", f"rtm_lmp_{zone}"]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ErcotReportError(f"{path}: missing columns {missing}")
    index = ercot_hours_to_utc(frame["delivery_date"], frame["hour_ending"])
    series: dict[str, pd.Series] = {}
    for key, col in (("da", f"dam_lmp_{zone}"), ("rt", f"rtm_lmp_{zone}")):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")
        raw = pd.Series(values, index=index, name=col).sort_index()
        series[key] = validate_hourly(raw, gaps="keep", what=f"ERCOT {zone} {key}")
    logger.info(
        "loaded ERCOT zone=%s hours=%d da_gaps=%d rt_gaps=%d first=%s last=%s",
        zone,
        len(series["da"]),
        int(series["da"].isna().sum()),
        int(series["rt"].isna().sum()),
        series["da"].index[0],
        series["da"].index[-1],
    )
    return ErcotPrices(
        zone=zone,
        day_ahead=_series(zone, PriceKind.DAY_AHEAD, series["da"], str(path)),
        real_time=_series(zone, PriceKind.REAL_TIME, series["rt"], str(path)),
    )


def _series(zone: str, kind: PriceKind, prices: pd.Series, source: str) -> PriceSeries:
    return PriceSeries(
        market="ERCOT",
        zone=zone,
        kind=kind,
        timezone=ERCOT_TZ,
        currency="USD",
        prices=prices,
        source=source,
    )


# ---------------------------------------------------------------- public report API (HTTP)


def _records(payload: Any, report: str) -> list[dict[str, Any]]:
    """Rows of one API page as dicts keyed by field name (the API sends lists + a field list)."""
    if not isinstance(payload, dict):
        raise ErcotReportError(f"{report}: reply is not a JSON object")
    fields = payload.get("fields")
    data = payload.get("data")
    if not isinstance(fields, list) or not isinstance(data, list):
        raise ErcotReportError(f"{report}: reply lacks 'fields' and 'data' lists")
    names = [str(f.get("name")) if isinstance(f, dict) else str(f) for f in fields]
    rows: list[dict[str, Any]] = []
    for n, row in enumerate(data):
        if isinstance(row, dict):
            rows.append(row)
        elif isinstance(row, list) and len(row) == len(names):
            rows.append(dict(zip(names, row, strict=True)))
        else:
            raise ErcotReportError(f"{report}: data row {n} has {row!r}, expected {names}")
    return rows


class ErcotPublicApi:
    """Client for ERCOT's public report API (api.ercot.com/api/public-reports) with ``requests``.

    The API needs a subscription key and, for most products, a bearer token from ERCOT's B2C
    login; both are passed in and sent as headers, never logged. Pages are followed until
    ``_meta.totalPages``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_API_BASE,
        subscription_key: str | None = None,
        bearer_token: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = 30.0,
        page_size: int = 50_000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout_s = timeout_s
        self.page_size = page_size
        self._headers: dict[str, str] = {}
        if subscription_key:
            self._headers["Ocp-Apim-Subscription-Key"] = subscription_key
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"

    def _get_all(self, report: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page, total = 1, 1
        while page <= total:
            query = {**params, "page": page, "size": self.page_size}
            url = f"{self.base_url}/{report}"
            try:
                reply = self.session.get(
                    url, params=query, headers=self._headers, timeout=self.timeout_s
                )
            except requests.RequestException as exc:
                raise ErcotReportError(f"{report}: request failed: {exc}") from exc
            if reply.status_code != 200:
                raise ErcotReportError(
                    f"{report}: HTTP {reply.status_code} on page {page}: {reply.text[:200]!r}"
                )
            try:
                payload = reply.json()
            except ValueError as exc:
                raise ErcotReportError(f"{report}: reply on page {page} is not JSON") from exc
            rows.extend(_records(payload, report))
            meta = payload.get("_meta") or {}
            total = int(meta.get("totalPages", 1) or 1)
            page += 1
        logger.info("ercot report=%s rows=%d pages=%d", report, len(rows), total)
        return rows

    def day_ahead(self, zone: str, start: date, end: date) -> PriceSeries:
        """DAM settlement point prices (NP4-190-CD) of one hub/zone for delivery days start..end."""
        rows = self._get_all(
            DAM_SPP_REPORT,
            {
                "deliveryDateFrom": start.isoformat(),
                "deliveryDateTo": end.isoformat(),
                "settlementPoint": zone,
            },
        )
        return dam_rows_to_series(rows, zone, source=f"{self.base_url}/{DAM_SPP_REPORT}")

    def latest_real_time(
        self, zone: str, now: datetime, max_age: timedelta = timedelta(hours=2)
    ) -> PriceSeries:
        """Real-time hourly prices of today and yesterday (local) for a re-plan at ``now``.

        Raises :class:`~forecasting.prices.StaleDataError` when the newest complete hour started
        more than ``max_age`` before ``now``: a re-plan must not run on old prices.
        """
        if now.tzinfo is None:
            raise ErcotReportError("latest_real_time needs a tz-aware 'now'")
        today = pd.Timestamp(now).tz_convert(ERCOT_TZ).date()
        series = self.real_time(zone, today - timedelta(days=1), today)
        check_fresh(series, now, max_age)
        return series

    def real_time(self, zone: str, start: date, end: date) -> PriceSeries:
        """RTM 15-minute settlement point prices (NP6-905-CD), averaged to hourly, for one zone."""
        rows = self._get_all(
            RTM_SPP_REPORT,
            {
                "deliveryDateFrom": start.isoformat(),
                "deliveryDateTo": end.isoformat(),
                "settlementPoint": zone,
            },
        )
        return rtm_rows_to_series(rows, zone, source=f"{self.base_url}/{RTM_SPP_REPORT}")


def _pick(row: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    raise ErcotReportError(f"row lacks field {names[0]!r}: {sorted(row)}")


def _price(value: Any, where: str) -> float:
    try:
        price = float(value)
    except (TypeError, ValueError) as exc:
        raise ErcotReportError(f"{where}: price {value!r} is not a number") from exc
    if np.isnan(price):
        raise ErcotReportError(f"{where}: price is NaN")
    return price


def dam_rows_to_series(rows: Iterable[dict[str, Any]], zone: str, source: str = "") -> PriceSeries:
    """Turn DAM SPP rows (deliveryDate, hourEnding, settlementPoint, settlementPointPrice,
    DSTFlag) into an hourly UTC :class:`PriceSeries`; other settlement points are ignored."""
    dates: list[str] = []
    hours: list[int] = []
    repeated: list[bool] = []
    prices: list[float] = []
    for row in rows:
        if str(_pick(row, "settlementPoint", "SettlementPoint")) != zone:
            continue
        day = str(_pick(row, "deliveryDate", "DeliveryDate"))
        he, star = parse_hour_ending(_pick(row, "hourEnding", "HourEnding"))
        flag = parse_dst_flag(row.get("DSTFlag", row.get("dstFlag", False)))
        dates.append(day)
        hours.append(he)
        repeated.append(flag or star)
        prices.append(_price(_pick(row, "settlementPointPrice", "SettlementPointPrice"), day))
    if not prices:
        raise ErcotReportError(f"DAM report has no rows for {zone}")
    index = ercot_hours_to_utc(dates, hours, repeated)
    series = pd.Series(prices, index=index, name="price").sort_index()
    if series.index.has_duplicates:
        dup = series.index[series.index.duplicated()][0]
        raise DuplicateHoursError(f"DAM report repeats hour {dup} for {zone}")
    series = validate_hourly(series, gaps="keep", what=f"ERCOT DAM {zone}")
    return _series(zone, PriceKind.DAY_AHEAD, series, source)


def rtm_rows_to_series(rows: Iterable[dict[str, Any]], zone: str, source: str = "") -> PriceSeries:
    """Turn RTM 15-minute SPP rows (deliveryDate, deliveryHour, deliveryInterval 1..4,
    settlementPoint, settlementPointPrice, DSTFlag) into hourly means on UTC hours.

    An hour with fewer than 4 intervals is left NaN (an explicit gap, logged), never averaged
    over a partial hour.
    """
    keyed: dict[tuple[str, int, bool], dict[int, float]] = {}
    for row in rows:
        point = str(_pick(row, "settlementPoint", "settlementPointName", "SettlementPointName"))
        if point != zone:
            continue
        day = str(_pick(row, "deliveryDate", "DeliveryDate"))
        he, star = parse_hour_ending(_pick(row, "deliveryHour", "DeliveryHour"))
        interval = int(_pick(row, "deliveryInterval", "DeliveryInterval"))
        if not 1 <= interval <= 4:
            raise ErcotReportError(f"{day} HE {he}: delivery interval {interval} outside 1..4")
        flag = parse_dst_flag(row.get("DSTFlag", row.get("dstFlag", False))) or star
        slot = keyed.setdefault((day, he, flag), {})
        if interval in slot:
            raise DuplicateHoursError(f"{day} HE {he} interval {interval} repeated for {zone}")
        slot[interval] = _price(_pick(row, "settlementPointPrice", "SettlementPointPrice"), day)
    if not keyed:
        raise ErcotReportError(f"RTM report has no rows for {zone}")
    keys = list(keyed)
    index = ercot_hours_to_utc([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
    values = []
    for key in keys:
        slot = keyed[key]
        if len(slot) < 4:
            logger.warning(
                "ercot rtm partial hour zone=%s day=%s he=%d intervals=%d",
                zone,
                key[0],
                key[1],
                len(slot),
            )
            values.append(float("nan"))
        else:
            values.append(float(np.mean(list(slot.values()))))
    series = pd.Series(values, index=index, name="price").sort_index()
    series = validate_hourly(series, gaps="keep", what=f"ERCOT RTM {zone}")
    return _series(zone, PriceKind.REAL_TIME, series, source)
