"""Site power targets: validation, superseding, the cap's choice of rigs, the ramp, and acks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller import migrate
from controller.config import RigConfig
from controller.reconcile import Desired
from controller.site_targets import (
    RigPower,
    SitePowerAck,
    SitePowerTarget,
    SiteTargets,
    TargetError,
    cap_in_force,
    check_target,
    parse_target,
    ramp_fraction,
    select_curtailments,
    store_target,
)
from controller.storage import make_engine, session_factory
from controller.tables import SitePowerTargetRow
from miners.status import RigStatus

NOW = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)


def _rig(
    name: str,
    jth: float | None,
    watts: float,
    *,
    desired: Desired = "hashing",
    why: str = "plan:p1",
    state: str = "hashing",
    curtailable: bool = True,
) -> RigPower:
    power = watts if state == "hashing" else (15.0 if state == "curtailed" else 0.0)
    return RigPower(name, desired, why, state, power, watts, jth, curtailable)


# ---- the cap's choice -----------------------------------------------------------------------


def test_least_efficient_rigs_are_curtailed_first_until_the_cap_holds() -> None:
    rigs = [
        _rig("s19k", 23.0, 2760),
        _rig("s19pro", 29.5, 3250),
        _rig("m31s", 44.0, 3344),
        _rig("s9", 98.0, 1323),
    ]
    # 10,677 W hashing; a 7 kW cap needs 3,677 W off: the S9 (1,323) and then the M31S (3,344).
    decision = select_curtailments(rigs, 7000)
    assert decision.curtail == ["s9", "m31s"]
    assert decision.projected_w == pytest.approx(6010)
    assert decision.shortfall_w == 0
    # A cap the site already meets curtails nothing.
    assert select_curtailments(rigs, 11_000).curtail == []


def test_overrides_win_and_the_cap_never_resumes_a_curtailed_rig() -> None:
    rigs = [
        _rig("s9", 98.0, 1323, why="override:7"),  # an operator keeps it hashing
        _rig("m31s", 44.0, 3344),
        _rig("s19pro", 29.5, 3250),
        # the plan curtails it: asleep at 15 W, never resumed to fill the cap
        _rig("s19k", 23.0, 2760, desired="curtailed", state="curtailed"),
    ]
    decision = select_curtailments(rigs, 5000)
    assert decision.curtail == ["m31s"]  # the S9 is held by its override
    assert decision.held_by_override == ["s9"]
    assert decision.projected_w == pytest.approx(1323 + 3250 + 15)
    # With the cap out of reach, the shortfall and its cause are reported.
    tight = select_curtailments(rigs, 1000)
    assert tight.curtail == ["m31s", "s19pro"]
    assert tight.shortfall_w == pytest.approx(1323 + 15 - 1000)


def test_rigs_already_curtailed_stay_curtailed_within_an_efficiency_bucket() -> None:
    # Two rigs of the same model: the one curtailed last time keeps the curtailment (no swap
    # when their measured power differs by a few watts from one poll to the next).
    rigs = [
        _rig("a", 29.5, 3260),
        _rig("b", 29.6, 3250, state="curtailed"),  # would-be power: its nameplate
        _rig("c", 23.0, 2760),
    ]
    decision = select_curtailments(rigs, 6100)
    assert decision.curtail == ["b"]
    assert decision.projected_w == pytest.approx(3260 + 2760 + 15)


def test_offline_and_refusing_rigs_are_not_counted_on() -> None:
    rigs = [
        _rig("s9", 98.0, 1323, curtailable=False),
        _rig("m31s", 44.0, 3344, state="offline"),
        _rig("s19k", 23.0, 2760),
    ]
    decision = select_curtailments(rigs, 2000)
    assert decision.curtail == ["s19k"]
    assert decision.not_curtailable == ["s9"] and decision.offline == ["m31s"]
    assert decision.shortfall_w == 0 and decision.projected_w == pytest.approx(1323)


def test_ramp_moves_the_cap_linearly_from_the_baseline() -> None:
    start = NOW
    assert ramp_fraction(start, 0, start) == 1.0
    assert ramp_fraction(start, 300, start + timedelta(seconds=60)) == pytest.approx(0.2)
    assert ramp_fraction(start, 300, start + timedelta(seconds=900)) == 1.0
    assert cap_in_force(10_000, 5_000, 0.2) == pytest.approx(9_000)
    assert cap_in_force(10_000, 5_000, 1.0) == pytest.approx(5_000)
    assert cap_in_force(4_000, 5_000, 0.2) == 5_000  # already under: the cap as given


# ---- validation -------------------------------------------------------------------------------


def _target(**kw: object) -> SitePowerTarget:
    body: dict[str, object] = {
        "id": "t1",
        "site": "west",
        "mode": "to_kw",
        "kw": 5.0,
        "start": NOW.isoformat(),
        "end": (NOW + timedelta(hours=1)).isoformat(),
        "issuer": "central",
        "issued_at": NOW.isoformat(),
    }
    body.update(kw)
    return SitePowerTarget.model_validate(body)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"kw": -1}, "kw: Input should be greater than or equal to 0"),
        ({"mode": "by_kw", "kw": 0}, "by_kw needs a reduction above 0 kW"),
        ({"end": NOW.isoformat()}, "is not after start"),
        ({"end": "2026-12-05T19:00:00"}, "end: Input should have timezone info"),
        ({"mode": "off"}, "mode: Input should be 'to_kw' or 'by_kw'"),
        ({"id": "a/b"}, "id: String should match pattern"),
        ({"color": "red"}, "color: Extra inputs are not permitted"),
        ({"site": "east"}, "target for site 'east' sent on the topic of site 'west'"),
    ],
)
def test_bad_payloads_are_refused_with_the_reason(changes: dict[str, object], error: str) -> None:
    import json

    body = {
        "id": "t1",
        "site": "west",
        "mode": "to_kw",
        "kw": 5.0,
        "start": NOW.isoformat(),
        "end": (NOW + timedelta(hours=1)).isoformat(),
        "issuer": "central",
        "issued_at": NOW.isoformat(),
    } | changes
    with pytest.raises(TargetError) as err:
        parse_target(json.dumps(body).encode(), "west")
    assert error in str(err.value)


def test_unknown_site_and_windows_over_are_refused() -> None:
    with pytest.raises(TargetError, match=r"unknown site 'west'; known: \['east'\]"):
        check_target(_target(), ["east"], NOW)
    with pytest.raises(TargetError, match="target window already over"):
        check_target(_target(), ["west"], NOW + timedelta(hours=2))
    with pytest.raises(TargetError, match="longer than 7 days"):
        check_target(_target(end=(NOW + timedelta(days=8)).isoformat()), ["west"], NOW)
    check_target(_target(), ["west"], NOW)  # a good one passes


# ---- with a database --------------------------------------------------------------------------


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    migrate.upgrade(url)
    return session_factory(make_engine(url))


def test_store_is_idempotent_and_newer_overlapping_targets_supersede(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        first = store_target(session, _target(), ["west"], source="mqtt", now=NOW)
        again = store_target(session, _target(kw=1.0), ["west"], source="mqtt", now=NOW)
    assert first.stored and not again.stored
    later = NOW + timedelta(minutes=5)
    with sessions.begin() as session:
        newer = store_target(
            session,
            _target(
                id="t2",
                issued_at=later.isoformat(),
                start=(NOW + timedelta(minutes=30)).isoformat(),
            ),
            ["west"],
            source="mqtt",
            now=later,
        )
        # An older target arriving late (out-of-order delivery) is superseded at once.
        stale = store_target(
            session,
            _target(id="t0", issued_at=(NOW - timedelta(hours=1)).isoformat()),
            ["west"],
            source="mqtt",
            now=later,
        )
        # A newer target of another window leaves both alone.
        apart = store_target(
            session,
            _target(
                id="t3",
                issued_at=later.isoformat(),
                start=(NOW + timedelta(hours=2)).isoformat(),
                end=(NOW + timedelta(hours=3)).isoformat(),
            ),
            ["west"],
            source="mqtt",
            now=later,
        )
    assert newer.superseded == ["t1"]
    assert stale.superseded_by == "t2"
    assert apart.superseded == []
    with sessions() as session:
        rows = {r.id: (r.superseded_by, r.kw) for r in session.scalars(select(SitePowerTargetRow))}
    assert rows == {"t1": ("t2", 5.0), "t2": (None, 5.0), "t0": ("t2", 5.0), "t3": (None, 5.0)}


def _rigs() -> list[RigConfig]:
    models = [("s19k", "Antminer S19k Pro"), ("s19pro", "Antminer S19 Pro"), ("s9", "Antminer S9")]
    return [
        RigConfig(name=name, site="west", address=f"10.0.0.{i}", model=model)
        for i, (name, model) in enumerate(models, start=1)
    ]


def _status(state: str, watts: float | None, ths: float | None = None) -> RigStatus:
    return RigStatus(
        state=state,  # type: ignore[arg-type]
        power_w=watts,
        hashrate_ths=ths,
        efficiency_jth=(watts / ths) if watts and ths else None,
    )


def _west_targets(acks: list[SitePowerAck]) -> SiteTargets:
    """Site west's targets over `_rigs()`, its acks collected in `acks`."""
    targets = SiteTargets(["west"], _rigs())
    targets.publish_ack = lambda _conn, ack: acks.append(ack)
    return targets


