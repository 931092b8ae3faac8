"""farmctl report / treasury tick / ledger / sell / kill-switch end to end on real June 2022 bars."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from controller.cli.main import app

runner = CliRunner()


@pytest.fixture
def farm(tmp_path: Path, data_dir: Path) -> Path:
    with gzip.open(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz", "rt") as handle:
        lines = handle.read().splitlines()
    june = [line for line in lines if line.startswith(("2022-06-01", "2022-06-02", "2022-06-03"))]
    (tmp_path / "bars.csv").write_text("\n".join([lines[0], *june]) + "\n")
    (tmp_path / "power.csv").write_text("day,cost\n2022-06-01,250\n2022-06-02,250\n")
    (tmp_path / "farm.toml").write_text(
        """
[farm]
data_dir = "var"
[[sites]]
id = "west"
[treasury]
pair = "BTC/USD"
[treasury.strategy]
band_method = "fixed"
pmin = 10000.0
pmax = 30000.0
momentum_strength = 0.0
[treasury.risk]
max_order_btc = 0.05
max_sold_per_day_btc = 0.08
price_band_fraction = 0.05
"""
    )
    return tmp_path


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    return result


def test_tick_sell_ledger_kill_switch_and_report(farm: Path) -> None:
    cfg = str(farm / "farm.toml")
    tick = invoke(
        "treasury", "tick", "--config", cfg, "--prices", str(farm / "bars.csv"), "--mined", "0.1"
    )
    assert tick.exit_code == 0, tick.output
    # Last bar 2022-06-03T23:00 closes at 29669.38; fixed band 10k-30k -> target weight ~0.98.
    assert "coins 0.1 fiat 0" in tick.output
    assert "decision: sell 0.09834695 (rebalance" in tick.output
    assert "0.05 @ 29669.4: open" in tick.output  # max order 0.05, price rounded up to the tick

    again = invoke("treasury", "tick", "--config", cfg, "--prices", str(farm / "bars.csv"))
    assert again.exit_code == 0, again.output
    assert "skipped" not in again.output

    ledger = invoke("treasury", "ledger", "--config", cfg, "--json")
    rows = json.loads(ledger.output)
    assert [r["status"] for r in rows] == ["open", "cancelled"]  # cancelled, then re-placed
    assert rows[0]["amount"].startswith("0.05")

    assert "kill switch is on" in invoke("treasury", "kill-switch", "on", "--config", cfg).output
    refused = invoke("treasury", "sell", "--config", cfg, "--amount", "0.01", "--price", "29600",
                     "--reference", "29600")  # fmt: skip
    assert refused.exit_code == 2 and "kill switch is on" in refused.output
    invoke("treasury", "kill-switch", "off", "--config", cfg)
    crash = invoke("treasury", "sell", "--config", cfg, "--amount", "0.01", "--price", "20000",
                   "--prices", str(farm / "bars.csv"))  # fmt: skip
    assert crash.exit_code == 2 and "refusing to sell into a crash" in crash.output
    daily = invoke("treasury", "sell", "--config", cfg, "--amount", "0.04", "--price", "29600",
                   "--reference", "29600")  # fmt: skip
    assert daily.exit_code == 2 and "exceeds the daily maximum 0.08" in daily.output

    out = farm / "out"
    report = invoke("report", "--period", "2022-06", "--config", cfg, "--prices",
                    str(farm / "bars.csv"), "--electricity", str(farm / "power.csv"),
                    "--out", str(out))  # fmt: skip
    assert report.exit_code == 0, report.output
    assert "coins_mined_btc              0.10000000" in report.output
    assert "electricity_cost_USD         500.00" in report.output
    assert sorted(p.name for p in out.iterdir()) == [
        "2022-06-days.csv", "2022-06-sales.csv", "2022-06.html", "2022-06.json",
    ]  # fmt: skip
    data = json.loads((out / "2022-06.json").read_text())
    assert data["coins_sold"] == "0" and data["electricity_cost"] == "500"


def test_report_rejects_a_bad_period_and_bad_cost_file(farm: Path) -> None:
    cfg = str(farm / "farm.toml")
    bad = invoke("report", "--period", "Nov", "--config", cfg)
    assert bad.exit_code == 2 and "expected YYYY-MM" in bad.output
    (farm / "power.csv").write_text("date,eur\n2022-06-01,x\n")
    bad = invoke(
        "report", "--period", "2022-06", "--config", cfg, "--electricity", str(farm / "power.csv")
    )
    assert bad.exit_code == 2 and "line 2: expected columns day,cost" in bad.output


class Hook(BaseHTTPRequestHandler):
    bodies: list[Any] = []  # noqa: RUF012

    def do_POST(self) -> None:
        Hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_report_send_to_webhook_and_mqtt_outbox(
    farm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from controller.mqtt.tables import MqttOutbox

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FARMCTL_TEST_HOOK", f"http://127.0.0.1:{server.server_address[1]}/report")
    cfg = farm / "farm.toml"
    cfg.write_text(
        cfg.read_text()
        + '\n[reports.webhook]\nenabled = true\nformat = "slack"\nurl = { env = "FARMCTL_TEST_HOOK" }\n'
    )
    db = f"sqlite:///{farm / 'report.db'}"
    MqttOutbox.metadata.create_all(sa.create_engine(db))
    Hook.bodies.clear()
    try:
        sent = invoke("report", "--period", "2022-06", "--config", str(cfg), "--db", db, "--send")
    finally:
        server.shutdown()
        server.server_close()
    assert sent.exit_code == 0, sent.output
    assert "webhook: sent" in sent.output and "mqtt: sent" in sent.output
    assert Hook.bodies[0]["blocks"][0]["text"]["text"] == "Sale report 2022-06"
    with sa.create_engine(db).connect() as conn:
        rows = conn.execute(sa.text("select msg_id, topic from mqtt_outbox")).all()
    assert rows == [("sale-report-2022-06", "farm/reports/reports")]
