"""farmctl treasury ...: strategy backtests and selling. Heavy imports stay inside commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

# Shared group: controller.cli.sales_cmd adds live/paper selling commands to the same group.
treasury_app = typer.Typer(help="Sell mined coins: backtest, sell, ledger.", no_args_is_help=True)

PricesOpt = Annotated[
    Path,
    typer.Option(
        "--prices", help="OHLCV CSV(.gz): timestamp,open,high,low,close,volume (e.g. data/btc/*)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]
HashrateOpt = Annotated[
    float | None,
    typer.Option("--hashrate-ths", help="Fleet hashrate (TH/s): coins mined per bar flow in."),
]
DepositsOpt = Annotated[
    Path | None, typer.Option("--deposits", help="CSV timestamp,coins of coins arriving.")
]
NetworkOpt = Annotated[
    Path | None,
    typer.Option("--network", help="Network history CSV or folder (default: shared data)."),
]
FeeFallbackOpt = Annotated[
    float,
    typer.Option("--fee-fallback", help="Tx fees as a share of subsidy where fees are unknown."),
]
CoinsOpt = Annotated[
    float, typer.Option("--coins", help="Coins held at the start (1 when nothing else is given).")
]
FiatOpt = Annotated[float, typer.Option("--fiat", help="Fiat held at the start.")]
StartOpt = Annotated[
    str | None, typer.Option("--start", help="First bar (UTC date/time, inclusive).")
]
EndOpt = Annotated[str | None, typer.Option("--end", help="Last bar (UTC date/time, exclusive).")]
ModeOpt = Annotated[str, typer.Option("--mode", help="sell_only (never buys) or two_way.")]
BandOpt = Annotated[str, typer.Option("--band-method", help="quantile, minmax or fixed.")]
LookbackOpt = Annotated[int, typer.Option("--band-lookback", help="Band window in bars.")]
LowOpt = Annotated[float, typer.Option("--band-low", help="Quantile giving pmin.")]
HighOpt = Annotated[float, typer.Option("--band-high", help="Quantile giving pmax.")]
PminOpt = Annotated[float, typer.Option("--pmin", help="Fixed pmin (band-method fixed).")]
PmaxOpt = Annotated[float, typer.Option("--pmax", help="Fixed pmax (band-method fixed).")]
WindowOpt = Annotated[int, typer.Option("--momentum-window", help="Moving average, in bars.")]
StrengthOpt = Annotated[float, typer.Option("--momentum-strength", help="0 = no momentum.")]
StopOpt = Annotated[float, typer.Option("--stop-loss", help="Fraction below pmin; 0 = off.")]
EveryOpt = Annotated[int, typer.Option("--decision-every", help="Decide every N bars.")]
MinTradeOpt = Annotated[
    float, typer.Option("--min-trade-fraction", help="Skip trades below this share of value.")
]
FeeOpt = Annotated[float, typer.Option("--fee", help="Exchange fee, fraction of notional.")]
SlipOpt = Annotated[float, typer.Option("--slippage", help="Slippage, fraction of the open.")]
TwapOpt = Annotated[
    float, typer.Option("--twap-hours", help="TWAP baseline: each deposit sold over this span.")
]


class _Fail(Exception):
    """A user-facing error already worded for the terminal."""


def _load_market(
    prices: Path,
    start: str | None,
    end: str | None,
    hashrate_ths: float | None,
    deposits: Path | None,
    network: Path | None,
    fee_fallback: float,
) -> tuple[Any, Any, dict[str, Any], int, int]:
    """All bars, the inflow per bar (zero outside the window), its description, and the window
    [lo, hi) as bar indices."""
    import numpy as np

    from treasury.inflow import deposits_from_file, load_network_history, mined_deposits
    from treasury.price_data import load_bars

    bars = load_bars(prices)
    lo, hi = 0, len(bars)
    if start or end:
        # The window is cut by index, not by slicing: indicators keep the history before it.
        window = bars.between(start or str(bars.timestamp[0]), end or "9999-12-31")
        lo = int(np.searchsorted(bars.timestamp, window.timestamp[0]))
        hi = lo + len(window)
    inside = bars.slice(lo, hi)
    if hashrate_ths is not None and deposits is not None:
        raise _Fail("give either --hashrate-ths or --deposits, not both")
    if hashrate_ths is not None:
        if network is None:
            from controller.paths import shared_data_dir

            shared = shared_data_dir()
            if shared is None:
                raise _Fail("no shared data folder: pass --network FILE")
            network = shared / "bitcoin-network"
        inflow = mined_deposits(
            inside.timestamp, load_network_history(network), hashrate_ths, fee_fallback
        )
        source = {"source": "mined", "hashrate_ths": hashrate_ths, "network": str(network)}
    elif deposits is not None:
        inflow = deposits_from_file(deposits, inside.timestamp)
        source = {"source": "deposits_file", "path": str(deposits)}
    else:
        inflow = np.zeros(len(inside))
        source = {"source": "none"}
    source["coins"] = float(inflow.sum())
    full = np.zeros(len(bars))
    full[lo:hi] = inflow
    return bars, full, source, lo, hi


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("run", "final value", "return", "max DD", "Sharpe", "trades", "fees", "sell/VWAP"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for name, m in rows.items():
        svv = m["sell_vs_vwap"]
        table.add_row(
            name,
            f"{m['final_value']:,.2f}",
            f"{m['total_return']:+.2%}" if math.isfinite(m["total_return"]) else "-",
            f"{m['max_drawdown']:.2%}",
            f"{m['sharpe']:.2f}" if math.isfinite(m["sharpe"]) else "-",
            str(m["trades"]),
            f"{m['fees']:,.2f}",
            f"{svv:+.2%}" if math.isfinite(svv) else "-",
        )
    # Wide enough for every column even when stdout is not a terminal (pipes, CI logs).
    Console(width=max(Console().width, 110)).print(table)


@treasury_app.command("backtest")
def backtest(
    prices: PricesOpt,
    json_out: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG path (default: backtest.png).")
    ] = None,
    hashrate_ths: HashrateOpt = None,
    deposits: DepositsOpt = None,
    network: NetworkOpt = None,
    fee_fallback: FeeFallbackOpt = 0.0,
    coins: CoinsOpt = 0.0,
    fiat: FiatOpt = 0.0,
    start: StartOpt = None,
    end: EndOpt = None,
    mode: ModeOpt = "sell_only",
    band_method: BandOpt = "quantile",
    band_lookback: LookbackOpt = 720,
    band_low: LowOpt = 0.10,
    band_high: HighOpt = 0.90,
    pmin: PminOpt = 0.0,
    pmax: PmaxOpt = 0.0,
    momentum_window: WindowOpt = 48,
    momentum_strength: StrengthOpt = 2.0,
    stop_loss: StopOpt = 0.0,
    decision_every: EveryOpt = 1,
    min_trade_fraction: MinTradeOpt = 0.01,
    fee: FeeOpt = 0.0026,
    slippage: SlipOpt = 0.0005,
    twap_hours: TwapOpt = 24.0,
) -> None:
    """Backtest the strategy against hold / sell-daily / TWAP on the same inflow; write a PNG."""
    from dataclasses import asdict

    from treasury.backtest import Costs, run_backtest
    from treasury.backtest_plots import plot_backtest
    from treasury.baselines import run_baselines
    from treasury.inflow import InflowError
    from treasury.metrics import compute_metrics
    from treasury.price_data import PriceDataError
    from treasury.strategy import StrategyError, StrategyParams

    try:
        params = StrategyParams(
            mode=mode,  # type: ignore[arg-type]
            band_method=band_method,  # type: ignore[arg-type]
            band_lookback=band_lookback,
            band_low_quantile=band_low,
            band_high_quantile=band_high,
            fixed_pmin=pmin,
            fixed_pmax=pmax,
            momentum_window=momentum_window,
            momentum_strength=momentum_strength,
            stop_loss=stop_loss,
            decision_every=decision_every,
            min_trade_fraction=min_trade_fraction,
        )
        costs = Costs(fee=fee, slippage=slippage)
        bars, inflow, inflow_info, lo, hi = _load_market(
            prices, start, end, hashrate_ths, deposits, network, fee_fallback
        )
        if coins == 0.0 and fiat == 0.0 and inflow_info["coins"] == 0.0:
            # `--prices FILE` alone still backtests something meaningful: one coin to sell.
            coins = 1.0
            inflow_info["note"] = "no inflow or balances given: started with 1 coin"
        balances: dict[str, Any] = dict(
            deposits=inflow, costs=costs, coins0=coins, fiat0=fiat, start=lo, end=hi
        )
        result = run_backtest(bars.open, bars.close, params, **balances)
        twap_bars = max(round(twap_hours * 3600.0 / bars.bar_seconds), 1)
        runs = {"strategy": result}
        runs.update(
            run_baselines(
                bars.open,
                bars.close,
                bars.timestamp,
                twap_horizon_bars=twap_bars,
                twap_every=params.decision_every,
                **balances,
            )
        )
        metrics = {name: compute_metrics(r, bars, inflow).as_dict() for name, r in runs.items()}
        plot_path = plot_backtest(
            bars, result, plot or Path("backtest.png"), title=f"{prices.name}: {params.mode}"
        )
    except (_Fail, StrategyError, PriceDataError, InflowError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    period = {"start": str(bars.timestamp[lo]), "end": str(bars.timestamp[hi - 1])}
    report: dict[str, Any] = {
        "prices": str(prices),
        "bars": hi - lo,
        "period": period,
        "params": asdict(params),
        "costs": asdict(costs),
        "initial": {"coins": coins, "fiat": fiat},
        "inflow": inflow_info,
        "results": metrics,
        "edge_vs": {
            name: metrics["strategy"]["final_value"] / metrics[name]["final_value"] - 1.0
            for name in ("hold", "sell_daily", "twap")
            if metrics[name]["final_value"] > 0
        },
        "plot": str(plot_path),
    }
    if json_out:
        typer.echo(json.dumps(_clean(report), indent=2))
        return
    typer.echo(
        f"{prices.name}: {hi - lo} bars {period['start']} .. "
        f"{period['end']}, inflow {inflow_info['coins']:.6f} coins"
    )
    _print_table("strategy vs baselines (same inflow, fees, slippage, latency)", metrics)
    typer.echo(f"plot: {plot_path}")


@treasury_app.command("walkforward")
def walkforward(
    prices: PricesOpt,
    json_out: JsonOpt = False,
    hashrate_ths: HashrateOpt = None,
    deposits: DepositsOpt = None,
    network: NetworkOpt = None,
    fee_fallback: FeeFallbackOpt = 0.0,
    coins: CoinsOpt = 0.0,
    fiat: FiatOpt = 0.0,
    start: StartOpt = None,
    end: EndOpt = None,
    mode: ModeOpt = "sell_only",
    in_sample_days: Annotated[float, typer.Option(help="In-sample window, days.")] = 180.0,
    out_of_sample_days: Annotated[float, typer.Option(help="Out-of-sample window, days.")] = 90.0,
    fee: FeeOpt = 0.0026,
    slippage: SlipOpt = 0.0005,
    twap_hours: TwapOpt = 24.0,
) -> None:
    """Walk-forward: optimise on each in-sample window, score on the next one (default grid)."""
    from treasury.backtest import Costs
    from treasury.inflow import InflowError
    from treasury.price_data import PriceDataError
    from treasury.strategy import StrategyError, StrategyParams
    from treasury.walkforward import ParamGrid, walk_forward

    try:
        bars, inflow, inflow_info, lo, hi = _load_market(
            prices, start, end, hashrate_ths, deposits, network, fee_fallback
        )
        bars, inflow = bars.slice(0, hi), inflow[:hi]
        points = ParamGrid().points(StrategyParams(mode=mode))  # type: ignore[arg-type]
        per_day = bars.bars_per_day
        report = walk_forward(
            bars.timestamp, bars.open, bars.close, points,
            in_sample_bars=round(in_sample_days * per_day),
            out_of_sample_bars=round(out_of_sample_days * per_day),
            deposits=inflow, costs=Costs(fee=fee, slippage=slippage), coins0=coins, fiat0=fiat,
            twap_horizon_bars=max(round(twap_hours * per_day / 24.0), 1),
            first_bar=max(lo, max(p.history_bars for p in points)),
        )  # fmt: skip
    except (_Fail, StrategyError, PriceDataError, InflowError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    out = report.as_dict()
    out["grid_points"] = len(points)
    out["inflow"] = inflow_info
    if json_out:
        typer.echo(json.dumps(_clean(out), indent=2))
        return
    typer.echo(f"{len(report.folds)} folds, {len(points)} grid points, inflow {inflow_info}")
    for fold in report.folds:
        typer.echo(
            f"IS {fold.in_sample.start[:10]}..{fold.in_sample.end[:10]} "
            f"vs hold {fold.in_sample.edge('hold'):+.2%} | "
            f"OOS {fold.out_of_sample.start[:10]}..{fold.out_of_sample.end[:10]} "
            f"vs hold {fold.out_of_sample.edge('hold'):+.2%} "
            f"vs daily {fold.out_of_sample.edge('sell_daily'):+.2%} "
            f"vs twap {fold.out_of_sample.edge('twap'):+.2%}"
        )
    for key, value in report.summary().items():
        typer.echo(
            f"{key}: mean edge {value['mean_edge']:+.2%}, folds won {value['folds_won']:.0%}, "
            f"pooled edge {value['pooled_edge']:+.2%}"
        )


def register(app: typer.Typer) -> None:
    """Attach the `treasury` group to the root app."""
    app.add_typer(treasury_app, name="treasury")
