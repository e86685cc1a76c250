// A recording: its metadata, its copies with retention and holds, a player, and the actions
// the user's role may take. Actions the policy refuses are not drawn at all; the API would
// refuse them anyway (and audit the attempt).
import { api, boot, el, field, fmtBytes, fmtDate, fmtDuration, onSubmit, say, sayError, token } from "./common.js";

const me = await boot("search");
const id = new URLSearchParams(location.search).get("id") || "";
const summary = document.getElementById("summary");
const copiesBox = document.getElementById("copies");
const actionsBox = document.getElementById("actions");
const audio = document.getElementById("player");
const nowPlaying = document.getElementById("now-playing");
let data = null;
let playing = null; // {copy, expires}

async function load() {
  data = await api(`/console/api/recordings/${encodeURIComponent(id)}`);
  render();
}

function render() {
  const rec = data.recording;
  document.getElementById("title").textContent = `Call ${rec.external_id}`;
  document.title = `Call ${rec.external_id} · callvault`;
  renderSummary(rec);
  renderCopies(rec, data.actions);
  renderActions(rec, data.actions);
}

function renderSummary(rec) {
  const rows = [
    ["Tenant", rec.tenant], ["Started", fmtDate(rec.started_at)], ["Direction", rec.direction],
    ["Caller", rec.numbers_masked ? `${rec.caller_number} (masked)` : rec.caller_number],
    ["Agent", rec.agent_id], ["Team", rec.team_id || "—"], ["Duration", fmtDuration(rec.duration_ms)],
    ["Audio", rec.audio_format],
    ["Retained until", rec.retained_until ? fmtDate(rec.retained_until) : "—"],
    ["Legal hold", rec.held ? "yes (held copies never expire)" : "no"],
    ["Restricted", rec.restricted ? `yes, since ${fmtDate(rec.restricted_at)}: internal control only` : "no"],
    ["Silenced spans", rec.redactions.length
      ? rec.redactions.map((r) => `${(r.start_ms / 1000).toFixed(1)}–${(r.end_ms / 1000).toFixed(1)} s`).join(", ")
      : "none"],
  ];
  const pairs = rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]);
  summary.replaceChildren(el("dl", { class: "meta", id: "meta" }, pairs));
}

function holdText(copy) {
  if (!copy.hold) return "—";
  return `held: ${copy.hold_reason || "?"} (by ${copy.hold_actor || "?"}, ${fmtDate(copy.hold_at)})`;
}

function copyActions(copy, allowed) {
  const cell = [];
  if (allowed.play) {
    cell.push(el("button", { type: "button", "data-copy": copy.id, class: "play",
                             "aria-label": `Play the ${copy.tier} copy`, onclick: () => play(copy) }, "Play"));
  }
  if (allowed.download) {
    cell.push(el("button", { type: "button", class: "secondary", "aria-label": `Download the ${copy.tier} copy`,
                             onclick: () => download(copy) }, "Download"));
  }
  if (allowed.hold) {
    const reason = el("input", { id: `hold-${copy.id}`, name: "reason", required: true, maxlength: 500, size: 14 });
    const form = el("form", { class: "actions", "aria-label": `Legal hold on the ${copy.tier} copy` },
      el("label", { for: reason.id, class: "visually-hidden" }, `Hold reason for the ${copy.tier} copy`), reason,
      el("button", { type: "submit", class: "secondary" }, "Set hold"));
    reason.placeholder = "case reference";
    onSubmit(form, async (fd) => {
      await api(`/copies/${copy.id}/hold`, { method: "POST", body: { reason: fd.get("reason") } });
      await load();
      say(`Legal hold set on the ${copy.tier} copy.`, "ok");
    });
    cell.push(form);
  }
  if (allowed.release) {
    cell.push(el("button", { type: "button", class: "secondary", "aria-label": `Release the hold on the ${copy.tier} copy`,
      onclick: async () => {
        try {
          await api(`/copies/${copy.id}/hold`, { method: "DELETE" });
          await load();
          say(`Hold released on the ${copy.tier} copy.`, "ok");
        } catch (error) { sayError(error); }
      } }, "Release hold"));
  }
  return cell.length ? cell : "—";
}

