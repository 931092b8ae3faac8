"""farmctl economics and farmctl plan ...: mining economics and hashing plans.

Heavy imports (pandas, scikit-learn, matplotlib) stay inside the command functions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

plan_app = typer.Typer(help="Hashing plans: which rigs hash in which hour.", no_args_is_help=True)

DEFAULT_JTH = (17.5, 25.0)
DEFAULT_HASHPRICES = (0.040, 0.050)


def register(app: typer.Typer) -> None:
    """Attach the `plan` group and the `economics` command to the root app."""
    app.add_typer(plan_app, name="plan")
    app.command("economics")(economics)


def _data_dir() -> Path:
    from controller.paths import shared_data_dir

    data = shared_data_dir()
    if data is None:
        raise typer.BadParameter(
            "shared data not found: set FARMCTL_DATA_DIR or place ../shared/data beside the repo"
        )
    return data


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@dataclass(frozen=True)
class _FleetModel:
    name: str
    count: int
    hashrate_ths: float | None
    power_w: float | None
    j_per_th: float


def _fleet_from_config(path: Path) -> tuple[list[_FleetModel], float | None, float]:
    """Rig models of the configured fleet (via the hardware catalog), the configured hashprice
    and the pool fee (0 when the config has none)."""
    import hardware
    from controller.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        _fail("; ".join(str(p) for p in exc.problems))
        raise  # unreachable: _fail exits
    counts: dict[str, int] = {}
    for rig in config.rigs:
        if not rig.model:
            _fail(f'rig {rig.name} has no model in {path}; set model = "..." to price it')
        counts[str(rig.model)] = counts.get(str(rig.model), 0) + 1
    models: list[_FleetModel] = []
    for name, count in counts.items():
        found = hardware.lookup(name)
        if found is None:
            _fail(f"rig model {name!r} is not in the hardware catalog (farmctl hardware list)")
            raise AssertionError  # unreachable
        models.append(
            _FleetModel(found.model, count, found.hashrate_ths, found.power_w, found.efficiency_jth)
        )
    return models, config.planner.hashprice_usd_per_th_day, 0.0


def economics(
    config: Annotated[
        Path | None, typer.Option("--config", help="farm config: rig models come from its rigs")
    ] = None,
    day: Annotated[
        str | None,
        typer.Option("--date", help="network day YYYY-MM-DD for the hashprice (default: latest)"),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="rig model from the hardware catalog")
    ] = None,
    jth: Annotated[list[float] | None, typer.Option("--jth", help="efficiency in J/TH")] = None,
    hashprice: Annotated[
        float | None, typer.Option("--hashprice", help="USD per TH/s per day; skips network data")
    ] = None,
    pool_fee: Annotated[float, typer.Option("--pool-fee", help="pool fee share, 0..1")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Hashprice, revenue per MWh and break-even power price for each rig model of the fleet."""
    import hardware
    from forecasting.economics import (
        EconomicsError,
        load_network_days,
        model_economics,
        network_day,
        network_file,
    )

    models: list[_FleetModel] = []
    configured_hashprice = None
    if config is not None:
        models, configured_hashprice, _ = _fleet_from_config(config)
    for name in model or []:
        found = hardware.lookup(name)
        if found is None:
            _fail(f"rig model {name!r} is not in the hardware catalog (farmctl hardware list)")
            return
        models.append(
            _FleetModel(found.model, 1, found.hashrate_ths, found.power_w, found.efficiency_jth)
        )
    for value in jth or []:
        models.append(_FleetModel(f"{value:g} J/TH", 1, None, None, value))
    if not models:
        _fail("nothing to price: give --config, --model NAME or --jth X")

    source: dict[str, Any] = {"hashprice_source": "--hashprice"}
    if hashprice is None and configured_hashprice is not None and day is None:
        hashprice = configured_hashprice
        source = {"hashprice_source": "config [planner] hashprice_usd_per_th_day"}
    if hashprice is None:
        try:
            days = load_network_days(network_file(_data_dir()))
            row = network_day(days, date.fromisoformat(day) if day else None)
        except (EconomicsError, ValueError, OSError) as exc:
            _fail(str(exc))
            return
        with_fees = row.fees_btc_per_block is not None
        hashprice = row.hashprice(include_fees=with_fees)
        source = {
            "hashprice_source": "bitcoin-network file",
            "date": row.day.isoformat(),
            "difficulty": row.difficulty,
            "subsidy_btc_per_block": row.subsidy_btc_per_block,
            "fees_btc_per_block": row.fees_btc_per_block,
            "btc_price_usd": row.price_usd,
            "includes_fees": with_fees,
        }
    try:
        rows = [
            (m, model_economics(m.name, m.j_per_th, hashprice, m.hashrate_ths, m.power_w, pool_fee))
            for m in models
        ]
    except EconomicsError as exc:
        _fail(str(exc))
        return
    rows.sort(key=lambda r: r[0].j_per_th)
    if as_json:
        out = {
            **source,
            "hashprice_usd_per_th_day": hashprice,
            "pool_fee": pool_fee,
            "models": [
                {
                    "model": m.name,
                    "count": m.count,
                    "hashrate_ths": m.hashrate_ths,
                    "power_w": m.power_w,
                    "j_per_th": m.j_per_th,
                    "revenue_usd_per_day": e.revenue_usd_per_day,
                    "revenue_usd_per_mwh": e.revenue_usd_per_mwh,
                    "break_even_usd_per_mwh": e.break_even_usd_per_mwh,
                }
                for m, e in rows
            ],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    title = f"hashprice {hashprice:.4f} USD/TH/day ({source['hashprice_source']}"
    if "date" in source:
        fees = "with fees" if source["includes_fees"] else "subsidy only, no fee data"
        title += f", {source['date']}, {fees}"
    table = Table(title=title + ")")
    for col in ("model", "rigs", "TH/s", "W", "J/TH", "USD/day/rig", "USD/MWh", "break-even"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for m, e in rows:
        table.add_row(
            m.name,
            str(m.count),
            "" if m.hashrate_ths is None else f"{m.hashrate_ths:g}",
            "" if m.power_w is None else f"{m.power_w:g}",
            f"{m.j_per_th:.1f}",
            "" if e.revenue_usd_per_day is None else f"{e.revenue_usd_per_day:.2f}",
            f"{e.revenue_usd_per_mwh:.2f}",
            f"{e.break_even_usd_per_mwh:.2f}",
        )
    Console(width=120).print(table)


def _load_prices(
    prices: str,
    zone: str,
    timestamp_col: str,
    price_col: str,
    da_col: str | None,
    timezone: str,
    fx: float = 1.0,
) -> tuple[Any, str, bool]:
    """(frame with da/rt columns in USD, time zone, real_time?) for `ercot`, `epftoolbox:<M>`
    (a day-ahead tariff) or a CSV price file; ``fx`` converts file prices to USD."""
    import pandas as pd

    from forecasting.ercot import ERCOT_TZ, ercot_file, load_ercot_hourly
    from forecasting.prices import PriceDataError, load_csv

    try:
        if prices.lower() == "ercot":
            return load_ercot_hourly(ercot_file(_data_dir()), zone).frame(), ERCOT_TZ, True
        if prices.lower().startswith("epftoolbox:"):
            from forecasting.prices import epftoolbox_path, load_epftoolbox

            market = prices.split(":", 1)[1].upper()
            series = load_epftoolbox(epftoolbox_path(_data_dir(), market), market)
            price = series.to_price_series().prices * fx
            return pd.DataFrame({"da": price, "rt": price}), series.timezone, False
        path = Path(prices)
        if not path.is_file():
            _fail(f"--prices must be 'ercot' or a CSV file; {prices!r} is neither")
        rt = (
            fx
            * load_csv(
                path, timestamp_col=timestamp_col, price_col=price_col, tz=timezone, gaps="keep"
            ).prices
        )
        if da_col:
            da = (
                fx
                * load_csv(
                    path, timestamp_col=timestamp_col, price_col=da_col, tz=timezone, gaps="keep"
                ).prices
            )
            return pd.DataFrame({"da": da, "rt": rt}), timezone, True
        return pd.DataFrame({"da": rt, "rt": rt}), timezone, False
    except (PriceDataError, OSError) as exc:
        _fail(f"{prices}: {exc}")
        raise  # unreachable


@plan_app.command("backtest")
def backtest(
    prices: Annotated[
        str, typer.Option("--prices", help="'ercot', 'epftoolbox:DE' (NP/BE/FR/DE) or a CSV file")
    ] = "ercot",
    zone: Annotated[
        list[str] | None, typer.Option("--zone", help="ERCOT hub/zone, repeatable")
    ] = None,
    jth: Annotated[list[float] | None, typer.Option("--jth", help="fleet J/TH, repeatable")] = None,
    hashprice: Annotated[
        list[float] | None, typer.Option("--hashprice", help="USD/TH/s/day, repeatable")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="first scored local day (default: ERCOT 2024-04-01, a file +90 days)"),
    ] = None,
    end: Annotated[str | None, typer.Option(help="first local day not scored")] = None,
    switch_cost: Annotated[float, typer.Option(help="USD per MW per switch")] = 10.0,
    min_on: Annotated[int, typer.Option(help="minimum hours hashing")] = 1,
    min_off: Annotated[int, typer.Option(help="minimum hours curtailed")] = 1,
    max_switches: Annotated[int, typer.Option(help="switches per local day")] = 8,
    deadband: Annotated[float, typer.Option(help="share of forecast spread to clear")] = 0.25,
    refit_months: Annotated[int, typer.Option(help="forecaster refit interval")] = 3,
    timestamp_col: Annotated[str, typer.Option(help="file: timestamp column")] = "timestamp",
    price_col: Annotated[str, typer.Option(help="file: price the site pays")] = "price",
    da_col: Annotated[
        str | None, typer.Option(help="file: day-ahead column (then the price is real-time)")
    ] = None,
    timezone: Annotated[str, typer.Option(help="file: market time zone")] = "UTC",
    fx: Annotated[
        float, typer.Option(help="USD per unit of the file's currency (hashprice is in USD)")
    ] = 1.0,
    plot: Annotated[Path | None, typer.Option(help="PNG: plan over prices, busiest week")] = None,
    baselines: Annotated[
        bool, typer.Option(help="also score day-ahead and last-hour real-time decisions")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Margin of always-on, our plan and perfect foresight (same constraints), capture share."""
    import pandas as pd

    from forecasting.plan_backtest import (
        INFORMATION,
        INFORMATION_DAY_AHEAD,
        BacktestCase,
        backtest_prices,
        baseline_forecasts,
        plan_schedule,
        run_backtest,
    )
    from forecasting.plan_types import PlanConstraints, PlanError
    from forecasting.rt_forecast import RtForecastError

    zones = zone or ["LZ_WEST"]
    if prices.lower().startswith("epftoolbox:"):
        zones = [prices.split(":", 1)[1].upper()]
    elif prices.lower() != "ercot":
        zones = [Path(prices).name.split(".")[0]]
    information = INFORMATION
    cases = [
        BacktestCase(j, h)
        for j in (jth or list(DEFAULT_JTH))
        for h in (hashprice or list(DEFAULT_HASHPRICES))
    ]
    report: list[dict[str, Any]] = []
    for z in zones:
        frame, tz, real_time = _load_prices(
            prices, z, timestamp_col, price_col, da_col, timezone, fx
        )
        try:
            constraints = PlanConstraints(
                min_on_hours=min_on,
                min_off_hours=min_off,
                switch_cost_usd_per_mw=switch_cost,
                max_switches_per_day=max_switches,
                deadband_scale=deadband,
                timezone=tz,
            )
            if start:
                first = pd.Timestamp(start).tz_localize(tz).tz_convert("UTC")
            elif prices.lower() == "ercot":
                first = pd.Timestamp("2024-04-01").tz_localize(tz).tz_convert("UTC")
            else:
                first = pd.Timestamp(frame.index[0]) + pd.Timedelta(days=90)
            last = pd.Timestamp(end).tz_localize(tz).tz_convert("UTC") if end else None
            results, forecast = backtest_prices(
                frame, cases, constraints, first, last, z, refit_months, real_time
            )
        except (PlanError, RtForecastError, ValueError) as exc:
            _fail(f"{z}: {exc}")
            return
        if not real_time:
            information = INFORMATION_DAY_AHEAD
        for r in results:
            report.append({**r.as_dict(), "decision": "plan"})
        if baselines and real_time:
            for name, base in baseline_forecasts(frame, pd.DatetimeIndex(forecast.index)).items():
                for r in run_backtest(frame, base, cases, constraints, z):
                    report.append({**r.as_dict(), "decision": name})
        if plot is not None:
            from forecasting.plan_plots import plot_backtest_window

            target = plot if len(zones) == 1 else plot.with_name(f"{plot.stem}_{z}{plot.suffix}")
            sched = plan_schedule(frame, forecast, cases[0], constraints)
            plot_backtest_window(
                sched,
                target,
                f"{z}: {cases[0].j_per_th:g} J/TH at {cases[0].hashprice_usd_per_th_day:.3f} "
                "USD/TH/day, real-time prices and the plan",
                timezone=tz,
            )
            typer.echo(f"plot written: {target}", err=True)
    if as_json:
        clean = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in report
        ]
        typer.echo(json.dumps({"information": information, "results": clean}, indent=2))
        return
    _print_backtest(report, information)


def _print_backtest(report: list[dict[str, Any]], information: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    first = report[0]
    table = Table(
        title=f"plan backtest {first['start'][:10]} .. {first['end'][:10]}, USD per MW of fleet"
    )
    cols = (
        "zone", "decision", "J/TH", "hashprice", "break-even", "always-on", "plan", "perfect", "capture",
        "h curtailed (plan/perfect)", "cost avoided (plan)", "switches (plan/perfect)",
    )  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "zone" else "right")
    for r in report:
        table.add_row(
            r["zone"],
            r["decision"],
            f"{r['j_per_th']:g}",
            f"{r['hashprice_usd_per_th_day']:.3f}",
            f"{r['break_even_usd_per_mwh']:.1f}",
            f"{r['always_on_margin']:,.0f}",
            f"{r['plan_margin']:,.0f}",
            f"{r['perfect_margin']:,.0f}",
            f"{100 * r['capture']:.1f} %",
            f"{r['plan_hours_curtailed']}/{r['perfect_hours_curtailed']}",
            f"{r['plan_cost_avoided']:,.0f}",
            f"{r['plan_switches']}/{r['perfect_switches']}",
        )
    console.print(table)
    console.print(
        f"hours scored {first['hours_scored']}, skipped (no price) {first['hours_skipped']}"
    )
    console.print(f"information used: {information}")


@plan_app.command("show")
def show(
    config: Annotated[Path, typer.Option("--config", help="farm config (fleet, [planner])")],
    at: Annotated[
        str, typer.Option("--at", help="plan as of this local time, e.g. 2024-08-20T12:00")
    ],
    zone: Annotated[str, typer.Option(help="ERCOT hub/zone of the shared price file")] = "LZ_WEST",
    hashprice: Annotated[
        float | None, typer.Option(help="USD/TH/s/day (default: config, else 0.05)")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG: the plan over the forecast")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Make the fleet's hashing plan from the prices known at a past moment of the ERCOT file."""
    import pandas as pd

    from controller.config import ConfigError, load_config
    from controller.planning import constraints_from, ercot_feed, fleet_groups
    from forecasting.plan_types import PlanError
    from forecasting.planner import plan_hours
    from forecasting.rt_forecast import RtForecaster, RtForecastError, horizon_forecast, rt_features

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _fail("; ".join(str(p) for p in exc.problems))
        return
    feed = ercot_feed(_data_dir(), zone)
    try:
        now = pd.Timestamp(at).tz_localize(feed.timezone).tz_convert("UTC").floor("h")
    except (ValueError, TypeError) as exc:
        _fail(f"--at {at!r}: {exc}")
        return
    known = feed.known(now.to_pydatetime())
    if math.isnan(known["da"].reindex([now]).to_numpy(dtype=float)[0]):
        _fail(f"no day-ahead price for {now} in {zone}: pick another --at")
    groups = fleet_groups(cfg.rigs)
    if not groups:
        _fail(f"no rig in {config} has a model in the hardware catalog")
    price = hashprice or cfg.planner.hashprice_usd_per_th_day or 0.05
    try:
        features = rt_features(known["da"], known["rt"], feed.timezone)
        history = (known.index < now) & (known.index >= now - pd.Timedelta(days=180))
        model = RtForecaster().fit(features.loc[history], known.loc[history, "rt"])
        one_step = model.predict(features.loc[[now]]).iloc[0]
        ahead = known.loc[known.index >= now, "da"].dropna().iloc[: cfg.planner.horizon_hours]
        forecast = horizon_forecast(one_step, ahead)
        plan = plan_hours(forecast, price, groups, constraints_from(cfg, feed.timezone))
    except (PlanError, RtForecastError) as exc:
        _fail(str(exc))
        return
    if plot is not None:
        from forecasting.plan_plots import plot_hashing_plan

        plot_hashing_plan(plan, plot, feed.timezone)
        typer.echo(f"plot written: {plot}", err=True)
    if as_json:
        rows = [
            {
                "start": h.start.isoformat(),
                "group": h.group,
                "hashing": h.hashing,
                "p50": h.price_p50,
                "break_even": h.break_even,
                "reason": h.reason,
            }
            for h in plan.hours
        ]
        actions = [
            {"at": a.at.isoformat(), "group": a.group, "rig": a.rig, "action": a.kind.value}
            for a in plan.actions
        ]
        typer.echo(json.dumps({"hashprice": price, "hours": rows, "actions": actions}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hashing plan for {zone} from {at} (hashprice {price:.3f} USD/TH/day)")
    table.add_column("local hour")
    table.add_column("p10 / p50 / p90", justify="right")
    for g in groups:
        table.add_column(f"{g.name} ({g.power_mw * 1000:.1f} kW)", justify="center")
    by_hour: dict[Any, list[Any]] = {}
    for h in plan.hours:
        by_hour.setdefault(h.start, []).append(h)
    for start, hours in by_hour.items():
        local = pd.Timestamp(start).tz_convert(feed.timezone).strftime("%m-%d %H:%M")
        first = hours[0]
        spread = f"{first.price_p10:.0f} / {first.price_p50:.0f} / {first.price_p90:.0f}"
        cells = ["hash" if h.hashing else f"off ({h.reason})" for h in hours]
        table.add_row(local, spread, *cells)
    Console(width=140).print(table)
