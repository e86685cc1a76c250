// Search: the filters but the number live in the page's URL (so Back works); the caller number
// never does (proxy logs, browser history): it stays in the form and goes in the body of
// POST /recordings/search, as every filter does. The API returns only what the user may see,
// and the result list shows exactly that. Pages follow the API's opaque keyset cursor.
import { api, boot, el, fmtDate, fmtDuration, onSubmit, say, sayError } from "./common.js";

const FILTERS = ["number", "agent", "team", "from", "to", "tier", "tenant"];
const IN_URL = FILTERS.filter((name) => name !== "number");
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
let cursors = [null]; // cursors[i]: where page i starts (null: the first page)

function filters() {
  const params = new URLSearchParams(location.search);
  const body = {};
  for (const name of IN_URL) if (params.get(name)) body[name] = params.get(name);
  const number = form.elements.number.value.trim();
  if (number) body.number = number;
  if (body.from) body.from = toIso(body.from);
  if (body.to) body.to = toIso(body.to);
  return body;
}

async function run(index) {
  const mine = ++latest;
  const body = { ...filters(), limit: PAGE };
  if (cursors[index]) body.cursor = cursors[index];
  say("Searching…");
  let page;
  try {
    page = await api("/recordings/search", { method: "POST", body });
  } catch (error) {
    if (mine === latest) results.replaceChildren(); // never leave an older search's results on show
    throw error;
  }
  if (mine !== latest) return;
  const head = el("thead", {}, el("tr", {}, ["Started", "Tenant", "Caller", "Agent", "Team", "Direction", "Duration",
    "Copies"].map((h) => el("th", { scope: "col", class: h === "Duration" ? "num" : "" }, h))));
  cursors = cursors.slice(0, index + 1);
  if (page.next_cursor !== null) cursors.push(page.next_cursor);
  const first = index * PAGE;
  const count = page.items.length ? `Recordings ${first + 1}–${first + page.items.length}` : "No recording found";
  const table = el("table", { id: "result-table" }, el("caption", {}, count), head,
                   el("tbody", {}, page.items.map(row)));
  const nav = el("div", { class: "actions" },
    index > 0 ? el("button", { type: "button", class: "secondary", onclick: () => run(index - 1) },
                   "Previous page") : null,
    page.next_cursor !== null ? el("button", { type: "button", class: "secondary", onclick: () => run(index + 1) },
                                   "Next page") : null);
  results.replaceChildren(table, nav);
  say(`${count}.${me.numbers_masked ? " Numbers are masked for your role." : ""}`);
}

// The form shows the URL's filters; submitting puts the form's into the URL, the number aside.
// A number in an old link's URL is dropped from it at once, never sent, never shown.
const initial = new URLSearchParams(location.search);
for (const name of IN_URL) if (initial.get(name)) form.elements[name].value = initial.get(name);
if (initial.has("number")) {
  initial.delete("number");
  history.replaceState(null, "", initial.toString() ? `?${initial}` : location.pathname);
}

onSubmit(form, async (data) => {
  const params = new URLSearchParams();
  for (const name of IN_URL) if (data.get(name)) params.set(name, String(data.get(name)).trim());
  history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
  cursors = [null];
  await run(0);
});
form.addEventListener("reset", () => {
  history.replaceState(null, "", location.pathname);
  cursors = [null];
  setTimeout(() => run(0).catch(sayError)); // after the form has emptied its fields
});
await run(0).catch((error) => sayError(error));
