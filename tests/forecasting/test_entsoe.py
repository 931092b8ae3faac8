"""ENTSO-E adapter against a real HTTP server on 127.0.0.1 serving schema-shaped A44 documents."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from forecasting.entsoe import (
    EntsoeAuthError,
    EntsoeClient,
    EntsoeError,
    EntsoeNoDataError,
    parse_day_ahead_xml,
    to_hourly,
)
from forecasting.prices import PriceKind

FIXTURES = Path(__file__).parent / "fixtures" / "entsoe"
GOOD_TOKEN = "test-token-0123"


class _Handler(BaseHTTPRequestHandler):
    requests_seen: ClassVar[list[dict[str, list[str]]]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        type(self).requests_seen.append(query)
        if query.get("securityToken") != [GOOD_TOKEN]:
            self._send(401, b"<html><body>Unauthorized</body></html>", "text/html")
            return
        start = query["periodStart"][0]
        if start.startswith("2023"):
            body = (FIXTURES / "a44_de_lu_2023-03-26_dst.xml").read_bytes()
        elif start.startswith("2025"):
            body = (FIXTURES / "a44_de_lu_2025-10-26_pt15m.xml").read_bytes()
        elif start.startswith("2031"):
            self._send(503, b"maintenance", "text/plain")
            return
        else:
            body = (FIXTURES / "acknowledgement_no_data.xml").read_bytes()
        self._send(200, body, "text/xml")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def entsoe_server() -> Iterator[str]:
    _Handler.requests_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_dst_day_a03_gaps_and_negative_prices(entsoe_server: str) -> None:
    client = EntsoeClient(SecretStr(GOOD_TOKEN), base_url=entsoe_server, timeout=5)
    series = client.day_ahead_prices(
        "DE_LU", datetime(2023, 3, 25, 23, tzinfo=UTC), datetime(2023, 3, 27, 22, tzinfo=UTC)
    )
    assert series.kind is PriceKind.DAY_AHEAD and series.currency == "EUR"
    assert series.timezone == "Europe/Berlin"
    # 23-hour local day then a 24-hour day: 47 distinct UTC hours, no shift, no duplicate
    assert len(series.prices) == 47
    day = series.local_day(pd.Timestamp("2023-03-26").date())
    assert len(day) == 23 and not day.isna().any()
    assert list(day.index.tz_convert("Europe/Berlin").hour[:3]) == [0, 1, 3]
    # A03: positions 5 and 6 omitted -> repeat position 4's 90.0
    assert day.iloc[3:6].tolist() == [90.0, 90.0, 90.0]
    assert day.min() == -12.7  # negative prices kept as they are
    monday = series.local_day(pd.Timestamp("2023-03-27").date())
    assert monday.iloc[0] == 101.0 and monday.iloc[-1] == 108.0
    sent = _Handler.requests_seen[0]
    assert sent["documentType"] == ["A44"]
    assert sent["in_Domain"] == sent["out_Domain"] == ["10Y1001A1001A82H"]
    assert sent["periodStart"] == ["202303252300"] and sent["periodEnd"] == ["202303272200"]


def test_quarter_hours_average_to_hours() -> None:
    parsed = parse_day_ahead_xml((FIXTURES / "a44_de_lu_2025-10-26_pt15m.xml").read_bytes())
    fine = parsed.by_resolution["PT15M"]
    assert len(fine) == 12 and fine.iloc[5] == 70.0 and fine.iloc[6] == 70.0
    hourly = to_hourly(parsed)
    assert hourly.tolist() == pytest.approx([77.925, 69.0, -3.0])
    assert hourly.index[0] == pd.Timestamp("2025-10-25 22:00", tz="UTC")


def test_token_from_env_is_refused_with_clear_error(
    entsoe_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTSOE_API_TOKEN", "wrong-token-secret")
    client = EntsoeClient(base_url=entsoe_server, timeout=5)
    with pytest.raises(EntsoeAuthError, match="401") as info:
        client.day_ahead_prices(
            "DE_LU", datetime(2023, 3, 25, 23, tzinfo=UTC), datetime(2023, 3, 26, 22, tzinfo=UTC)
        )
    assert "wrong-token-secret" not in str(info.value)


def test_missing_token() -> None:
    with pytest.raises(EntsoeAuthError, match="ENTSOE_API_TOKEN"):
        EntsoeClient(SecretStr(""))


def test_no_matching_data_acknowledgement(entsoe_server: str) -> None:
    client = EntsoeClient(SecretStr(GOOD_TOKEN), base_url=entsoe_server, timeout=5)
    with pytest.raises(EntsoeNoDataError, match="No matching data found"):
        client.day_ahead_prices(
            "DE_LU", datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC)
        )


def test_server_error_names_status_without_token(entsoe_server: str) -> None:
    client = EntsoeClient(SecretStr(GOOD_TOKEN), base_url=entsoe_server, timeout=5)
    with pytest.raises(EntsoeError, match="HTTP 503") as info:
        client.day_ahead_prices(
            "DE_LU", datetime(2031, 1, 1, tzinfo=UTC), datetime(2031, 1, 2, tzinfo=UTC)
        )
    assert GOOD_TOKEN not in str(info.value)


def test_a01_curve_with_hole_is_an_error() -> None:
    body = (FIXTURES / "a44_de_lu_2023-03-26_dst.xml").read_text()
    body = body.replace("<curveType>A03</curveType>", "<curveType>A01</curveType>", 1)
    with pytest.raises(EntsoeError, match="misses position 5"):
        parse_day_ahead_xml(body)


def test_not_xml_is_an_error() -> None:
    with pytest.raises(EntsoeError, match="not XML"):
        parse_day_ahead_xml(b"<html><body>gateway timeout")


def test_parse_keeps_every_position() -> None:
    parsed = parse_day_ahead_xml((FIXTURES / "a44_de_lu_2023-03-26_dst.xml").read_bytes())
    hourly = parsed.by_resolution["PT60M"]
    assert len(hourly) == 47
    assert np.isclose(hourly.sum(), hourly.to_numpy().sum())
    assert hourly.index.is_unique
