"""The DMARC screen: who sends mail as our domains, from the stored aggregate reports.

Per domain: the DMARC pass share per day (a text sparkline on a fixed 0-100 %
scale), then one table of sources: top by volume, new (first seen within a
week), or failing alignment. Everything a reporter wrote (domains, names, IPs)
is untrusted and goes through ``safe_text`` before it is shown. The summary is
read in a thread worker; reverse DNS of the sources shown is looked up in
another (when the app has a resolver) and cached in the store.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from flowtui.core.dmarc.summary import dmarc_summary, pass_spark
from flowtui.core.headers import safe_text
from flowtui.ui.screens import ThemedScreen

WINDOWS = (("7d", 7 * 86400), ("30d", 30 * 86400), ("90d", 90 * 86400))
VIEWS = (("top", "top_sources", "top sources by volume"), ("new", "new_sources", "new sources (first seen this week)"),
         ("failing", "failing_sources", "sources failing alignment"))
COLUMNS = (("ip", "source", 20), ("rdns", "reverse DNS", 18), ("messages", "msgs", 7), ("pass", "pass", 6),
           ("fail", "fail", 6), ("first", "first seen", 10))


class DmarcLoaded(Message):
    """The DMARC summary was read from the store (in a thread)."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__()
        self.summary = summary


class DmarcNamesResolved(Message):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count


_BARE_BRACKET = re.compile(r"(?<!\\)\[")


def untrusted(text: object) -> str:
    """Reporter text for a Static (Textual markup): ``safe_text``, and then every "["
    left bare escaped too. safe_text escapes whole [tags] (enough for Rich, which the
    DataTable uses); Textual's own parser also takes a fragment such as "[/x" followed
    by our markup as a tag, and would refuse the whole line."""
    return _BARE_BRACKET.sub(r"\\[", safe_text(text))


