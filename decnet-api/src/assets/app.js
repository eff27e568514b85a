// decnet dashboard. Plain JS, no dependencies. Every string from the API is rendered with
// textContent / text nodes (never innerHTML): attackers control usernames, commands, paths,
// headers and banners.
"use strict";

const S = {
  token: sessionStorage.getItem("decnet.token"),
  user: JSON.parse(sessionStorage.getItem("decnet.user") || "null"),
  lastEventId: null,
  live: null,         // AbortController of the live stream
  liveEvents: [],     // newest first, bounded
  listeners: new Set(),
  liveCount: 0,
};
const LIVE_MAX = 200;

// ---- DOM helpers (text only) ---------------------------------------------------------------
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") { for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f); }
    else if (k === "href") { e.setAttribute("href", safeHref(v)); }
    else e.setAttribute(k, String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}
function safeHref(v) { v = String(v); return v.startsWith("#/") ? v : "#/"; }
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function view() { return clear(document.getElementById("view")); }
function fmtTs(t) { return t ? String(t).replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }
function num(n) { return (n === null || n === undefined) ? "" : Number(n).toLocaleString("en-US"); }
function table(cols, rows, rowFn, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, cols.map(c => el("th", {}, c)))),
    el("tbody", {}, rows.map(rowFn)));
}
function attackerLink(ip) { return ip ? el("a", { href: "#/attacker/" + encodeURIComponent(ip), class: "attacker-link" }, ip) : ""; }
// An event's fields as `key=value` lines, values verbatim (still text, never HTML).
function fieldsText(f) {
  if (f === null || f === undefined) return "";
  if (typeof f !== "object" || Array.isArray(f)) return typeof f === "string" ? f : JSON.stringify(f);
  return Object.entries(f).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join("\n");
}

// ---- API ------------------------------------------------------------------------------------
class ApiError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
async function api(path, opts) {
  opts = opts || {};
  const headers = { "Accept": "application/json" };
  if (S.token) headers["Authorization"] = "Bearer " + S.token;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method: opts.method || "GET", headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (r.status === 401 && !opts.noLogout) { logout("Session expired: log in again."); throw new ApiError(401, "unauthorized"); }
  if (!r.ok) throw new ApiError(r.status, (data && data.error ? data.error : r.statusText) + (data && data.id ? " (error id " + data.id + ")" : ""));
  return data;
}
function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") u.set(k, v);
  const s = u.toString();
  return s ? "?" + s : "";
}
function showError(node, e) { node.append(el("p", { class: "error" }, String(e.message || e))); }

// ---- session --------------------------------------------------------------------------------
function setSession(t) {
  S.token = t.token;
  S.user = { username: t.username, role: t.role, must_change_password: t.must_change_password };
  sessionStorage.setItem("decnet.token", S.token);
  sessionStorage.setItem("decnet.user", JSON.stringify(S.user));
}
function logout(msg) {
  S.token = null; S.user = null;
  sessionStorage.removeItem("decnet.token"); sessionStorage.removeItem("decnet.user");
  stopLive();
  renderLogin(msg);
}
function chrome() {
  const logged = !!S.token && S.user && !S.user.must_change_password;
  document.getElementById("nav").hidden = !logged;
  document.getElementById("logout").hidden = !S.token;
  document.getElementById("nav-users").hidden = !(S.user && S.user.role === "admin");
  document.getElementById("whoami").textContent = S.user ? S.user.username + " (" + S.user.role + ")" : "";
  const cur = (location.hash.split("/")[1] || "overview");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === cur);
}

function renderLogin(msg) {
  chrome();
  const v = view();
  const err = el("p", { class: "error", id: "login-error" }, msg || "");
  const u = el("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const p = el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const f = el("form", { class: "login", id: "login-form" },
    el("h1", {}, "decnet — log in"), el("label", {}, "Username", u), el("label", {}, "Password", p),
    el("button", { type: "submit", id: "login-submit" }, "Log in"), err);
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    err.textContent = "";
    try {
      const t = await api("/api/v1/auth/login", { method: "POST", body: { username: u.value, password: p.value }, noLogout: true });
      setSession(t);
      route();
    } catch (e) { err.textContent = e.status === 401 ? "Wrong username or password." : e.message; }
  });
  v.append(f);
  u.focus();
}

