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


# --- control ---
# `farmctl miners probe|curtail|resume|reboot RIG`: one rig, through its driver only (no raw
# passthrough of privileged commands). Secrets come from the environment or a file, never argv.

PASSWORD_ENV = "FARMCTL_RIG_PASSWORD"
USER_ENV = "FARMCTL_RIG_USER"

_RIG_ARG = typer.Argument(..., help="HOST[:PORT] (RPC port, or the HTTP port of an AxeOS rig).")
_FAMILY_OPT = typer.Option(None, "--family", help="Skip detection: antminer, braiins, ...")
_HTTP_OPT = typer.Option(80, "--http-port", help="Web API port (stock Antminer, AxeOS).")
_USER_OPT = typer.Option(None, "--user", help=f"Login (default: ${USER_ENV} or the family's).")
_PWFILE_OPT = typer.Option(
    None, "--password-file", help=f"File holding the password (else ${PASSWORD_ENV})."
)
_TIMEOUT_OPT = typer.Option(5.0, "--timeout", help="Connect/read deadline in seconds.")
_VERIFY_OPT = typer.Option(60.0, "--verify-timeout", help="How long an action may take to show.")


def _control(
    action: str,
    rig: str,
    *,
    family: str | None,
    http_port: int,
    user: str | None,
    password_file: Path | None,
    timeout: float,
    verify_timeout: float,
    as_json: bool = False,
) -> None:
    import asyncio
    import logging
    import os

    from miners.control import act_on_rig
    from miners.driver import RigError
    from miners.drivers.base import DriverTimeouts

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    secret: str | None = None
    if password_file is not None:
        try:
            secret = password_file.read_text().strip()
        except OSError as exc:
            typer.echo(f"error: cannot read --password-file {password_file}: {exc}", err=True)
            raise typer.Exit(code=2) from exc
    elif os.environ.get(PASSWORD_ENV):
        secret = os.environ[PASSWORD_ENV]
    timeouts = DriverTimeouts(connect_s=timeout, read_s=timeout, verify_s=verify_timeout)
    try:
        driver, st = asyncio.run(
            act_on_rig(
                rig,
                action,  # type: ignore[arg-type]  # one of the four commands below
                family=family,
                http_port=http_port,
                secret=secret,
                username=user or os.environ.get(USER_ENV),
                timeouts=timeouts,
            )
        )
    except (RigError, ValueError) as exc:
        typer.echo(f"error: {action} {rig}: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    caps = sorted(str(c) for c in driver.capabilities)
    if action != "probe":
        typer.echo(
            f"{action} {rig}: sent and verified; state={st.state} "
            f"hashrate={st.hashrate_ths} TH/s power={st.power_w} W"
        )
        return
    data = {"rig": rig, "family": driver.family, "capabilities": caps, "status": st.to_dict()}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"rig: {rig}\nfamily: {driver.family}\ncapabilities: {', '.join(caps) or 'none'}")
    for key, value in st.to_dict().items():
        if value not in (None, [], ""):
            typer.echo(f"{key}: {value}")


@miners_app.command("probe")
def probe_cmd(
    rig: str = _RIG_ARG,
    family: str | None = _FAMILY_OPT,
    http_port: int = _HTTP_OPT,
    user: str | None = _USER_OPT,
    password_file: Path | None = _PWFILE_OPT,
    timeout: float = _TIMEOUT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print family, capabilities, status."),
) -> None:
    """Detect a rig's firmware family, read its status and list what its driver can do."""
    _control(
        "probe",
        rig,
        family=family,
        http_port=http_port,
        user=user,
        password_file=password_file,
        timeout=timeout,
        verify_timeout=0.0,
        as_json=as_json,
    )


def _register_action(action: str, doc: str) -> None:
    """One `miners <action> RIG` command: the action through its driver, verified by read-back."""

    def command(
        rig: str = _RIG_ARG,
        family: str | None = _FAMILY_OPT,
        http_port: int = _HTTP_OPT,
        user: str | None = _USER_OPT,
        password_file: Path | None = _PWFILE_OPT,
        timeout: float = _TIMEOUT_OPT,
        verify_timeout: float = _VERIFY_OPT,
    ) -> None:
        _control(
            action,
            rig,
            family=family,
            http_port=http_port,
            user=user,
            password_file=password_file,
            timeout=timeout,
            verify_timeout=verify_timeout,
        )

    command.__doc__ = doc
    miners_app.command(action)(command)


for _action, _doc in (
    (
        "curtail",
        "Stop a rig hashing (sleep / power-off), then confirm it by reading the state back.",
    ),
    ("resume", "Start a curtailed rig hashing again, then confirm it by reading the state back."),
    ("reboot", "Reboot a rig, then confirm it went down or came back with a fresh uptime."),
):
    _register_action(_action, _doc)
