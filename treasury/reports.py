"""Sale reports per sale and per day, week or month: what was mined, what was sold, how well.

Figures (quote currency unless said otherwise):

* coins mined: deposits received in the period; coins sold: sell fills in the period;
* average sale price = gross proceeds / coins sold;
* market VWAP = sum(close x volume) / sum(volume) over the period's price bars;
* selling on arrival = what each deposit would have fetched at the close of the bar it arrived
  in, per coin (the "sell every coin as it comes" benchmark);
* fees; gross proceeds; net proceeds = gross - fees; electricity cost from the plan (given per
  day); net margin = net proceeds - electricity cost, and as a fraction of net proceeds.

Outputs: CSV (daily rows and sales), HTML with an embedded PNG plot, JSON, and the title/text/
fields a notification channel sends. Everything here is pure: no network, no database writes.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from treasury.ledger import DepositRecord, FillRecord, Ledger


class ReportError(ValueError):
    """A report cannot be built (bad period, no prices); the message says what is missing."""


@dataclass(frozen=True)
class PricePoint:
    """One market bar: open time, close and base volume."""

    timestamp: datetime
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Period:
    """A report period [start, end) with its label (2026-11, 2026-W47, 2026-11-23)."""

    label: str
    kind: str
    start: datetime
    end: datetime


def parse_period(text: str) -> Period:
    """`YYYY-MM` (month), `YYYY-Www` (ISO week) or `YYYY-MM-DD` (day), in UTC."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}", text):
            start = datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
            nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
            return Period(text, "month", start, nxt)
        if m := re.fullmatch(r"(\d{4})-W(\d{2})", text):
            day = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return Period(text, "week", start, start + timedelta(days=7))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return Period(text, "day", start, start + timedelta(days=1))
    except ValueError as exc:
        raise ReportError(f"period {text!r}: {exc}") from exc
    raise ReportError(f"period {text!r}: expected YYYY-MM, YYYY-Www or YYYY-MM-DD")


@dataclass(frozen=True)
class SaleRow:
    """One sale (an order's fills in the period)."""

    client_order_id: str
    venue: str
    first_fill: datetime
    amount: Decimal
    average_price: Decimal
    fees: Decimal
    proceeds: Decimal
    vs_vwap: Decimal | None  # fraction above (+) or below (-) the period VWAP


@dataclass(frozen=True)
class DayRow:
    """One day of the period."""

    day: date
    coins_mined: Decimal
    coins_sold: Decimal
    proceeds: Decimal
    fees: Decimal
    electricity_cost: Decimal
    market_close: Decimal | None


@dataclass(frozen=True)
class SaleReport:
    """The whole report of one period."""

    period: Period
    currency: str
    coins_mined: Decimal
    coins_sold: Decimal
    average_price: Decimal | None
    market_vwap: Decimal | None
    arrival_price: Decimal | None
    vs_vwap: Decimal | None
    vs_arrival: Decimal | None
    fees: Decimal
    gross_proceeds: Decimal
    net_proceeds: Decimal
    electricity_cost: Decimal
    net_margin: Decimal
    margin_fraction: Decimal | None
    sales: list[SaleRow] = field(default_factory=list)
    days: list[DayRow] = field(default_factory=list)


