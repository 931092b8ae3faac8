"""farmctl run: the gateway daemon (and, from controller.demo, farmctl demo)."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    config: Path = typer.Option(..., "--config", "-c", help="Farm config file (TOML)."),
    site: list[str] = typer.Option(
        [], "--site", help="Run only these sites (default: every site in the config)."
    ),
) -> None:
    """Run the gateway: poll rigs, plan, reconcile, sell, report, until SIGTERM."""
    import asyncio

    from controller.config import ConfigError, load_config
    from controller.daemon import serve
    from controller.gateway import Gateway
    from controller.logs import setup_logging

    try:
        farm = load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2) from None
    setup_logging(farm.farm.log_level, farm.farm.log_format)
    base_dir = config.resolve().parent
    unknown = set(site) - {s.id for s in farm.sites}
    if unknown:
        typer.echo(f"--site {sorted(unknown)}: not in the config", err=True)
        raise typer.Exit(2)

    async def main() -> None:
        gateway = Gateway(farm, base_dir=base_dir, sites=site or None)
        await serve(farm, base_dir=base_dir, gateway=gateway)

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    """Attach `run` to the root app."""
    app.command("run")(run)
