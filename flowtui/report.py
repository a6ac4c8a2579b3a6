"""The report: built once as a plain dict, rendered per format (table, json, csv, html).

``build_report`` returns ``{"flowtui_report": 1, ..., "sections": [...]}``;
each section is a dict with an ``id`` and a ``title``. Renderers are looked
up per section id in ``SECTION_RENDERERS`` (``register_section`` adds one);
a section without a renderer for a format is still rendered, generically,
so a section appended later (DMARC reports, ...) shows up in every format
without touching this module. Every text taken from the database (route and
host names) is escaped for the format it lands in.

Percentiles: exact over raw rows; from roll-ups (windows beyond the raw
retention) within 1 % (see ``flowtui.core.rollup``); each route says which
(``source``, ``exact``).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from flowtui.core.headers import plain_text
from flowtui.core.rollup import DAY, HOUR, Agg, trend_aggs, window_agg
from flowtui.core.stats import LOST_GLYPH, spark_cells

FORMATS = ("table", "json", "csv", "html")
WIDTH = 80
PCTS = (50, 90, 99)
FAILED_STATES = ("lost", "bounced", "junk", "send_failed", "corrupted")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(v, nd)


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def route_summary(name: str, agg: Agg, source: str, since: float) -> dict[str, Any]:
    c = agg.counts
    decided = c["count"] - c["pending"]
    out: dict[str, Any] = {
        "route": name,
        "source": source,
        "exact": agg.exact,
        "since": _iso(since),
        "sent": c["count"],
        "pending": c["pending"],
        "decided": decided,
        "delivered": c["delivered"],
        "delivered_pct": _r(100 * c["delivered"] / decided, 2) if decided else None,
        **{k: c[k] for k in ("lost", "late", "bounced", "junk", "send_failed", "corrupted")},
    }
    for m in ("submit", "transit", "total"):
        out[m] = {f"p{p}": agg.pct(m, p) for p in PCTS} | {"max": agg.pct(m, 100), "n": agg.hists[m].n}
    hops = []
    for key in agg.hops:
        idx, _, host = key.partition(":")
        med = agg.hop_median(key)
        if med is not None:
            hops.append({"hop": key, "index": int(idx), "host": host, "median_s": med, "samples": agg.hops[key].n})
    hops.sort(key=lambda h: h["index"])
    out["hops"] = hops
    out["slowest_hop"] = max(hops, key=lambda h: h["median_s"]) if hops else None
    yes, no, unknown = agg.tls["yes"], agg.tls["no"], agg.tls["unknown"]
    out["tls"] = {"hops": yes + no + unknown, "tls": yes, "plain": no, "unknown": unknown,
                  "coverage_pct": _r(100 * yes / (yes + no), 2) if yes + no else None}
    out["alerts"] = {"fired": agg.alerts_fired, "firing_s": _r(agg.firing_s, 1)}
    return out


def trend_point(start: int, agg: Agg) -> dict[str, Any]:
    c = agg.counts
    return {
        "start": _iso(start), "count": c["count"], "delivered": c["delivered"], "late": c["late"],
        "failed": sum(c[s] for s in FAILED_STATES), "lost": c["lost"],
        "p50_total": _r(agg.pct("total", 50)), "p90_total": _r(agg.pct("total", 90)),
        "alerts_fired": agg.alerts_fired,
    }


SectionBuilder = Callable[[Any, list[str], float, float, float], "dict[str, Any] | None"]
SECTION_BUILDERS: list[SectionBuilder] = []


def register_builder(builder: SectionBuilder) -> None:
    """Append ``builder(conn, routes, since, until, now) -> section dict or None`` to every
    report (in the same read snapshot), e.g. a DMARC section from its own tables."""
    if builder not in SECTION_BUILDERS:
        SECTION_BUILDERS.append(builder)


def build_report(conn: Any, routes: Iterable[str], since: float, until: float, now: float,
                 retention_s: float, title: str = "flowtui report") -> dict[str, Any]:
    """The report over [since, until) for ``routes``, read from ``conn`` (one snapshot:
    call it inside ``Store.read``). Sections: routes, trend, then those of the
    registered builders."""
    routes = list(routes)
    step = HOUR if until - since <= 14 * DAY else DAY
    summaries, trend = [], {}
    for name in routes:
        agg, split = window_agg(conn, name, since, until, now, retention_s)
        summaries.append(route_summary(name, agg, split.source, split.rollup_since))
        trend[name] = [trend_point(b, a) for b, a in trend_aggs(conn, name, split, step, now).items()]
    sections: list[dict[str, Any]] = [
        {"id": "routes", "title": "Routes", "routes": summaries},
        {"id": "trend", "title": "Hourly trend" if step == HOUR else "Daily trend", "step_s": step, "routes": trend},
    ]
    for builder in SECTION_BUILDERS:
        extra = builder(conn, routes, since, until, now)
        if extra is not None:
            sections.append(extra)
    return {
        "flowtui_report": 1,
        "title": title,
        "generated_at": _iso(now),
        "since": _iso(since),
        "until": _iso(until),
        "percentile_method": "linear between closest ranks; from roll-ups within 1% (p0/p100 exact)",
        "sections": sections,
    }


# --------------------------------------------------------------------------
# Renderer registry
# --------------------------------------------------------------------------

Renderer = Callable[[dict[str, Any]], str]
SECTION_RENDERERS: dict[str, dict[str, Renderer]] = {}


def register_section(section_id: str, **renderers: Renderer) -> None:
    """Render sections with this id with these functions (keys: table, csv, html)."""
    SECTION_RENDERERS.setdefault(section_id, {}).update(renderers)


def _renderer(section: dict[str, Any], fmt: str) -> Renderer:
    return SECTION_RENDERERS.get(section.get("id", ""), {}).get(fmt) or GENERIC[fmt]


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    if fmt == "table":
        head = fit(f"{report['title']}  {report['since']} .. {report['until']}")
        parts = [head, "=" * min(WIDTH, len(head))]
        parts += [_renderer(s, "table")(s) for s in report["sections"]]
        return "\n".join(p.rstrip("\n") for p in parts) + "\n"
    if fmt == "csv":
        return "\n".join(_renderer(s, "csv")(s) for s in report["sections"])
    if fmt == "html":
        return _html_page(report, "\n".join(_renderer(s, "html")(s) for s in report["sections"]))
    raise ValueError(f"unknown format {fmt!r}")


# --------------------------------------------------------------------------
# Text table (80 columns)
# --------------------------------------------------------------------------


def fit(text: str, width: int = WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def secs(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) < 10:
        return f"{v:.2f}s"
    if abs(v) < 100:
        return f"{v:.1f}s"
    if abs(v) < 3600:
        return f"{v / 60:.1f}m"
    return f"{v / 3600:.1f}h"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _table_routes(section: dict[str, Any]) -> str:
    lines = [fit(section["title"])]
    for r in section["routes"]:
        name = plain_text(r["route"])
        src = f"source: {r['source']}" + ("" if r["exact"] else " (±1%)")
        lines.append("")
        lines.append(fit(f"{name[: WIDTH - len(src) - 2]:<{WIDTH - len(src) - 1}} {src}"))
        lines.append(fit(f"  sent {r['sent']}  delivered {_pct(r['delivered_pct'])}  lost {r['lost']}  late {r['late']}"
                         f"  bounced {r['bounced']}  junk {r['junk']}  nosend {r['send_failed']}"))
        lines.append(f"  {'':<9}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
        for m in ("submit", "transit", "total"):
            d = r[m]
            lines.append(f"  {m:<9}" + "".join(f"{secs(d[k]):>10}" for k in ("p50", "p90", "p99", "max")))
        hop = r["slowest_hop"]
        lines.append(fit("  slowest hop  " + ("-" if hop is None else
                         f"#{hop['index']} {plain_text(hop['host'])}  median {secs(hop['median_s'])}")))
        t = r["tls"]
        lines.append(fit(f"  TLS          {_pct(t['coverage_pct'])} of {t['tls'] + t['plain']} hops"
                         + (f" ({t['unknown']} unknown)" if t["unknown"] else "")))
        a = r["alerts"]
        lines.append(f"  alerts       {a['fired']} fired, {secs(a['firing_s'])} firing")
    return "\n".join(lines)


def _downsample(values: list[float | None], width: int) -> list[float | None]:
    """At most ``width`` values: each cell the worst of the points it covers (None wins)."""
    if len(values) <= width:
        return values
    out: list[float | None] = []
    per = len(values) / width
    for i in range(width):
        chunk = values[int(i * per): int((i + 1) * per)] or [None]
        out.append(None if any(v is None for v in chunk) else max(chunk))  # type: ignore[type-var]
    return out


def _trend_values(points: list[dict[str, Any]]) -> list[float | None]:
    # p90 total per bucket; a bucket with failures and no delivery is the lost glyph
    return [p["p90_total"] if p["p90_total"] is not None else (None if p["failed"] else 0.0) for p in points]


def _table_trend(section: dict[str, Any]) -> str:
    unit = "hour" if section["step_s"] == HOUR else "day"
    lines = ["", fit(f"{section['title']}: p90 total per {unit}, {LOST_GLYPH} = failures only")]
    for name, points in section["routes"].items():
        values = _downsample(_trend_values(points), 62)
        top = max([v for v in values if v] + [0.001])
        spark = spark_cells(values, top, len(values)) if values else ""
        shown = plain_text(name)
        if len(shown) > 12:  # a long name on its own line: cut to 12 it could not be told apart
            lines.append(fit(f"  {shown}"))
            shown = ""
        lines.append(fit(f"  {shown:<12} {spark} {secs(top)}"))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------


def csv_cell(v: Any) -> Any:
    """A CSV cell: text a spreadsheet would run as a formula (=, +, -, @ first) gets a leading '."""
    if v is None:
        return ""
    if isinstance(v, str):
        v = plain_text(v)  # control characters shown as text: a CSV is often read in a terminal
        if v[:1] in ("=", "+", "-", "@"):
            return "'" + v
    return v


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for row in rows:
        w.writerow([csv_cell(v) for v in row])
    return buf.getvalue()


