// The audit trail (internal control): pages of entries, and a check of the hash chain.
import { api, boot, el, fmtDate, onSubmit, say, sayError } from "./common.js";

await boot("audit");
const box = document.getElementById("entries");
const verdict = document.getElementById("verdict");

function detailText(detail) {
  if (!detail) return "";
  return Object.entries(detail).filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

function entryRow(e) {
  return el("tr", { class: `outcome-${e.outcome}` },
    el("td", { class: "num" }, e.seq), el("td", {}, fmtDate(e.at)), el("td", {}, e.tenant_id || "(group)"),
    el("td", {}, e.actor), el("td", {}, e.role),
    el("td", {}, e.action), el("td", {}, `${e.target_type} ${e.target_id}`),
    el("td", {}, e.outcome === "denied" ? el("span", { class: "badge bad" }, e.outcome) : e.outcome),
    el("td", {}, e.reason || ""), el("td", {}, detailText(e.detail)));
}

async function show(afterSeq, limit, append = false) {
  const page = await api("/audit", { query: { after_seq: afterSeq, limit } });
  let table = document.getElementById("audit-table");
  if (!append || !table) {
    table = el("table", { id: "audit-table" }, el("caption", {}, "Entries, oldest first"),
      el("thead", {}, el("tr", {}, ["#", "When", "Tenant", "Who", "Role", "Action", "Target", "Outcome", "Reason", "Detail"]
        .map((h) => el("th", { scope: "col" }, h)))), el("tbody"));
    box.replaceChildren(table);
  }
  table.tBodies[0].append(...page.entries.map(entryRow));
  document.getElementById("more")?.remove();
  if (page.next_after_seq !== null) {
    box.append(el("button", { type: "button", id: "more", class: "secondary",
                              onclick: () => show(page.next_after_seq, limit, true).catch((e) => sayError(e)) },
                  "Load more"));
  }
  say(`${table.tBodies[0].rows.length} entries shown.`);
}

onSubmit(document.getElementById("verify-form"), async () => {
  const result = await api("/audit/verify");
  verdict.textContent = result.ok
    ? `The chain is intact: ${result.entries} entries verified.`
    : `The chain is BROKEN at entry ${result.first_bad_seq}: ${result.problem}`;
  verdict.className = `status ${result.ok ? "ok" : "error"}`;
});
onSubmit(document.getElementById("filter-form"), async (data) => {
  await show(Number(data.get("after_seq") || 0), Number(data.get("limit")));
});
await show(0, 100).catch((e) => sayError(e));
