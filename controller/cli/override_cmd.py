"""farmctl override add|list|cancel: operator overrides that win over the plan for a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.clock import as_utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from controller.config import FarmConfig

override_app = typer.Typer(
    help="Force rigs, racks or sites on or off for a window.", no_args_is_help=True
)
ConfigOption = typer.Option(..., "--config", "-c", help="Farm config file.")


def _parse_duration(text: str) -> timedelta:
    units = {"m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].replace(".", "", 1).isdigit():
        raise typer.BadParameter(f"{text!r}: use a number and m, h or d (e.g. 90m, 2h, 1d)")
    return timedelta(seconds=float(text[:-1]) * units[text[-1]])


def _open(config: Path) -> tuple[FarmConfig, sessionmaker[Session]]:
    from controller.cli.common import load_config_or_exit
    from controller.migrate import upgrade
    from controller.storage import make_engine, session_factory

    farm = load_config_or_exit(config)
    url = farm.database_url(config.resolve().parent)
    upgrade(url)
    return farm, session_factory(make_engine(url))


@override_app.command("add")
def add(
    config: Path = ConfigOption,
    rig: str | None = typer.Option(None, help="One rig by name."),
    rack: str | None = typer.Option(None, help="Every rig of a rack."),
    site: str | None = typer.Option(None, help="Every rig of a site."),
    state: str = typer.Option(..., help="hashing or curtailed."),
    duration: str = typer.Option("1h", "--for", help="How long, e.g. 90m, 2h, 1d."),
    start: datetime | None = typer.Option(
        None, help="Start (ISO 8601, UTC if no zone); default now."
    ),
    reason: str = typer.Option("", help="Why (shown in reports and acks)."),
) -> None:
    """Add an override; prints its id."""
    from controller.overrides import OverrideError, add_override

    targets = [(k, v) for k, v in (("rig", rig), ("rack", rack), ("site", site)) if v]
    if len(targets) != 1:
        raise typer.BadParameter("give exactly one of --rig, --rack, --site")
    if state not in ("hashing", "curtailed"):
        raise typer.BadParameter("--state must be hashing or curtailed")
    farm, sessions = _open(config)
    now = datetime.now(UTC)
    begin = as_utc(start) if start else now
    kind, target = targets[0]
    try:
        override_id = add_override(
            sessions, farm, kind, target, state, begin, begin + _parse_duration(duration),  # type: ignore[arg-type]
            source="cli", reason=reason, now=now,
        )  # fmt: skip
    except OverrideError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"override {override_id}: {kind} {target} {state} until {(begin + _parse_duration(duration)).isoformat()}"
    )


@override_app.command("list")
def list_cmd(
    config: Path = ConfigOption,
    all_: bool = typer.Option(False, "--all", help="Include past ones."),
) -> None:
    """List active and upcoming overrides."""
    from controller.overrides import list_overrides

    _farm, sessions = _open(config)
    rows = list_overrides(sessions, datetime.now(UTC), include_past=all_)
    if not rows:
        typer.echo("no overrides")
    for o in rows:
        flag = " (cancelled)" if o.cancelled else ""
        typer.echo(
            f"{o.id}\t{o.target_kind}:{o.target}\t{o.desired}\t{o.starts_at:%Y-%m-%d %H:%M} -> "
            f"{o.ends_at:%Y-%m-%d %H:%M} UTC\t{o.source}\t{o.reason}{flag}"
        )


@override_app.command("cancel")
def cancel(
    config: Path = ConfigOption, override_id: int = typer.Argument(..., help="Override id.")
) -> None:
    """Cancel an override: the plan governs again from the next reconcile."""
    from controller.overrides import cancel_override

    _farm, sessions = _open(config)
    if not cancel_override(sessions, override_id):
        typer.echo(f"error: no override {override_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"override {override_id} cancelled")


def register(app: typer.Typer) -> None:
    """Attach the `override` group to the root app."""
    app.add_typer(override_app, name="override")
