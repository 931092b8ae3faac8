"""Sale reports on a constructed ledger priced with real Bitstamp bars (June 2022), and delivery
through the controller's webhook and email channels to local servers."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from treasury.ledger import Ledger
from treasury.price_data import load_bars
from treasury.reports import (
    PricePoint,
    ReportError,
    SaleReport,
    parse_period,
    prices_from_bars,
    report_from_ledger,
    summary_fields,
    summary_text,
    to_csv,
    to_html,
    to_json,
)
from treasury.venues.base import VenueFill, VenueOrder

FEE = Decimal("0.0026")
SALE_HOURS = [datetime(2022, 6, d, 15, tzinfo=UTC) for d in (3, 10, 17)]


@pytest.fixture(scope="module")
def june(data_dir: Path) -> tuple[list[PricePoint], Any]:
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz").between(
        "2022-05-31T00:00:00", "2022-07-01T00:00:00"
    )
    return prices_from_bars(bars), bars


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory, june: tuple[list[PricePoint], Any]
) -> SaleReport:
    prices, _ = june
    by_time = {p.timestamp: p.close for p in prices}
    db = tmp_path_factory.mktemp("reports") / "ledger.db"
    ledger = Ledger(sa.create_engine(f"sqlite:///{db}"))
    ledger.create_tables()
    for day in range(1, 31):
        ledger.record_deposit(
            "kraken", f"pool-2022-06-{day:02d}", "BTC", Decimal("0.01"),
            datetime(2022, 6, day, 12, tzinfo=UTC), "pool",
        )  # fmt: skip
    for i, hour in enumerate(SALE_HOURS):
        cloid = f"fc{i:016x}"
        price = by_time[hour]
        ledger.record_intent(cloid, "kraken", "BTC/USD", "sell", Decimal("0.1"), price, now=hour)
        fee = (Decimal("0.1") * price * FEE).quantize(Decimal("0.00000001"))
        fill = VenueFill(f"T{i}", Decimal("0.1"), price, fee, "USD", hour)
        ledger.apply_venue_order(
            VenueOrder("kraken", f"O{i}", cloid, "BTC/USD", "sell", Decimal("0.1"), price,
                       Decimal("0.1"), "closed", Decimal("0.1") * price, fee, "USD", (fill,)),
            now=hour,
        )  # fmt: skip
    electricity = {date(2022, 6, d): Decimal("250") for d in range(1, 31)}
    return report_from_ledger(ledger, parse_period("2022-06"), prices, electricity)


def test_periods() -> None:
    assert parse_period("2026-11").end == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_period("2026-12").end == datetime(2027, 1, 1, tzinfo=UTC)
    week = parse_period("2026-W48")
    assert (week.start, week.end - week.start) == (datetime(2026, 11, 23, tzinfo=UTC), timedelta(7))
    assert parse_period("2026-11-23").kind == "day"
    with pytest.raises(ReportError, match="expected YYYY-MM"):
        parse_period("November")
    with pytest.raises(ReportError, match="2026-13"):
        parse_period("2026-13")


def test_figures(report: SaleReport, june: tuple[list[PricePoint], Any]) -> None:
    prices, bars = june
    closes = {p.timestamp: p.close for p in prices}
    sale_prices = [closes[h] for h in SALE_HOURS]
    assert report.coins_mined == Decimal("0.30")
    assert report.coins_sold == Decimal("0.3")
    assert report.average_price == sum(sale_prices) / 3
    # The real closes at 15:00 UTC on 3, 10 and 17 June 2022.
    assert [str(p) for p in sale_prices] == ["29462.54", "29422.67", "20647.15"]
    june_only = bars.between("2022-06-01T00:00:00", "2022-07-01T00:00:00")
    vwap = float((june_only.close * june_only.volume).sum() / june_only.volume.sum())
    assert float(report.market_vwap) == pytest.approx(vwap, rel=1e-12)
    noon = [closes[datetime(2022, 6, d, 12, tzinfo=UTC)] for d in range(1, 31)]
    assert report.arrival_price == sum(noon) / 30
    assert float(report.vs_vwap) == pytest.approx(float(report.average_price) / vwap - 1)
    fees = sum((Decimal("0.1") * p * FEE).quantize(Decimal("0.00000001")) for p in sale_prices)
    assert report.fees == fees
    assert report.gross_proceeds == Decimal("0.1") * sum(sale_prices)
    assert report.net_proceeds == report.gross_proceeds - fees
    assert report.electricity_cost == Decimal("7500")
    assert report.net_margin == report.net_proceeds - 7500
    # 0.1 x (29462.54 + 29422.67 + 20647.15) = 7953.236 gross, 20.6784136 fees, 7500 power.
    assert report.net_margin == Decimal("432.5575864")
    assert len(report.days) == 30 and report.days[2].coins_sold == Decimal("0.1")
    assert [s.client_order_id for s in report.sales] == [f"fc{i:016x}" for i in range(3)]
    assert report.sales[2].vs_vwap is not None and report.sales[2].vs_vwap < 0


@pytest.fixture(scope="module")
def page(report: SaleReport, june: tuple[list[PricePoint], Any]) -> str:
    return to_html(report, june[0])


def test_csv_html_json(report: SaleReport, page: str) -> None:
    files = to_csv(report)
    days = files["2022-06-days.csv"].splitlines()
    assert days[0] == "day,coins_mined,coins_sold,net_proceeds,fees,electricity_cost,close"
    assert days[3].startswith("2022-06-03,0.01000000,0.10000000,2938.59,7.66,250.00,")
    sales = files["2022-06-sales.csv"].splitlines()
    assert len(sales) == 4 and ",kraken,fc0000000000000002,0.10000000,20647.15," in sales[3]
    assert page.startswith("<!doctype html>") and "data:image/png;base64,iVBOR" in page
    assert "Sale report 2022-06" in page
    data = json.loads(json.dumps(to_json(report)))
    assert data["electricity_cost"] == "7500" and data["period"]["label"] == "2022-06"
    assert summary_fields(report)["vs_selling_on_arrival"].endswith("%")


class Catcher(BaseHTTPRequestHandler):
    bodies: list[Any] = []  # noqa: RUF012

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Catcher.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_webhook_formats_delivered(report: SaleReport) -> None:
    from controller.notify import Message, WebhookChannel

    title, text = summary_text(report)
    message = Message("report", title, text, fields=summary_fields(report))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Catcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Catcher.bodies.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        for fmt in ("plain", "slack", "telegram"):
            WebhookChannel(url, fmt).send(message)  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()
    plain, slack, telegram = Catcher.bodies
    assert plain["fields"]["electricity_cost_USD"] == "7500.00"
    assert plain["title"] == "Sale report 2022-06"
    assert slack["blocks"][0]["text"]["text"] == "Sale report 2022-06"
    assert "*coins_sold_btc*: 0.30000000" in slack["blocks"][2]["text"]["text"]
    assert telegram["text"].startswith("Sale report 2022-06\nMined 0.30000000 BTC, sold")


def test_email_over_local_smtp(report: SaleReport, page: str) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message as MessageHandler

    from controller.notify import EmailChannel, Message

    received: list[bytes] = []

    class Keep(MessageHandler):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            received.append(message.as_bytes())

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(Keep(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        title, text = summary_text(report)
        csvs = [(name, body.encode(), "text/csv") for name, body in to_csv(report).items()]
        attachments = (*csvs, ("2022-06.html", page.encode(), "text/html"))
        EmailChannel(
            "127.0.0.1", port, "farm@example.org",
            ["owner@example.org"], starttls=False,
        ).send(Message("report", title, text, fields=summary_fields(report), attachments=attachments))  # fmt: skip
    finally:
        smtp.stop()
    mail = message_from_bytes(received[0])
    assert mail["Subject"] == "[farmctl] Sale report 2022-06"
    names = [part.get_filename() for part in mail.walk() if part.get_filename()]
    assert names == ["2022-06-days.csv", "2022-06-sales.csv", "2022-06.html"]


def test_no_prices_gives_empty_benchmarks(tmp_path: Path) -> None:
    ledger = Ledger(sa.create_engine(f"sqlite:///{tmp_path / 'l.db'}"))
    ledger.create_tables()
    r = report_from_ledger(ledger, parse_period("2026-11"), [], {})
    assert (r.market_vwap, r.average_price, r.margin_fraction) == (None, None, None)
    assert summary_fields(r)["vs_vwap"] == "n/a"
    assert np.isclose(float(r.net_margin), 0.0)
