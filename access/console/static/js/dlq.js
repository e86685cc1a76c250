// Dead letters (GET /dlq): counts by reason and tenant for IT and internal control; no number, no audio.
import { api, boot, el, fmtDate, sayError } from "./common.js";

await boot("dlq");

function table(groups) {
  const head = ["Reason", "Tenant", "Dead letters", "Oldest"];
  return el("table", { id: "dlq-table" }, el("caption", {}, "Dead letters by reason and tenant"),
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, groups.map((g) => el("tr", {}, el("td", {}, g.reason), el("td", {}, g.tenant),
      el("td", { class: "num" }, g.count), el("td", {}, fmtDate(g.oldest))))));
}

try {
  const dlq = await api("/dlq");
  document.getElementById("asof").textContent = `As of ${fmtDate(dlq.generated_at)}: ${dlq.total} dead letters.`;
  document.getElementById("table").replaceChildren(dlq.groups.length ? table(dlq.groups)
    : el("p", {}, "No dead letters."));
} catch (error) {
  sayError(error);
}
