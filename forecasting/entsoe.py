"""ENTSO-E Transparency Platform adapter: day-ahead prices (document type A44) over HTTP.

The API answers a ``Publication_MarketDocument`` of ``TimeSeries``, each with ``Period``s
(``timeInterval`` start/end in UTC, ``resolution`` PT60M or PT15M) of ``Point``s (``position``
1-based, ``price.amount``). With curve type A03 ("variable sized block") a position is left out
when its price equals the previous one, so omitted positions repeat the last price; with A01
every position must be present and a hole is an error. When nothing matches, the API answers
an ``Acknowledgement_MarketDocument`` whose ``Reason`` explains why.

Quarter-hour prices are averaged to hourly prices (the unit farmctl plans in); when a response
carries both PT60M and PT15M series for the same hours, the hourly one is used.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import requests
from pydantic import SecretStr

from forecasting.prices import (
    GapPolicy,
    PriceDataError,
    PriceKind,
    PriceSeries,
    validate_hourly,
)

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://web-api.tp.entsoe.eu/api"
TOKEN_ENV = "ENTSOE_API_TOKEN"
MAX_SPAN = timedelta(days=365)  # the platform refuses longer A44 queries

# EIC codes of bidding zones farmctl users ask for most (area -> (EIC, IANA time zone)).
BIDDING_ZONES: dict[str, tuple[str, str]] = {
    "DE_LU": ("10Y1001A1001A82H", "Europe/Berlin"),
    "FR": ("10YFR-RTE------C", "Europe/Paris"),
    "BE": ("10YBE----------2", "Europe/Brussels"),
    "NL": ("10YNL----------L", "Europe/Amsterdam"),
    "AT": ("10YAT-APG------L", "Europe/Vienna"),
    "ES": ("10YES-REE------0", "Europe/Madrid"),
    "NO_1": ("10YNO-1--------2", "Europe/Oslo"),
    "NO_2": ("10YNO-2--------T", "Europe/Oslo"),
    "SE_3": ("10Y1001A1001A46L", "Europe/Stockholm"),
    "FI": ("10YFI-1--------U", "Europe/Helsinki"),
    "DK_1": ("10YDK-1--------W", "Europe/Copenhagen"),
}

_RESOLUTIONS = {"PT60M": timedelta(hours=1), "PT30M": timedelta(minutes=30),
                "PT15M": timedelta(minutes=15)}  # fmt: skip


class EntsoeError(RuntimeError):
    """The ENTSO-E API call failed or answered something unusable."""


class EntsoeAuthError(EntsoeError):
    """The security token was refused (HTTP 401) or is missing."""


class EntsoeNoDataError(EntsoeError):
    """The API acknowledged the query but had no matching data."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element, name: str) -> ET.Element | None:
    for c in node:
        if _local(c.tag) == name:
            return c
    return None


def _text(node: ET.Element, path: str) -> str:
    """Text of a '/'-separated child path, ignoring XML namespaces."""
    cur: ET.Element | None = node
    for part in path.split("/"):
        cur = None if cur is None else _child(cur, part)
    if cur is None or cur.text is None:
        raise EntsoeError(f"ENTSO-E document lacks <{path}> under <{_local(node.tag)}>")
    return cur.text.strip()


def _parse_utc(text: str) -> pd.Timestamp:
    ts = pd.Timestamp(text)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class ParsedPrices:
    """Prices of one response at their native resolution, per resolution."""

    by_resolution: dict[str, pd.Series]  # "PT60M"/"PT15M" -> UTC-indexed prices
    currency: str


