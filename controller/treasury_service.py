"""The treasury inside the daemon: mined coins in, sales by the strategy, daily sale reports out.

`attach_treasury(gateway)` builds the service from `[treasury]` and registers two job bodies:

- `treasury` (every `scheduler.treasury_interval_s`): one tick in farm time. Feeds the paper
  venues the hourly BTC bars completed by now, settles earlier orders, credits the coins the
  fleet mined in the last complete hour (a ledger deposit, idempotent per hour), then runs D2's
  tick (`treasury.tick.run_tick`: strategy, risk limits, executor with client order ids).
- `report` (daily): the sale report of every complete farm day not yet reported, written as
  CSV/HTML/JSON under `<data_dir>/reports/` and sent to the configured channels.

Mined-coin estimate (documented in docs/operations.md): at every tick the fleet's hashrate is
read from `gateway.state.statuses` (the last poll) and added to the current hour's samples; when
the hour is over its mean hashrate H earns ``H * 1e12 / network_hashrate * (subsidy + fees) / 24``
BTC, the network figures being those of the farm day (or the latest day the shared history
holds). Without the shared network file the hashprice (config, else 0.045 USD/TH/day) divided
by the BTC price is used. Hours the daemon did not see (it was down) earn nothing: the estimate
is conservative, never invented.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controller import jobs
from controller.clock import as_utc, hour_floor
from controller.gateway import Gateway
from controller.seller_lock import SellerGate, account_key

if TYPE_CHECKING:
    from treasury.inflow import NetworkHistory
    from treasury.ledger import Ledger
    from treasury.price_data import Bars
    from treasury.tick import TickResult, TickSettings
    from treasury.venues.base import Venue

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
# Hourly BTC files of the shared data, best first, per quote currency (data/btc/SOURCES.md).
PRICE_FILES = {
    "USD": (
        "btcusd_bitstamp_1h.csv.gz",
        "btcusd_coinbase_1h.csv.gz",
        "btcusd_gemini_1h.csv.gz",
        "btcusdt_binance_1h.csv.gz",  # USDT tracks USD closely; the only hourly file after 2022
    ),
    "EUR": ("btceur_kraken_1h.csv.gz", "btceur_bitstamp_1h.csv.gz"),
}
MAX_CATCH_UP_BARS = 48  # bars fed to a paper venue after downtime; older ones are history
REPORT_BACKLOG_DAYS = 7
ElectricityPrice = Callable[[datetime], float | None]  # USD/MWh of the hour starting then


class TreasuryServiceError(RuntimeError):
    """The treasury cannot run with this config or data; the message says what is missing."""


@dataclass
class TreasuryView:
    """What the live view and metrics show: balances, mined and sold so far, the last tick."""

    coins: Decimal = Decimal(0)
    fiat: Decimal = Decimal(0)
    mined: Decimal = Decimal(0)
    sold: Decimal = Decimal(0)
    proceeds: Decimal = Decimal(0)
    orders: int = 0
    last_tick: datetime | None = None
    last_decision: str = ""
    last_skip: str | None = None
    last_error: str | None = None
    seller: str = "standby"  # issue 8: "seller" while this gateway holds the accounts' lock
    price: float | None = None
    reports: list[Path] = field(default_factory=list)

    @property
    def average_price(self) -> Decimal | None:
        """Average sale price so far (None before the first sale)."""
        return None if self.sold == 0 else self.proceeds / self.sold


def pick_price_file(data_dir: Path | None, quote: str, moment: datetime) -> Path | None:
    """The first shared hourly BTC file of `quote` that holds bars up to `moment`."""
    if data_dir is None:
        return None
    import gzip

    for name in PRICE_FILES.get(quote, ()):
        path = data_dir / "btc" / name
        if not path.is_file():
            continue
        with gzip.open(path, "rt") as handle:
            handle.readline()
            first = handle.readline().split(",", 1)[0]
        last = _last_line(path).split(",", 1)[0]
        if first and last and first <= moment.strftime("%Y-%m-%dT%H") <= last:
            return path
    return None


def _last_line(path: Path) -> str:
    import gzip

    tail = b""
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            tail = (tail + chunk)[-4096:]
    lines = tail.decode().strip().splitlines()
    return lines[-1] if lines else ""


def synthetic_bars(start: datetime, hours: int, seed: int = 11, price: float = 60_000.0) -> Bars:
    """An hourly BTC path (log-normal steps, 0.6 % an hour) when no recorded file covers the
    farm time: the treasury still runs on a fresh machine, and says so in its source."""
    from treasury.price_data import Bars

    rng = np.random.default_rng(seed)
    closes = price * np.exp(np.cumsum(rng.normal(0.0, 0.006, hours)))
    opens = np.concatenate(([price], closes[:-1]))
    spread = np.abs(rng.normal(0.0, 0.003, hours))
    first = np.datetime64(hour_floor(start).replace(tzinfo=None), "s")
    stamps = first + np.arange(hours) * np.timedelta64(3600, "s")
    return Bars(
        stamps,
        opens,
        np.maximum(opens, closes) * (1 + spread),
        np.minimum(opens, closes) * (1 - spread),
        closes,
        rng.uniform(200.0, 900.0, hours),
    )


def load_market(
    data_dir: Path | None, pair: str, farm_now: datetime, need: int
) -> tuple[Bars, str]:
    """Hourly bars for the farm's market: the recorded file covering `farm_now`, else synthetic."""
    from treasury.price_data import load_bars

    quote = pair.split("/")[1]
    path = pick_price_file(data_dir, quote, farm_now)
    if path is not None:
        return load_bars(path), f"{path.name} (recorded)"
    start = farm_now - timedelta(hours=need + 48)
    return synthetic_bars(start, need + 48 + 24 * 60), "synthetic BTC prices (no recorded file)"


