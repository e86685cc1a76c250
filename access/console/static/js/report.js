// The lifecycle report: the chart of `callvault lifecycle report --html` (lifecycle/report.py
// html_chart: grouped horizontal bars per tenant and tier), drawn here from /lifecycle/report.
import { api, boot, el, fmtBytes, fmtDate, say, sayError } from "./common.js";

await boot("report");
const SVG = "http://www.w3.org/2000/svg";
const HORIZONS = ["7", "30", "90"];
const SERIES = [["stored now", "#2f6690", (r) => r.copies],
  ...HORIZONS.map((d, i) => [`expire ≤${d} days`, ["#d1495b", "#edae49", "#66a182"][i], (r) => r.expiring[d] || 0])];

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function chart(rows) {
  const peak = Math.max(1, ...rows.map((r) => r.copies));
  const barH = 14, gap = 10, labelW = 260, chartW = 520;
  const height = rows.length * (SERIES.length * barH + gap) + 40;
  const root = svg("svg", { width: labelW + chartW + 80, height, role: "img", id: "report-chart",
                            "aria-label": "Copies stored and expiring per tenant and tier" });
  let y = 10;
  for (const row of rows) {
    root.append(svg("text", { x: 0, y: y + barH * 2, "font-size": 13 }, `${row.tenant} · ${row.tier}`));
    for (const [name, colour, value] of SERIES) {
      const v = value(row);
      const w = (chartW * v) / peak;
      const rect = svg("rect", { x: labelW, y, width: w.toFixed(1), height: barH - 2, fill: colour });
      rect.append(svg("title", {}, `${name}: ${v}`));
      root.append(rect, svg("text", { x: (labelW + w + 4).toFixed(1), y: y + barH - 3, "font-size": 11 }, v));
      y += barH;
    }
    y += gap;
  }
  return root;
}

function table(rows) {
  const head = ["Tenant", "Tier", "Copies", "Bytes", "Held", ...HORIZONS.map((d) => `Expire ≤${d}d`)];
  return el("table", { id: "report-table" }, el("caption", {}, "Copies per tenant and tier"),
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, el("td", {}, r.tenant), el("td", {}, r.tier),
      el("td", { class: "num" }, r.copies), el("td", { class: "num" }, fmtBytes(r.bytes)),
      el("td", { class: "num" }, r.held),
      HORIZONS.map((d) => el("td", { class: "num" }, r.expiring[d] || 0))))));
}

try {
  const report = await api("/lifecycle/report");
  document.getElementById("asof").textContent =
    `As of ${fmtDate(report.generated_at)}, tenants ${report.tenants.join(", ")}. Held copies never expire.`;
  const drawn = report.rows.length ? chart(report.rows) : el("p", {}, "No copies stored.");
  document.getElementById("chart").replaceChildren(drawn);
  document.getElementById("table").replaceChildren(table(report.rows));
} catch (error) {
  sayError(error);
}
