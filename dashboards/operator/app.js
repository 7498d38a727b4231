// Operator console: the live alarm queue. Data comes from /api/v1; changes arrive on
// the server-sent-events stream, read with fetch so the token stays in a header.
"use strict";

const RANK = { critical: 0, high: 1, normal: 2, low: 3 };
const alarms = new Map();
let token = sessionStorage.getItem("trygg.token");
let streamAbort = null;

const $ = (id) => document.getElementById(id);

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = cls || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401) { signOut("Session expired, sign in again"); throw new Error("401"); }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.detail || res.statusText);
  }
  return res.json();
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function stateCell(a) {
  const who = a.assigned_to ? ` to ${a.assigned_to}` : a.claimed_by ? ` by ${a.claimed_by}` : "";
  const td = cell(a.state.replace("_", " ") + who);
  if (a.escalation) {
    const flag = document.createElement("strong");
    flag.className = "escalation";
    flag.textContent = ` escalated: ${a.escalation.replace(/_/g, " ")}`;
    td.append(flag);
  }
  return td;
}

function render() {
  const rows = [...alarms.values()]
    .filter((a) => a.state !== "resolved")
    .sort((a, b) => RANK[a.priority] - RANK[b.priority]
      || a.received_at.localeCompare(b.received_at) || a.id - b.id);
  const body = $("alarms");
  body.replaceChildren();
  for (const a of rows) {
    const tr = document.createElement("tr");
    tr.className = `${a.priority} ${a.state}${a.escalation ? " escalated" : ""}`;
    tr.dataset.alarmId = a.id;
    tr.onclick = () => showDetail(a.id);
    const badge = cell(a.priority); badge.className = "badge";
    tr.append(badge, cell(a.title), cell(`${a.home_id}${a.resident_id ? " / " + a.resident_id : ""}`),
      cell(`${a.device_id} (${a.device_type})`), cell(new Date(a.received_at).toLocaleTimeString()),
      cell(String(a.event_count)), stateCell(a));
    // A form being filled in (assign, resolve) survives the re-render of other changes.
    let action = forms.get(a.id);
    if (!action) {
      action = document.createElement("td");
      action.className = "actions";
      action.append(...actionsFor(a));
    }
    tr.append(action);
    body.append(tr);
  }
  $("empty").hidden = rows.length > 0;
}

// The lifecycle (cloud/lifecycle.py): which buttons each state offers.
const OUTCOMES = ["help_given", "ambulance", "resolved_by_phone", "false_alarm", "test",
  "technical_fixed", "other"];
const STEPS = {
  new: ["claim", "acknowledge"],
  claimed: ["acknowledge", "release", "resolve"],
  acknowledged: ["assign", "resolve"],
  assigned: ["on-site", "assign", "resolve"],
  on_site: ["resolve"],
};
const LABELS = { claim: "Claim", acknowledge: "Acknowledge", release: "Release",
  assign: "Assign…", "on-site": "On site", resolve: "Resolve…" };
let staff = null;
const forms = new Map();  // alarm id -> its actions cell while a form is open in it

function button(label, onclick) {
  const btn = document.createElement("button");
  btn.type = "button";
  btn.textContent = label;
  btn.onclick = (ev) => { ev.stopPropagation(); onclick(); };
  return btn;
}

function act(a, step, body) {
  const options = { method: "POST" };
  if (body) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  return api(`/api/v1/alarms/${a.id}/${step}`, options)
    .then((alarm) => { forms.delete(a.id); upsert(alarm); if (openDetail === a.id) showDetail(a.id); })
    .catch((e) => setStatus(`Could not ${step.replace("-", " ")}: ${e.message}`, "down"));
}

function choose(name, values, labelOf) {
  const select = document.createElement("select");
  select.setAttribute("aria-label", name);
  for (const v of values) {
    const option = document.createElement("option");
    option.value = v;
    option.textContent = labelOf ? labelOf(v) : v.replace(/_/g, " ");
    select.append(option);
  }
  return select;
}

function actionsFor(a) {
  return (STEPS[a.state] || []).map((step) => {
    if (step === "assign") {
      return button(LABELS[step], async () => {
        staff = staff || (await api("/api/v1/users")).filter((u) => u.role === "staff");
        const who = choose("Staff member", staff.map((u) => u.username), (v) => v);
        const cell = $("alarms").querySelector(`tr[data-alarm-id="${a.id}"] td.actions`);
        cell.replaceChildren(who, button("Send", () => act(a, "assign", { staff: who.value })),
          button("Cancel", () => { forms.delete(a.id); render(); }));
        forms.set(a.id, cell);
      });
    }
    if (step === "resolve") {
      return button(LABELS[step], () => {
        const outcome = choose("Outcome", OUTCOMES);
        const note = document.createElement("input");
        note.placeholder = "Note";
        note.setAttribute("aria-label", "Note");
        const cell = $("alarms").querySelector(`tr[data-alarm-id="${a.id}"] td.actions`);
        cell.replaceChildren(outcome, note, button("Resolve", () =>
          act(a, "resolve", { outcome: outcome.value, note: note.value || null })),
          button("Cancel", () => { forms.delete(a.id); render(); }));
        forms.set(a.id, cell);
      });
    }
    return button(LABELS[step], () => act(a, step));
  });
}

