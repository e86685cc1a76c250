// Data-subject requests (internal control): object, erase, restrict, lift, export.
import { api, boot, el, fmtDate, onSubmit, say } from "./common.js";

const me = await boot("subjects");
const form = document.getElementById("subject-form");
const outcome = document.getElementById("outcome");
const confirmBox = document.getElementById("confirm-box");
const confirm = document.getElementById("confirm");
const DESTRUCTIVE = new Set(["erase", "object"]);

document.getElementById("tenant-list").replaceChildren(
  ...me.tenants.filter((t) => t !== "*").map((t) => el("option", { value: t })));
if (me.tenants.length === 1 && me.tenants[0] !== "*") form.elements.tenant.value = me.tenants[0];

function kindChanged() {
  const destructive = DESTRUCTIVE.has(form.elements.kind.value);
  confirmBox.hidden = !destructive;
  confirm.required = destructive;
}
form.addEventListener("change", kindChanged);
kindChanged();

function erasureOutcome(out) {
  const erased = out.erased_copies.map((c) => el("li", {}, `${c.tier} copy ${c.copy_id} of recording ${c.recording_id}`));
  const kept = out.kept_copies.map((c) => el("li", {}, `${c.tier} copy ${c.copy_id}: kept, ${c.hold_reason || "held"}`));
  return [
    el("p", {}, `${out.erased_recordings.length} recording(s) erased; ${out.keys_destroyed} key(s) destroyed.`),
    el("h2", {}, "Erased"), erased.length ? el("ul", { id: "erased" }, erased) : el("p", {}, "Nothing."),
    el("h2", {}, "Kept (legal hold)"), kept.length ? el("ul", { id: "kept" }, kept) : el("p", {}, "Nothing."),
  ];
}

onSubmit(form, async (data) => {
  const kind = data.get("kind");
  const numbers = String(data.get("numbers")).split("\n").map((n) => n.trim()).filter(Boolean);
  const body = { tenant: String(data.get("tenant")).trim(), numbers };
  outcome.replaceChildren();
  const out = await api(`/subjects/${kind}`, { method: "POST", body });
  if (kind === "export") {
    outcome.replaceChildren(out.download_url
      ? el("p", {}, `${out.recordings} recording(s) exported. `,
           el("a", { id: "export-link", href: out.download_url, download: "" }, "Download the export (ZIP)"),
           ` — the link works until ${fmtDate(out.expires_at)}.`)
      : el("p", {}, "No recording of these numbers."));
  } else if (kind === "restrict" || kind === "lift") {
    const what = kind === "restrict" ? "restricted" : "no longer restricted";
    outcome.replaceChildren(el("p", { id: "count" }, `${out.recordings} recording(s) ${what}.`));
  } else {
    outcome.replaceChildren(...erasureOutcome(out));
  }
  say(`Request done (${kind}).`, "ok");
  confirm.checked = false;
});
