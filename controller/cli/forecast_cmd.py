"""farmctl forecast ...: price data and day-ahead forecasts. Heavy imports stay inside commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

forecast_app = typer.Typer(
    help="Electricity price data and day-ahead forecasts.", no_args_is_help=True
)

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Attach the `forecast` group to the root app."""
    app.add_typer(forecast_app, name="forecast")


def _epftoolbox_dir() -> Path:
    from controller.paths import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise typer.BadParameter(
            "shared data not found: set FARMCTL_DATA_DIR or place ../shared/data beside the repo"
        )
    return data / "electricity" / "epftoolbox"


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = (
        f"{report['market']}: {report['test_days']} test days "
        f"{report['first_day']} .. {report['last_day']} ({report['seconds']} s)"
    )
    table = Table(title=title)
    for col in ("model", "MAE", "rMAE", "sMAPE %", "RMSE", "DM p vs pub. LEAR"):
        table.add_column(col, justify="right" if col != "model" else "left")
    dm = report.get("diebold_mariano", {})
    for name, row in report["models"].items():
        p = dm.get(f"{name} vs published LEAR", {}).get("p_value")
        table.add_row(
            name,
            f"{row['MAE']:.3f}",
            f"{row['rMAE']:.4f}",
            f"{row['sMAPE']:.2f}",
            f"{row['RMSE']:.3f}",
            "" if p is None else f"{p:.3g}",
        )
    for section, label in (
        ("published_same_days", "published, same days"),
        ("published_paper", "paper table"),
    ):
        for name, row in report.get(section, {}).items():
            table.add_row(
                f"{name} ({label})",
                f"{row['MAE']:.3f}",
                f"{row['rMAE']:.4f}",
                f"{row['sMAPE']:.2f}",
                f"{row['RMSE']:.3f}",
                "",
            )
    console.print(table)
    interval = report["interval"]
    console.print(
        f"p10-p90 interval of the combination: coverage {interval['coverage']:.3f} "
        f"(nominal {interval['nominal']:.2f})"
    )