// The detail of one alarm: who lives there, how to get in, and what has happened.
let openDetail = null;

async function showDetail(id) {
  const d = await api(`/api/v1/alarms/${id}`).catch((e) => { setStatus(e.message, "down"); });
  if (!d) return;
  openDetail = id;
  const panel = $("detail");
  const lines = [];
  const line = (label, text) => { if (text) lines.push([label, text]); };
  line("Alarm", `${d.alarm.title} (${d.alarm.priority}), ${d.alarm.state.replace("_", " ")}`);
  line("Resident", d.resident && d.resident.name);
  line("Address", d.home && d.home.address);
  line("Key safe", d.home && d.home.key_safe);
  line("Notes", [d.home && d.home.notes, d.resident && d.resident.notes].filter(Boolean).join(" "));
  for (const c of (d.resident ? d.resident.contacts : [])) {
    line("Contact", `${c.name}${c.relation ? " (" + c.relation + ")" : ""}, ${c.phone}`);
  }
  if (d.alarm.latitude != null) line("Position", `${d.alarm.latitude}, ${d.alarm.longitude}`);
  const dl = document.createElement("dl");
  for (const [label, text] of lines) {
    const dt = document.createElement("dt"); dt.textContent = label;
    const dd = document.createElement("dd"); dd.textContent = text;
    dl.append(dt, dd);
  }
  const history = document.createElement("ol");
  for (const t of d.history) {
    const li = document.createElement("li");
    const extra = Object.values(t.detail || {}).join(", ");
    li.textContent = `${new Date(t.at).toLocaleTimeString()} ${t.action.replace("_", " ")} by ${t.by}` +
      (extra ? ` (${extra})` : "");
    history.append(li);
  }
  const heading = document.createElement("h2");
  heading.textContent = "Alarm details";
  const close = button("Close", () => { panel.hidden = true; openDetail = null; });
  panel.replaceChildren(heading, close, dl, history);
  panel.hidden = false;
}

function upsert(alarm) {
  const before = alarms.get(alarm.id);
  if (before && before.state !== alarm.state) forms.delete(alarm.id);  // moved on elsewhere
  alarms.set(alarm.id, alarm);
  render();
}

async function load() {
  const list = await api("/api/v1/alarms?limit=500");
  alarms.clear();
  list.forEach((a) => alarms.set(a.id, a));
  render();
}

async function stream() {
  // Reconnect forever (an alarm console must come back quickly: at most 5 s apart); on
  // every (re)connect reload the queue so nothing is missed.
  for (let delay = 1000; token; delay = Math.min(delay * 2, 5000)) {
    streamAbort = new AbortController();
    try {
      const res = await fetch("/api/v1/alarms/stream", {
        headers: { Authorization: `Bearer ${token}` }, signal: streamAbort.signal,
      });
      if (res.status === 401) { signOut("Session expired, sign in again"); return; }
      if (res.status === 403) { signOut("This account cannot open the alarm queue (operators and supervisors can)."); return; }
      if (!res.ok) throw new Error(res.statusText);
      await load();
      setStatus("live", "live");
      $("queue").classList.remove("stale");
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) upsert(JSON.parse(data).alarm);
        }
      }
    } catch (e) {
      if (!token) return;
    }
    // The stream ended (the service stopped, or the network went): say so, and grey the
    // queue, which may be out of date until the stream is back.
    setStatus("connection lost, reconnecting…", "down");
    $("queue").classList.add("stale");
    await new Promise((r) => setTimeout(r, delay));
  }
}

function showQueue() {
  $("login").hidden = true;
  $("queue").hidden = false;
  $("signout").hidden = false;
  stream();
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem("trygg.token");
  if (streamAbort) streamAbort.abort();
  alarms.clear();
  forms.clear();
  staff = null;
  $("detail").hidden = true;
  $("queue").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus("signed out");
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await fetch("/api/v1/auth/token", { method: "POST", body: new URLSearchParams(new FormData(ev.target)) });
  if (!res.ok) { $("login-error").textContent = "Wrong username or password"; return; }
  token = (await res.json()).access_token;
  sessionStorage.setItem("trygg.token", token);
  $("login-error").textContent = "";
  showQueue();
});
$("signout").addEventListener("click", () => signOut());

if (token) showQueue();
