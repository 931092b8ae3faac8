"""Notifications: webhook formats against a local HTTP server, email against a local SMTP server,
MQTT hand-off, rate limiting, and no secret in anything sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller

from controller.notify import (
    DeliveryError,
    EmailChannel,
    Message,
    MqttChannel,
    Notifier,
    WebhookChannel,
    webhook_body,
)
from tests.support.mosquitto import free_port


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Recorder", (_Recorder,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook/SECRET-TOKEN", handler
    finally:
        server.shutdown()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


SALE = Message(
    "report",
    "Sales 2026-11-22",
    "0.0312 BTC sold at 91,234 USD",
    fields={"coins_sold": 0.0312, "proceeds": 2846.5},
)


def test_webhook_formats(webhook_server: tuple[str, type[_Recorder]]) -> None:
    url, handler = webhook_server
    for fmt in ("plain", "slack", "telegram"):
        WebhookChannel(url, fmt).send(SALE)  # type: ignore[arg-type]
    (p1, plain), (_, slack), (_, telegram) = handler.received
    assert p1 == "/hook/SECRET-TOKEN"
    assert plain == {
        "kind": "report",
        "severity": "info",
        "title": "Sales 2026-11-22",
        "text": "0.0312 BTC sold at 91,234 USD",
        "fields": {"coins_sold": 0.0312, "proceeds": 2846.5},
    }
    assert slack["text"].startswith("Sales 2026-11-22\n0.0312 BTC")
    assert slack["blocks"][0]["text"]["text"] == "Sales 2026-11-22"
    assert "*coins_sold*: 0.0312" in slack["blocks"][2]["text"]["text"]
    assert (
        telegram["text"]
        == "Sales 2026-11-22\n0.0312 BTC sold at 91,234 USD\ncoins_sold: 0.0312\nproceeds: 2846.5"
    )


def test_webhook_failure_names_the_status_but_not_the_url(
    webhook_server: tuple[str, type[_Recorder]],
) -> None:
    url, handler = webhook_server
    handler.status = 500
    with pytest.raises(DeliveryError) as err:
        WebhookChannel(url).send(SALE)
    assert str(err.value) == "webhook: HTTP 500"
    with pytest.raises(DeliveryError) as err:
        WebhookChannel(f"http://127.0.0.1:{free_port()}/x/SECRET-TOKEN", timeout_s=2).send(SALE)
    assert "SECRET" not in str(err.value) and err.value.args[0].startswith("webhook: ")


def test_email_with_attachment(smtp_server: tuple[int, _Inbox]) -> None:
    port, inbox = smtp_server
    channel = EmailChannel(
        "127.0.0.1", port, "farm@example.com", ["ops@example.com"], starttls=False
    )
    report = Message(
        "report",
        SALE.title,
        SALE.text,
        fields=SALE.fields,
        attachments=(("sales.csv", b"day,btc\n1,0.03\n", "text/csv"),),
    )
    channel.send(report)
    [(sender, rcpts, raw)] = inbox.messages
    assert sender == "farm@example.com" and rcpts == ["ops@example.com"]
    email = message_from_bytes(raw)
    assert email["Subject"] == "[farmctl] Sales 2026-11-22"
    parts = list(email.walk())
    assert "coins_sold: 0.0312" in parts[1].get_payload(decode=True).decode()
    assert parts[2].get_filename() == "sales.csv"
    assert parts[2].get_payload(decode=True) == b"day,btc\n1,0.03\n"


def test_email_server_down_is_a_clear_error() -> None:
    channel = EmailChannel(
        "127.0.0.1", free_port(), "a@b.c", ["d@e.f"], starttls=False, timeout_s=2
    )
    with pytest.raises(DeliveryError, match=r"email via 127\.0\.0\.1:\d+: ConnectionRefusedError"):
        channel.send(SALE)


def test_alerts_are_rate_limited_per_key_and_masked() -> None:
    published: list[tuple[str, bytes]] = []
    now = [1000.0]
    notifier = Notifier(
        [MqttChannel("farm/reports", lambda t, p: published.append((t, p)))],
        alert_min_interval_s=900,
        clock=lambda: now[0],
    )
    assert notifier.alert(
        "health:overheat:rig-1", "critical", "rig-1 overheating", "token=abc123 leaked"
    )
    assert not notifier.alert("health:overheat:rig-1", "critical", "rig-1 overheating")
    assert notifier.alert("health:overheat:rig-2", "critical", "rig-2 overheating")
    now[0] += 901
    assert notifier.alert("health:overheat:rig-1", "critical", "rig-1 overheating")
    assert notifier.suppressed == 1
    assert [t for t, _ in published] == ["farm/reports/alerts"] * 3
    first = json.loads(published[0][1])
    assert first["severity"] == "critical" and first["text"] == "token=*** leaked"
    # Reports are never rate-limited.
    notifier.send(SALE)
    notifier.send(SALE)
    assert [t for t, _ in published][-2:] == ["farm/reports/reports"] * 2


def test_one_failing_channel_does_not_stop_the_others(smtp_server: tuple[int, _Inbox]) -> None:
    port, inbox = smtp_server
    dead = WebhookChannel(f"http://127.0.0.1:{free_port()}/", timeout_s=2)
    mail = EmailChannel("127.0.0.1", port, "a@b.c", ["d@e.f"], starttls=False)
    results = Notifier([dead, mail]).send(SALE)
    assert results["email"] is None and results["webhook"] == "webhook: ConnectionError"
    assert len(inbox.messages) == 1


def test_webhook_body_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown webhook format"):
        webhook_body(SALE, "teams")  # type: ignore[arg-type]


def test_every_message_names_the_gateway_and_sites_it_comes_from() -> None:
    published: list[tuple[str, bytes]] = []
    notifier = Notifier(
        [MqttChannel("farm/reports", lambda t, p: published.append((t, p)))],
        origin={"gateway": "farm_west", "sites": "west"},
    )
    assert notifier.alert("health:fan:rig-1", "warning", "rig-1 fan stopped", rig="rig-1")
    notifier.send(SALE)
    alert, report = (json.loads(p) for _, p in published)
    assert alert["fields"] == {"gateway": "farm_west", "sites": "west", "rig": "rig-1"}
    assert report["fields"]["gateway"] == "farm_west" and report["fields"]["sites"] == "west"
    # The message's own fields win over the origin's.
    notifier.send(Message("report", "r", "r", fields={"sites": "east"}))
    assert json.loads(published[-1][1])["fields"] == {"gateway": "farm_west", "sites": "east"}