ROUTE_CSV_COLUMNS = (
    "route", "source", "exact", "since", "sent", "delivered", "delivered_pct", "lost", "late", "bounced",
    "junk", "send_failed", "corrupted", "pending",
    *(f"{m}_{k}" for m in ("submit", "transit", "total") for k in ("p50", "p90", "p99", "max")),
    "slowest_hop", "slowest_hop_median_s", "tls_coverage_pct", "tls_hops", "alerts_fired", "alerts_firing_s",
)


def _csv_routes(section: dict[str, Any]) -> str:
    rows: list[list[Any]] = [list(ROUTE_CSV_COLUMNS)]
    for r in section["routes"]:
        flat = dict(r)
        for m in ("submit", "transit", "total"):
            for k in ("p50", "p90", "p99", "max"):
                flat[f"{m}_{k}"] = r[m][k]
        hop = r["slowest_hop"] or {}
        flat["slowest_hop"] = hop.get("hop")
        flat["slowest_hop_median_s"] = hop.get("median_s")
        flat["tls_coverage_pct"] = r["tls"]["coverage_pct"]
        flat["tls_hops"] = r["tls"]["hops"]
        flat["alerts_fired"] = r["alerts"]["fired"]
        flat["alerts_firing_s"] = r["alerts"]["firing_s"]
        rows.append([flat.get(c) for c in ROUTE_CSV_COLUMNS])
    return _csv(rows)