function renderChangePassword() {
  chrome();
  const v = view();
  const err = el("p", { class: "error", id: "pw-error" });
  const cur = el("input", { id: "current-password", type: "password", autocomplete: "current-password" });
  const np = el("input", { id: "new-password", type: "password", autocomplete: "new-password" });
  const f = el("form", { class: "login", id: "password-form" },
    el("h1", {}, "Choose a new password"),
    el("p", { class: "muted" }, "This is a first login (or a reset): set your own password. At least 12 characters, mixing three of lower case, upper case, digits and symbols."),
    el("label", {}, "Current password", cur), el("label", {}, "New password", np),
    el("button", { type: "submit", id: "password-submit" }, "Change password"), err);
  f.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const t = await api("/api/v1/auth/password", { method: "POST", body: { current_password: cur.value, new_password: np.value }, noLogout: true });
      setSession(t);
      location.hash = "#/overview";
      route();
    } catch (e) { err.textContent = e.message; }
  });
  v.append(f);
}

// ---- live feed (SSE over fetch, so the token goes in a header) -------------------------------
function stopLive() {
  if (S.live) S.live.abort();
  S.live = null;
  setLiveStatus(false);
}
function setLiveStatus(on) {
  const s = document.getElementById("live-status");
  s.textContent = on ? "live" : "offline";
  s.classList.toggle("on", on);
}
async function startLive() {
  if (S.live || !S.token) return;
  const ctl = new AbortController();
  S.live = ctl;
  while (!ctl.signal.aborted && S.token) {
    try {
      const headers = { "Authorization": "Bearer " + S.token, "Accept": "text/event-stream" };
      if (S.lastEventId !== null) headers["Last-Event-ID"] = String(S.lastEventId);
      const r = await fetch("/api/v1/stream", { headers, signal: ctl.signal });
      if (r.status === 401) { logout("Session expired: log in again."); return; }
      if (!r.ok || !r.body) throw new Error("stream " + r.status);
      setLiveStatus(true);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let type = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const c = line.indexOf(":");
            const k = c < 0 ? line : line.slice(0, c);
            let val = c < 0 ? "" : line.slice(c + 1);
            if (val.startsWith(" ")) val = val.slice(1);
            if (k === "event") type = val; else if (k === "data") data += (data ? "\n" : "") + val; else if (k === "id") id = val;
          }
          if (id !== null && /^\d+$/.test(id)) S.lastEventId = Number(id);
          if (data) { let d; try { d = JSON.parse(data); } catch (_) { continue; } onLive(type, d); }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    setLiveStatus(false);
    await new Promise(res => setTimeout(res, 2000));
  }
}
function onLive(type, d) {
  if (type === "event") {
    S.liveCount++;
    S.liveEvents.unshift(d);
    if (S.liveEvents.length > LIVE_MAX) S.liveEvents.length = LIVE_MAX;
  }
  for (const f of S.listeners) { try { f(type, d); } catch (_) { /* a view's problem */ } }
}
function listen(f) { S.listeners.clear(); S.listeners.add(f); }

// ---- views ----------------------------------------------------------------------------------
function eventRow(e, fresh) {
  return el("tr", { class: "event-row" + (fresh ? " new" : ""), "data-id": e.id },
    el("td", { class: "mono" }, fmtTs(e.ts)), el("td", {}, e.decky), el("td", {}, e.service),
    el("td", {}, e.event_type), el("td", {}, attackerLink(e.attacker_ip)),
    el("td", { class: "mono fields" }, fieldsText(e.fields)));
}
const EVENT_COLS = ["time", "decky", "service", "type", "attacker", "fields"];