def coins_per_th_hour(
    network: NetworkHistory | None, day: date, btc_price: float, hashprice_usd: float
) -> float:
    """BTC one TH/s earns in an hour on `day` (see the module docstring)."""
    if network is not None:
        from treasury.inflow import coins_per_day

        idx = int(np.searchsorted(network.day, np.datetime64(day, "D"), side="right")) - 1
        if idx >= 0:
            per_day = coins_per_day(network, 1.0)[idx]
            if math.isfinite(per_day) and per_day > 0:
                return float(per_day) / 24.0
    return hashprice_usd / btc_price / 24.0


class TreasuryService:
    """One gateway's treasury: venues, ledger, strategy settings, market bars, notifier."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        bars: Bars,
        price_source: str,
        network: NetworkHistory | None = None,
        electricity_price: ElectricityPrice | None = None,
        mqtt_publish: Callable[[str, bytes], None] | None = None,
    ) -> None:
        from controller.cli.sales_cmd import tick_settings_from_config, venues_from_config
        from controller.notify import Notifier, channels_from_config
        from treasury.ledger import Ledger
        from treasury.risk import KillSwitch

        config = gateway.config
        self.gateway = gateway
        self.config = config
        self.treasury = config.treasury
        self.key = "_".join(sorted(gateway.sites))
        self.bars = bars
        self.price_source = price_source
        self.network = network
        self.electricity_price = electricity_price
        self.ledger: Ledger = Ledger(gateway.engine)
        self.ledger.create_tables()  # no-op when the migrations made them
        self.settings: TickSettings = tick_settings_from_config(self.treasury)
        self.live = self.treasury.live and not self.treasury.dry_run
        self.venues: list[Venue] = venues_from_config(config, gateway.base_dir, self.live)
        self.kill_switch = KillSwitch(self.ledger, self.treasury.risk.kill_switch_file)
        self.notifier = Notifier(
            channels_from_config(config.reports, mqtt_publish),
            alert_min_interval_s=config.reports.alert_min_interval_s,
            origin=gateway.origin(),
        )
        data_dir = config.farm.data_dir
        self.data_dir = data_dir if data_dir.is_absolute() else gateway.base_dir / data_dir
        self.reports_dir = self.data_dir / "reports"
        self.base, self.quote = self.treasury.pair.split("/")
        self.view = TreasuryView()
        self._counted_fills: set[tuple[str, str]] = {
            (f.venue, f.trade_id) for f in self._all_fills()
        }
        self.hashprice = config.planner.hashprice_usd_per_th_day or 0.045
        self.undelivered: dict[str, str] = {}
        # Issue 8 (controller/seller_lock.py): one seller per exchange account across gateways.
        accounts = sorted(account_key(v.exchange, v.id) for v in self.treasury.venues)
        self.seller = SellerGate(gateway.engine, accounts)
        # The seller's own bookkeeping (last decision, reports sent) belongs to the accounts,
        # not to the gateway: whichever gateway sells next continues it.
        self.accounts = "+".join(accounts)

    # -- helpers ---------------------------------------------------------------------------
    def _all_fills(self) -> list[Any]:
        return self.ledger.fills_between(datetime(1970, 1, 1, tzinfo=UTC), _FAR, side="sell")

    def _bar_index(self, hour_open: datetime) -> int:
        """Index of the last bar opening at or before `hour_open` (-1 when none)."""
        stamp = np.datetime64(hour_open.astimezone(UTC).replace(tzinfo=None), "s")
        return int(np.searchsorted(self.bars.timestamp, stamp, side="right")) - 1

    def _bar_time(self, i: int) -> datetime:
        return datetime.fromtimestamp(int(self.bars.timestamp[i].astype("int64")), UTC)

    def alert(self, kind: str, message: str) -> None:
        """A treasury problem to the operator's channels (rate-limited per kind)."""
        log.error("treasury alert kind=%s message=%s", kind, message)
        self.notifier.alert(f"treasury.{kind}", "critical", f"Treasury: {kind}", message)

    # -- the tick --------------------------------------------------------------------------
    def tick(self, now: datetime) -> TickResult | None:
        """One treasury tick at farm time `now` (blocking: the job runs it in a thread)."""
        from treasury.executor import Executor
        from treasury.tick import TickResult, run_tick

        # Seller lock (issue 8): a standby skips the tick; the first tick after a takeover
        # starts with executor.recover() below, before any new order.
        if not self.seller.ensure():
            self.view.seller = "standby"
            log.info("treasury standby: another gateway sells accounts=%s", self.seller.keys)
            # Every gateway books its own sites' mined coins in the shared ledger; the seller
            # credits them to its paper venue (`_repair_paper_deposits`), so no site's coins
            # are missing from the account or the reports.
            self._credit_mined(now, credit_venue=False)
            return None
        if self.view.seller != "seller":
            self._take_over()
        last_bar = self._bar_index(hour_floor(now) - HOUR)  # the last bar complete by now
        if last_bar < self.settings.params.history_bars:
            raise TreasuryServiceError(
                f"{self.price_source}: {max(last_bar + 1, 0)} hourly bars before "
                f"{now:%Y-%m-%d %H:%M}; the strategy needs {self.settings.params.history_bars}"
            )
        self._feed_paper(last_bar)
        executor = Executor(
            self.ledger,
            {v.name: v for v in self.venues},
            alert=self.alert,
            clock=self.gateway.clock.now,
        )
        unresolved = executor.recover()
        if unresolved:
            result = TickResult(unresolved=unresolved)
            result.skipped = f"{len(unresolved)} order(s) still unresolved"
            self._after_tick(now, result)
            return result
        self._repair_paper_deposits()
        self._credit_mined(now)
        if not self._decision_due(now):
            self._after_tick(now, None)
            return None
        # Marked before deciding: a kill mid-tick skips this decision instead of making it twice.
        self.ledger.set_flag(self._seller_flag("last_decision"), now.isoformat())
        closes = self.bars.close[: last_bar + 1]
        window = max(self.settings.params.history_bars, self.settings.reference_window) + 1
        result = run_tick(
            self.ledger,
            executor,
            self.venues,
            [float(c) for c in closes[-window:]],
            self.settings,
            self.kill_switch,
            now=now,
        )
        self._after_tick(now, result)
        return result

    def _take_over(self) -> None:
        """Start selling: venues built afresh, so a paper venue reads the state file the
        previous seller left (it was loaded once, when this gateway started)."""
        from controller.cli.sales_cmd import venues_from_config

        self.venues = venues_from_config(self.config, self.gateway.base_dir, self.live)
        self.view.seller = "seller"
        log.info("treasury seller: this gateway sells accounts=%s", self.seller.keys)

    def _flag(self, name: str) -> str:
        """A flag of this gateway's own fleet (mined-coin samples)."""
        return f"treasury:{self.key}:{name}"

    def _seller_flag(self, name: str) -> str:
        """A flag of the seller's bookkeeping, shared by every gateway selling these accounts."""
        return f"treasury:{self.accounts}:{name}"

    def _get_seller_flag(self, name: str) -> str | None:
        # Before issue 8 these flags were keyed by the gateway's sites: read them still.
        value = self.ledger.get_flag(self._seller_flag(name))
        return value if value is not None else self.ledger.get_flag(self._flag(name))

    def _decision_due(self, now: datetime) -> bool:
        last = self._get_seller_flag("last_decision")
        if last is None:
            return True
        every = timedelta(minutes=self.treasury.strategy.decision_interval_minutes)
        return now - datetime.fromisoformat(last) >= every

    def _feed_paper(self, last_bar: int) -> None:
        from treasury.venues.base import VenueError
        from treasury.venues.paper import PaperVenue, PriceBar

        for venue in self.venues:
            if not isinstance(venue, PaperVenue):
                continue
            first = last_bar
            try:
                fed = venue.fetch_ticker(self.treasury.pair).timestamp
            except VenueError:  # never fed: start at the last complete bar
                fed = None
            if fed is not None:
                first = max(self._bar_index(fed) + 1, 0)
            first = max(first, last_bar - MAX_CATCH_UP_BARS + 1)
            for i in range(first, last_bar + 1):
                venue.on_bar(
                    PriceBar(
                        self._bar_time(i),
                        _dec(self.bars.open[i]),
                        _dec(self.bars.high[i]),
                        _dec(self.bars.low[i]),
                        _dec(self.bars.close[i]),
                        _dec(self.bars.volume[i]),
                    )
                )

    def _repair_paper_deposits(self) -> None:
        """Credit the deposits the ledger holds but a paper venue has not seen: other gateways'
        mined coins (a standby books them, the seller credits them), or a kill in between.

        A paper venue holds exactly its ledger deposits minus its sold coins, once every order
        is settled; a shortfall can only be a deposit recorded but not credited.
        """
        from treasury.venues.paper import PaperVenue

        fills = self._all_fills()
        deposits = self.ledger.deposits_between(datetime(1970, 1, 1, tzinfo=UTC), _FAR)
        for venue in self.venues:
            if not isinstance(venue, PaperVenue):
                continue
            expected = sum(
                (d.amount for d in deposits if d.venue == venue.name and d.currency == self.base),
                Decimal(0),
            ) - sum((f.amount for f in fills if f.venue == venue.name), Decimal(0))
            balance = venue.fetch_balance().get(self.base)
            actual = balance.total if balance is not None else Decimal(0)
            if actual < expected:
                # Other gateways' mined coins (they book, the seller credits), or a kill between
                # this gateway's ledger write and its credit.
                log.info(
                    "paper venue credited ledger deposits venue=%s amount=%s",
                    venue.name,
                    expected - actual,
                )
                venue.deposit(self.base, expected - actual)
            elif actual > expected:
                self.alert(
                    "ledger_mismatch",
                    f"{venue.name} holds {actual} {self.base}, the ledger explains {expected}",
                )

    def _credit_mined(self, now: datetime, *, credit_venue: bool = True) -> None:
        """Add the fleet's hashrate to this hour's samples; book the hours that are over in the
        ledger and, on the seller (`credit_venue`), credit them to the paper venue at once."""
        from treasury.venues.paper import PaperVenue

        hour = hour_floor(now)
        raw = self.ledger.get_flag(self._flag("hashrate"))
        samples: dict[str, Any] = (
            json.loads(raw) if raw else {"hour": hour.isoformat(), "sum": 0.0, "n": 0}
        )
        sampled_hour = datetime.fromisoformat(samples["hour"])
        if sampled_hour < hour and samples["n"] > 0:
            mean_ths = samples["sum"] / samples["n"]
            i = self._bar_index(sampled_hour)
            price = float(self.bars.close[i]) if i >= 0 else float(self.bars.close[0])
            coins = mean_ths * coins_per_th_hour(
                self.network, sampled_hour.date(), price, self.hashprice
            )
            amount = Decimal(f"{coins:.8f}")
            paper = [v for v in self.venues if isinstance(v, PaperVenue)]
            if amount > 0 and paper:
                reference = f"mined:{self.key}:{sampled_hour:%Y%m%dT%H}"
                # Ledger first, then the venue: a kill in between is repaired on the next tick.
                if self.ledger.record_deposit(
                    paper[0].name, reference, self.base, amount, sampled_hour + HOUR, "estimate"
                ):
                    if credit_venue:
                        paper[0].deposit(self.base, amount)
                    log.info(
                        "mined coins credited hour=%s fleet_ths=%.1f coins=%s",
                        sampled_hour.isoformat(),
                        mean_ths,
                        amount,
                    )
        if sampled_hour < hour:
            samples = {"hour": hour.isoformat(), "sum": 0.0, "n": 0}
        fleet_ths = sum(s.hashrate_ths or 0.0 for s in self.gateway.state.statuses.values())
        if self.gateway.state.statuses:
            samples["sum"] += fleet_ths
            samples["n"] += 1
        self.ledger.set_flag(self._flag("hashrate"), json.dumps(samples))

    def credit_opening(self, fleet_ths: float, days: float, at: datetime) -> Decimal:
        """Credit the coins `fleet_ths` would have mined in the `days` before `at` (once): the
        unsold coins a farm's treasury already holds when it starts (the demo's starting point).
        """
        from treasury.venues.paper import PaperVenue

        paper = [v for v in self.venues if isinstance(v, PaperVenue)]
        if not paper:
            raise TreasuryServiceError("an opening balance can only go to a paper venue")
        i = self._bar_index(hour_floor(at) - HOUR)
        price = float(self.bars.close[max(i, 0)])
        per_hour = coins_per_th_hour(self.network, at.date(), price, self.hashprice)
        amount = Decimal(f"{fleet_ths * per_hour * 24 * days:.8f}")
        reference = f"opening:{self.key}"
        # Before the UTC day of `at`: outside every (whole-day) report from `at` on.
        received = datetime.combine(at.astimezone(UTC).date(), datetime.min.time(), UTC)
        if amount > 0 and self.ledger.record_deposit(
            paper[0].name, reference, self.base, amount, received - timedelta(seconds=1), "estimate"
        ):
            paper[0].deposit(self.base, amount)
        self.refresh_view()
        return amount

    def _after_tick(self, now: datetime, result: TickResult | None) -> None:
        view = self.view
        view.last_tick = now
        if result is not None:
            view.last_skip = result.skipped
            if result.decision is not None:
                d = result.decision
                view.last_decision = (
                    f"sell {d.coins_to_sell:.6f} ({d.reason}, fiat weight "
                    f"{d.current_weight:.2f} -> {d.target_weight:.2f})"
                )
            for refusal in result.refused:
                log.warning("treasury sale refused reason=%s", refusal)
            if result.failed_venues:
                self.alert("venue_down", "no answer from " + ", ".join(result.failed_venues))
            if result.unresolved:
                self.alert("orders_unresolved", result.skipped or "")
        self.refresh_view()

    def refresh_view(self) -> None:
        """Balances, mined, sold and proceeds from the ledger and venues; metrics follow."""
        view = self.view
        metrics = self.gateway.metrics
        coins = fiat = Decimal(0)
        for venue in self.venues:
            try:
                balances = venue.fetch_balance()
            except Exception as exc:  # a venue that does not answer keeps its last figures
                log.warning("balance unavailable venue=%s error=%s", venue.name, exc)
                continue
            for asset, balance in balances.items():
                metrics.balance.labels(venue.name, asset).set(float(balance.total))
            coins += balances[self.base].total if self.base in balances else Decimal(0)
            fiat += balances[self.quote].total if self.quote in balances else Decimal(0)
        view.coins, view.fiat = coins, fiat
        deposits = self.ledger.deposits_between(datetime(1970, 1, 1, tzinfo=UTC), _FAR)
        view.mined = sum((d.amount for d in deposits if d.currency == self.base), Decimal(0))
        fills = self._all_fills()
        view.sold = sum((f.amount for f in fills), Decimal(0))
        view.proceeds = sum((f.amount * f.price for f in fills), Decimal(0))
        view.orders = len({f.client_order_id for f in fills})
        for fill in fills:
            if (fill.venue, fill.trade_id) in self._counted_fills:
                continue
            self._counted_fills.add((fill.venue, fill.trade_id))
            metrics.sold.labels(fill.venue).inc(float(fill.amount))
            metrics.proceeds.labels(fill.venue).inc(float(fill.amount * fill.price - fill.fee))
        i = self._bar_index(hour_floor(self.gateway.clock.now()) - HOUR)
        view.price = float(self.bars.close[i]) if i >= 0 else None

    # -- reports ---------------------------------------------------------------------------
    def report(
        self, start: datetime, end: datetime, label: str, *, send: bool, png: bool = False
    ) -> dict[str, Path]:
        """Build the sale report of the whole UTC days covering [start, end), write its files,
        send it when asked."""
        start = datetime.combine(start.astimezone(UTC).date(), datetime.min.time(), UTC)
        last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
        end = datetime.combine(last, datetime.min.time(), UTC) + timedelta(days=1)
        from controller.cli.sales_cmd import report_files
        from treasury.reports import Period, plot_png, prices_from_bars, report_from_ledger

        lo, hi = self._bar_index(start - HOUR * 24), self._bar_index(end)
        points = prices_from_bars(self.bars.slice(max(lo, 0), hi + 1)) if hi >= 0 else []
        period = Period(label, "day" if end - start <= timedelta(days=1) else "span", start, end)
        report = report_from_ledger(
            self.ledger, period, points, self.electricity_cost(start, end), self.quote
        )
        files = report_files(report, points)
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, body in files.items():
            path = self.reports_dir / name
            path.write_bytes(body)
            written[name] = path
        if png:  # the HTML page already holds the plot; a separate PNG only when asked
            plot = self.reports_dir / f"{label}.png"
            plot.write_bytes(plot_png(report, points))
            written[plot.name] = plot
        self.undelivered = {}
        if send:
            self.undelivered = self._deliver(report, files, label)
            if self.undelivered:
                self.alert("report_not_delivered", f"sale report {label}: {self.undelivered}")
        self.view.reports = list(written.values())
        return written

    def _deliver(self, report: Any, files: dict[str, bytes], label: str) -> dict[str, str]:
        """Send the report to each configured channel that does not have it yet; returns the
        channels that failed (retried on the next run, the others are not sent it twice)."""
        from controller.mqtt.outbox import enqueue
        from controller.notify import Message, Notifier, channels_from_config
        from treasury.reports import summary_fields, summary_text

        msg_id = f"sale-report-{label}"  # as `farmctl report --send`: one MQTT message per day
        engine = self.gateway.engine

        def publish(topic: str, payload: bytes) -> None:
            # Through the outbox: the MQTT dispatcher delivers it, even after a restart.
            with engine.begin() as conn:
                enqueue(conn, topic, payload, msg_id, qos=1, confirm=True)

        title, text = summary_text(report)
        mime = {"csv": "text/csv", "html": "text/html", "json": "application/json"}
        attachments = tuple((n, b, mime[n.rsplit(".", 1)[1]]) for n, b in files.items())
        message = Message(
            "report", title, text, fields=summary_fields(report), attachments=attachments
        )
        flag = self._seller_flag(f"report_sent:{label}")
        sent = set(json.loads(self._get_seller_flag(f"report_sent:{label}") or "[]"))
        failed: dict[str, str] = {}
        for channel in channels_from_config(self.config.reports, publish):
            if channel.name in sent:
                continue
            error = Notifier([channel]).send(message)[channel.name]
            if error is None:
                sent.add(channel.name)
                self.ledger.set_flag(flag, json.dumps(sorted(sent)))
            else:
                failed[channel.name] = error
        log.info("sale report label=%s delivered=%s failed=%s", label, sorted(sent), failed)
        return failed

    def report_due(self, now: datetime) -> bool:
        """Whether a complete farm day still waits for its report (or a failed delivery)."""
        yesterday = now.astimezone(UTC).date() - timedelta(days=1)
        last = self.reported_through()
        if last is not None:
            return last < yesterday
        first = self._get_seller_flag("first_day")
        return first is not None and date.fromisoformat(first) <= yesterday

    def reported_through(self) -> date | None:
        """The last farm day whose sale report was written and sent."""
        last = self._get_seller_flag("reported_through")
        return None if last is None else date.fromisoformat(last)

    def daily_reports(self, now: datetime) -> list[str]:
        """Report every complete farm day since the last one reported; returns their labels."""
        if not self.seller.ensure():  # issue 8: only the seller reports, so once per farm
            return []
        today = now.astimezone(UTC).date()
        last = self._get_seller_flag("reported_through")
        if last is None:
            first = self._get_seller_flag("first_day")
            if first is None:
                self.ledger.set_flag(self._seller_flag("first_day"), today.isoformat())
                return []
            day = date.fromisoformat(first)
        else:
            day = date.fromisoformat(last) + timedelta(days=1)
        day = max(day, today - timedelta(days=REPORT_BACKLOG_DAYS))
        done = []
        while day < today:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            self.report(start, start + timedelta(days=1), day.isoformat(), send=True)
            if self.undelivered:  # the treasury job retries it on its next run
                break
            # Marked after sending: a kill in between sends it again to the channels not yet
            # marked (the MQTT message id is the day, so subscribers see it once).
            self.ledger.set_flag(self._seller_flag("reported_through"), day.isoformat())
            done.append(day.isoformat())
            day += timedelta(days=1)
        return done

    def electricity_cost(self, start: datetime, end: datetime) -> dict[date, Decimal]:
        """Electricity cost per day from the polled power draw and the hourly price (if known)."""
        if self.electricity_price is None:
            return {}
        from sqlalchemy import func, select

        from controller.mqtt.tables import RigTelemetry

        with self.gateway.sessions() as session:
            rows = session.execute(
                select(RigTelemetry.time, func.sum(RigTelemetry.power_w))
                .where(
                    RigTelemetry.site.in_(sorted(self.gateway.sites)),
                    RigTelemetry.time >= start,
                    RigTelemetry.time < end,
                )
                .group_by(RigTelemetry.time)
            ).all()
        per_hour: dict[datetime, list[float]] = {}
        for moment, watts in rows:
            per_hour.setdefault(hour_floor(as_utc(moment)), []).append(float(watts or 0.0))
        cost: dict[date, Decimal] = {}
        for hour, samples in per_hour.items():
            price = self.electricity_price(hour)
            if price is None or math.isnan(price):
                continue
            mwh = sum(samples) / len(samples) / 1e6  # mean draw over the hour, one hour
            cost[hour.date()] = cost.get(hour.date(), Decimal(0)) + Decimal(f"{mwh * price:.6f}")
        return cost