def _day(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def fit_series(series: list[dict], width: int) -> list[dict]:
    """Daily cells pooled into at most ``width`` cells (the newest cell ends today)."""
    if len(series) <= width:
        return series
    per = -(-len(series) // width)  # days per cell, rounded up
    out = []
    for end in range(len(series), 0, -per):
        chunk = series[max(0, end - per):end]
        m = sum(c["messages"] for c in chunk)
        p = sum(c["pass"] for c in chunk)
        out.append({"day": chunk[-1]["day"], "messages": m, "pass": p, "pass_rate": (p / m) if m else None})
    return out[::-1]


class DmarcScreen(ThemedScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "view(0)", "Top"),
        Binding("2", "view(1)", "New"),
        Binding("3", "view(2)", "Failing"),
        Binding("right_square_bracket", "domain(1)", "Next domain"),
        Binding("left_square_bracket", "domain(-1)", "Prev domain", show=False),
        Binding("w", "window", "Window"),
        Binding("r", "reload", "Fetch now", show=False),
    ]

    def __init__(self, window: int = 1) -> None:
        super().__init__()
        self.window = window
        self.view = 0
        self.domain_index = 0
        self.summary: dict[str, Any] | None = None
        self.loaded = False
        self._resolving = False

    def compose(self) -> ComposeResult:
        yield Static(id="dmarc-title", classes="title")
        yield Static(id="dmarc-domains")
        yield Static(id="dmarc-view", classes="subtitle")
        yield Static(id="dmarc-status")
        yield DataTable(id="dmarc-sources", cursor_type="row")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        t = self.query_one("#dmarc-sources", DataTable)
        for key, label, width in COLUMNS:
            t.add_column(label, key=key, width=width)
        self.reload()
        self._status()
        self.set_interval(2.0, self._status, name="dmarc collector status")

    def _status(self) -> None:
        """One line: what the collector did last (it runs in the app, not here)."""
        collector = getattr(self.app, "dmarc", None)
        if collector is None:
            text = "no \\[dmarc] mailbox configured: reports come from `flowtui dmarc import`"
        else:
            when = "-" if collector.last_round_at is None else datetime.fromtimestamp(
                collector.last_round_at, timezone.utc).strftime("%H:%M:%SZ")
            text = f"collector {collector.state} {untrusted(collector.detail)} (last look {when}, r: now)"
        self.query_one("#dmarc-status", Static).update(text)

    def on_screen_resume(self) -> None:
        self.reload()

    # ---- data
    def reload(self) -> None:
        self._load()

    @work(thread=True, group="dmarc-read", exclusive=True, exit_on_error=False, description="read DMARC reports")
    def _load(self) -> None:
        app = self.app
        since = WINDOWS[self.window][1]
        now = app.clock()  # type: ignore[attr-defined]
        days = since // 86400  # one cell a day over the whole window; fitted to the width when drawn
        summary = app.store.read(  # type: ignore[attr-defined]
            lambda conn: dmarc_summary(conn, since_s=since, now=now, top=50, days=days))
        self.post_message(DmarcLoaded(summary))

    def on_dmarc_loaded(self, message: DmarcLoaded) -> None:
        self.summary = message.summary
        self.loaded = True
        if self.domain_index >= len(self.summary["domains"]):
            self.domain_index = 0
        self.rerender()
        lookup = getattr(self.app, "dmarc_lookup", None)
        if lookup is not None and self.summary["unresolved"] and not self._resolving:
            self._resolving = True
            self._resolve(self.summary["unresolved"][:50], lookup)

    @work(thread=True, group="dmarc-rdns", exit_on_error=False, description="reverse DNS of DMARC sources")
    def _resolve(self, ips: list[str], lookup) -> None:  # noqa: ANN001
        from flowtui.core.dmarc.rdns import resolve_missing

        try:
            found = resolve_missing(self.app.store, ips, lookup)  # type: ignore[attr-defined]
        finally:
            self._resolving = False
        self.post_message(DmarcNamesResolved(len(found)))

    def on_dmarc_names_resolved(self, message: DmarcNamesResolved) -> None:
        if message.count:
            self.reload()

    # ---- actions
    def action_view(self, i: int) -> None:
        self.view = i
        self.rerender()

    def action_domain(self, step: int) -> None:
        if self.summary and self.summary["domains"]:
            self.domain_index = (self.domain_index + step) % len(self.summary["domains"])
            self.rerender()

    def action_window(self) -> None:
        self.window = (self.window + 1) % len(WINDOWS)
        self.reload()

    def action_reload(self) -> None:
        collector = getattr(self.app, "dmarc", None)
        if collector is not None:
            collector.wake.set()  # look in the folder now; an import reloads this screen
        self.reload()

    # ---- drawing
    def rerender(self) -> None:
        if not self.loaded or self.summary is None:
            return
        c = self.colours()
        s = self.summary
        domains = s["domains"]
        wname = WINDOWS[self.window][0]
        title = self.query_one("#dmarc-title", Static)
        if not domains:
            title.update(f"[b]DMARC[/b]  window {wname}  no reports (w: window)")
            self.query_one("#dmarc-domains", Static).update("")
            self.query_one("#dmarc-view", Static).update("")
            self.query_one("#dmarc-sources", DataTable).clear()
            return
        d = domains[self.domain_index]
        pol = " ".join(f"{k}={untrusted(v)}" for k, v in d["policy"].items() if v)
        title.update(
            f"[b]DMARC[/b] {wname}  {s['reports']} reports  "
            f"[b]{untrusted(d['domain'])}[/b] ({self.domain_index + 1}/{len(domains)})  {pol}"
        )
        width = max(8, self.size.width - 34) if self.size.width else 30
        lines = []
        for i, dom in enumerate(domains[:6]):
            rate = dom["pass_rate"]
            colour = c.get("ok" if rate is not None and rate >= 0.98 else "warn" if rate is not None and rate >= 0.9 else "crit", "")
            mark = "▶" if i == self.domain_index else " "
            spark = pass_spark(fit_series(dom["series"], width))
            name = untrusted(dom["domain"][:16])  # cut before escaping: never half an escape
            name += " " * max(0, 16 - len(dom["domain"][:16]))
            lines.append(f"{mark}{name} [{colour}]{_pct(rate):>4}[/] {dom['messages']:>7} {spark}")
        if len(domains) > 6:
            lines.append(f"  … {len(domains) - 6} more domains ( ] )")
        self.query_one("#dmarc-domains", Static).update("\n".join(lines))
        _, key, label = VIEWS[self.view]
        views = "  ".join(f"[b]\\[{i + 1} {n}][/b]" if i == self.view else f"{i + 1} {n}" for i, (n, _, _) in enumerate(VIEWS))
        self.query_one("#dmarc-view", Static).update(f"{label}   {views}")
        t = self.query_one("#dmarc-sources", DataTable)
        rows = d[key]
        wanted = [r["ip"] for r in rows]
        current = [row.key.value for row in t.ordered_rows]
        if current != wanted:
            t.clear()
            for r in rows:
                t.add_row(*self._cells(r, c), key=r["ip"], height=1)
        else:
            for r in rows:
                for (col, _, _), value in zip(COLUMNS, self._cells(r, c)):
                    t.update_cell(r["ip"], col, value)

    @staticmethod
    def _cells(r: dict[str, Any], c: dict[str, str]) -> tuple[str, ...]:
        fail = f"[{c.get('crit', '')}]{r['fail']}[/]" if r["fail"] else "0"
        return (safe_text(r["ip"]), safe_text(r.get("rdns") or "-"), str(r["messages"]), str(r["pass"]), fail,
                _day(r.get("first_seen")))