function drawHistogram(canvas, hist) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 160;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  if (!hist.length) { g.fillStyle = "#8a97a5"; g.fillText("no events in this window", 10, 20); return; }
  const max = Math.max(...hist.map(b => b.count));
  const bw = Math.max(1, (w - 20) / hist.length);
  g.fillStyle = "#4aa3df";
  hist.forEach((b, i) => { const bh = (h - 30) * b.count / max; g.fillRect(10 + i * bw, h - 20 - bh, Math.max(1, bw - 1), bh); });
  g.fillStyle = "#8a97a5";
  g.fillText(fmtTs(hist[0].name), 10, h - 5);
  g.fillText("max " + num(max) + "/bucket", w - 110, 12);
}

async function renderOverview() {
  const v = view();
  v.append(el("h1", {}, "Overview"));
  const cards = el("div", { class: "cards", id: "overview-counts" });
  const canvas = el("canvas", { id: "rate-chart" });
  const liveN = el("div", { class: "n", id: "live-count" }, "0");
  const body = el("div", {});
  v.append(cards, el("h2", {}, "Events per hour (24 h)"), canvas, body);
  let st;
  try { st = await api("/api/v1/stats?window=24h"); } catch (e) { showError(v, e); return; }
  const c = st.counts;
  for (const [k, label] of [["events", "events"], ["attackers", "attackers"], ["sessions", "sessions"], ["credentials", "credentials"], ["flows", "flows"], ["deckies", "deckies"]]) {
    cards.append(el("div", { class: "card" }, el("div", { class: "n", "data-count": k }, num(c[k])), el("div", { class: "l" }, label)));
  }
  cards.append(el("div", { class: "card" }, liveN, el("div", { class: "l" }, "new events (live)")));
  liveN.textContent = num(S.liveCount);
  drawHistogram(canvas, st.histogram);
  const left = el("div", {}), right = el("div", {});
  body.append(el("div", { class: "grid2" }, left, right));
  left.append(el("h2", {}, "Top attackers"), table(["attacker", "events", "last seen", "score"], st.top_attackers,
    a => el("tr", {}, el("td", {}, attackerLink(a.ip)), el("td", {}, num(a.event_count)), el("td", { class: "mono" }, fmtTs(a.last_seen)), el("td", {}, a.score ?? "")), { id: "top-attackers" }));
  right.append(el("h2", {}, "Top services (24 h)"), table(["service", "events"], st.top_services, s => el("tr", {}, el("td", {}, s.name), el("td", {}, num(s.count)))));
  right.append(el("h2", {}, "Top deckies (24 h)"), table(["decky", "events"], st.top_deckies, s => el("tr", {}, el("td", {}, s.name), el("td", {}, num(s.count)))));
  left.append(el("h2", {}, "Recent sessions"), table(["attacker", "decky", "service", "started", "events"], st.recent_sessions,
    s => el("tr", {}, el("td", {}, attackerLink(s.attacker_ip)), el("td", {}, s.decky), el("td", {}, s.service), el("td", { class: "mono" }, fmtTs(s.started)), el("td", {}, num(s.event_count)))));
  const evCard = cards.querySelector('[data-count="events"]');
  let evN = c.events;
  listen((type) => {
    if (type !== "event") return;
    evN++; evCard.textContent = num(evN); liveN.textContent = num(S.liveCount);
  });
}