_FAR = datetime(2200, 1, 1, tzinfo=UTC)


def _dec(value: Any) -> Decimal:
    return Decimal(repr(float(value)))


def build_treasury(
    gateway: Gateway,
    *,
    electricity_price: ElectricityPrice | None = None,
    mqtt_publish: Callable[[str, bytes], None] | None = None,
    data_dir: Path | None = None,
) -> TreasuryService:
    """The treasury of `gateway` from its config and the shared data (prices, network history)."""
    from controller.paths import shared_data_dir
    from treasury.inflow import InflowError, load_network_history

    data = data_dir if data_dir is not None else shared_data_dir()
    farm_now = gateway.clock.now()
    cfg = gateway.config.treasury.strategy
    need = max(cfg.band_lookback_hours, cfg.momentum_window_hours, 24) + 2
    bars, source = load_market(data, gateway.config.treasury.pair, farm_now, need)
    network = None
    if data is not None:
        try:
            network = load_network_history(data / "bitcoin-network")
        except InflowError as exc:
            log.warning("network history unavailable, hashprice used error=%s", exc)
    log.info("treasury market source=%s bars=%d", source, len(bars))
    return TreasuryService(
        gateway,
        bars=bars,
        price_source=source,
        network=network,
        electricity_price=electricity_price,
        mqtt_publish=mqtt_publish,
    )


