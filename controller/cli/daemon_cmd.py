"""farmctl run: the gateway daemon (and, from controller.demo, farmctl demo)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from controller.clock import Clock


def run(
    config: Path = typer.Option(..., "--config", "-c", help="Farm config file (TOML)."),
    site: list[str] = typer.Option(
        [], "--site", help="Run only these sites (default: every site in the config)."
    ),
    clock_speed: float = typer.Option(
        1.0, "--clock-speed", hidden=True, help="Farm seconds per real second (tests)."
    ),
    clock_start: str | None = typer.Option(
        None, "--clock-start", hidden=True, help="Farm time at --clock-epoch, ISO UTC (tests)."
    ),
    clock_epoch: float | None = typer.Option(
        None,
        "--clock-epoch",
        hidden=True,
        help="Unix time at which the farm clock read --clock-start (restarts keep one timeline).",
    ),
) -> None:
    """Run the gateway: poll rigs, plan, reconcile, sell, report, until SIGTERM."""

    from controller.cli.common import load_config_or_exit
    from controller.daemon import serve
    from controller.logs import setup_logging

    farm = load_config_or_exit(config)
    setup_logging(farm.farm.log_level, farm.farm.log_format)
    base_dir = config.resolve().parent
    unknown = set(site) - {s.id for s in farm.sites}
    if unknown:
        typer.echo(f"--site {sorted(unknown)}: not in the config", err=True)
        raise typer.Exit(2)

    try:
        clock = farm_clock(clock_start, clock_speed, clock_epoch)
    except ValueError as exc:
        typer.echo(f"--clock-start/--clock-speed: {exc}", err=True)
        raise typer.Exit(2) from None

    async def main() -> None:
        from controller.runtime import assembled_gateway

        async with assembled_gateway(
            farm, base_dir=base_dir, sites=site or None, clock=clock
        ) as gateway:
            await serve(farm, base_dir=base_dir, gateway=gateway, clock=clock)

    # uvloop when installed: about a third less CPU per rig request than the stock loop.
    from miners.fleet import run_loop

    run_loop(main())


def farm_clock(start: str | None, speed: float, epoch: float | None) -> Clock:
    """The wall clock, or (tests) an accelerated farm clock that read `start` at unix time
    `epoch`: a restarted daemon given the same three values continues the same farm timeline."""
    import time
    from datetime import UTC, datetime, timedelta

    from controller.clock import AcceleratedClock, Clock

    if start is None and speed == 1.0:
        return Clock()
    origin = datetime.fromisoformat(start) if start else datetime.now(UTC)
    if origin.tzinfo is None:
        origin = origin.replace(tzinfo=UTC)
    elapsed = 0.0 if epoch is None else max(0.0, time.time() - epoch)
    return AcceleratedClock(origin + timedelta(seconds=elapsed * speed), speed)


def demo(
    config: Path = typer.Option(
        Path("config/farm.example.toml"),
        "--config",
        "-c",
        help="Config whose sites, market and treasury the demo uses.",
    ),
    speed: float = typer.Option(
        1440.0, help="Farm seconds per real second (1440: a day per minute)."
    ),
    hours: float = typer.Option(24.0, help="Farm hours to play."),
    rigs: int = typer.Option(24, help="Simulated rigs (every firmware family takes part)."),
    out: Path = typer.Option(
        Path("demo-output"), help="Folder for the database, report and plots."
    ),
) -> None:
    """The whole farm embedded: simulated rigs, recorded prices, planner, paper exchange, SQLite."""
    import asyncio
    import logging

    from controller.cli.common import load_config_or_exit
    from controller.demo import DemoOptions, run_demo
    from controller.demo_view import LiveView
    from controller.logs import setup_logging

    base = load_config_or_exit(config)
    setup_logging("WARNING", "text")
    for noisy in (
        "apscheduler",
        "forecasting",
        "miners.credentials",
        "controller.planning",
        "controller.mqtt.client",
    ):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    view = LiveView()
    options = DemoOptions(speed=speed, hours=hours, rigs=rigs, out=out)
    try:
        result = asyncio.run(run_demo(base, options, view=view))
    finally:
        view.close()
    typer.echo(
        f"farm time {result.farm_start:%Y-%m-%d %H:%M} -> {result.farm_end:%Y-%m-%d %H:%M} UTC: "
        f"{result.plans} plans, {result.curtail_actions} curtails, {result.resume_actions} resumes; "
        f"rigs now {result.rigs_by_state}"
    )
    typer.echo(f"database: {result.database_url}")
    for name, path in result.files.items():
        typer.echo(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    """Attach `run` and `demo` to the root app."""
    app.command("run")(run)
    app.command("demo")(demo)