@forecast_app.command("evaluate")
def evaluate(
    market: Annotated[
        str | None, typer.Option(help="Shared epftoolbox market: NP, BE, FR or DE.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Any file in the epftoolbox layout instead of a market.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    days: Annotated[
        int | None, typer.Option(min=8, help="Score only the first N test days (shorter run).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of forecast vs actual with the p10-p90 band.")
    ] = None,
    save: Annotated[
        Path | None, typer.Option(help="Write every hourly forecast to this CSV.")
    ] = None,
    windows: Annotated[
        str, typer.Option(help="LEAR calibration windows in days, comma-separated.")
    ] = "56,84,1092,1456",
    gbm_refit_every: Annotated[
        int, typer.Option(min=1, help="Days between gradient-boosting refits.")
    ] = 7,
) -> None:
    """Run the 728-day epftoolbox protocol (daily recalibration) and compare with the paper."""
    from forecasting.evaluate import (
        evaluation_report,
        load_published_forecasts,
        load_reference_metrics,
        run_rolling,
    )
    from forecasting.prices import EPFTOOLBOX_MARKETS, PriceDataError, load_epftoolbox

    if (market is None) == (csv is None):
        raise typer.BadParameter("give exactly one of --market or --csv")
    published = None
    reference = None
    try:
        if market is not None:
            market = market.upper()
            if market not in EPFTOOLBOX_MARKETS:
                raise typer.BadParameter(
                    f"unknown market {market!r}; shared markets: {', '.join(EPFTOOLBOX_MARKETS)}"
                )
            folder = _epftoolbox_dir()
            dataset = load_epftoolbox(folder / f"{market}.csv.gz", market)
            published = load_published_forecasts(
                folder / f"forecasts_paper2021_{market}_DNN_LEAR.csv.gz"
            )
            if days is None:
                reference = load_reference_metrics(
                    folder / "reference_metrics_paper2021.csv", market
                )
        else:
            assert csv is not None
            if not csv.is_file():
                raise typer.BadParameter(f"{csv}: no such file")
            dataset = load_epftoolbox(csv)
        window_list = tuple(int(w) for w in windows.split(",") if w.strip())
    except PriceDataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ValueError as exc:
        typer.echo(f"error: bad --windows {windows!r}: {exc}", err=True)
        raise typer.Exit(2) from exc

    def progress(done: int, total: int) -> None:
        if done % 28 == 0 or done == total:
            print(f"  {dataset.market}: day {done}/{total}", file=sys.stderr, flush=True)

    try:
        result = run_rolling(
            dataset,
            n_days=days,
            windows=window_list,
            gbm_refit_every=gbm_refit_every,
            progress=progress,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = evaluation_report(result, published, reference)
    if save is not None:
        result.to_frame().to_csv(save)
    if plot is not None:
        from forecasting.forecast_plots import plot_forecast

        plot_forecast(result.to_frame().iloc[-14 * 24 :], plot, title=f"{dataset.market}")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_table(report)


@forecast_app.command("validate")
def validate(
    market: Annotated[
        list[str] | None,
        typer.Option(help="Shared epftoolbox market(s); repeat the option. Default: all four."),
    ] = None,
    days: Annotated[
        int, typer.Option(min=60, help="Validation days just before each test period.")
    ] = 182,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Score the candidate combination rules on the days before the test period (never the test
    period itself) and name the rule with the lowest MAE relative to the current one."""
    from forecasting.prices import EPFTOOLBOX_MARKETS, load_epftoolbox
    from forecasting.validation import choose_rule, rule_errors, run_validation

    markets = [m.upper() for m in (market or list(EPFTOOLBOX_MARKETS))]
    unknown = [m for m in markets if m not in EPFTOOLBOX_MARKETS]
    if unknown:
        raise typer.BadParameter(f"unknown market(s) {unknown}; shared: {EPFTOOLBOX_MARKETS}")
    folder = _epftoolbox_dir()
    errors: dict[str, dict[str, float]] = {}
    periods: dict[str, str] = {}
    for name in markets:
        dataset = load_epftoolbox(folder / f"{name}.csv.gz", name)
        result = run_validation(dataset, days=days)
        errors[name] = rule_errors(result)
        periods[name] = f"{result.days[0].date()} .. {result.days[-1].date()}"
        print(f"  {name}: validation {periods[name]} done", file=sys.stderr, flush=True)
    best, ratios = choose_rule(errors)
    report = {"periods": periods, "mae": errors, "ratio_to_current": ratios, "chosen": best}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Combination rules on {days} validation days before each test period")
    table.add_column("rule / member")
    for name in markets:
        table.add_column(f"{name} MAE", justify="right")
    table.add_column("mean ratio", justify="right")
    for rule in next(iter(errors.values())):
        ratio = ratios.get(rule)
        table.add_row(
            rule,
            *(f"{errors[m][rule]:.4f}" for m in markets),
            "" if ratio is None else f"{ratio:.4f}",
        )
    console = Console()
    console.print(table)
    console.print(f"chosen: {best}")


prices_app = typer.Typer(help="Load prices into the database.", no_args_is_help=True)
forecast_app.add_typer(prices_app, name="prices")


@prices_app.command("import")
def import_prices(
    market: Annotated[
        str | None, typer.Option(help="Shared epftoolbox market NP, BE, FR or DE.")
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="Generic CSV of timestamps and prices.")] = None,
    entsoe_zone: Annotated[
        str | None, typer.Option("--entsoe", help="ENTSO-E bidding zone (token: ENTSOE_API_TOKEN).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="ENTSO-E: first UTC hour (ISO).")] = None,
    end: Annotated[str | None, typer.Option(help="ENTSO-E: end UTC hour, exclusive (ISO).")] = None,
    timestamp_col: Annotated[str, typer.Option(help="CSV timestamp column.")] = "timestamp",
    price_col: Annotated[str, typer.Option(help="CSV price column.")] = "price",
    tz: Annotated[str, typer.Option(help="CSV: time zone of naive timestamps.")] = "UTC",
    zone: Annotated[str, typer.Option(help="CSV: zone name to store under.")] = "",
    currency: Annotated[str, typer.Option(help="CSV: currency.")] = "EUR",
    keep_gaps: Annotated[
        bool, typer.Option(help="Keep missing hours as gaps instead of refusing the file.")
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Farm config.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL; overrides config.")] = None,
) -> None:
    """Store day-ahead prices from one source in the `electricity_price` table (idempotent)."""
    from datetime import datetime

    import sqlalchemy as sa

    from controller.cli.db_cmd import resolve_database_url
    from controller.storage import make_engine
    from forecasting.entsoe import EntsoeClient, EntsoeError
    from forecasting.price_store import upsert_prices
    from forecasting.prices import (
        EPFTOOLBOX_MARKETS,
        PriceDataError,
        PriceSeries,
        load_csv,
        load_epftoolbox,
    )

    if sum(x is not None for x in (market, csv, entsoe_zone)) != 1:
        raise typer.BadParameter("give exactly one of --market, --csv or --entsoe")
    gaps = "keep" if keep_gaps else "raise"
    try:
        series: PriceSeries
        if market is not None:
            if market.upper() not in EPFTOOLBOX_MARKETS:
                raise typer.BadParameter(f"unknown market {market!r}")
            series = load_epftoolbox(
                _epftoolbox_dir() / f"{market.upper()}.csv.gz", market.upper()
            ).to_price_series()
        elif csv is not None:
            series = load_csv(
                csv,
                timestamp_col=timestamp_col,
                price_col=price_col,
                tz=tz,
                zone=zone,
                currency=currency,
                gaps="keep" if keep_gaps else "raise",
            )
        else:
            assert entsoe_zone is not None
            if start is None or end is None:
                raise typer.BadParameter("--entsoe needs --start and --end")
            begin, stop = (datetime.fromisoformat(v) for v in (start, end))
            if begin.tzinfo is None or stop.tzinfo is None:
                raise typer.BadParameter("--start/--end need a UTC offset, e.g. 2024-01-01T00:00Z")
            series = EntsoeClient().day_ahead_prices(
                entsoe_zone, begin, stop, gaps="keep" if keep_gaps else "raise"
            )
    except (PriceDataError, EntsoeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    engine = make_engine(resolve_database_url(config, db))
    try:
        if not sa.inspect(engine).has_table("electricity_price"):
            typer.echo("error: table electricity_price missing: run `farmctl db upgrade`", err=True)
            raise typer.Exit(2)
        written = upsert_prices(engine, series)
    finally:
        engine.dispose()
    prices = series.prices
    typer.echo(
        f"stored {written} hours of {series.market}/{series.zone} {series.kind} "
        f"({prices.index[0]} .. {prices.index[-1]} UTC, gaps {int(prices.isna().sum())}, "
        f"negative hours {int((prices < 0).sum())}, policy {gaps})"
    )