def _all_hashing() -> dict[str, RigStatus]:
    """The three rigs hashing: S19k 2,760 W, S19 Pro 3,250 W, S9 1,323 W."""
    return {
        "s19k": _status("hashing", 2760, 120),
        "s19pro": _status("hashing", 3250, 110),
        "s9": _status("hashing", 1323, 13.5),
    }


def _wanted(**desired: Desired) -> dict[str, tuple[Desired, str]]:
    out: dict[str, tuple[Desired, str]] = {}
    for name in ("s19k", "s19pro", "s9"):
        d = desired.get(name, "hashing")
        out[name] = (d, "plan:p1" if d == "curtailed" else "default")
    return out


def test_ramp_window_end_and_acks_through_reconcile_steps(
    sessions: sessionmaker[Session],
) -> None:
    acks: list[SitePowerAck] = []
    targets = _west_targets(acks)
    hashing = _all_hashing()
    targets.remember(hashing)
    with sessions.begin() as session:
        store_target(
            session,
            _target(
                mode="by_kw", kw=4.0, ramp_s=300, end=(NOW + timedelta(minutes=30)).isoformat()
            ),
            ["west"],
            source="db",
            now=NOW,
        )

    def step(
        at: datetime, statuses: dict[str, RigStatus], **desired: Desired
    ) -> dict[str, tuple[Desired, str]]:
        wanted = _wanted(**desired)
        with sessions.begin() as session:
            targets.apply(session, wanted, statuses, {}, at)
        targets.acknowledge(sessions, statuses, at)
        return wanted

    # First step: baseline 7,333 W, cap 3,333 W; one fifth of the ramp after 60 s.
    wanted = step(NOW, hashing)
    assert wanted == _wanted()  # fraction 0: the cap in force is the baseline
    assert acks[-1].state == "ramping" and acks[-1].baseline_kw == pytest.approx(7.333)
    assert acks[-1].cap_kw == pytest.approx(3.333)
    wanted = step(NOW + timedelta(seconds=60), hashing)
    # cap in force 7,333 - 800 = 6,533 W: the S9 (98 J/TH) is enough.
    assert wanted["s9"] == ("curtailed", "target:t1")
    assert wanted["s19pro"][0] == "hashing"
    asleep = hashing | {"s9": _status("curtailed", 15.0)}
    wanted = step(NOW + timedelta(seconds=180), asleep)  # cap 7,333 - 2,400 = 4,933 W
    assert [n for n, (d, _) in wanted.items() if d == "curtailed"] == ["s19pro", "s9"]
    assert acks[-1].state == "ramping"
    both = asleep | {"s19pro": _status("curtailed", 15.0)}
    # The gateway restarts mid-ramp: baseline and start of the ramp come back from the row.
    targets = _west_targets(acks)
    wanted = step(NOW + timedelta(seconds=400), both)
    assert [n for n, (d, _) in wanted.items() if d == "curtailed"] == ["s19pro", "s9"]
    assert acks[-1].state == "met" and acks[-1].achieved_kw == pytest.approx(2.79)
    # The plan curtails the S19k for the hour: the cap now needs only the S9 asleep, so the
    # S19 Pro returns to what the plan wants (hashing).
    wanted = step(NOW + timedelta(seconds=460), both, s19k="curtailed")
    assert wanted["s19pro"] == ("hashing", "default") and wanted["s9"][1] == "target:t1"
    # The window ends: every rig returns to the plan, and the target is acked ended.
    wanted = step(NOW + timedelta(minutes=31), both)
    assert wanted == _wanted()
    assert acks[-1].state == "ended" and acks[-1].reason == "window over"
    with sessions() as session:
        row = session.get(SitePowerTargetRow, "t1")
        assert row is not None and row.state == "ended" and row.baseline_kw == pytest.approx(7.333)