function renderCopies(rec, actions) {
  const byId = Object.fromEntries(actions.copies.map((a) => [a.copy_id, a]));
  const head = el("thead", {}, el("tr", {}, ["Tier", "Expires", "Hold", "Size", "Created", "Reference", "Actions"]
    .map((h) => el("th", { scope: "col" }, h))));
  const rows = rec.copies.map((copy) => el("tr", { "data-tier": copy.tier },
    el("th", { scope: "row" }, copy.tier),
    el("td", {}, copy.hold ? "never (held)" : fmtDate(copy.expires_at)),
    el("td", {}, holdText(copy)),
    el("td", {}, fmtBytes(copy.audio_bytes)),
    el("td", {}, `${fmtDate(copy.created_at)} by ${copy.created_by}`),
    el("td", {}, copy.reason || (copy.has_training_report ? "training report" : "—")),
    el("td", { class: "copy-actions" }, copyActions(copy, byId[copy.id] || {}))));
  const notes = [];
  if (!actions.copies.some((a) => a.play)) {
    notes.push(el("p", { class: "hint", id: "no-play" }, me.role === "it"
      ? "Playback needs a break-glass grant with a ticket reference (see below)."
      : rec.restricted ? "This recording is restricted: only internal control may play it."
      : "Your role may not play these copies."));
  }
  copiesBox.replaceChildren(el("table", { id: "copies-table" },
    el("caption", {}, `${rec.copies.length} cop${rec.copies.length === 1 ? "y" : "ies"} you may see`), head,
    el("tbody", {}, rows)), ...notes);
}

// --- player --------------------------------------------------------------------------------
// The <audio> element streams from a signed, short-lived link (it cannot send the bearer):
// every range it asks for is decided and audited by the API. When the link has expired
// (a long pause), the next error fetches a fresh one and resumes at the same position.

async function play(copy) {
  try {
    const link = await api(`/copies/${copy.id}/stream-link`, { method: "POST" });
    playing = { copy, expires: Date.parse(link.expires_at) };
    audio.src = link.url;
    nowPlaying.textContent = `Playing the ${copy.tier} copy (link valid until ${fmtDate(link.expires_at)}).`;
    document.getElementById("back").disabled = false;
    document.getElementById("forward").disabled = false;
    await audio.play().catch(() => {});
    audio.focus();
  } catch (error) {
    sayError(error);
  }
}

let renewing = false;
audio.addEventListener("error", async () => {
  if (!playing || renewing || Date.now() < playing.expires - 5000) {
    if (playing) say("The audio could not be played.", "error");
    return;
  }
  renewing = true;
  const position = audio.currentTime;
  try {
    const link = await api(`/copies/${playing.copy.id}/stream-link`, { method: "POST" });
    playing.expires = Date.parse(link.expires_at);
    audio.src = link.url;
    audio.currentTime = position;
  } catch (error) {
    sayError(error);
  } finally {
    renewing = false;
  }
});
document.getElementById("back").addEventListener("click", () => { audio.currentTime = Math.max(0, audio.currentTime - 10); });
document.getElementById("forward").addEventListener("click", () => {
  audio.currentTime = Math.min(audio.duration || Infinity, audio.currentTime + 10);
});

async function download(copy) {
  try {
    const response = await fetch(`/copies/${copy.id}/export`, { headers: { Authorization: `Bearer ${token()}` },
                                                               credentials: "omit", cache: "no-store" });
    if (!response.ok) throw new Error((await response.json()).error.message);
    const name = (response.headers.get("content-disposition") || "").match(/filename="([^"]+)"/);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: name ? name[1] : `${copy.id}.audio` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say(`Downloaded the ${copy.tier} copy.`, "ok");
  } catch (error) {
    sayError(error);
  }
}

// --- role actions --------------------------------------------------------------------------

function card(idName, title, ...content) {
  return el("section", { class: "card", id: idName, "aria-labelledby": `${idName}-title` },
            el("h2", { id: `${idName}-title` }, title), ...content);
}

function createCopyForm(tier) {
  if (tier === "training") {
    const report = el("textarea", { id: "training-report", name: "training_report", required: true, maxlength: 20000 });
    const form = el("form", { id: "promote" },
      field("Training report", report, "What this call teaches: it is kept with the training copy."),
      el("div", { class: "actions" }, el("button", { type: "submit" }, "Promote to training")));
    onSubmit(form, async (fd) => {
      const made = await api(`/recordings/${id}/copies`, { method: "POST",
        body: { tier: "training", training_report: fd.get("training_report") } });
      await load();
      say(made.created ? `Training copy created; it expires ${fmtDate(made.expires_at)}.`
                       : "This call already has a training copy.", "ok");
    });
    return card("training", "Promote to training", form);
  }
  if (tier === "monitoring") {
    const form = el("form", { id: "monitoring-form" },
      el("p", { class: "hint" }, "A monitoring copy for reviewing this agent's calls."),
      el("div", { class: "actions" }, el("button", { type: "submit" }, "Create monitoring copy")));
    onSubmit(form, async () => {
      const made = await api(`/recordings/${id}/copies`, { method: "POST", body: { tier: "monitoring" } });
      await load();
      say(made.created ? `Monitoring copy created; it expires ${fmtDate(made.expires_at)}.`
                       : "This call already has a monitoring copy.", "ok");
    });
    return card("monitoring", "Monitoring copy", form);
  }
  const reference = el("input", { id: "complaint", name: "reason", required: true, maxlength: 500 });
  const form = el("form", { id: "extract-form" }, field("Complaint reference", reference),
    el("div", { class: "actions" }, el("button", { type: "submit" }, "Create extract")));
  onSubmit(form, async (fd) => {
    const made = await api(`/recordings/${id}/copies`, { method: "POST",
      body: { tier: "complaint-extract", reason: fd.get("reason") } });
    await load();
    say(made.created ? `Complaint extract created; it expires ${fmtDate(made.expires_at)}.`
                     : "That extract already exists.", "ok");
  });
  return card("extract", "Extract for a complaint", form);
}

