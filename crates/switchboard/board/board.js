// The live presence board: everyone's colour, status or profile, message, end time and
// call-status lamp, updated by server-sent events; the signed-in person changes their own
// presence; the admin token sees time-in-status reports. Standard browser APIs only.

const KEY = "switchboard.token";
const $ = (id) => document.getElementById(id);

const LAMPS = { free: "🟢", ringing: "🟡", busy: "🔴", hidden: "⚪" };
const LAMP_WORDS = { free: "free", ringing: "ringing", busy: "in a call", hidden: "hidden" };
const STATUS_NAMES = {
  available: "Available", away: "Away", busy: "Busy", dnd: "Do not disturb",
  custom: "Custom", unavailable: "Unavailable", on_break: "On break",
  after_call_work: "After-call work",
};

/** Everyone's rows by user id, as the API shows them. */
const people = new Map();
let me = null; // { user, admin }
let source = null; // the EventSource
let retry = 1000; // the next reconnection's delay (ms), doubled up to 30 s

function token() {
  return sessionStorage.getItem(KEY);
}

/** A call to the API with the token; resolves to the JSON body, or throws its error. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) {
    const e = new Error((json && json.error) || `${r.status} ${r.statusText}`);
    e.status = r.status;
    throw e;
  }
  return json;
}

function when(unix) {
  if (unix === null || unix === undefined) return "";
  const d = new Date(unix * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toDateString() === today.toDateString()
    ? time
    : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

/** What the row says the person is doing: the profile's name, or the status's. */
function doing(p) {
  const status = p.availability === "custom" && p.custom_text
    ? p.custom_text : (STATUS_NAMES[p.availability] || p.availability);
  const profile = p.profile && p.profile.name;
  let text = profile || status;
  if (profile && profile.toLowerCase() !== status.toLowerCase()) text = `${profile} · ${status}`;
  return p.offline ? `Offline · ${text}` : text;
}