async function renderEvents(params) {
  const v = view();
  v.append(el("h1", {}, "Live feed and events"));
  const p = Object.fromEntries(params);
  const inputs = {};
  const f = el("form", { class: "filters", id: "event-filters" });
  for (const [k, label] of [["since", "since (RFC 3339)"], ["decky", "decky"], ["service", "service"], ["type", "type"], ["attacker", "attacker IP"], ["q", "text"]]) {
    inputs[k] = el("input", { name: k, value: p[k] || "" });
    f.append(el("label", {}, label, inputs[k]));
  }
  f.append(el("button", { type: "submit" }, "Filter"));
  f.addEventListener("submit", ev => {
    ev.preventDefault();
    const q = {}; for (const [k, i] of Object.entries(inputs)) if (i.value) q[k] = i.value;
    location.hash = "#/events" + qs(q);
  });
  const filtered = Object.keys(p).some(k => k !== "cursor");
  const liveBody = el("tbody", { id: "live-feed" });
  v.append(f);
  if (!filtered) {
    v.append(el("h2", {}, "Live (newest first)"),
      el("table", {}, el("thead", {}, el("tr", {}, EVENT_COLS.map(c => el("th", {}, c)))), liveBody));
    for (const e of S.liveEvents.slice(0, 50)) liveBody.append(eventRow(e, false));
    listen((type, d) => {
      if (type !== "event") return;
      liveBody.prepend(eventRow(d, true));
      while (liveBody.children.length > LIVE_MAX) liveBody.removeChild(liveBody.lastChild);
    });
  } else { listen(() => {}); }
  v.append(el("h2", {}, "Stored events"));
  const holder = el("div", {});
  v.append(holder);
  try {
    const page = await api("/api/v1/events" + qs(Object.assign({ limit: 50 }, p)));
    holder.append(table(EVENT_COLS, page.items, e => eventRow(e, false), { id: "events-table" }));
    holder.append(pager("#/events", p, page.next_cursor));
  } catch (e) { showError(holder, e); }
}

function pager(base, p, next) {
  const d = el("div", { class: "pager" });
  if (p.cursor) { const q = Object.assign({}, p); delete q.cursor; d.append(el("a", { href: base + qs(q) }, "« first page")); }
  if (next) d.append(el("a", { href: base + qs(Object.assign({}, p, { cursor: next })), id: "next-page" }, "next page »"));
  return d;
}

async function renderAttackers(params) {
  const v = view();
  const p = Object.fromEntries(params);
  v.append(el("h1", {}, "Attackers"));
  const ip = el("input", { name: "ip", value: p.ip || "" });
  const sort = el("select", { name: "sort" }, el("option", { value: "last_seen" }, "last seen"), el("option", { value: "events" }, "events"));
  sort.value = p.sort || "last_seen";
  const f = el("form", { class: "filters" }, el("label", {}, "IP prefix", ip), el("label", {}, "sort", sort), el("button", { type: "submit" }, "Filter"));
  f.addEventListener("submit", ev => { ev.preventDefault(); location.hash = "#/attackers" + qs({ ip: ip.value, sort: sort.value }); });
  v.append(f);
  listen(() => {});
  try {
    const page = await api("/api/v1/attackers" + qs(Object.assign({ limit: 50 }, p)));
    v.append(table(["attacker", "first seen", "last seen", "events", "sessions", "credentials", "flows", "score", "behaviour"], page.items,
      a => el("tr", {}, el("td", {}, attackerLink(a.ip)), el("td", { class: "mono" }, fmtTs(a.first_seen)), el("td", { class: "mono" }, fmtTs(a.last_seen)),
        el("td", {}, num(a.event_count)), el("td", {}, num(a.session_count)), el("td", {}, num(a.credential_count)), el("td", {}, num(a.flow_count)),
        el("td", {}, a.score ?? ""), el("td", {}, a.behaviour || "")), { id: "attackers-table" }));
    v.append(pager("#/attackers", p, page.next_cursor));
  } catch (e) { showError(v, e); }
}