def parse_day_ahead_xml(body: bytes | str) -> ParsedPrices:
    """Parse an A44 response; raise :class:`EntsoeNoDataError` for an acknowledgement document."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise EntsoeError(f"ENTSO-E answer is not XML: {exc}") from exc
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        reason = _child(root, "Reason")
        text = _text(reason, "text") if reason is not None else "no reason given"
        code = _text(reason, "code") if reason is not None else "?"
        raise EntsoeNoDataError(f"ENTSO-E acknowledgement (reason {code}): {text}")
    if kind != "Publication_MarketDocument":
        raise EntsoeError(f"unexpected ENTSO-E document <{kind}>")
    points: dict[str, dict[pd.Timestamp, float]] = {}
    currency = ""
    for series in (c for c in root if _local(c.tag) == "TimeSeries"):
        curve = _text(series, "curveType") if _child(series, "curveType") is not None else "A01"
        cur = _child(series, "currency_Unit.name")
        if cur is not None and cur.text:
            if currency and cur.text.strip() != currency:
                raise EntsoeError(f"mixed currencies {currency} and {cur.text.strip()}")
            currency = cur.text.strip()
        for period in (c for c in series if _local(c.tag) == "Period"):
            start = _parse_utc(_text(period, "timeInterval/start"))
            end = _parse_utc(_text(period, "timeInterval/end"))
            resolution = _text(period, "resolution")
            if resolution not in _RESOLUTIONS:
                raise EntsoeError(f"unsupported resolution {resolution!r}")
            step = _RESOLUTIONS[resolution]
            n_slots = int((end - start).total_seconds() // step.total_seconds())
            values = np.full(n_slots, np.nan)
            for point in (c for c in period if _local(c.tag) == "Point"):
                pos = int(_text(point, "position"))
                if not 1 <= pos <= n_slots:
                    raise EntsoeError(
                        f"position {pos} outside period {start}..{end} ({n_slots} slots)"
                    )
                values[pos - 1] = float(_text(point, "price.amount"))
            if np.isnan(values[0]):
                raise EntsoeError(f"period starting {start} has no price at position 1")
            holes = np.isnan(values)
            if holes.any():
                if curve != "A03":
                    first = int(np.argmax(holes)) + 1
                    raise EntsoeError(
                        f"curve type {curve} period starting {start} misses position {first}"
                    )
                # A03: an omitted position carries the previous position's price
                values = pd.Series(values).ffill().to_numpy()
            slot_index = pd.date_range(start, periods=n_slots, freq=step)
            bucket = points.setdefault(resolution, {})
            for ts, v in zip(slot_index, values, strict=True):
                if ts in bucket and bucket[ts] != v:
                    raise EntsoeError(f"conflicting prices for {ts}: {bucket[ts]} and {v}")
                bucket[ts] = float(v)
    if not points:
        raise EntsoeNoDataError("ENTSO-E document has no TimeSeries")
    by_res = {res: pd.Series(vals, name="price").sort_index() for res, vals in points.items()}
    return ParsedPrices(by_resolution=by_res, currency=currency or "EUR")


def to_hourly(parsed: ParsedPrices) -> pd.Series:
    """Hourly UTC prices: PT60M values as they are, finer ones averaged over each full hour.

    An hour with only some of its quarter-hours is dropped (left as a gap), never averaged short.
    """
    parts: list[pd.Series] = []
    if "PT60M" in parsed.by_resolution:
        parts.append(parsed.by_resolution["PT60M"])
    for res in ("PT30M", "PT15M"):
        if res not in parsed.by_resolution:
            continue
        fine = parsed.by_resolution[res]
        per_hour = int(timedelta(hours=1) / _RESOLUTIONS[res])
        grouped = fine.groupby(pd.DatetimeIndex(fine.index).floor("h"))
        hourly = grouped.mean()[grouped.count() == per_hour]
        if parts:
            hourly = hourly[~hourly.index.isin(parts[0].index)]
        parts.append(hourly)
    out = pd.concat(parts).sort_index()
    out.index = pd.DatetimeIndex(out.index)
    return out


def _redact(text: str) -> str:
    return re.sub(r"securityToken=[^&\s]+", "securityToken=***", text)


class EntsoeClient:
    """Fetch day-ahead prices of a bidding zone from the ENTSO-E Transparency Platform."""

    def __init__(
        self,
        token: SecretStr | None = None,
        base_url: str = DEFAULT_URL,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        if token is None:
            raw = os.environ.get(TOKEN_ENV, "")
            token = SecretStr(raw) if raw else None
        if token is None or not token.get_secret_value():
            raise EntsoeAuthError(f"no ENTSO-E security token: pass one or set {TOKEN_ENV}")
        self._token = token
        self.base_url = base_url
        self.timeout = timeout
        self.session = session or requests.Session()

    def _get(self, params: dict[str, str]) -> bytes:
        query = {"securityToken": self._token.get_secret_value(), **params}
        try:
            resp = self.session.get(self.base_url, params=query, timeout=self.timeout)
        except requests.RequestException as exc:
            raise EntsoeError(f"ENTSO-E request failed: {_redact(str(exc))}") from exc
        if resp.status_code == 401:
            raise EntsoeAuthError("ENTSO-E refused the security token (HTTP 401)")
        if resp.status_code >= 400:
            # a 400 with an acknowledgement document carries the platform's reason
            if b"Acknowledgement_MarketDocument" in resp.content:
                parse_day_ahead_xml(resp.content)
            raise EntsoeError(f"ENTSO-E HTTP {resp.status_code}: {_redact(resp.text[:200])}")
        return resp.content

    def day_ahead_prices(
        self, zone: str, start: datetime, end: datetime, gaps: GapPolicy = "raise"
    ) -> PriceSeries:
        """Hourly day-ahead prices of ``zone`` (a key of BIDDING_ZONES or an EIC code) for
        UTC hours in [start, end); longer spans are fetched a year at a time. Missing hours
        follow ``gaps`` (raise, or keep as NaN)."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be tz-aware")
        if end <= start:
            raise ValueError("end must be after start")
        eic, tz = BIDDING_ZONES.get(zone, (zone, "UTC"))
        pieces: list[pd.Series] = []
        currency = "EUR"
        cursor = start.astimezone(UTC)
        stop = end.astimezone(UTC)
        while cursor < stop:
            chunk_end = min(cursor + MAX_SPAN, stop)
            params = {
                "documentType": "A44",
                "in_Domain": eic,
                "out_Domain": eic,
                "periodStart": cursor.strftime("%Y%m%d%H%M"),
                "periodEnd": chunk_end.strftime("%Y%m%d%H%M"),
            }
            parsed = parse_day_ahead_xml(self._get(params))
            currency = parsed.currency
            pieces.append(to_hourly(parsed))
            logger.info(
                "entsoe day-ahead fetched zone=%s start=%s end=%s hours=%d",
                zone,
                cursor.isoformat(),
                chunk_end.isoformat(),
                len(pieces[-1]),
            )
            cursor = chunk_end
        prices = pd.concat(pieces)
        prices = prices[~prices.index.duplicated(keep="first")].sort_index()
        lo, hi = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
        prices = prices[(prices.index >= lo) & (prices.index < hi)]
        if prices.empty:
            raise EntsoeNoDataError(f"ENTSO-E returned no prices for {zone} in {start}..{end}")
        try:
            prices = validate_hourly(prices, gaps, what=f"ENTSO-E {zone}")
        except PriceDataError as exc:
            raise EntsoeError(str(exc)) from exc
        return PriceSeries(
            market="ENTSOE",
            zone=zone,
            kind=PriceKind.DAY_AHEAD,
            timezone=tz,
            currency=currency,
            prices=prices,
            source="entsoe:A44",
        )