function rowFor(p) {
  let li = document.querySelector(`li[data-user="${CSS.escape(p.user)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.className = "person";
    li.dataset.user = p.user;
    for (const part of ["dot", "name", "doing", "message", "until", "lamp"]) {
      const span = document.createElement("span");
      span.className = part;
      li.append(span);
    }
  }
  li.dataset.colour = p.colour;
  li.dataset.availability = p.availability;
  li.dataset.call = p.call_status;
  li.dataset.profile = p.profile ? p.profile.id : "";
  li.classList.toggle("me", !!me && me.user === p.user);
  const until = p.status_until ?? (p.profile ? p.profile.until : null);
  const name = li.querySelector(".name");
  name.replaceChildren(document.createTextNode(p.name || p.user));
  name.title = p.user;
  if (p.extension) {
    const ext = document.createElement("small");
    ext.className = "ext";
    ext.textContent = p.extension;
    name.append(" ", ext);
  }
  li.querySelector(".doing").textContent = doing(p);
  li.querySelector(".message").textContent = p.message || "";
  li.querySelector(".until").textContent = until ? `until ${when(until)}` : "";
  // Drawn by the style sheet (no emoji font needed); the emoji is its label.
  const lamp = li.querySelector(".lamp");
  const call = LAMPS[p.call_status] ? p.call_status : "hidden";
  lamp.dataset.emoji = LAMPS[call];
  lamp.title = `${LAMPS[call]} call: ${LAMP_WORDS[call]}`;
  lamp.setAttribute("role", "img");
  lamp.setAttribute("aria-label", lamp.title);
  li.querySelector(".dot").title = p.offline ? "offline (no phone registered)" : p.colour;
  return li;
}

function render() {
  const list = $("people");
  const sorted = [...people.values()].sort((a, b) =>
    (a.name || a.user).localeCompare(b.name || b.user));
  const rows = sorted.map(rowFor);
  list.replaceChildren(...rows);
}

function upsert(p) {
  people.set(p.user, p);
  const existing = document.querySelector(`li[data-user="${CSS.escape(p.user)}"]`);
  if (existing) rowFor(p); else render();
  if (me && p.user === me.user) showMine(p);
}

function live(state, text) {
  const el = $("live");
  el.dataset.state = state;
  el.textContent = text;
}

/** Opens the event stream with a fresh ticket; reconnects with back-off when it fails. */
async function connect() {
  if (source) { source.close(); source = null; }
  if (!token()) return;
  let t;
  try {
    t = await api("POST", "/v1/presence/events/ticket");
  } catch (e) {
    if (e.status === 401) { signOut(e.message); return; }
    live("off", "reconnecting…");
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
    return;
  }
  me = { user: t.user, admin: t.admin };
  showSignedIn();
  const es = new EventSource(`/v1/presence/events?ticket=${encodeURIComponent(t.ticket)}`);
  source = es;
  es.addEventListener("snapshot", (ev) => {
    const s = JSON.parse(ev.data);
    people.clear();
    for (const p of s.people) people.set(p.user, p);
    render();
    const mine = me && people.get(me.user);
    if (mine) showMine(mine);
    retry = 1000;
    live("on", "live");
  });
  es.addEventListener("person", (ev) => upsert(JSON.parse(ev.data)));
  es.addEventListener("gone", (ev) => {
    const { user } = JSON.parse(ev.data);
    people.delete(user);
    render();
  });
  es.onerror = () => {
    // The ticket is used up: a new one is needed for every connection.
    if (source !== es) return;
    es.close();
    source = null;
    live("off", "reconnecting…");
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  };
}

function showSignedIn() {
  $("signin").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = me.admin ? "signed in as the operator" : `signed in as ${me.user}`;
  $("mine").hidden = me.admin;
  $("reports").hidden = !me.admin;
  if (!me.admin && !$("profile").options.length) loadProfiles();
  if (me.admin && !$("report-from").value) defaultPeriod();
}

function signOut(why) {
  sessionStorage.removeItem(KEY);
  if (source) { source.close(); source = null; }
  me = null;
  people.clear();
  $("people").replaceChildren();
  $("profile").replaceChildren();
  for (const id of ["board", "mine", "reports", "signout"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  $("signin-error").textContent = why || "";
  live("off", "offline");
}

// ---- my own presence ------------------------------------------------------------------

async function loadProfiles() {
  try {
    const r = await api("GET", `/v1/presence/${encodeURIComponent(me.user)}/profiles`);
    const select = $("profile");
    select.replaceChildren(...r.profiles.map((p) => {
      const o = document.createElement("option");
      o.value = p.id;
      o.textContent = p.number !== undefined && p.number !== null ? `${p.number} · ${p.name}` : p.name;
      if (p.active) o.selected = true;
      return o;
    }));
  } catch (e) {
    say("mine-result", `Profiles could not be read: ${e.message}`, true);
  }
}

function showMine(p) {
  const status = $("status");
  if (document.activeElement !== status && [...status.options].some((o) => o.value === p.availability)) {
    status.value = p.availability;
  }
  const profile = $("profile");
  if (document.activeElement !== profile && p.profile &&
      [...profile.options].some((o) => o.value === p.profile.id)) {
    profile.value = p.profile.id;
  }
}

function say(id, text, bad) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", !!bad);
}

async function change(what, path, body) {
  try {
    const p = await api("PUT", `/v1/presence/${encodeURIComponent(me.user)}/${path}`, body);
    say("mine-result", `${what}: done.`);
    // The API's row has no name or extension: keep those the stream gave.
    if (p && p.user) upsert({ ...people.get(p.user), ...p });
  } catch (e) {
    say("mine-result", `${what}: ${e.message}`, true);
  }
}

$("status-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { status: $("status").value };
  const text = $("status-text").value.trim();
  if (body.status === "custom" || text) body.text = text;
  change("Status", "status", body);
});

$("profile-for").addEventListener("change", () => {
  $("profile-until").hidden = $("profile-for").value !== "until";
});

$("profile-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { profile: $("profile").value };
  const length = $("profile-for").value;
  if (length === "until") {
    const at = $("profile-until").value;
    if (!at) { say("mine-result", "Profile: choose when it ends.", true); return; }
    body.until = new Date(at).toISOString();
  } else if (length) {
    body.for = length;
  }
  change("Profile", "profile", body);
});

$("message-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const m = $("message").value.trim();
  change("Message", "message", { message: m || null });
});

$("clear-message").addEventListener("click", () => {
  $("message").value = "";
  change("Message", "message", { message: null });
});

// ---- reports (admin) ---------------------------------------------------------------

function localInput(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function defaultPeriod() {
  const now = new Date();
  $("report-from").value = localInput(new Date(now.getTime() - 7 * 24 * 3600 * 1000));
  $("report-to").value = ""; // now
}

function duration(s) {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : m ? `${m} min` : `${s} s`;
}

/** A table: one row per person (and an average row), one column per status. */
function table(caption, rows, average) {
  const statuses = Object.keys(STATUS_NAMES);
  const t = document.createElement("table");
  t.className = "report";
  const cap = document.createElement("caption");
  cap.textContent = caption;
  const head = document.createElement("tr");
  for (const h of ["", ...statuses.map((s) => STATUS_NAMES[s])]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  t.append(cap, head);
  const line = (name, seconds, cls) => {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    const th = document.createElement("th");
    th.textContent = name;
    tr.append(th);
    for (const s of statuses) {
      const td = document.createElement("td");
      td.textContent = seconds[s] ? duration(seconds[s]) : "–";
      tr.append(td);
    }
    t.append(tr);
  };
  for (const r of rows) line(r.user, r.seconds);
  if (average) line("average", average, "average");
  return t;
}

$("report-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const from = new Date($("report-from").value);
  const toValue = $("report-to").value;
  const q = `from=${encodeURIComponent(from.toISOString())}` +
    (toValue ? `&to=${encodeURIComponent(new Date(toValue).toISOString())}` : "");
  say("report-result", "Reading…");
  try {
    const { teams } = await api("GET", "/v1/teams");
    const teamTables = [];
    for (const team of teams) {
      const r = await api("GET", `/v1/reports/time-in-status?team=${encodeURIComponent(team.id)}&${q}`);
      teamTables.push(table(`Team ${team.name || team.id}`, r.people, r.average));
    }
    $("report-teams").replaceChildren(...teamTables);
    const users = [...people.keys()].sort();
    const rows = [];
    for (const user of users) {
      const r = await api("GET", `/v1/reports/time-in-status?user=${encodeURIComponent(user)}&${q}`);
      rows.push(...r.people);
    }
    $("report-people").replaceChildren(table("Per person", rows));
    say("report-result", `${teams.length} team(s), ${rows.length} people.`);
  } catch (e) {
    say("report-result", `The report could not be read: ${e.message}`, true);
  }
});

// ---- sign in ------------------------------------------------------------------------

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  if (!t) return;
  sessionStorage.setItem(KEY, t);
  $("token").value = "";
  $("signin-error").textContent = "";
  retry = 1000;
  connect();
});

$("signout").addEventListener("click", () => signOut());

if (token()) connect();
