"""ERCOT: the shared hub/load-zone file and the public report API (served by a local HTTP server).

The API replies below are constructed by us in the published shape of ERCOT's public reports
API (``_meta`` with paging, ``report``, ``fields`` as name/label/dataType, ``data`` as row lists;
NP4-190-CD DAM Settlement Point Prices and NP6-905-CD 15-minute RTM Settlement Point Prices).
Prices are the shared file's real LZ_WEST values for 2024-11-03, except the repeated
standard-time hour, which the file lacks (marked below).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from forecasting.ercot import (
    DAM_SPP_REPORT,
    RTM_SPP_REPORT,
    ErcotPrices,
    ErcotPublicApi,
    ErcotReportError,
    ercot_file,
    ercot_hours_to_utc,
    load_ercot_hourly,
    parse_hour_ending,
)
from forecasting.prices import DuplicateHoursError, NonexistentLocalTimeError


@pytest.fixture(scope="module")
def lz_west(data_dir: Path) -> ErcotPrices:
    return load_ercot_hourly(ercot_file(data_dir), "LZ_WEST")


def test_file_winter_and_summer_hours_land_on_right_utc(lz_west: ErcotPrices) -> None:
    frame = lz_west.frame()
    # 2024-01-01 HE 1 = 00:00-01:00 CST = 06:00 UTC
    row = frame.loc[pd.Timestamp("2024-01-01 06:00", tz="UTC")]
    assert row["da"] == pytest.approx(26.93) and row["rt"] == pytest.approx(15.935)
    # 2024-11-03 HE 24 = 23:00-24:00 CST = 2024-11-04 05:00 UTC
    assert frame.loc[pd.Timestamp("2024-11-04 05:00", tz="UTC"), "da"] == pytest.approx(24.07)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing and not frame.index.has_duplicates


def test_file_autumn_day_has_25_hours_with_the_missing_repeat_as_gap(lz_west: ErcotPrices) -> None:
    day = lz_west.day_ahead.local_day(date(2024, 11, 3))
    assert len(day) == 25
    # HE 1, HE 2 (first, CDT), then the repeated hour the file does not hold, then HE 3
    assert day.iloc[:4].tolist()[:2] == [21.62, 22.39]
    assert np.isnan(day.iloc[2])
    assert day.iloc[3] == pytest.approx(20.45)
    assert int(day.isna().sum()) == 1


def test_file_gaps_are_explicit_not_shifted(lz_west: ErcotPrices) -> None:
    prices = lz_west.real_time.prices
    # 20 missing spring days (SOURCES.md) plus partial days and the autumn repeats
    assert int(prices.isna().sum()) == 535
    assert prices.loc["2024-03-12"].isna().all()
    # negative prices are real and kept
    assert prices.min() == pytest.approx(-31.72)


def test_unknown_zone_is_named(data_dir: Path) -> None:
    with pytest.raises(ErcotReportError, match="LZ_NOWHERE"):
        load_ercot_hourly(ercot_file(data_dir), "LZ_NOWHERE")


def test_spring_day_23_hours_no_hour_ending_2() -> None:
    hes = [1, *range(3, 25)]
    idx = ercot_hours_to_utc(["2024-03-10"] * 23, hes)
    assert len(idx) == 23 and idx.is_unique
    assert ((idx[1:] - idx[:-1]) == pd.Timedelta(hours=1)).all()
    assert idx[0] == pd.Timestamp("2024-03-10 06:00", tz="UTC")  # 00:00 CST
    assert idx[1] == pd.Timestamp("2024-03-10 07:00", tz="UTC")  # HE 3 = 01:00 CST-03:00 CDT
    assert idx[-1] == pd.Timestamp("2024-03-11 04:00", tz="UTC")  # HE 24 = 23:00 CDT
    with pytest.raises(NonexistentLocalTimeError, match="hour ending 2"):
        ercot_hours_to_utc(["2024-03-10"], [2])


def test_autumn_day_25_hours_with_flag_and_star() -> None:
    hes = [1, 2, 2, *range(3, 25)]
    flags = [False, False, True] + [False] * 22
    idx = ercot_hours_to_utc(["2024-11-03"] * 25, hes, flags)
    assert len(idx) == 25 and idx.is_unique
    assert ((idx[1:] - idx[:-1]) == pd.Timedelta(hours=1)).all()
    assert idx[1] == pd.Timestamp("2024-11-03 06:00", tz="UTC")  # 01:00 CDT
    assert idx[2] == pd.Timestamp("2024-11-03 07:00", tz="UTC")  # 01:00 CST (DSTFlag Y)
    # no flag column: the second HE 2 in order of appearance is the repeat
    assert ercot_hours_to_utc(["2024-11-03"] * 25, hes).equals(idx)
    assert parse_hour_ending("02*") == (2, True)
    assert parse_hour_ending("24:00") == (24, False)
    with pytest.raises(DuplicateHoursError, match="only HE 2 repeats"):
        ercot_hours_to_utc(["2024-07-01", "2024-07-01"], [5, 5])
    with pytest.raises(ErcotReportError, match="unreadable hour ending"):
        parse_hour_ending("5pm")


# ------------------------------------------------------------------ local HTTP server

# Real LZ_WEST day-ahead prices of 2024-11-03 from the shared file (HE 1..24).
DAM_LZ_WEST_2024_11_03 = [
    21.62, 22.39, 20.45, 19.37, 20.03, 21.25, 18.15, 9.93, 0.85, -0.04, 0.11, 0.25,
    0.81, 3.64, 8.69, 12.56, 25.46, 46.94, 46.12, 38.24, 31.27, 24.85, 26.06, 24.07,
]  # fmt: skip
REPEATED_HOUR_PRICE = 22.01  # constructed: the file lacks the repeated standard-time hour

DAM_FIELDS = [
    {"name": "deliveryDate", "label": "Delivery Date", "dataType": "DATE"},
    {"name": "hourEnding", "label": "Hour Ending", "dataType": "STRING"},
    {"name": "settlementPoint", "label": "Settlement Point", "dataType": "STRING"},
    {"name": "settlementPointPrice", "label": "Settlement Point Price", "dataType": "DECIMAL"},
    {"name": "DSTFlag", "label": "DST Flag", "dataType": "BOOLEAN"},
]
RTM_FIELDS = [
    {"name": "deliveryDate", "label": "Delivery Date", "dataType": "DATE"},
    {"name": "deliveryHour", "label": "Delivery Hour", "dataType": "INTEGER"},
    {"name": "deliveryInterval", "label": "Delivery Interval", "dataType": "INTEGER"},
    {"name": "settlementPoint", "label": "Settlement Point Name", "dataType": "STRING"},
    {"name": "settlementPointType", "label": "Settlement Point Type", "dataType": "STRING"},
    {"name": "settlementPointPrice", "label": "Settlement Point Price", "dataType": "DECIMAL"},
    {"name": "DSTFlag", "label": "DST Flag", "dataType": "BOOLEAN"},
]


def _dam_rows() -> list[list[Any]]:
    rows: list[list[Any]] = []
    for he, price in enumerate(DAM_LZ_WEST_2024_11_03, start=1):
        rows.append(["2024-11-03", f"{he:02d}:00", "LZ_WEST", price, False])
        rows.append(["2024-11-03", f"{he:02d}:00", "LZ_HOUSTON", price - 1.0, False])
        if he == 2:
            rows.append(["2024-11-03", "02:00", "LZ_WEST", REPEATED_HOUR_PRICE, True])
    return rows


def _rtm_rows() -> list[list[Any]]:
    # Real hourly RT LZ_WEST 2024-11-03 HE 1 and HE 3 (35.6625, 19.46) split into 4 intervals
    # whose mean is the real value; HE 4 has only 3 intervals (a partial hour).
    rows: list[list[Any]] = []
    for he, hourly in ((1, 35.6625), (3, 19.46)):
        for k, offset in enumerate((-1.5, -0.5, 0.5, 1.5), start=1):
            rows.append(["2024-11-03", he, k, "LZ_WEST", "LZ", hourly + offset, False])
    for k in (1, 2, 3):
        rows.append(["2024-11-03", 4, k, "LZ_WEST", "LZ", 21.0, False])
    return rows


class _Api:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.status = 200
        self.pages: dict[str, list[dict[str, Any]]] = {}

    def pages_for(self, report: str, fields: list[dict[str, str]], rows: list[list[Any]]) -> None:
        half = len(rows) // 2
        chunks = [rows[:half], rows[half:]]
        self.pages[report] = [
            {
                "_meta": {
                    "totalRecords": len(rows),
                    "pageSize": half,
                    "totalPages": 2,
                    "currentPage": n + 1,
                },
                "report": {"reportEMILID": report.split("/")[0].upper()},
                "fields": fields,
                "data": chunk,
            }
            for n, chunk in enumerate(chunks)
        ]


@pytest.fixture
def api_server() -> Iterator[tuple[str, _Api]]:
    state = _Api()
    state.pages_for(DAM_SPP_REPORT, DAM_FIELDS, _dam_rows())
    state.pages_for(RTM_SPP_REPORT, RTM_FIELDS, _rtm_rows())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            state.requests.append((url.path, query, dict(self.headers)))
            report = url.path.removeprefix("/api/public-reports/")
            if state.status != 200 or report not in state.pages:
                body = b'{"statusCode": 500, "message": "internal error"}'
                self.send_response(state.status if state.status != 200 else 404)
            else:
                page = int(query.get("page", ["1"])[0])
                body = json.dumps(state.pages[report][page - 1]).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/public-reports", state
    finally:
        server.shutdown()
        server.server_close()


def test_api_day_ahead_autumn_day_pages_and_headers(
    api_server: tuple[str, _Api], lz_west: ErcotPrices
) -> None:
    base, state = api_server
    api = ErcotPublicApi(base, subscription_key="k-123", bearer_token="tok", timeout_s=5)
    series = api.day_ahead("LZ_WEST", date(2024, 11, 3), date(2024, 11, 3))
    prices = series.prices
    assert len(prices) == 25 and not prices.isna().any()
    assert prices.loc[pd.Timestamp("2024-11-03 07:00", tz="UTC")] == REPEATED_HOUR_PRICE
    # every other hour equals the shared file's value at the same UTC hour
    from_file = lz_west.day_ahead.prices.reindex(prices.index)
    same = from_file.notna()
    assert int(same.sum()) == 24
    assert np.allclose(prices[same], from_file[same])
    assert [q["page"] for _, q, _ in state.requests] == [["1"], ["2"]]
    _, query, headers = state.requests[0]
    assert query["settlementPoint"] == ["LZ_WEST"]
    assert query["deliveryDateFrom"] == ["2024-11-03"]
    assert headers["Ocp-Apim-Subscription-Key"] == "k-123"
    assert headers["Authorization"] == "Bearer tok"


def test_api_real_time_averages_full_hours_only(api_server: tuple[str, _Api]) -> None:
    base, _ = api_server
    series = ErcotPublicApi(base).real_time("LZ_WEST", date(2024, 11, 3), date(2024, 11, 3))
    prices = series.prices
    assert prices.loc[pd.Timestamp("2024-11-03 05:00", tz="UTC")] == pytest.approx(35.6625)
    assert prices.loc[pd.Timestamp("2024-11-03 08:00", tz="UTC")] == pytest.approx(19.46)
    # partial HE 4 (3 of 4 intervals) is an explicit gap, and so are the hours in between
    assert np.isnan(prices.loc[pd.Timestamp("2024-11-03 09:00", tz="UTC")])
    assert prices.isna().sum() == 3


def test_api_http_error_is_named(api_server: tuple[str, _Api]) -> None:
    base, state = api_server
    state.status = 503
    with pytest.raises(ErcotReportError, match="HTTP 503"):
        ErcotPublicApi(base).day_ahead("LZ_WEST", date(2024, 11, 3), date(2024, 11, 3))


def test_api_malformed_reply_is_named(api_server: tuple[str, _Api]) -> None:
    base, state = api_server
    state.pages[DAM_SPP_REPORT] = [{"_meta": {"totalPages": 1}, "rows": []}]
    with pytest.raises(ErcotReportError, match="lacks 'fields' and 'data'"):
        ErcotPublicApi(base).day_ahead("LZ_WEST", date(2024, 11, 3), date(2024, 11, 3))
    state.pages[DAM_SPP_REPORT] = [
        {"_meta": {"totalPages": 1}, "fields": DAM_FIELDS, "data": [["2024-11-03", "01:00"]]}
    ]
    with pytest.raises(ErcotReportError, match="data row 0"):
        ErcotPublicApi(base).day_ahead("LZ_WEST", date(2024, 11, 3), date(2024, 11, 3))


def test_api_latest_real_time_refuses_stale_prices(api_server: tuple[str, _Api]) -> None:
    from datetime import UTC, datetime, timedelta

    from forecasting.prices import StaleDataError

    base, state = api_server
    api = ErcotPublicApi(base)
    # newest complete hour in the reply: HE 3 = 08:00 UTC on 2024-11-03
    fresh = api.latest_real_time("LZ_WEST", datetime(2024, 11, 3, 9, 30, tzinfo=UTC))
    assert fresh.prices.dropna().index[-1] == pd.Timestamp("2024-11-03 08:00", tz="UTC")
    _, query, _ = state.requests[-1]
    assert query["deliveryDateFrom"] == ["2024-11-02"] and query["deliveryDateTo"] == ["2024-11-03"]
    with pytest.raises(StaleDataError, match="LZ_WEST"):
        api.latest_real_time(
            "LZ_WEST", datetime(2024, 11, 3, 14, 0, tzinfo=UTC), max_age=timedelta(hours=2)
        )