def test_to_kw_unreachable_names_the_overrides_and_db_rows_are_validated(
    sessions: sessionmaker[Session],
) -> None:
    acks: list[SitePowerAck] = []
    targets = _west_targets(acks)
    hashing = _all_hashing()
    with sessions.begin() as session:
        # A planner's hand-written rows: one good, one with a negative kW.
        for tid, kw in (("db-good", 2.0), ("db-bad", -3.0)):
            session.add(
                SitePowerTargetRow(
                    id=tid,
                    site="west",
                    mode="to_kw",
                    kw=kw,
                    starts_at=NOW - timedelta(minutes=1),
                    ends_at=NOW + timedelta(hours=1),
                    issuer="central",
                    issued_at=NOW - timedelta(minutes=2 if tid == "db-good" else 3),
                )
            )
    wanted = _wanted()
    wanted["s19k"] = ("hashing", "override:3")
    with sessions.begin() as session:
        targets.apply(session, wanted, hashing, {}, NOW)
    targets.acknowledge(sessions, hashing, NOW)
    rejected = [a for a in acks if a.state == "rejected"]
    assert [(a.target_id, a.reason) for a in rejected] == [
        ("db-bad", "kw -3.0 must be a number >= 0")
    ]
    assert wanted["s19pro"][0] == wanted["s9"][0] == "curtailed"
    last = acks[-1]
    assert last.target_id == "db-good" and last.state == "unreachable"
    assert last.reason == "short by 0.8 kW: 1 rigs kept hashing by overrides"
    with sessions() as session:
        good = session.get(SitePowerTargetRow, "db-good")
        assert good is not None and good.state == "unreachable" and good.cap_kw == 2.0


