"""farmctl treasury sell|tick|ledger|kill-switch and farmctl report: venues, orders, ledger, reports.

Also the glue the daemon reuses: `run_configured_tick`, `report_files`, `send_report`,
`venues_from_config`, `tick_settings_from_config`, `limits_from_config`. Heavy imports (ccxt, matplotlib, pandas) stay inside functions.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli.treasury_cmd import treasury_app

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Engine

    from controller.config import FarmConfig, TreasuryConfig
    from treasury.ledger import Ledger
    from treasury.risk import RiskLimits
    from treasury.tick import TickResult, TickSettings
    from treasury.venues.base import Venue

logger = logging.getLogger(__name__)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Farm config file (database, venues, limits).")
]
DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL; overrides the config.")]
PricesOpt = Annotated[
    Path | None,
    typer.Option("--prices", help="Market bars CSV(.gz): timestamp,open,high,low,close,volume."),
]


class _Fail(Exception):
    """A user-facing error, already worded for the terminal."""


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _config(path: Path | None) -> FarmConfig | None:
    if path is None:
        return None
    from controller.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2) from None


def _ledger(config_path: Path | None, db: str | None) -> Ledger:
    from controller.cli.db_cmd import resolve_database_url
    from controller.storage import make_engine
    from treasury.ledger import Ledger

    ledger = Ledger(make_engine(resolve_database_url(config_path, db)))
    # Harmless when migrations already made them (checkfirst); lets a fresh file work at once.
    ledger.create_tables()
    return ledger


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Fail(f"{name} {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise _Fail(f"{name} {text!r} must be a positive number")
    return value


# -- glue the daemon reuses ------------------------------------------------------------------
def limits_from_config(treasury: TreasuryConfig) -> RiskLimits:
    """RiskLimits from the `[treasury.risk]` section."""
    from treasury.risk import RiskLimits

    r = treasury.risk
    cap = r.max_exposure_per_venue_btc
    return RiskLimits(
        max_order_amount=Decimal(str(r.max_order_btc)),
        max_sold_per_day=Decimal(str(r.max_sold_per_day_btc)),
        price_band_fraction=Decimal(str(r.price_band_fraction)),
        max_exposure_per_venue=None if cap is None else Decimal(str(cap)),
    )


def tick_settings_from_config(treasury: TreasuryConfig) -> TickSettings:
    """TickSettings from `[treasury]`: strategy windows are in hours, bars are hourly."""
    from treasury.strategy import StrategyParams
    from treasury.tick import TickSettings

    s = treasury.strategy
    params = StrategyParams(
        mode=s.mode,
        band_method={"rolling_quantile": "quantile", "rolling_minmax": "minmax"}.get(
            s.band_method, "fixed"
        ),  # type: ignore[arg-type]
        band_lookback=s.band_lookback_hours,
        band_low_quantile=s.band_low_quantile,
        band_high_quantile=s.band_high_quantile,
        fixed_pmin=s.pmin or 0.0,
        fixed_pmax=s.pmax or 0.0,
        momentum_window=s.momentum_window_hours,
        momentum_strength=s.momentum_strength,
        stop_loss=s.stop_loss_fraction,
        min_trade_fraction=s.min_trade_fraction,
    )
    return TickSettings(symbol=treasury.pair, params=params, limits=limits_from_config(treasury))


def venues_from_config(config: FarmConfig, base_dir: Path, live: bool) -> list[Venue]:
    """The configured venues: ccxt accounts when live, else paper venues (state under data_dir).

    A paper venue named like an exchange follows nothing by itself: its quotes come from the
    bars the tick feeds it (`treasury tick --prices`).
    """
    from treasury.venues.base import MarketRules
    from treasury.venues.paper import DEFAULT_RULES, PaperVenue

    treasury = config.treasury
    data_dir = config.farm.data_dir
    if not data_dir.is_absolute():
        data_dir = base_dir / data_dir
    venues: list[Venue] = []
    for v in treasury.venues:
        if live and v.exchange != "paper":
            if v.api_key is None or v.api_secret is None:
                raise _Fail(f"venue {v.id}: live selling needs api_key and api_secret")
            # ccxt costs ~65 MB of RSS: a paper-only daemon never loads it.
            from treasury.venues.ccxt_venue import CcxtVenue

            venue = CcxtVenue.create(
                v.exchange,
                v.api_key.resolve().get_secret_value(),
                v.api_secret.resolve().get_secret_value(),
                name=v.id,
            )
            venues.append(venue)
            continue
        rules = MarketRules(
            symbol=treasury.pair,
            amount_step=DEFAULT_RULES.amount_step,
            price_step=DEFAULT_RULES.price_step,
            min_amount=DEFAULT_RULES.min_amount,
            min_cost=DEFAULT_RULES.min_cost,
            maker_fee=Decimal(str(v.maker_fee)),
            taker_fee=Decimal(str(v.taker_fee)),
        )
        venues.append(
            PaperVenue(name=v.id, rules=rules, state_path=data_dir / f"paper-{v.id}.json")
        )
    return venues


# -- farmctl treasury ledger ----------------------------------------------------------------
@treasury_app.command("ledger")
def ledger_cmd(
    config: ConfigOpt = None,
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest orders to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the newest ledger orders: status, fill, fees."""
    ledger = _ledger(config, db)
    orders = ledger.orders(limit=limit)
    if as_json:
        rows = [
            {k: str(v) if isinstance(v, Decimal | datetime) else v for k, v in o.__dict__.items()}
            for o in orders
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not orders:
        typer.echo("ledger is empty")
        return
    typer.echo(
        f"{'created':20} {'venue':10} {'client order id':19} {'side':4} {'amount':>12} "
        f"{'price':>11} {'status':16} {'filled':>12} {'fee':>10}"
    )
    for o in orders:
        typer.echo(
            f"{o.created_at:%Y-%m-%d %H:%M:%S}  {o.venue:10} {o.client_order_id:19} {o.side:4} "
            f"{o.amount:12.8f} {o.price:11.2f} {o.status:16} {o.filled:12.8f} {o.fee:10.4f}"
        )


# -- farmctl treasury kill-switch ------------------------------------------------------------
@treasury_app.command("kill-switch")
def kill_switch_cmd(
    state: Annotated[str, typer.Argument(help="on, off or status")],
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Stop (on) or allow (off) every sale; the switch is a DB flag plus the configured file."""
    from treasury.risk import KillSwitch

    if state not in ("on", "off", "status"):
        raise _fail(ValueError(f"state {state!r}: expected on, off or status"))
    farm = _config(config)
    path = farm.treasury.risk.kill_switch_file if farm else None
    switch = KillSwitch(_ledger(config, db), path)
    if state != "status":
        switch.set(state == "on")
    typer.echo(f"kill switch is {'on' if switch.is_on() else 'off'}")


# -- farmctl treasury sell -------------------------------------------------------------------
@treasury_app.command("sell")
def sell_cmd(
    amount: Annotated[str, typer.Option("--amount", help="Coins to sell.")],
    price: Annotated[str, typer.Option("--price", help="Limit price.")],
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Reference price for the band (default: --prices)."),
    ] = None,
    prices: PricesOpt = None,
    venue_id: Annotated[str | None, typer.Option("--venue", help="Venue id.")] = None,
    live: Annotated[
        bool, typer.Option("--live/--dry-run", help="Live needs treasury.live and dry_run=false.")
    ] = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """One limit sale through every risk limit (dry run on the paper venue unless --live)."""
    from treasury.executor import Executor
    from treasury.risk import (
        KillSwitch,
        LiveModeRefused,
        RiskRefused,
        check_live_mode,
        check_order,
        day_window,
        reference_price,
    )
    from treasury.venues.base import VenueError

    farm = _config(config)
    if farm is None or config is None:
        raise _fail(ValueError("sell needs --config (venues and limits)"))
    try:
        amount_d, price_d = _decimal(amount, "--amount"), _decimal(price, "--price")
        if reference is not None:
            ref = _decimal(reference, "--reference")
        elif prices is not None:
            ref = reference_price(_recent_closes(prices, 24))
        else:
            raise _Fail("give --reference PRICE or --prices FILE for the price band")
        venues = venues_from_config(farm, config.resolve().parent, live)
        if live:
            unverified = check_live_mode(farm.treasury.live, farm.treasury.dry_run, venues)
            for name in unverified:
                typer.echo(f"warning: {name} cannot report key permissions; check by hand")
        venue = next((v for v in venues if venue_id in (None, v.name)), None)
        if venue is None:
            raise _Fail(f"no venue {venue_id!r} in the config")
        ledger = _ledger(config, db)
        limits = limits_from_config(farm.treasury)
        executor = Executor(ledger, {v.name: v for v in venues}, alert=_cli_alert(farm))
        if executor.recover():
            raise _Fail("earlier orders are still unresolved; run again when the venue answers")
        symbol = farm.treasury.pair
        amount_d, price_d = venue.prepare_limit_order(symbol, "sell", amount_d, price_d)
        start, end = day_window(datetime.now(UTC))
        check_order(
            "sell",
            amount_d,
            price_d,
            ref,
            limits,
            ledger.committed_between(start, end),
            KillSwitch(ledger, farm.treasury.risk.kill_switch_file).is_on(),
        )
        record = executor.place(venue.name, symbol, "sell", amount_d, price_d, ref)
    except (_Fail, RiskRefused, LiveModeRefused, VenueError) as exc:
        raise _fail(exc) from None
    mode = "LIVE" if live else "dry run"
    typer.echo(
        f"{mode}: {record.client_order_id} on {record.venue}: sell {_n(record.amount)} @ "
        f"{_n(record.price)} -> {record.status} (filled {_n(record.filled)})"
    )


def _n(value: Decimal) -> str:
    """A ledger amount without the storage's trailing zeros."""
    return format(value.normalize(), "f")


def _recent_closes(prices: Path, count: int) -> list[Decimal]:
    from treasury.price_data import PriceDataError, load_bars

    try:
        bars = load_bars(prices)
    except PriceDataError as exc:
        raise _Fail(str(exc)) from None
    return [Decimal(repr(float(c))) for c in bars.close[-count:]]


def run_configured_tick(
    farm: FarmConfig,
    base_dir: Path,
    ledger: Ledger,
    bars: Any,
    *,
    live: bool = False,
    mined: Decimal | None = None,
    alert: Callable[[str, str], None] | None = None,
) -> TickResult:
    """One treasury tick from the config (the CLI's and the daemon's treasury job).

    `bars` are hourly `treasury.price_data.Bars` up to now. Dry run: the last bar is fed to each
    paper venue as the market and `mined` coins are credited to the first paper venue (and
    recorded as a deposit). Live: both config switches and the key check must pass first.
    """
    from treasury.executor import Executor
    from treasury.risk import KillSwitch, check_live_mode
    from treasury.tick import run_tick
    from treasury.venues.paper import PaperVenue, PriceBar

    venues = venues_from_config(farm, base_dir, live)
    if live:
        check_live_mode(farm.treasury.live, farm.treasury.dry_run, venues)
    last = len(bars) - 1
    stamp = datetime.fromtimestamp(int(bars.timestamp[last].astype("int64")), UTC)

    def dec(values: Any) -> Decimal:
        return Decimal(repr(float(values[last])))

    bar = PriceBar(
        stamp, dec(bars.open), dec(bars.high), dec(bars.low), dec(bars.close), dec(bars.volume)
    )
    paper = [v for v in venues if isinstance(v, PaperVenue)]
    for venue in paper:
        venue.on_bar(bar)
    if mined is not None:
        if live or not paper:
            raise _Fail("mined coins can only be credited to a paper venue (dry run)")
        base = farm.treasury.pair.split("/")[0]
        reference = f"paper-mined-{stamp:%Y%m%dT%H%M}"
        if ledger.record_deposit(paper[0].name, reference, base, mined, stamp, "estimate"):
            paper[0].deposit(base, mined)
    executor = Executor(ledger, {v.name: v for v in venues}, alert=alert)
    return run_tick(
        ledger,
        executor,
        venues,
        [float(c) for c in bars.close],
        tick_settings_from_config(farm.treasury),
        KillSwitch(ledger, farm.treasury.risk.kill_switch_file),
    )


def _cli_alert(farm: FarmConfig) -> Callable[[str, str], None]:
    """Executor alerts to the configured webhook/email channels (the daemon adds MQTT)."""
    from controller.notify import Notifier, channels_from_config

    notifier = Notifier(channels_from_config(farm.reports), alert_min_interval_s=0)

    def alert(kind: str, message: str) -> None:
        logger.error("treasury alert kind=%s message=%s", kind, message)
        notifier.alert(f"treasury.{kind}", "critical", f"Treasury: {kind}", message)

    return alert


# -- farmctl treasury tick -------------------------------------------------------------------
@treasury_app.command("tick")
def tick_cmd(
    prices: Annotated[Path, typer.Option("--prices", help="Hourly bars up to now (CSV/.gz).")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    live: Annotated[bool, typer.Option("--live/--dry-run")] = False,
    mined: Annotated[
        str | None,
        typer.Option("--mined", help="Dry run: coins mined since the last tick (paper deposit)."),
    ] = None,
) -> None:
    """One treasury tick: recover, cancel, balances, strategy, risk, place (paper unless --live).

    In a dry run the last bar of --prices is fed to each paper venue as the market, and
    --mined credits the first paper venue (a deposit in the ledger too).
    """
    from treasury.price_data import PriceDataError, load_bars
    from treasury.risk import LiveModeRefused
    from treasury.venues.base import VenueError

    farm = _config(config)
    if farm is None or config is None:
        raise _fail(ValueError("tick needs --config"))
    try:
        bars = load_bars(prices)
        ledger = _ledger(config, db)
        result = run_configured_tick(
            farm,
            config.resolve().parent,
            ledger,
            bars,
            live=live,
            mined=None if mined is None else _decimal(mined, "--mined"),
            alert=_cli_alert(farm),
        )
    except (PriceDataError, LiveModeRefused, VenueError, _Fail) as exc:
        raise _fail(exc) from None
    typer.echo(f"coins {_n(result.coins)} fiat {_n(result.fiat)}")
    if result.decision is not None:
        d = result.decision
        typer.echo(
            f"decision: sell {d.coins_to_sell:.8f} ({d.reason}; target weight "
            f"{d.target_weight:.3f}, now {d.current_weight:.3f})"
        )
    for order in result.orders:
        typer.echo(
            f"order {order.client_order_id} {_n(order.amount)} @ {_n(order.price)}: {order.status}"
        )
    for refused in result.refused:
        typer.echo(f"refused: {refused}")
    for spread in result.spreads:
        typer.echo(
            f"spread {spread.best_venue} vs {spread.other_venue}: {spread.difference} "
            f"({spread.basis_points:.1f} bp)"
        )
    if result.skipped:
        typer.echo(f"skipped: {result.skipped}")


# -- farmctl report --------------------------------------------------------------------------
def report_cmd(
    period: Annotated[str, typer.Option("--period", help="2026-11, 2026-W47 or 2026-11-23.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    prices: PricesOpt = None,
    electricity: Annotated[
        Path | None,
        typer.Option("--electricity", help="CSV day,cost: electricity cost per day from the plan."),
    ] = None,
    currency: Annotated[str, typer.Option("--currency")] = "USD",
    out: Annotated[Path | None, typer.Option("--out", help="Write CSV, HTML, JSON here.")] = None,
    send: Annotated[
        bool, typer.Option("--send", help="Send to the configured MQTT/webhook/email channels.")
    ] = False,
) -> None:
    """Sale report for a month, week or day: mined, sold, prices vs VWAP and arrival, margin."""
    from treasury.reports import (
        ReportError,
        parse_period,
        prices_from_bars,
        report_from_ledger,
        summary_fields,
    )

    try:
        span = parse_period(period)
        points = []
        if prices is not None:
            from treasury.price_data import PriceDataError, load_bars

            try:
                points = prices_from_bars(load_bars(prices))
            except PriceDataError as exc:
                raise _Fail(str(exc)) from None
        costs = _electricity(electricity) if electricity else {}
        report = report_from_ledger(_ledger(config, db), span, points, costs, currency)
    except (ReportError, _Fail) as exc:
        raise _fail(exc) from None
    for key, value in summary_fields(report).items():
        typer.echo(f"{key:28} {value}")
    files = report_files(report, points, with_html=out is not None or send)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, body in files.items():
            (out / name).write_bytes(body)
        typer.echo(f"wrote {', '.join(sorted(files))} to {out}")
    if send:
        farm = _config(config)
        if farm is None:
            raise _fail(ValueError("--send needs --config (the reports channels)"))
        results = send_report(farm, _ledger(config, db).engine, report, files)
        if not results:
            typer.echo("no report channel is enabled in the config", err=True)
            raise typer.Exit(1)
        for channel, error in results.items():
            typer.echo(f"{channel}: {'sent' if error is None else error}")
        if any(results.values()):
            raise typer.Exit(1)


def report_files(report: Any, points: Any, with_html: bool = True) -> dict[str, bytes]:
    """The report's files: days and sales CSV, JSON, and (optionally) the HTML page with plot."""
    from treasury.reports import to_csv, to_html, to_json

    label = report.period.label
    files = {name: body.encode() for name, body in to_csv(report).items()}
    if with_html:
        files[f"{label}.html"] = to_html(report, points).encode()
    files[f"{label}.json"] = json.dumps(to_json(report), indent=2).encode()
    return files


def send_report(
    farm: FarmConfig, engine: Engine, report: Any, files: dict[str, bytes]
) -> dict[str, str | None]:
    """Send a sale report to every configured channel; returns channel -> error (None = sent).

    MQTT goes through the outbox in `engine`'s database (message id `sale-report-<period>`, so
    sending the same period twice publishes once); the daemon's dispatcher delivers it.
    """
    from controller.notify import Message, Notifier, channels_from_config
    from treasury.reports import summary_fields, summary_text

    msg_id = f"sale-report-{report.period.label}"

    def publish(topic: str, payload: bytes) -> None:
        from controller.mqtt.outbox import enqueue

        with engine.begin() as conn:
            enqueue(conn, topic, payload, msg_id, qos=1, confirm=True)

    title, text = summary_text(report)
    mime = {"csv": "text/csv", "html": "text/html", "json": "application/json"}
    attachments = tuple((n, b, mime[n.rsplit(".", 1)[1]]) for n, b in files.items())
    message = Message("report", title, text, fields=summary_fields(report), attachments=attachments)
    return Notifier(channels_from_config(farm.reports, publish)).send(message)


def _electricity(path: Path) -> dict[date, Decimal]:
    import csv

    try:
        rows = list(csv.DictReader(path.open()))
    except OSError as exc:
        raise _Fail(f"{path}: {exc.strerror}") from None
    costs: dict[date, Decimal] = {}
    for i, row in enumerate(rows, start=2):
        try:
            costs[date.fromisoformat(row["day"])] = Decimal(row["cost"])
        except (KeyError, ValueError, InvalidOperation, TypeError):
            raise _Fail(f"{path} line {i}: expected columns day,cost, got {row}") from None
    return costs


def register(app: typer.Typer) -> None:
    """Attach the sales commands (in the shared `treasury` group) and `report` to the root app."""
    app.command("report")(report_cmd)