function traversalSvg(path) {
  const NS = "http://www.w3.org/2000/svg";
  const step = 170, h = 90;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "path"); svg.setAttribute("id", "traversal");
  svg.setAttribute("viewBox", "0 0 " + Math.max(300, path.length * step + 40) + " " + h);
  svg.setAttribute("height", String(h));
  path.forEach((t, i) => {
    const x = 40 + i * step;
    if (i > 0) { const l = document.createElementNS(NS, "line"); l.setAttribute("x1", x - step + 12); l.setAttribute("y1", 35); l.setAttribute("x2", x - 12); l.setAttribute("y2", 35); svg.append(l); }
    const c = document.createElementNS(NS, "circle"); c.setAttribute("cx", x); c.setAttribute("cy", 35); c.setAttribute("r", 11); svg.append(c);
    const a = document.createElementNS(NS, "text"); a.setAttribute("x", x - 30); a.setAttribute("y", 65); a.textContent = t.decky; svg.append(a);
    const b = document.createElementNS(NS, "text"); b.setAttribute("x", x - 30); b.setAttribute("y", 80); b.textContent = t.service + " · " + fmtTs(t.first_seen).slice(11, 19); svg.append(b);
  });
  return svg;
}

async function renderAttacker(ip) {
  const v = view();
  listen(() => {});
  let d;
  try { d = await api("/api/v1/attackers/" + encodeURIComponent(ip)); } catch (e) { v.append(el("h1", {}, "Attacker")); showError(v, e); return; }
  const a = d.attacker;
  v.append(el("h1", {}, "Attacker ", el("span", { id: "attacker-ip", class: "mono" }, a.ip)));
  v.append(el("div", { class: "cards" },
    ...[["events", a.event_count], ["sessions", a.session_count], ["credentials", a.credential_count], ["flows", a.flow_count]].map(([l, n]) => el("div", { class: "card" }, el("div", { class: "n" }, num(n)), el("div", { class: "l" }, l))),
    el("div", { class: "card" }, el("div", { class: "n mono" }, fmtTs(a.first_seen).slice(0, 19)), el("div", { class: "l" }, "first seen")),
    el("div", { class: "card" }, el("div", { class: "n mono" }, fmtTs(a.last_seen).slice(0, 19)), el("div", { class: "l" }, "last seen"))));
  const pr = d.profile;
  v.append(el("h2", {}, "Profile"));
  if (pr) {
    v.append(el("p", { id: "profile" }, "Behaviour: ", el("b", {}, pr.behaviour), " · score ", el("b", {}, pr.score), " / 100 · tools: ", (pr.tools || []).map(t => el("span", { class: "pill" }, t))));
    v.append(el("h2", {}, "Score factors"), table(["factor", "weight"], pr.factors || [], f => el("tr", {}, el("td", {}, f.factor), el("td", {}, f.weight)), { id: "score-factors" }));
    v.append(el("h2", {}, "ATT&CK techniques"), el("p", { id: "techniques" }, (pr.techniques || []).map(t => el("span", { class: "pill" }, t))));
  } else v.append(el("p", { class: "muted" }, "Not profiled yet."));
  v.append(el("h2", {}, "Traversal path across deckies"));
  v.append(d.traversal.length ? traversalSvg(d.traversal) : el("p", { class: "muted" }, "No decky touched."));
  v.append(el("h2", {}, "Sessions"), table(["decky", "service", "started", "ended", "events", "closed"], d.sessions,
    s => el("tr", {}, el("td", {}, s.decky), el("td", {}, s.service), el("td", { class: "mono" }, fmtTs(s.started)), el("td", { class: "mono" }, fmtTs(s.ended)), el("td", {}, num(s.event_count)), el("td", {}, s.closed ? "yes" : "no"))));
  v.append(el("h2", {}, "Commands"), table(["decky", "service", "command"], d.commands,
    c => el("tr", {}, el("td", {}, c.decky), el("td", {}, c.service), el("td", { class: "mono command" }, c.command)), { id: "commands" }));
  v.append(el("h2", {}, "Credentials"), table(["decky", "service", "principal", "kind", "secret", "attempts", "last seen"], d.credentials,
    c => el("tr", {}, el("td", {}, c.decky), el("td", {}, c.service), el("td", { class: "mono principal" }, c.principal), el("td", {}, c.secret_kind), el("td", { class: "mono" }, c.secret), el("td", {}, num(c.attempts)), el("td", { class: "mono" }, fmtTs(c.last_seen))), { id: "credentials" }));
  v.append(el("h2", {}, "Fingerprints"), table(["kind", "value", "count", "last seen"], d.fingerprints,
    f => el("tr", {}, el("td", {}, f.kind), el("td", { class: "mono" }, f.value), el("td", {}, num(f.count)), el("td", { class: "mono" }, fmtTs(f.last_seen)))));
  v.append(el("h2", {}, "Timeline (latest 100 events)"), table(EVENT_COLS, d.events, e => eventRow(e, false), { id: "timeline" }));
}

