"""Alert notifiers: terminal bell, external command, webhook (HTTP POST of JSON).

A notifier never raises: ``send`` returns None when it worked and a one-line
reason when it did not (the caller logs it and publishes ``NotifierFailed``).
Blocking work (urllib) runs in a thread; commands run as their own process
group and are killed, group and all, when they outlast the timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import TextIO

from flowtui.core.model import SEVERITIES, NotifierSettings
from flowtui.core.storage import AlertRecord

RETRY_BASE_S = 0.5  # webhook retries wait 0.5s, 1s, 2s, ...


def _iso(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_fields(event: str, alert: AlertRecord) -> dict[str, str]:
    """The alert as flat strings (the command's FLOWTUI_ALERT_* variables, lower-cased here)."""
    return {
        "event": event,  # "fired", "escalated" or "resolved"
        "id": alert.id,
        "rule": alert.rule,
        "route": alert.route or "",
        "severity": alert.severity,
        "state": alert.state,
        "message": alert.message,
        "fired_at": _iso(alert.fired_at),
        "resolved_at": _iso(alert.resolved_at),
    }


def webhook_body(fmt: str, event: str, alert: AlertRecord) -> dict[str, object]:
    fields = alert_fields(event, alert)
    where = f" on {alert.route}" if alert.route else ""
    title = f"flowtui {alert.severity.upper()} {event}: {alert.rule}{where}"
    if fmt == "slack":
        return {"text": f"{title}\n{alert.message}"}
    if fmt == "teams":  # an Office 365 connector MessageCard
        return {
            "@type": "MessageCard", "@context": "https://schema.org/extensions",
            "summary": title, "title": title, "text": alert.message,
            "themeColor": {"crit": "D00000", "warn": "FFA500"}.get(alert.severity, "808080")
            if event != "resolved" else "2EB886",
        }
    return {"flowtui_alert": fields}


class Notifier:
    name = "notifier"

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings

    def wants(self, event: str, alert: AlertRecord) -> bool:
        if event == "resolved" and not self.settings.on_resolve:
            return False
        return SEVERITIES.index(alert.severity) >= SEVERITIES.index(self.settings.min_severity)

    async def send(self, event: str, alert: AlertRecord) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError


class BellNotifier(Notifier):
    name = "bell"

    def __init__(self, settings: NotifierSettings, stream: TextIO) -> None:
        super().__init__(settings)
        self.stream = stream

    def wants(self, event: str, alert: AlertRecord) -> bool:
        return event == "fired" and super().wants(event, alert)

    async def send(self, event: str, alert: AlertRecord) -> str | None:
        try:
            self.stream.write("\a")
            self.stream.flush()
        except (OSError, ValueError) as exc:
            return f"could not ring: {exc}"
        return None


class CommandNotifier(Notifier):
    name = "command"

    async def send(self, event: str, alert: AlertRecord) -> str | None:
        env = dict(os.environ)
        env.update({f"FLOWTUI_ALERT_{k.upper()}": v for k, v in alert_fields(event, alert).items()})
        try:
            proc = await asyncio.create_subprocess_shell(
                self.settings.command or "", env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            )
        except OSError as exc:
            return f"could not run the command: {exc.strerror or exc}"
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                _, err = await proc.communicate()
        except TimeoutError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            return f"the command did not finish within {self.settings.timeout_s:g}s (killed)"
        except asyncio.CancelledError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        if proc.returncode != 0:
            last = (err or b"").decode("utf-8", "replace").strip().splitlines()
            tail = f": {last[-1][:200]}" if last else ""
            return f"the command failed with exit code {proc.returncode}{tail}"
        return None


class WebhookNotifier(Notifier):
    name = "webhook"

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(
            self.settings.url or "", data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "flowtui"},
        )
        with urllib.request.urlopen(req, timeout=self.settings.timeout_s) as resp:  # noqa: S310 - http(s) only (config)
            resp.read(65536)

    async def send(self, event: str, alert: AlertRecord) -> str | None:
        body = json.dumps(webhook_body(self.settings.format, event, alert)).encode()
        problem = None
        for attempt in range(self.settings.retries + 1):
            if attempt:
                await asyncio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
            try:
                async with asyncio.timeout(self.settings.timeout_s + 1.0):
                    await asyncio.to_thread(self._post, body)
                return None
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code} {exc.reason}"
            except (TimeoutError, OSError) as exc:  # URLError is an OSError
                reason = getattr(exc, "reason", None) or exc
                problem = "timed out" if isinstance(exc, TimeoutError) or "timed out" in str(reason) else str(reason)
        tries = self.settings.retries + 1
        return f"POST {self.settings.url} failed after {tries} attempt{'s' if tries > 1 else ''}: {problem}"


def build_notifiers(settings: tuple[NotifierSettings, ...], bell_stream: TextIO | None = None) -> list[Notifier]:
    """The notifiers of a config; "log" is the printer's job (headless or TUI), not one of these."""
    out: list[Notifier] = []
    for s in settings:
        if s.kind == "command":
            out.append(CommandNotifier(s))
        elif s.kind == "webhook":
            out.append(WebhookNotifier(s))
        elif s.kind == "bell" and bell_stream is not None:
            out.append(BellNotifier(s, bell_stream))
    return out
