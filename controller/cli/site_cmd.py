"""farmctl site target add|list|cancel: a central plan's site power targets, in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.clock import as_utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from controller.config import FarmConfig

site_app = typer.Typer(help="Sites: power targets from a central plan.", no_args_is_help=True)
target_app = typer.Typer(
    help="Cap a site's power (to N kW) or shed N kW for a window; the site's gateway acks.",
    no_args_is_help=True,
)
site_app.add_typer(target_app, name="target")
ConfigOption = typer.Option(..., "--config", "-c", help="Farm config file.")


def _open(config: Path) -> tuple[FarmConfig, sessionmaker[Session]]:
    from controller.cli.common import load_config_or_exit
    from controller.migrate import upgrade
    from controller.storage import make_engine, session_factory

    farm = load_config_or_exit(config)
    url = farm.database_url(config.resolve().parent)
    upgrade(url)
    return farm, session_factory(make_engine(url))


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].replace(".", "", 1).isdigit():
        raise typer.BadParameter(f"{text!r}: use a number and s, m, h or d (e.g. 300s, 2h)")
    return timedelta(seconds=float(text[:-1]) * units[text[-1]])


@target_app.command("add")
def add(
    config: Path = ConfigOption,
    site: str = typer.Option(..., help="The site (as in the config)."),
    to_kw: float | None = typer.Option(None, "--to-kw", help="Cap the site's power at N kW."),
    by_kw: float | None = typer.Option(
        None, "--by-kw", help="Reduce the site's power by N kW from when it starts."
    ),
    ramp: float = typer.Option(0.0, help="Seconds over which curtailment is spread in."),
    start: datetime | None = typer.Option(None, help="Start (ISO 8601, UTC if no zone); now."),
    until: datetime | None = typer.Option(None, help="End (ISO 8601, UTC if no zone)."),
    duration: str | None = typer.Option(None, "--for", help="Or a length: 90m, 2h, 1d."),
    target_id: str | None = typer.Option(None, "--id", help="Target id (default: generated)."),
    issuer: str = typer.Option("cli", help="Who asks (shown in acks and lists)."),
) -> None:
    """Add a site power target; prints its id."""
    from pydantic import ValidationError

    from controller.site_targets import (
        SitePowerTarget,
        TargetError,
        describe,
        new_target_id,
        store_target,
    )

    if (to_kw is None) == (by_kw is None):
        raise typer.BadParameter("give exactly one of --to-kw, --by-kw")
    if (until is None) == (duration is None):
        raise typer.BadParameter("give exactly one of --until, --for")
    now = datetime.now(UTC)
    begin = as_utc(start) if start else now
    end = as_utc(until) if until else begin + _duration(duration or "")
    farm, sessions = _open(config)
    try:
        target = SitePowerTarget(
            id=target_id or new_target_id(),
            site=site,
            mode="to_kw" if to_kw is not None else "by_kw",
            kw=to_kw if to_kw is not None else by_kw,  # type: ignore[arg-type]
            ramp_s=ramp,
            start=begin,
            end=end,
            issuer=issuer,
            issued_at=now,
        )
        with sessions.begin() as session:
            result = store_target(
                session, target, [s.id for s in farm.sites], source="cli", now=now
            )
    except ValidationError as exc:
        typer.echo(f"error: {describe(exc)}", err=True)
        raise typer.Exit(2) from None
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not result.stored:
        typer.echo(f"error: a target with id {target.id} already exists", err=True)
        raise typer.Exit(1)
    amount = f"to {target.kw:g} kW" if target.mode == "to_kw" else f"by {target.kw:g} kW"
    typer.echo(
        f"target {target.id}: site {site} {amount}, ramp {ramp:g} s, "
        f"{begin:%Y-%m-%d %H:%M} -> {end:%Y-%m-%d %H:%M} UTC"
    )
    for old in result.superseded:
        typer.echo(f"supersedes target {old}")
    if result.superseded_by:
        typer.echo(f"note: already superseded by the newer target {result.superseded_by}")


@target_app.command("list")
def list_cmd(
    config: Path = ConfigOption,
    all_: bool = typer.Option(False, "--all", help="Include ended and cancelled ones."),
) -> None:
    """List targets in force or to come, with the gateway's last ack."""
    from controller.site_targets import list_targets

    _farm, sessions = _open(config)
    rows = list_targets(sessions, datetime.now(UTC), include_past=all_)
    if not rows:
        typer.echo("no site power targets")
    for t in rows:
        amount = f"to {t.kw:g} kW" if t.mode == "to_kw" else f"by {t.kw:g} kW"
        achieved = "-" if t.achieved_kw is None else f"{t.achieved_kw:.1f} kW"
        flags = " (cancelled)" if t.cancelled else ""
        flags += f" (superseded by {t.superseded_by})" if t.superseded_by else ""
        typer.echo(
            f"{t.id}\t{t.site}\t{amount}\tramp {t.ramp_s:g} s\t"
            f"{as_utc(t.starts_at):%Y-%m-%d %H:%M} -> {as_utc(t.ends_at):%Y-%m-%d %H:%M} UTC\t"
            f"{t.state or 'new'}\t{achieved}\t{t.source}:{t.issuer}{flags}"
            + (f"\t{t.state_reason}" if t.state_reason else "")
        )


@target_app.command("cancel")
def cancel(
    config: Path = ConfigOption, target_id: str = typer.Argument(..., help="Target id.")
) -> None:
    """Cancel a target: its site returns to the plan at the next reconcile."""
    from controller.site_targets import cancel_target

    _farm, sessions = _open(config)
    if not cancel_target(sessions, target_id):
        typer.echo(f"error: no target {target_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"target {target_id} cancelled")


def register(app: typer.Typer) -> None:
    """Attach the `site` group to the root app."""
    app.add_typer(site_app, name="site")