async function renderDeckies() {
  const v = view();
  listen(() => {});
  v.append(el("h1", {}, "Deckies"));
  try {
    const d = await api("/api/v1/deckies");
    v.append(table(["name", "ip", "hostname", "os", "archetype", "status", "services", "events 24 h", "attackers 24 h", "last event", ""], d.items,
      x => el("tr", {}, el("td", {}, el("a", { href: "#/events?decky=" + encodeURIComponent(x.name) }, x.name), " ", el("a", { href: "#/realism?decky=" + encodeURIComponent(x.name), class: "muted" }, "realism")), el("td", { class: "mono" }, x.ip), el("td", {}, x.hostname), el("td", {}, x.os_family), el("td", {}, x.archetype), el("td", {}, x.status),
        el("td", {}, x.services.map(s => el("span", { class: "pill" }, s.service + ":" + s.port))), el("td", {}, num(x.events_24h)), el("td", {}, num(x.attackers_24h)), el("td", { class: "mono" }, fmtTs(x.last_event)),
        el("td", {}, S.user.role === "admin" && x.ip ? el("button", { on: { click: async ev => { try { await api("/api/v1/deckies/" + encodeURIComponent(x.name) + "/actions", { method: "POST", body: { action: "mutate" } }); ev.target.textContent = "requested"; } catch (e) { ev.target.textContent = e.message; } } } }, "mutate") : "")), { id: "deckies-table" }));
  } catch (e) { showError(v, e); }
}

// The prober's realism checks: every decky as an attacker's tools see it (probe_results).
async function renderRealism(params) {
  const v = view();
  listen(() => {});
  const p = Object.fromEntries(params);
  v.append(el("h1", {}, "Realism" + (p.decky ? ": " + p.decky : "")));
  try {
    const q = new URLSearchParams();
    if (p.decky) q.set("decky", p.decky);
    if (p.findings === "true") q.set("findings", "true");
    const d = await api("/api/v1/probes" + (q.toString() ? "?" + q.toString() : ""));
    v.append(el("div", { class: "cards" }, ["critical", "high", "medium", "low", "info", "pass"].map(k =>
      el("div", { class: "card sev-" + k }, el("div", { class: "n" }, num(d.counts[k] || 0)), el("div", { class: "l" }, k)))));
    v.append(el("p", {}, p.findings === "true" ? el("a", { href: "#/realism" + (p.decky ? "?decky=" + encodeURIComponent(p.decky) : "") }, "show passes too")
      : el("a", { href: "#/realism?findings=true" + (p.decky ? "&decky=" + encodeURIComponent(p.decky) : "") }, "findings only"),
      p.decky ? [" · ", el("a", { href: "#/realism" }, "every decky")] : ""));
    if (!p.decky) {
      v.append(el("h2", {}, "Per decky"));
      v.append(table(["decky", "findings", "worst"], d.deckies, x => el("tr", {},
        el("td", {}, el("a", { href: "#/realism?decky=" + encodeURIComponent(x.decky) }, x.decky)), el("td", {}, num(x.findings)),
        el("td", {}, el("span", { class: "pill sev-" + x.worst }, x.worst)))));
    }
    v.append(el("h2", {}, "Checks"));
    v.append(table(["severity", "decky", "check", "subject", "expected", "seen", "first seen", "last seen", "resolved"], d.items, x => el("tr", {},
      el("td", {}, el("span", { class: "pill sev-" + x.severity }, x.severity)), el("td", {}, x.decky), el("td", {}, x.check), el("td", { class: "mono" }, x.subject),
      el("td", { class: "mono" }, x.expected), el("td", { class: "mono" }, x.seen), el("td", { class: "mono" }, fmtTs(x.first_seen)),
      el("td", { class: "mono" }, fmtTs(x.last_seen)), el("td", { class: "mono" }, fmtTs(x.resolved_at))), { id: "realism-table" }));
  } catch (e) { showError(v, e); }
}