function holdAllForms(actions) {
  const parts = [];
  if (actions.hold_all) {
    const reason = el("input", { id: "hold-all-reason", name: "reason", required: true, maxlength: 500 });
    const form = el("form", { id: "hold-all" }, field("Case reference", reason),
      el("div", { class: "actions" }, el("button", { type: "submit" }, "Hold every copy")));
    onSubmit(form, async (fd) => {
      const out = await api(`/recordings/${id}/hold`, { method: "POST", body: { reason: fd.get("reason") } });
      await load();
      say(`Legal hold set on ${out.changed.length} cop${out.changed.length === 1 ? "y" : "ies"}.`, "ok");
    });
    parts.push(form);
  }
  if (actions.release_all) {
    const reason = el("input", { id: "release-reason", name: "reason", maxlength: 500 });
    const form = el("form", { id: "release-all" }, field("Why the hold ends (optional)", reason),
      el("div", { class: "actions" }, el("button", { type: "submit", class: "secondary" }, "Release every hold")));
    onSubmit(form, async (fd) => {
      const out = await api(`/recordings/${id}/hold`, { method: "DELETE", query: { reason: fd.get("reason") } });
      await load();
      say(`Hold released on ${out.changed.length} cop${out.changed.length === 1 ? "y" : "ies"}.`, "ok");
    });
    parts.push(form);
  }
  return parts.length ? card("holds", "Legal hold", ...parts) : null;
}

function breakGlassForm(actions) {
  const ticket = el("input", { id: "ticket", name: "ticket", required: true, maxlength: 100, autocomplete: "off" });
  const most = me.break_glass_max_minutes;
  const minutes = el("input", { id: "minutes", name: "minutes", type: "number", min: 1, max: most,
                                value: Math.min(15, most), required: true });
  // A grant opens this recording only, and only the tiers ticked here.
  const tiers = [...new Set(data.recording.copies.map((c) => c.tier))];
  const boxes = tiers.map((tier) => el("label", { for: `glass-${tier}` },
    el("input", { id: `glass-${tier}`, name: "tiers", type: "checkbox", value: tier,
                  checked: tier === "production" || tiers.length === 1 }), ` ${tier}`, " "));
  const form = el("form", { id: "break-glass-form" },
    field("Ticket reference", ticket, "The incident or change ticket that justifies listening. It is audited."),
    field(`Minutes (at most ${me.break_glass_max_minutes})`, minutes),
    el("fieldset", { class: "field", id: "glass-tiers" }, el("legend", {}, "Tiers of this recording to open"), boxes),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "danger" }, "Open break-glass")));
  onSubmit(form, async (fd) => {
    const chosen = fd.getAll("tiers");
    if (!chosen.length) { say("Tick at least one tier to open.", "error"); return; }
    const grant = await api("/break-glass", { method: "POST", body: {
      ticket: fd.get("ticket"), minutes: Number(fd.get("minutes")), recording_id: id, tiers: chosen } });
    await load();
    say(`Break-glass ${grant.ticket} open on ${grant.tiers.join(", ")} until ${fmtDate(grant.expires_at)}.`, "ok");
  });
  const active = actions.grant
    ? el("p", { id: "grant", class: "status ok" },
         `Break-glass ${actions.grant.ticket} is open on ${actions.grant.tiers.join(", ")} until `
         + `${fmtDate(actions.grant.expires_at)}.`)
    : null;
  return card("break-glass", "Break-glass playback", active, form);
}

function renderActions(rec, actions) {
  const cards = [...actions.create.map(createCopyForm), holdAllForms(actions),
                 actions.break_glass ? breakGlassForm(actions) : null].filter(Boolean);
  actionsBox.replaceChildren(...cards);
}

try {
  await load();
} catch (error) {
  say(error.status === 404 ? "No such recording, or not one you may see." : `Error: ${error.message}`, "error");
}
