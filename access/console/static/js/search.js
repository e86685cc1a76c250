// Search: the filters live in the page's URL (so Back works); the API returns only what the
// user may see, and the result list shows exactly that.
import { api, boot, el, fmtDate, fmtDuration, onSubmit, say, sayError } from "./common.js";

const FILTERS = ["number", "agent", "team", "from", "to", "tier", "tenant"];
const PAGE = 25;
const form = document.getElementById("search");
const results = document.getElementById("results");

const me = await boot("search");

// datetime-local values are read as UTC, as labelled.
const toIso = (value) => (!value ? "" : value.length === 16 ? `${value}:00Z` : `${value}Z`);

function row(item) {
  const open = el("a", { href: `recording.html?id=${encodeURIComponent(item.id)}`,
                         "aria-label": `Open the call of ${fmtDate(item.started_at)} with agent ${item.agent_id}` },
                  fmtDate(item.started_at));
  const tiers = item.copies.map((c) => el("span", { class: `badge${c.hold ? " warn" : ""}` },
                                          c.hold ? `${c.tier} (held)` : c.tier));
  return el("tr", {},
    el("td", {}, open), el("td", {}, item.tenant),
    el("td", { class: "caller" }, item.caller_number,
       item.numbers_masked ? el("span", { class: "visually-hidden" }, " (masked)") : null),
    el("td", {}, item.agent_id), el("td", {}, item.team_id || "—"), el("td", {}, item.direction),
    el("td", { class: "num" }, fmtDuration(item.duration_ms)),
    el("td", {}, tiers, item.restricted ? el("span", { class: "badge bad" }, "restricted") : null));
}

let latest = 0; // a slower, older search must not overwrite a newer one's results

async function run(offset) {
  const mine = ++latest;
  const params = new URLSearchParams(location.search);
  const query = { limit: PAGE, offset };
  for (const name of FILTERS) query[name] = params.get(name) || "";
  query.from = toIso(query.from);
  query.to = toIso(query.to);
  say("Searching…");
  let page;
  try {
    page = await api("/recordings", { query });
  } catch (error) {
    if (mine === latest) results.replaceChildren(); // never leave an older search's results on show
    throw error;
  }
  if (mine !== latest) return;
  const head = el("thead", {}, el("tr", {}, ["Started", "Tenant", "Caller", "Agent", "Team", "Direction", "Duration",
    "Copies"].map((h) => el("th", { scope: "col", class: h === "Duration" ? "num" : "" }, h))));
  const count = page.items.length ? `Recordings ${offset + 1}–${offset + page.items.length}` : "No recording found";
  const table = el("table", { id: "result-table" }, el("caption", {}, count), head,
                   el("tbody", {}, page.items.map(row)));
  const nav = el("div", { class: "actions" },
    offset > 0 ? el("button", { type: "button", class: "secondary", onclick: () => run(Math.max(0, offset - PAGE)) },
                    "Previous page") : null,
    page.next_offset !== null ? el("button", { type: "button", class: "secondary", onclick: () => run(page.next_offset) },
                                   "Next page") : null);
  results.replaceChildren(table, nav);
  say(`${count}.${me.numbers_masked ? " Numbers are masked for your role." : ""}`);
}

// The form shows the URL's filters; submitting puts the form's into the URL.
const initial = new URLSearchParams(location.search);
for (const name of FILTERS) if (initial.get(name)) form.elements[name].value = initial.get(name);

onSubmit(form, async (data) => {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (data.get(name)) params.set(name, String(data.get(name)).trim());
  history.replaceState(null, "", `?${params}`);
  await run(0);
});
form.addEventListener("reset", () => {
  history.replaceState(null, "", location.pathname);
  setTimeout(() => run(0).catch(sayError)); // after the form has emptied its fields
});
await run(0).catch((error) => sayError(error));