async function renderFlows(params) {
  const v = view();
  listen(() => {});
  const p = Object.fromEntries(params);
  v.append(el("h1", {}, "Flows"));
  const src = el("input", { name: "src_ip", value: p.src_ip || "" }), port = el("input", { name: "dst_port", value: p.dst_port || "" });
  const f = el("form", { class: "filters" }, el("label", {}, "source IP", src), el("label", {}, "destination port", port), el("button", { type: "submit" }, "Filter"));
  f.addEventListener("submit", ev => { ev.preventDefault(); location.hash = "#/flows" + qs({ src_ip: src.value, dst_port: port.value }); });
  v.append(f);
  try {
    const page = await api("/api/v1/flows" + qs(Object.assign({ limit: 50 }, p)));
    v.append(table(["first seen", "source", "destination", "proto", "packets", "bytes", "port", "ended"], page.items,
      x => el("tr", {}, el("td", { class: "mono" }, fmtTs(x.first_seen)), el("td", {}, attackerLink(x.src_ip), ":" + x.src_port), el("td", { class: "mono" }, x.dst_ip + ":" + x.dst_port),
        el("td", {}, x.proto), el("td", {}, num(x.packets)), el("td", {}, num(x.bytes)), el("td", {}, x.port), el("td", {}, x.ended ? "yes" : "")), { id: "flows-table" }));
    v.append(pager("#/flows", p, page.next_cursor));
  } catch (e) { showError(v, e); }
}

async function renderCredentials(params) {
  const v = view();
  listen(() => {});
  const p = Object.fromEntries(params);
  v.append(el("h1", {}, "Credentials"));
  try {
    const page = await api("/api/v1/credentials" + qs(Object.assign({ limit: 50 }, p)));
    v.append(table(["attacker", "decky", "service", "principal", "kind", "secret", "attempts", "last seen"], page.items,
      c => el("tr", {}, el("td", {}, attackerLink(c.attacker_ip)), el("td", {}, c.decky), el("td", {}, c.service), el("td", { class: "mono" }, c.principal), el("td", {}, c.secret_kind), el("td", { class: "mono" }, c.secret), el("td", {}, num(c.attempts)), el("td", { class: "mono" }, fmtTs(c.last_seen)))));
    v.append(pager("#/credentials", p, page.next_cursor));
  } catch (e) { showError(v, e); }
}

async function renderWorkers() {
  const v = view();
  listen(() => {});
  v.append(el("h1", {}, "Workers and health"));
  try {
    // Health answers 503 with the same body when the pipeline is not healthy.
    const health = fetch("/api/v1/health", { cache: "no-store" }).then(r => r.json());
    const [w, h] = await Promise.all([api("/api/v1/workers"), health]);
    v.append(el("p", { id: "health-line" }, "Pipeline: ", el("span", { class: h.status === "ok" ? "ok" : "error" }, h.status), " · database ", h.database, " · up ", num(h.uptime_secs), " s"));
    v.append(el("h2", {}, "Leases"), table(["worker", "host", "holder", "pid", "since", "last heartbeat", "state"], w.leases,
      l => el("tr", {}, el("td", {}, l.kind), el("td", {}, l.host), el("td", { class: "mono" }, l.holder), el("td", {}, l.pid), el("td", { class: "mono" }, fmtTs(l.acquired_at)), el("td", {}, l.heartbeat_age_secs.toFixed(1) + " s ago"),
        el("td", { class: l.alive ? "alive" : "dead" }, l.alive ? "alive" : "stale")), { id: "leases" }));
    v.append(el("h2", {}, "Counters"), table(["worker", "host", "counter", "value"], w.counters,
      c => el("tr", {}, el("td", {}, c.worker), el("td", {}, c.host), el("td", { class: "mono" }, c.name), el("td", { class: /lost|drop|reject|error/.test(c.name) && c.value > 0 ? "error" : "" }, num(c.value)))));
  } catch (e) { showError(v, e); }
}