# ---- CLI ----------------------------------------------------------------------------------------


def test_cli_add_list_cancel(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from controller.cli.main import app

    example = Path(__file__).resolve().parents[2] / "config" / "farm.example.toml"
    config = tmp_path / "farm.toml"
    config.write_text(example.read_text().replace('data_dir = "var"', f'data_dir = "{tmp_path}"'))
    runner = CliRunner()
    base = ["site", "target", "add", "-c", str(config), "--site", "west"]
    added = runner.invoke(
        app, [*base, "--to-kw", "450", "--ramp", "300", "--for", "2h", "--id", "peak-1"]
    )
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("target peak-1: site west to 450 kW, ramp 300 s, ")
    newer = runner.invoke(app, [*base, "--by-kw", "100", "--for", "1h", "--id", "peak-2"])
    assert newer.exit_code == 0, newer.output
    assert "supersedes target peak-1" in newer.stdout
    for args, error in (
        (["--to-kw", "-5", "--for", "1h"], "error: kw: Input should be greater than or equal to 0"),
        (
            ["--to-kw", "5", "--start", "2019-12-31T00:00:00", "--until", "2020-01-01T00:00:00"],
            "error: target window already over",
        ),
        (
            ["--to-kw", "5", "--until", "2020-01-01T00:00:00"],
            "error: target: target end 2020-01-01T00:00:00+00:00 is not after start",
        ),
        (["--to-kw", "5", "--by-kw", "3", "--for", "1h"], "give exactly one of --to-kw, --by-kw"),
    ):
        bad = runner.invoke(app, [*base, *args])
        assert bad.exit_code == 2 and error in bad.output, bad.output
    ghost = runner.invoke(
        app,
        [
            "site",
            "target",
            "add",
            "-c",
            str(config),
            "--site",
            "ghost",
            "--to-kw",
            "1",
            "--for",
            "1h",
        ],
    )
    assert ghost.exit_code == 2 and "unknown site 'ghost'" in ghost.output
    listed = runner.invoke(app, ["site", "target", "list", "-c", str(config)])
    lines = listed.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["peak-1", "peak-2"]
    assert "(superseded by peak-2)" in lines[0] and "by 100 kW\tramp 0 s" in lines[1]
    assert "\tpending\t-\tcli:cli" in lines[1]
    cancelled = runner.invoke(app, ["site", "target", "cancel", "-c", str(config), "peak-2"])
    assert cancelled.exit_code == 0 and cancelled.stdout == "target peak-2 cancelled\n"
    assert (
        runner.invoke(app, ["site", "target", "cancel", "-c", str(config), "nope"]).exit_code == 1
    )
    remaining = runner.invoke(app, ["site", "target", "list", "-c", str(config)])
    assert [line.split("\t")[0] for line in remaining.stdout.splitlines()] == ["peak-1"]


def test_no_baseline_before_any_rig_answers_and_offline_rigs_are_not_met(
    sessions: sessionmaker[Session],
) -> None:
    acks: list[SitePowerAck] = []
    targets = _west_targets(acks)
    with sessions.begin() as session:
        store_target(session, _target(mode="by_kw", kw=2.0), ["west"], source="mqtt", now=NOW)
        session.add(  # a hand-written row whose window closed before the gateway read it
            SitePowerTargetRow(
                id="late",
                site="west",
                mode="to_kw",
                kw=1.0,
                starts_at=NOW - timedelta(hours=2),
                ends_at=NOW - timedelta(hours=1),
                issuer="central",
                issued_at=NOW - timedelta(hours=2),
            )
        )
    # Right after a start, before the first poll: nothing is known, nothing is curtailed and
    # no baseline is fixed (a by_kw cap from a 0 kW baseline would curtail the whole site).
    wanted = _wanted()
    with sessions.begin() as session:
        targets.apply(session, wanted, {}, {}, NOW)
    targets.acknowledge(sessions, {}, NOW)
    assert wanted == _wanted()
    assert (acks[0].target_id, acks[0].state) == ("late", "rejected")
    assert acks[0].reason is not None and acks[0].reason.startswith("target window already over")
    assert (acks[-1].state, acks[-1].reason) == (
        "unreachable",
        "no rig of the site answered the last poll",
    )
    with sessions() as session:
        row = session.get(SitePowerTargetRow, "t1")
        assert row is not None and row.applied_at is None and row.baseline_kw is None
    # The S9 is offline: the baseline is what answered (S19k + S19 Pro, 6.01 kW), the cap
    # 4.01 kW; curtailing the S19 Pro meets it as far as can be seen, but the S9 may be
    # drawing its 1.32 kW unseen, so the ack does not claim the cap is met.
    statuses = {
        "s19k": _status("hashing", 2760, 120),
        "s19pro": _status("hashing", 3250, 110),
        "s9": _status("offline", None),
    }
    wanted = _wanted()
    at = NOW + timedelta(minutes=1)
    with sessions.begin() as session:
        targets.apply(session, wanted, statuses, {}, at)
    assert wanted["s19pro"] == ("curtailed", "target:t1") and wanted["s19k"][0] == "hashing"
    asleep = statuses | {"s19pro": _status("curtailed", 15.0)}
    targets.acknowledge(sessions, asleep, at)
    assert acks[-1].state == "unreachable" and acks[-1].baseline_kw == pytest.approx(6.01)
    assert acks[-1].reason == "1 rigs offline: their power is unknown (up to 1.3 kW)"
    assert acks[-1].achieved_kw == pytest.approx(2.775) and acks[-1].offline_rigs == 1


@pytest.mark.postgres
def test_a_planner_inserts_rows_by_hand_on_postgresql(postgres_url: str) -> None:
    from sqlalchemy import text

    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    sessions = session_factory(engine)
    try:
        with engine.begin() as conn:
            # Only the request columns: ramp_s, source and cancelled take their server defaults.
            conn.execute(
                text(
                    "INSERT INTO site_power_target (id, site, mode, kw, starts_at, ends_at,"
                    " issuer, issued_at) VALUES ('pg-1', 'west', 'to_kw', 4.5, :start, :end,"
                    " 'central', :start)"
                ),
                {"start": NOW - timedelta(minutes=1), "end": NOW + timedelta(hours=1)},
            )
        acks: list[SitePowerAck] = []
        targets = _west_targets(acks)
        statuses = _all_hashing()
        wanted = _wanted()
        with sessions.begin() as session:
            targets.apply(session, wanted, statuses, {}, NOW)
        targets.acknowledge(sessions, statuses, NOW)
        assert [n for n, (d, _) in wanted.items() if d == "curtailed"] == ["s19pro", "s9"]
        assert [a.state for a in acks] == ["pending", "ramping"]  # rigs not asleep yet
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT ramp_s, source, cancelled, state, cap_kw FROM site_power_target")
            ).one()
        assert tuple(row) == (0.0, "db", False, "ramping", 4.5)
    finally:
        engine.dispose()
