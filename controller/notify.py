"""Alerts and reports to the operator's channels: MQTT, webhook (plain, Slack, Telegram), email.

Alerts are rate-limited per key (the same alert at most once per `alert_min_interval_s`);
sale reports are never rate-limited. Nothing sent contains a secret: messages pass through the
same masking as the logs, and webhook URLs (which often embed a token) are never logged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal, Protocol

from controller.config import ReportsConfig, SecretRefError
from controller.logs import redact

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
WebhookFormat = Literal["plain", "slack", "telegram"]


@dataclass(frozen=True, slots=True)
class Message:
    """One alert or report: a short title, a text body, and structured fields."""

    kind: Literal["alert", "report"]
    title: str
    text: str
    severity: Severity = "info"
    fields: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[tuple[str, bytes, str], ...] = ()  # (filename, content, mime type)

    def safe(self) -> Message:
        """A copy with credential-looking values masked."""
        return Message(
            kind=self.kind,
            title=redact(self.title),
            text=redact(self.text),
            severity=self.severity,
            fields={k: redact(v) if isinstance(v, str) else v for k, v in self.fields.items()},
            attachments=self.attachments,
        )


class DeliveryError(Exception):
    """A channel refused or could not take a message; says which channel and why."""


class Channel(Protocol):
    """Somewhere messages go."""

    name: str

    def send(self, message: Message) -> None:
        """Deliver one message or raise `DeliveryError`."""
        ...


def webhook_body(message: Message, fmt: WebhookFormat) -> dict[str, Any]:
    """The JSON body for a webhook: plain (all fields), Slack (`text` + blocks), Telegram."""
    headline = (
        f"[{message.severity.upper()}] {message.title}"
        if message.kind == "alert"
        else message.title
    )
    if fmt == "plain":
        return {
            "kind": message.kind,
            "severity": message.severity,
            "title": message.title,
            "text": message.text,
            "fields": message.fields,
        }
    if fmt == "slack":
        lines = "\n".join(f"*{k}*: {v}" for k, v in message.fields.items())
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:3000]}},
        ]
        if lines:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": lines[:3000]}})
        return {"text": f"{headline}\n{message.text}", "blocks": blocks}
    if fmt == "telegram":
        lines = "\n".join(f"{k}: {v}" for k, v in message.fields.items())
        body = f"{headline}\n{message.text}" + (f"\n{lines}" if lines else "")
        # Telegram's sendMessage limit is 4096 characters; chat_id travels in the bot URL's query.
        return {"text": body[:4096], "disable_web_page_preview": True}
    raise ValueError(f"unknown webhook format {fmt!r}")


class WebhookChannel:
    """POST each message as JSON to a URL (kept secret: it often embeds a token)."""

    name = "webhook"

    def __init__(self, url: str, fmt: WebhookFormat = "plain", timeout_s: float = 10.0) -> None:
        self._url = url
        self.fmt = fmt
        self.timeout_s = timeout_s

    def send(self, message: Message) -> None:
        """POST the message; a non-2xx answer or a network error raises `DeliveryError`."""
        import requests

        try:
            response = requests.post(
                self._url, json=webhook_body(message, self.fmt), timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            # The exception text may contain the URL: report only its type.
            raise DeliveryError(f"webhook: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"webhook: HTTP {response.status_code}")


class EmailChannel:
    """Send each message by SMTP (STARTTLS when configured), with attachments."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        if not recipients:
            raise ValueError("email channel needs at least one recipient")
        self.host, self.port, self.sender = host, port, sender
        self.recipients = list(recipients)
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout_s = timeout_s

    def build(self, message: Message) -> EmailMessage:
        """The email for a message: subject, text body with fields, attachments."""
        email = EmailMessage()
        prefix = f"[farmctl {message.severity}]" if message.kind == "alert" else "[farmctl]"
        email["Subject"] = f"{prefix} {message.title}"
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        fields = "\n".join(f"{k}: {v}" for k, v in message.fields.items())
        email.set_content(message.text + (f"\n\n{fields}" if fields else ""))
        for filename, content, mime in message.attachments:
            maintype, _, subtype = mime.partition("/")
            email.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
        return email

    def send(self, message: Message) -> None:
        """Deliver over SMTP; connection, TLS or authentication failures raise `DeliveryError`."""
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username and self._password:
                    smtp.login(self.username, self._password)
                smtp.send_message(self.build(message))
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"email via {self.host}:{self.port}: {type(exc).__name__}: {exc}"
            ) from None


