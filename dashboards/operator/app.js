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
    const badge = cell(a.priority); badge.className = "badge";
    tr.append(badge, cell(a.title), cell(`${a.home_id}${a.resident_id ? " / " + a.resident_id : ""}`),
      cell(`${a.device_id} (${a.device_type})`), cell(new Date(a.received_at).toLocaleTimeString()),
      cell(String(a.event_count)), stateCell(a));
    const action = document.createElement("td");
    if (a.state === "new") {
      const btn = document.createElement("button");
      btn.textContent = "Acknowledge";
      btn.onclick = () => api(`/api/v1/alarms/${a.id}/acknowledge`, { method: "POST" })
        .then(upsert).catch((e) => setStatus(`Could not acknowledge: ${e.message}`, "down"));
      action.append(btn);
    }
    tr.append(action);
    body.append(tr);
  }
  $("empty").hidden = rows.length > 0;
}

function upsert(alarm) { alarms.set(alarm.id, alarm); render(); }

async function load() {
  const list = await api("/api/v1/alarms?limit=500");
  alarms.clear();
  list.forEach((a) => alarms.set(a.id, a));
  render();
}

async function stream() {
  // Reconnect forever; on every (re)connect reload the queue so nothing is missed.
  for (let delay = 1000; token; delay = Math.min(delay * 2, 15000)) {
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
    setStatus("reconnecting…", "down");
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
