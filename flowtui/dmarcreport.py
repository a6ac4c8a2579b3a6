"""``flowtui report --dmarc``: the DMARC summary as a section of the report.

The section is ``dmarc_summary`` (flowtui/core/dmarc/summary.py) over the
report's window, with ``id = "dmarc"``; this module renders it as an
80-column table, CSV rows and HTML (a daily pass-share chart in inline SVG).
Everything a reporter wrote (domains, header-from values, reverse names) is
untrusted: escaped for the terminal and for HTML.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flowtui.core.dmarc.summary import dmarc_summary, pass_spark
from flowtui.core.headers import plain_text
from flowtui.report import _csv, e, fit, register_section, svg_close, svg_open

LISTS = (("top sources", "top_sources"), ("new sources", "new_sources"), ("failing alignment", "failing_sources"))
TABLE_ROWS = 5  # sources per list in the text table


def dmarc_section(conn: Any, since: float, until: float, now: float) -> dict[str, Any]:
    """The DMARC section: reports whose period ended from ``since`` on (to ``now``)."""
    summary = dmarc_summary(conn, since_s=max(now - since, 3600.0), now=now)
    return {"id": "dmarc", "title": "DMARC aggregate reports", **summary}


def _day(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")


def _share(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _table(section: dict[str, Any]) -> str:
    lines = ["", fit(f"{section['title']}: {section['reports']} reports, "
                     f"{_day(section['since'])} .. {_day(section['until'])}")]
    if not section["domains"]:
        lines.append("  no reports in this window")
    for d in section["domains"]:
        policy = " ".join(f"{k}={plain_text(str(v))}" for k, v in d["policy"].items() if v)
        lines.append("")
        lines.append(fit(f"{plain_text(d['domain'])}  {policy}"))
        lines.append(fit(f"  {d['messages']} msgs  pass {_share(d['pass_rate'])}  fail {d['fail']}  "
                         f"sources {d['sources']}  reports {d['reports']}"))
        spark = pass_spark(d["series"])[-60:]
        lines.append(fit(f"  pass share per day |{spark}|"))
        for title, key in LISTS:
            rows = d[key][:TABLE_ROWS]
            lines.append(f"  {title}:" + ("" if rows else " none"))
            for s in rows:
                name = plain_text(s.get("rdns") or "")
                lines.append(fit(f"    {plain_text(s['ip'])[:39]:<39} {s['messages']:>8} {_share(s['pass'] / s['messages'] if s['messages'] else None):>7}  {name}"))
    return "\n".join(lines)


def _csv_rows(section: dict[str, Any]) -> str:
    rows: list[list[Any]] = [["# " + section["title"]],
                             ["domain", "list", "source_ip", "messages", "pass", "fail", "dkim_aligned",
                              "spf_aligned", "first_seen", "rdns"]]
    for d in section["domains"]:
        rows.append([d["domain"], "domain", "", d["messages"], d["pass"], d["fail"], "", "", "", ""])
        for _, key in LISTS:
            for s in d[key]:
                rows.append([d["domain"], key, s["ip"], s["messages"], s["pass"], s["fail"], s["dkim_aligned"],
                             s["spf_aligned"], _day(s.get("first_seen")), s.get("rdns") or ""])
    return _csv(rows)


def svg_pass_share(series: list[dict[str, Any]], width: int = 760, height: int = 110) -> str:
    """One bar a day: the share of messages passing DMARC on a fixed 0-100 % scale."""
    pad_l, pad_b, pad_t = 40, 16, 6
    n = max(len(series), 1)
    plot_w, plot_h = width - pad_l - 6, height - pad_b - pad_t
    bw = plot_w / n
    parts = svg_open(width, height, pad_l, pad_t, plot_h, "100%")
    for i, cell in enumerate(series):
        rate = cell["pass_rate"]
        if rate is None:
            continue
        x = pad_l + i * bw
        h = max(1.0, rate * plot_h)
        colour = "#2e8b57" if rate >= 0.9 else "#d09020" if rate >= 0.5 else "#d0342c"
        parts.append(f'<rect x="{x:.1f}" y="{pad_t + plot_h - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                     f'height="{h:.1f}" fill="{colour}"/>')
    return svg_close(parts, width, height, pad_l, series[0]["day"] if series else None,
                     series[-1]["day"] if series else None)


def _html(section: dict[str, Any]) -> str:
    out = [f"<h2>{e(section['title'])}</h2><div class=\"meta\">{section['reports']} reports whose period ended "
           f"{e(_day(section['since']))} .. {e(_day(section['until']))}; bars: share of messages passing DMARC "
           "per day</div>"]
    if not section["domains"]:
        out.append("<div class=\"card\">no reports in this window</div>")
    for d in section["domains"]:
        policy = " ".join(f"{k}={v}" for k, v in d["policy"].items() if v)
        kpis = [("messages", d["messages"]), ("pass", _share(d["pass_rate"])), ("fail", d["fail"]),
                ("sources", d["sources"]), ("reports", d["reports"])]
        tables = []
        for title, key in LISTS:
            body = "".join(
                f"<tr><td>{e(s['ip'])}</td><td>{s['messages']}</td><td>{s['pass']}</td><td>{s['fail']}</td>"
                f"<td>{e(s.get('rdns') or '')}</td><td>{e(', '.join(s.get('header_from', [])[:3]))}</td></tr>"
                for s in d[key]
            )
            tables.append(f"<div><b>{e(title)}</b>" + (
                "<table><tr><th>source</th><th>messages</th><th>pass</th><th>fail</th><th>reverse DNS</th>"
                f"<th>header from (failing)</th></tr>{body}</table>" if body else " none") + "</div>")
        out.append(
            f"<div class=\"card\"><h3>{e(d['domain'])}</h3><div class=\"meta\">{e(policy)}</div><div class=\"kpis\">"
            + "".join(f"<div class=\"kpi\"><b>{e(str(v))}</b><span>{e(k)}</span></div>" for k, v in kpis)
            + f"</div>{svg_pass_share(d['series'])}" + "".join(tables) + "</div>"
        )
    return "\n".join(out)


register_section("dmarc", table=_table, csv=_csv_rows, html=_html)
