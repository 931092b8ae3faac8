"""farmctl hardware list|show: the catalog of rig models."""

from __future__ import annotations

import json

import typer

hardware_app = typer.Typer(help="The catalog of rig models.", no_args_is_help=True)


def _blank(value: object) -> str:
    return "" if value is None else str(value)


@hardware_app.command("list")
def list_models(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per model."),
) -> None:
    """Print the catalog table: nameplate TH/s, W, J/TH, cooling and layout."""
    import dataclasses

    from rich.console import Console
    from rich.table import Table

    import hardware

    models = hardware.catalog()
    if as_json:
        for model in models:
            typer.echo(json.dumps(dataclasses.asdict(model)))
        return
    table = Table(title=f"{len(models)} rig models")
    for column in ("vendor", "model", "cooling"):
        table.add_column(column)
    for column in ("TH/s", "W", "J/TH", "fans", "boards", "chips/board"):
        table.add_column(column, justify="right")
    for m in models:
        table.add_row(
            m.vendor, m.model, m.cooling, f"{m.hashrate_ths:g}", f"{m.power_w:g}",
            f"{m.efficiency_jth:g}", _blank(m.fans), _blank(m.hashboards), _blank(m.chips_per_board),
        )  # fmt: skip
    Console(width=140).print(table)


@hardware_app.command("show")
def show(name: str = typer.Argument(..., help="A model name as a rig reports it.")) -> None:
    """Print one model as JSON; exit 1 when the name is not in the catalog."""
    import dataclasses

    import hardware

    model = hardware.lookup(name)
    if model is None:
        typer.echo(
            f"unknown model {name!r}: not in the catalog (see `farmctl hardware list`)", err=True
        )
        raise typer.Exit(1)
    typer.echo(json.dumps(dataclasses.asdict(model), indent=2))


def register(app: typer.Typer) -> None:
    """Attach the `hardware` group to the root app."""
    app.add_typer(hardware_app, name="hardware")
