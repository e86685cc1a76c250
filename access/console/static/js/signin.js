// Sign-in: check the pasted token against the API, keep it in sessionStorage, go on.
import { api, clearToken, onSubmit, say, setToken } from "./common.js";

const SEEN = "callvault.signed-in-before";  // a flag, nothing about the user: the first-run hint folds away
const params = new URLSearchParams(location.search);
if (localStorage.getItem(SEEN)) document.getElementById("first-run").open = false;
// Only a console page of this origin: "search.html?..." or "recording.html?id=...".
const next = /^[a-z-]+\.html(\?[\w=&%.-]*)?$/.test(params.get("next") || "") ? params.get("next") : "search.html";
if (params.get("reason")) say(`Signed out: ${params.get("reason")}`, "error");

const form = document.getElementById("signin");
onSubmit(form, async (data) => {
  setToken(String(data.get("token")).trim());
  try {
    const me = await api("/console/api/me");
    say(`Signed in as ${me.id}`, "ok");
    localStorage.setItem(SEEN, "1");
    location.assign(next);
  } catch (error) {
    clearToken();
    throw error;
  }
});
document.getElementById("token").focus();