def attach_treasury(
    gateway: Gateway,
    *,
    electricity_price: ElectricityPrice | None = None,
    mqtt_publish: Callable[[str, bytes], None] | None = None,
    data_dir: Path | None = None,
) -> TreasuryService | None:
    """Build the treasury and register the `treasury` and `report` job bodies (None when
    `[treasury] enabled = false`). Call it after `gateway.start()`: the migrations come first."""
    if not gateway.config.treasury.enabled:
        return None
    if gateway.poller is None:
        raise TreasuryServiceError("attach the treasury after gateway.start() (migrations first)")
    service = build_treasury(
        gateway, electricity_price=electricity_price, mqtt_publish=mqtt_publish, data_dir=data_dir
    )

    async def treasury_job(gw: Gateway) -> None:
        try:
            await asyncio.to_thread(service.tick, gw.clock.now())
            service.view.last_error = None
            # A day whose report is not out yet (or a channel failed): send it now, not a day on.
            if await asyncio.to_thread(service.report_due, gw.clock.now()):
                await asyncio.to_thread(service.daily_reports, gw.clock.now())
        except Exception as exc:
            service.view.last_error = f"{type(exc).__name__}: {exc}"
            service.alert("tick_failed", service.view.last_error)
            raise

    async def report_job(gw: Gateway) -> None:
        try:
            await asyncio.to_thread(service.daily_reports, gw.clock.now())
        except Exception as exc:
            service.alert("report_failed", f"{type(exc).__name__}: {exc}")
            raise

    jobs.register_job_body("treasury", treasury_job)
    jobs.register_job_body("report", report_job)
    return service


def detach_treasury() -> None:
    """Unregister the treasury's job bodies (the demo and tests, at the end of a run)."""
    jobs.unregister_job_body("treasury")
    jobs.unregister_job_body("report")
