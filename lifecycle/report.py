"""``callvault lifecycle report``: per tenant and tier, what is stored now and what expires soon.

The numbers come from one grouped query; the chart is a self-contained HTML page with inline
SVG (no script, no network), so a person can open it anywhere, offline.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from storage.catalog import tables as t

HORIZONS = (7, 30, 90)


@dataclass(frozen=True)
class ReportRow:
    tenant: str
    tier: str
    copies: int
    bytes: int
    held: int
    expiring: dict[int, int]  # days -> copies expiring within that many days (unheld)


def lifecycle_report(conn: sa.Connection, *, now: datetime, tenants: list[str] | None = None) -> list[ReportRow]:
    c, r = t.copies, t.recordings
    unheld = c.c.hold == sa.false()
    columns = [r.c.tenant_id, c.c.tier, sa.func.count().label("copies"),
               sa.func.coalesce(sa.func.sum(c.c.size_bytes), 0).label("bytes"),
               sa.func.sum(sa.case((c.c.hold == sa.true(), 1), else_=0)).label("held")]
    for days in HORIZONS:
        soon = sa.and_(unheld, c.c.expires_at <= now + timedelta(days=days))
        columns.append(sa.func.sum(sa.case((soon, 1), else_=0)).label(f"in_{days}"))
    query = sa.select(*columns).join(r, r.c.id == c.c.recording_id).group_by(r.c.tenant_id, c.c.tier) \
        .order_by(r.c.tenant_id, c.c.tier)
    if tenants is not None and "*" not in tenants:
        query = query.where(r.c.tenant_id.in_(tenants))
    return [ReportRow(row.tenant_id, row.tier, row.copies, int(row.bytes), int(row.held or 0),
                      {d: int(getattr(row, f"in_{d}") or 0) for d in HORIZONS}) for row in conn.execute(query)]


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} TB"


def text_table(rows: list[ReportRow]) -> str:
    head = ["tenant", "tier", "copies", "bytes", "held"] + [f"expire ≤{d}d" for d in HORIZONS]
    body = [[r.tenant, r.tier, str(r.copies), human_bytes(r.bytes), str(r.held)]
            + [str(r.expiring[d]) for d in HORIZONS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body]) if body else \
        "no copies stored"


def html_chart(rows: list[ReportRow], *, now: datetime) -> str:
    """A grouped horizontal bar chart: copies now and expiring within 7/30/90 days, per tenant/tier."""
    series = [("stored now", "#2f6690", lambda r: r.copies)] + [
        (f"expire ≤{d} days", colour, (lambda d: lambda r: r.expiring[d])(d))
        for d, colour in zip(HORIZONS, ("#d1495b", "#edae49", "#66a182"))]
    peak = max([r.copies for r in rows] + [1])
    bar_h, gap, label_w, chart_w = 14, 10, 260, 520
    height = len(rows) * (len(series) * bar_h + gap) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + chart_w + 80}" height="{height}" '
             f'role="img" aria-label="Copies stored and expiring per tenant and tier">']
    y = 10
    for row in rows:
        parts.append(f'<text x="0" y="{y + bar_h * 2}" font-size="13">{html.escape(row.tenant)} · '
                     f'{html.escape(row.tier)}</text>')
        for name, colour, value in series:
            v = value(row)
            w = chart_w * v / peak
            parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}">'
                         f'<title>{html.escape(name)}: {v}</title></rect>'
                         f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 3}" font-size="11">{v}</text>')
            y += bar_h
        y += gap
    parts.append("</svg>")
    legend = "".join(f'<li><span style="background:{c}"></span>{html.escape(n)}</li>' for n, c, _ in series)
    table_rows = "".join(
        f"<tr><td>{html.escape(r.tenant)}</td><td>{html.escape(r.tier)}</td><td>{r.copies}</td>"
        f"<td>{human_bytes(r.bytes)}</td><td>{r.held}</td>" + "".join(f"<td>{r.expiring[d]}</td>" for d in HORIZONS)
        + "</tr>" for r in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>callvault lifecycle report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}} ul{{list-style:none;padding:0;display:flex;gap:1.5rem}}
li span{{display:inline-block;width:12px;height:12px;margin-right:6px}} table{{border-collapse:collapse;margin-top:1.5rem}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}} td:nth-child(-n+2),th:nth-child(-n+2){{text-align:left}}</style>
</head><body><h1>Lifecycle report</h1><p>As of {now:%Y-%m-%d %H:%M} UTC. Held copies never expire.</p>
<ul aria-label="legend">{legend}</ul>{''.join(parts)}
<table><caption>Copies per tenant and tier</caption><thead><tr><th scope="col">tenant</th><th scope="col">tier</th>
<th scope="col">copies</th><th scope="col">bytes</th><th scope="col">held</th>
{''.join(f'<th scope="col">expire ≤{d}d</th>' for d in HORIZONS)}</tr></thead><tbody>{table_rows}</tbody></table>
</body></html>
"""
