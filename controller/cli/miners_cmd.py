"""farmctl miners ...: the `miners` command group (probe, decode, control). Heavy imports stay inside commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

# Shared group: controller.cli.fleet_cmd adds poll/scan/status to the same group.
miners_app = typer.Typer(
    help="Talk to rigs: probe, decode replies, poll, scan, control.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Attach the `miners` group to the root app."""
    app.add_typer(miners_app, name="miners")


# --- decode ---
# `farmctl miners decode FILE`: what the poller would read from one saved raw reply.


@miners_app.command("decode")
def decode_cmd(
    file: Path = typer.Argument(..., help="A saved raw reply (JSON, malformed JSON or text)."),
    family: str | None = typer.Option(
        None, "--family", "-f", help="Firmware family (default: detected from the reply)."
    ),
    command: str | None = typer.Option(
        None, "--command", "-c", help="Command that produced it (default: detected)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the fields as JSON."),
    full: bool = typer.Option(
        False, "--full", help="Every RigStatus key, null where the reply does not carry it."
    ),
) -> None:
    """Decode one saved rig reply and print the normalized fields it carries."""
    from miners.decode import DecodeError, decode_file

    try:
        decoded = decode_file(file, family=family, command=command)
    except DecodeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    data = decoded.full_dict() if full else decoded.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if key == "boards":
            typer.echo("boards:")
            for board in value:
                typer.echo("  " + ", ".join(f"{k}={v}" for k, v in board.items()))
        elif key == "pools":
            typer.echo("pools:")
            for pool in value:
                typer.echo("  " + ", ".join(f"{k}={v}" for k, v in pool.items()))
        elif isinstance(value, list) and key == "errors":
            typer.echo("errors:")
            for line in value:
                typer.echo(f"  - {line}")
        else:
            typer.echo(f"{key}: {value}")