def _csv_trend(section: dict[str, Any]) -> str:
    cols = ["route", "start", "count", "delivered", "late", "failed", "lost", "p50_total", "p90_total", "alerts_fired"]
    rows: list[list[Any]] = [[f"# {section['title']}"], cols]
    for name, points in section["routes"].items():
        rows += [[name] + [p[c] for c in cols[1:]] for p in points]
    return _csv(rows)


# --------------------------------------------------------------------------
# HTML: one self-contained file, inline SVG, no network, every text escaped
# --------------------------------------------------------------------------

def e(text: object) -> str:
    """HTML-escaped, with control characters shown as text (the page may be printed to a terminal)."""
    return html.escape(plain_text(text))


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d2430;background:#f7f8fa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px}
.meta{color:#596273;font-size:13px}
.card{background:#fff;border:1px solid #d5dae1;border-radius:6px;padding:14px 18px;margin:14px 0}
.card h3{margin:0 0 8px;font-size:16px;word-break:break-all}
.kpis{display:flex;flex-wrap:wrap;gap:18px;margin:6px 0 10px}
.kpi b{display:block;font-size:20px} .kpi span{color:#596273;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #e6e9ee} td:first-child,th:first-child{text-align:left}
.bad{color:#b3261e} svg{display:block;margin-top:8px;background:#fbfcfd;border:1px solid #e6e9ee}
pre{background:#fff;border:1px solid #d5dae1;padding:10px;overflow:auto}
"""


def _html_page(report: dict[str, Any], body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{e(report['title'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>{e(report['title'])}</h1><div class=\"meta\">{e(report['since'])} .. {e(report['until'])} "
        f"(generated {e(report['generated_at'])}); {e(report.get('percentile_method', ''))}</div>\n"
        f"{body}\n</body></html>\n"
    )


def _html_routes(section: dict[str, Any]) -> str:
    out = [f"<h2>{e(section['title'])}</h2>"]
    for r in section["routes"]:
        kpis = [("sent", str(r["sent"])), ("delivered", _pct(r["delivered_pct"])), ("lost", str(r["lost"])),
                ("late", str(r["late"])), ("bounced", str(r["bounced"])), ("junk", str(r["junk"])),
                ("TLS hops", _pct(r["tls"]["coverage_pct"])),
                ("alerts", f"{r['alerts']['fired']} ({secs(r['alerts']['firing_s'])} firing)")]
        rows = "".join(
            f"<tr><td>{m}</td>" + "".join(f"<td>{secs(r[m][k])}</td>" for k in ("p50", "p90", "p99", "max")) + "</tr>"
            for m in ("submit", "transit", "total")
        )
        hop = r["slowest_hop"]
        hop_text = "-" if hop is None else f"#{hop['index']} {hop['host']}, median {secs(hop['median_s'])}"
        hops = "".join(f"<tr><td>#{h['index']} {e(h['host'])}</td><td>{secs(h['median_s'])}</td><td>{h['samples']}</td></tr>"
                       for h in r["hops"])
        out.append(
            f"<div class=\"card\"><h3>{e(r['route'])}</h3><div class=\"meta\">source: {e(r['source'])}"
            f"{'' if r['exact'] else ' (percentiles within 1%)'}</div><div class=\"kpis\">"
            + "".join(f"<div class=\"kpi\"><b>{e(v)}</b><span>{e(k)}</span></div>" for k, v in kpis)
            + f"</div><table><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{rows}</table>"
            f"<div>slowest hop: {e(hop_text)}</div>"
            + (f"<table><tr><th>hop</th><th>median delay</th><th>samples</th></tr>{hops}</table>" if hops else "")
            + "</div>"
        )
    return "\n".join(out)


def svg_trend(points: list[dict[str, Any]], width: int = 760, height: int = 160) -> str:
    """Bars of p90 total per bucket, a p50 line, and a red tick where probes failed."""
    pad_l, pad_b, pad_t = 46, 18, 8
    n = max(len(points), 1)
    top = max([p["p90_total"] or 0 for p in points] + [0.001])
    plot_w, plot_h = width - pad_l - 6, height - pad_b - pad_t
    bw = plot_w / n
    parts = svg_open(width, height, pad_l, pad_t, plot_h, secs(top))
    line = []
    for i, p in enumerate(points):
        x = pad_l + i * bw
        if p["p90_total"] is not None:
            h = max(1.0, p["p90_total"] / top * plot_h)
            parts.append(f'<rect x="{x:.1f}" y="{pad_t + plot_h - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{h:.1f}" fill="#4a7fd4"/>')
        if p["p50_total"] is not None:
            line.append(f"{x + bw / 2:.1f},{pad_t + plot_h - p['p50_total'] / top * plot_h:.1f}")
        if p["failed"]:
            parts.append(f'<rect x="{x:.1f}" y="{pad_t + plot_h + 3}" width="{max(bw - 1, 2):.1f}" height="6" '
                         f'fill="#d0342c"/>')
    if len(line) > 1:
        parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#f0a030" stroke-width="1.5"/>')
    return svg_close(parts, width, height, pad_l, points[0]["start"] if points else None,
                     points[-1]["start"] if points else None)


def svg_open(width: int, height: int, pad_l: int, pad_t: int, plot_h: float, top_label: str) -> list[str]:
    """A chart's frame: the svg element, the y axis's top and 0 labels, the baseline."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">',
            f'<text x="4" y="{pad_t + 10}" font-size="11" fill="#596273">{e(top_label)}</text>',
            f'<text x="4" y="{pad_t + plot_h}" font-size="11" fill="#596273">0</text>',
            f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 6}" y2="{pad_t + plot_h}" stroke="#8a94a6"/>']


def svg_close(parts: list[str], width: int, height: int, pad_l: int, first: str | None, last: str | None) -> str:
    """The time axis's two ends under the chart, and the closed svg."""
    if first is not None and last is not None:
        parts.append(f'<text x="{pad_l}" y="{height - 1}" font-size="10" fill="#596273">{e(first)}</text>')
        parts.append(f'<text x="{width - 6}" y="{height - 1}" font-size="10" fill="#596273" text-anchor="end">'
                     f'{e(last)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html_trend(section: dict[str, Any]) -> str:
    out = [f"<h2>{e(section['title'])}</h2><div class=\"meta\">bars: p90 total; line: p50 total; "
           "red: buckets with failed probes</div>"]
    for name, points in section["routes"].items():
        out.append(f"<div class=\"card\"><h3>{e(name)}</h3>{svg_trend(points)}</div>")
    return "\n".join(out)


# --------------------------------------------------------------------------
# Generic renderers, for sections nobody registered
# --------------------------------------------------------------------------


def _rows_of(value: Any) -> list[dict[str, Any]] | None:
    for v in value.values() if isinstance(value, dict) else ():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            return v
    return None


def _scalar(v: Any) -> str:
    return "-" if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _generic_table(section: dict[str, Any]) -> str:
    lines = ["", fit(plain_text(str(section.get("title", section.get("id", "section")))))]
    for k, v in section.items():
        if k not in ("id", "title") and not isinstance(v, (list, dict)):
            lines.append(fit(f"  {plain_text(str(k))}: {plain_text(_scalar(v))}"))
    for row in _rows_of(section) or []:
        lines.append(fit("  " + "  ".join(f"{plain_text(str(k))}={plain_text(_scalar(v))}" for k, v in row.items()
                                          if not isinstance(v, (list, dict)))))
    return "\n".join(lines)


def _generic_csv(section: dict[str, Any]) -> str:
    rows = _rows_of(section)
    if rows:
        cols = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
        return _csv([[f"# {section.get('title', section.get('id', ''))}"], cols] + [[r.get(c) for c in cols] for r in rows])
    return _csv([[f"# {section.get('title', section.get('id', ''))}"]] +
                [[k, _scalar(v)] for k, v in section.items() if k not in ("id", "title")])


def _generic_html(section: dict[str, Any]) -> str:
    title = f"<h2>{e(str(section.get('title', section.get('id', ''))))}</h2>"
    rows = _rows_of(section)
    if rows:
        cols = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
        head = "".join(f"<th>{e(str(c))}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(_scalar(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
        return f"{title}<div class=\"card\"><table><tr>{head}</tr>{body}</table></div>"
    return f"{title}<pre>{e(json.dumps(section, indent=1, ensure_ascii=False))}</pre>"


GENERIC: dict[str, Renderer] = {"table": _generic_table, "csv": _generic_csv, "html": _generic_html}

register_section("routes", table=_table_routes, csv=_csv_routes, html=_html_routes)
register_section("trend", table=_table_trend, csv=_csv_trend, html=_html_trend)