class MqttChannel:
    """Publish each message as JSON on `<topic>/alerts` or `<topic>/sales` through a callback.

    The callback is the MQTT bridge's outbox enqueue: what must arrive is stored first and
    delivered when the broker acknowledges it.
    """

    name = "mqtt"

    def __init__(self, topic: str, publish: Callable[[str, bytes], None]) -> None:
        self.topic = topic.rstrip("/")
        self._publish = publish

    def send(self, message: Message) -> None:
        """Hand the message to the publisher (which must not lose it)."""
        sub = "alerts" if message.kind == "alert" else "reports"
        body = webhook_body(message, "plain") | {"ts": time.time()}
        self._publish(f"{self.topic}/{sub}", json.dumps(body, default=str).encode())


class Notifier:
    """Fans messages out to every channel; alerts are rate-limited per key."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        alert_min_interval_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        origin: Mapping[str, Any] | None = None,
    ) -> None:
        self.channels = list(channels)
        # Which gateway and sites speak: with several gateways on one channel, an operator
        # must see where an alert comes from. Added to every message's fields.
        self.origin = dict(origin or {})
        self.alert_min_interval_s = alert_min_interval_s
        self._clock = clock
        self._last_sent: dict[str, float] = {}
        self.suppressed = 0
        self.failures: dict[str, int] = {}

    def alert(
        self, key: str, severity: Severity, title: str, text: str = "", **fields: Any
    ) -> bool:
        """Send an alert unless the same key was sent within the interval; True when sent."""
        now = self._clock()
        last = self._last_sent.get(key)
        if last is not None and now - last < self.alert_min_interval_s:
            self.suppressed += 1
            return False
        self._last_sent[key] = now
        self.send(Message("alert", title, text or title, severity, dict(fields)))
        return True

    def send(self, message: Message) -> dict[str, str | None]:
        """Deliver to every channel; returns channel -> error (None when delivered)."""
        if self.origin:
            message = dataclasses.replace(message, fields=self.origin | message.fields)
        safe = message.safe()
        results: dict[str, str | None] = {}
        for channel in self.channels:
            try:
                channel.send(safe)
                results[channel.name] = None
            except DeliveryError as exc:
                results[channel.name] = str(exc)
                self.failures[channel.name] = self.failures.get(channel.name, 0) + 1
                log.warning(
                    "notification not delivered", extra={"channel": channel.name, "error": str(exc)}
                )
        return results


def channels_from_config(
    reports: ReportsConfig, mqtt_publish: Callable[[str, bytes], None] | None = None
) -> list[Channel]:
    """The channels the config enables; a channel whose secret is absent is left out loudly."""
    channels: list[Channel] = []
    if reports.mqtt.enabled and mqtt_publish is not None:
        channels.append(MqttChannel(reports.mqtt.topic, mqtt_publish))
    if reports.webhook.enabled and reports.webhook.url is not None:
        try:
            url = reports.webhook.url.resolve().get_secret_value()
            channels.append(WebhookChannel(url, reports.webhook.format, reports.webhook.timeout_s))
        except SecretRefError as exc:
            log.error("webhook channel disabled", extra={"error": str(exc)})
    email = reports.email
    if email.enabled:
        password = None
        if email.password is not None:
            try:
                password = email.password.resolve().get_secret_value()
            except SecretRefError as exc:
                log.error("email password unavailable", extra={"error": str(exc)})
        channels.append(
            EmailChannel(
                email.smtp_host,
                email.smtp_port,
                email.sender,
                email.recipients,
                starttls=email.starttls,
                username=email.username,
                password=password,
            )
        )
    return channels