def _ratio(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None or b == 0 else a / b - 1


def build_report(
    period: Period,
    deposits: Sequence[DepositRecord],
    fills: Sequence[FillRecord],
    prices: Sequence[PricePoint],
    electricity_by_day: Mapping[date, Decimal],
    currency: str = "USD",
) -> SaleReport:
    """Compute every figure of the report from ledger rows and market bars (oldest first)."""
    deposits = [d for d in deposits if period.start <= d.received_at < period.end]
    fills = [f for f in fills if period.start <= f.filled_at < period.end and f.side == "sell"]
    in_period = [p for p in prices if period.start <= p.timestamp < period.end]
    volume = sum((p.volume for p in in_period), Decimal(0))
    vwap = sum((p.close * p.volume for p in in_period), Decimal(0)) / volume if volume else None

    stamps = [p.timestamp for p in prices]

    def price_at(moment: datetime) -> Decimal | None:
        i = bisect_right(stamps, moment) - 1
        return prices[i].close if i >= 0 else None

    mined = sum((d.amount for d in deposits), Decimal(0))
    arrival_values = [(d.amount, price_at(d.received_at)) for d in deposits]
    priced = [(a, p) for a, p in arrival_values if p is not None]
    priced_coins = sum((a for a, _ in priced), Decimal(0))
    arrival = sum((a * p for a, p in priced), Decimal(0)) / priced_coins if priced_coins else None

    sold = sum((f.amount for f in fills), Decimal(0))
    gross = sum((f.amount * f.price for f in fills), Decimal(0))
    fees = sum((f.fee for f in fills), Decimal(0))
    average = gross / sold if sold else None
    net = gross - fees
    electricity = sum(
        (c for d, c in electricity_by_day.items() if period.start.date() <= d < period.end.date()),
        Decimal(0),
    )
    margin = net - electricity

    by_order: dict[str, list[FillRecord]] = {}
    for f in fills:
        by_order.setdefault(f.client_order_id, []).append(f)
    sales = []
    for cloid, order_fills in by_order.items():
        amount = sum((f.amount for f in order_fills), Decimal(0))
        value = sum((f.amount * f.price for f in order_fills), Decimal(0))
        fee = sum((f.fee for f in order_fills), Decimal(0))
        avg = value / amount
        sales.append(
            SaleRow(
                cloid,
                order_fills[0].venue,
                min(f.filled_at for f in order_fills),
                amount,
                avg,
                fee,
                value - fee,
                _ratio(avg, vwap),
            )
        )
    sales.sort(key=lambda s: s.first_fill)

    days = []
    day = period.start.date()
    while day < period.end.date():
        day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        day_fills = [f for f in fills if f.filled_at.date() == day]
        days.append(
            DayRow(
                day=day,
                coins_mined=sum(
                    (d.amount for d in deposits if d.received_at.date() == day), Decimal(0)
                ),
                coins_sold=sum((f.amount for f in day_fills), Decimal(0)),
                proceeds=sum((f.amount * f.price - f.fee for f in day_fills), Decimal(0)),
                fees=sum((f.fee for f in day_fills), Decimal(0)),
                electricity_cost=electricity_by_day.get(day, Decimal(0)),
                market_close=price_at(day_end - timedelta(microseconds=1)),
            )
        )
        day += timedelta(days=1)

    return SaleReport(
        period=period,
        currency=currency,
        coins_mined=mined,
        coins_sold=sold,
        average_price=average,
        market_vwap=vwap,
        arrival_price=arrival,
        vs_vwap=_ratio(average, vwap),
        vs_arrival=_ratio(average, arrival),
        fees=fees,
        gross_proceeds=gross,
        net_proceeds=net,
        electricity_cost=electricity,
        net_margin=margin,
        margin_fraction=margin / net if net else None,
        sales=sales,
        days=days,
    )


def report_from_ledger(
    ledger: Ledger,
    period: Period,
    prices: Sequence[PricePoint],
    electricity_by_day: Mapping[date, Decimal],
    currency: str = "USD",
) -> SaleReport:
    """`build_report` over the ledger's deposits and sell fills of the period."""
    return build_report(
        period,
        ledger.deposits_between(period.start, period.end),
        ledger.fills_between(period.start, period.end, side="sell"),
        prices,
        electricity_by_day,
        currency,
    )


# -- renderings ------------------------------------------------------------------------------
def _fmt(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:.{places}f}"


def _pct(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f}%"


def summary_fields(report: SaleReport) -> dict[str, str]:
    """The headline figures as text, in a fixed order (notification fields, CSV summary)."""
    c = report.currency
    return {
        "period": report.period.label,
        "coins_mined_btc": _fmt(report.coins_mined, 8),
        "coins_sold_btc": _fmt(report.coins_sold, 8),
        f"average_price_{c}": _fmt(report.average_price),
        f"market_vwap_{c}": _fmt(report.market_vwap),
        f"sell_on_arrival_price_{c}": _fmt(report.arrival_price),
        "vs_vwap": _pct(report.vs_vwap),
        "vs_selling_on_arrival": _pct(report.vs_arrival),
        f"fees_{c}": _fmt(report.fees),
        f"gross_proceeds_{c}": _fmt(report.gross_proceeds),
        f"net_proceeds_{c}": _fmt(report.net_proceeds),
        f"electricity_cost_{c}": _fmt(report.electricity_cost),
        f"net_margin_{c}": _fmt(report.net_margin),
        "margin": _pct(report.margin_fraction).lstrip("+"),
        "sales": str(len(report.sales)),
    }


def summary_text(report: SaleReport) -> tuple[str, str]:
    """(title, text) of the report for a notification."""
    c = report.currency
    title = f"Sale report {report.period.label}"
    text = (
        f"Mined {report.coins_mined:.8f} BTC, sold {report.coins_sold:.8f} BTC in "
        f"{len(report.sales)} sale(s) at {_fmt(report.average_price)} {c} on average "
        f"({_pct(report.vs_vwap)} vs VWAP, {_pct(report.vs_arrival)} vs selling on arrival). "
        f"Net proceeds {_fmt(report.net_proceeds)} {c}, electricity {_fmt(report.electricity_cost)}"
        f" {c}, net margin {_fmt(report.net_margin)} {c}."
    )
    return title, text


def to_csv(report: SaleReport) -> dict[str, str]:
    """Two CSV files: `<label>-days.csv` (one row per day) and `<label>-sales.csv`."""
    days = io.StringIO()
    w = csv.writer(days, lineterminator="\n")
    w.writerow(
        ["day", "coins_mined", "coins_sold", "net_proceeds", "fees", "electricity_cost", "close"]
    )
    for d in report.days:
        w.writerow(
            [
                d.day.isoformat(),
                _fmt(d.coins_mined, 8),
                _fmt(d.coins_sold, 8),
                _fmt(d.proceeds),
                _fmt(d.fees),
                _fmt(d.electricity_cost),
                _fmt(d.market_close),
            ]
        )
    sales = io.StringIO()
    w = csv.writer(sales, lineterminator="\n")
    w.writerow(
        ["first_fill", "venue", "client_order_id", "amount", "average_price", "fees",
         "net_proceeds", "vs_vwap"]
    )  # fmt: skip
    for s in report.sales:
        w.writerow(
            [
                s.first_fill.isoformat(),
                s.venue,
                s.client_order_id,
                _fmt(s.amount, 8),
                _fmt(s.average_price),
                _fmt(s.fees),
                _fmt(s.proceeds),
                _pct(s.vs_vwap),
            ]
        )
    label = report.period.label
    return {f"{label}-days.csv": days.getvalue(), f"{label}-sales.csv": sales.getvalue()}


def plot_png(report: SaleReport, prices: Sequence[PricePoint]) -> bytes:
    """PNG: market price over the period with each sale marked, and coins mined vs sold per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    in_period = [p for p in prices if report.period.start <= p.timestamp < report.period.end]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    try:
        top.plot([p.timestamp for p in in_period], [float(p.close) for p in in_period],
                 lw=0.8, label="market close")  # fmt: skip
        if report.sales:
            top.scatter([s.first_fill for s in report.sales],
                        [float(s.average_price) for s in report.sales],
                        color="tab:red", zorder=3, s=18, label="sales")  # fmt: skip
        if report.market_vwap is not None:
            top.axhline(float(report.market_vwap), color="grey", ls="--", lw=0.8, label="VWAP")
        top.set_ylabel(report.currency)
        top.legend(loc="best", fontsize=8)
        top.set_title(f"Sales {report.period.label}")
        xs = [d.day for d in report.days]
        bottom.bar(xs, [float(d.coins_mined) for d in report.days], label="mined", alpha=0.6)
        bottom.bar(xs, [float(d.coins_sold) for d in report.days], label="sold", alpha=0.6)
        bottom.set_ylabel("BTC")
        bottom.legend(loc="best", fontsize=8)
        fig.autofmt_xdate()
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=90)
        return out.getvalue()
    finally:
        plt.close(fig)


def to_html(report: SaleReport, prices: Sequence[PricePoint]) -> str:
    """A self-contained HTML page: headline table, embedded plot, sales and days."""
    png = base64.b64encode(plot_png(report, prices)).decode()
    esc = html.escape
    summary = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_fields(report).items()
    )
    tables = []
    for name, content in to_csv(report).items():
        rows = list(csv.reader(io.StringIO(content)))
        head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
        )
        tables.append(f"<h2>{esc(name)}</h2><table><tr>{head}</tr>{body}</table>")
    title = esc(summary_text(report)[0])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
        f"<h1>{title}</h1><p>{esc(summary_text(report)[1])}</p><table>{summary}</table>"
        f"<img alt='sales plot' src='data:image/png;base64,{png}'/>"
        + "".join(tables)
        + "</body></html>"
    )


def to_json(report: SaleReport) -> dict[str, Any]:
    """The report as JSON-ready data (Decimals and dates as strings)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    data: dict[str, Any] = clean(asdict(report))
    return data


def prices_from_bars(bars: Any) -> list[PricePoint]:
    """PricePoints from `treasury.price_data.Bars` (numpy arrays)."""
    return [
        PricePoint(
            datetime.fromtimestamp(int(ts.astype("datetime64[s]").astype("int64")), UTC),
            Decimal(repr(float(c))),
            Decimal(repr(float(v))),
        )
        for ts, c, v in zip(bars.timestamp, bars.close, bars.volume, strict=True)
    ]
