// Shared by every console page: the token, calls to the JSON API, the header, DOM helpers.
//
// The token lives in sessionStorage: it is sent only where this code puts it (an
// Authorization header, never a cookie, so no request can be forged from another site), and
// it is gone when the tab closes. Everything the API returns is written with textContent
// (never innerHTML) and the CSP forbids inline script, so data cannot become code.

const KEY = "callvault.token";

export const token = () => sessionStorage.getItem(KEY);
export const setToken = (value) => sessionStorage.setItem(KEY, value);
export const clearToken = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
  }
}

/** Calls the JSON API with the bearer token; resolves to the parsed body, or throws ApiError. */
export async function api(path, { method = "GET", body, query } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, { method, headers, credentials: "omit", cache: "no-store",
                                      body: body === undefined ? undefined : JSON.stringify(body) });
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Builds an element: el("a", {href: "x", class: "y"}, "text", child...). Text is never parsed as HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let fieldCount = 0;
/** A labelled control: <div class=field><label for=id>text</label><control id=id></div>. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = `f${++fieldCount}`;
  const parts = [el("label", { for: control.id }, labelText)];
  if (hint) {
    const hintNode = el("p", { class: "hint", id: `${control.id}-hint` }, hint);
    control.setAttribute("aria-describedby", hintNode.id);
    parts.push(hintNode);
  }
  return el("div", { class: "field" }, ...parts, control);
}

/** Shows a message in the page's live region (read out by screen readers). */
export function say(message, kind = "") {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = message;
  status.className = `status ${kind}`;
}

export function sayError(error) {
  const prefix = error.status === 403 ? "Refused" : error.status ? `Error ${error.status}` : "Error";
  say(`${prefix}: ${error.message}`, "error");
}

export const fmtDate = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { timeZone: "UTC" }) + " UTC" : "—");
export function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}
export function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

const PAGES = [
  ["search", "search.html", "Search"],
  ["subjects", "subjects.html", "Data-subject requests"],
  ["audit", "audit.html", "Audit trail"],
  ["report", "report.html", "Lifecycle report"],
  ["dlq", "dlq.html", "Dead letters"],
];

function header(me, current) {
  const links = PAGES.filter(([key]) => me.pages[key]).map(([key, href, text]) =>
    el("li", {}, el("a", { href, "aria-current": key === current ? "page" : false }, text)));
  const signOut = el("button", { type: "button", id: "sign-out", onclick: () => { clearToken(); location.href = "./"; } },
                     "Sign out");
  return el("header", { class: "top" },
    el("a", { class: "brand", href: "search.html" }, "callvault"),
    el("nav", { "aria-label": "Console" }, el("ul", {}, links)),
    el("div", { class: "who" }, el("span", { id: "who" }, `${me.id} · ${me.role}`), signOut));
}

/** Every page but sign-in: needs a token, loads who is signed in, draws the header. */
export async function boot(current) {
  if (!token()) {
    location.replace(`./?next=${encodeURIComponent(location.pathname.split("/").pop() + location.search)}`);
    return new Promise(() => {});
  }
  let me;
  try {
    me = await api("/console/api/me");
  } catch (error) {
    clearToken();
    location.replace(`./?reason=${encodeURIComponent(error.message)}`);
    return new Promise(() => {});
  }
  document.body.prepend(header(me, current));
  document.body.prepend(el("a", { class: "skip", href: "#main" }, "Skip to content"));
  return me;
}

/** Runs an async form action with its submit button disabled; reports errors in the live region. */
export function onSubmit(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await action(new FormData(form), event.submitter);
    } catch (error) {
      if (error instanceof ApiError) sayError(error); else { say(`Error: ${error.message}`, "error"); throw error; }
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
}