async function renderUsers() {
  const v = view();
  listen(() => {});
  v.append(el("h1", {}, "Users"));
  const out = el("p", { id: "users-msg" });
  try {
    const u = await api("/api/v1/users");
    v.append(table(["user", "role", "must change password", ""], u.items,
      x => el("tr", {}, el("td", {}, x.username), el("td", {}, x.role), el("td", {}, x.must_change_password ? "yes" : "no"),
        el("td", {}, el("button", { on: { click: async () => { try { const r = await api("/api/v1/users/" + encodeURIComponent(x.username) + "/password", { method: "POST" }); out.textContent = "One-time password for " + r.username + ": " + r.one_time_password; } catch (e) { out.textContent = e.message; } } } }, "reset password"))), { id: "users-table" }));
    const name = el("input", { name: "username" });
    const role = el("select", { name: "role" }, el("option", { value: "viewer" }, "viewer"), el("option", { value: "admin" }, "admin"));
    const f = el("form", { class: "filters" }, el("label", {}, "new user", name), el("label", {}, "role", role), el("button", { type: "submit" }, "Create"));
    f.addEventListener("submit", async ev => {
      ev.preventDefault();
      try { const r = await api("/api/v1/users", { method: "POST", body: { username: name.value, role: role.value } }); out.textContent = "Created " + r.username + "; one-time password: " + r.one_time_password; }
      catch (e) { out.textContent = e.message; }
    });
    v.append(el("h2", {}, "Create a user"), f, out);
  } catch (e) { showError(v, e); }
}

// ---- router ---------------------------------------------------------------------------------
function route() {
  if (!S.token) { renderLogin(); return; }
  if (S.user && S.user.must_change_password) { stopLive(); renderChangePassword(); return; }
  chrome();
  startLive();
  const h = location.hash.slice(1) || "/overview";
  const [pathPart, query] = h.split("?");
  const parts = pathPart.split("/").filter(Boolean);
  const params = new URLSearchParams(query || "");
  switch (parts[0]) {
    case "events": return renderEvents(params);
    case "attackers": return renderAttackers(params);
    case "attacker": return renderAttacker(decodeURIComponent(parts[1] || ""));
    case "deckies": return renderDeckies();
    case "realism": return renderRealism(params);
    case "flows": return renderFlows(params);
    case "credentials": return renderCredentials(params);
    case "workers": return renderWorkers();
    case "users": return renderUsers();
    default: return renderOverview();
  }
}

// ---- pipeline health: a red banner on every page while a worker's heartbeat is stale ----------
const HEALTH_WHY = {
  degraded: "a worker's heartbeat is stale (its process died or hangs): the data shown is not being updated",
  no_workers: "no worker is running: nothing collects or correlates new data",
  database_unreachable: "the database is unreachable",
};
async function checkHealth() {
  const b = document.getElementById("health-banner");
  let h = null;
  try {
    const r = await fetch("/api/v1/health", { cache: "no-store" });
    h = await r.json();
  } catch (e) {
    h = { status: "unreachable" };
  }
  if (h && h.status === "ok") { b.hidden = true; b.textContent = ""; return; }
  const why = HEALTH_WHY[h && h.status] || "decnet web is unreachable";
  const stale = h && Array.isArray(h.stale) && h.stale.length ? " (stale: " + h.stale.join(", ") + ")" : "";
  b.textContent = "Pipeline unhealthy — " + why + stale;
  b.hidden = false;
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => logout());
  route();
  checkHealth();
  setInterval(checkHealth, 10000);
});
