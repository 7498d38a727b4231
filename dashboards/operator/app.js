// Operator console: the live alarm queue. Data comes from /api/v1; changes arrive on
// the server-sent-events stream, read with fetch so the token stays in a header.
// Every word shown comes from the message catalog of the chosen language (i18n/*.json).
"use strict";

const RANK = { critical: 0, high: 1, normal: 2, low: 3 };
const PRIORITIES = ["critical", "high", "normal", "low"];
const OPEN_STATES = ["new", "claimed", "acknowledged", "assigned", "on_site"];
const LANGUAGES = ["sv", "en"];
const LOCALES = { sv: "sv-SE", en: "en-GB" };
const ANNOUNCED = new Set(["critical", "high"]);  // a sound, the title and a notification
const alarms = new Map();
const again = new Set();  // open alarms pressed again since the operator last saw them
let token = sessionStorage.getItem("trygg.token");
let me = null;  // GET /api/v1/me: who is signed in, and the organisation's settings
let streamAbort = null;
let messages = {};
let lang = "en";
const missing = new Set();
window.trygg = { missing };  // the tests read which keys a catalog lacked

const $ = (id) => document.getElementById(id);

// -- messages -----------------------------------------------------------------------------

function t(key, args = {}) {
  let text = messages[key];
  if (text === undefined) {
    if (!missing.has(key)) console.error(`missing message: ${key} (${lang})`);
    missing.add(key);
    text = key;
  }
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in args ? String(args[name]) : `{${name}}`));
}

function chooseLanguage() {
  const kept = localStorage.getItem("trygg.lang");
  if (LANGUAGES.includes(kept)) return kept;
  for (const wanted of navigator.languages || [navigator.language || "en"]) {
    const base = wanted.toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

async function setLanguage(chosen) {
  const res = await fetch(`i18n/${chosen}.json`);
  messages = await res.json();
  lang = chosen;
  document.documentElement.lang = chosen;
  $("lang").value = chosen;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  fillFilters();
  updateMute();
  if (!token) setStatus(t("ui.signed_out"));
  render();
  showTitle();
}

function timeZone() { return (me && me.time_zone) || undefined; }

function clock(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], {
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: timeZone(),
  }).format(new Date(iso));
}

function waited(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

// -- status, title, sound -----------------------------------------------------------------

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = cls || "";
}

function muteKey() { return `trygg.mute.${me ? me.username : ""}`; }
function muted() { return localStorage.getItem(muteKey()) === "1"; }

function updateMute() {
  const btn = $("mute");
  btn.textContent = muted() ? t("ui.sound_off") : t("ui.sound_on");
  btn.setAttribute("aria-pressed", muted() ? "true" : "false");
  btn.title = muted() ? t("ui.unmute") : t("ui.mute");
  btn.classList.toggle("muted", muted());
}

function waitingCounts() {
  const counts = Object.fromEntries(PRIORITIES.map((p) => [p, 0]));
  for (const a of alarms.values()) if (a.state === "new") counts[a.priority] += 1;
  return counts;
}

function showTitle() {
  const counts = waitingCounts();
  const urgent = counts.critical + counts.high;
  document.title = (urgent ? `(${urgent}) ` : "") + t("ui.title");
  const parts = PRIORITIES.filter((p) => counts[p]).map((p) => `${counts[p]} ${t(`priority.${p}`)}`);
  const el = $("waiting");
  el.replaceChildren();
  const label = document.createElement("strong");
  label.textContent = `${t("ui.waiting_count")}: `;
  el.append(label, parts.length ? parts.join(" · ") : t("ui.waiting_none"));
  el.className = counts.critical ? "critical" : counts.high ? "high" : "";
}

function announce(a) {
  if (!ANNOUNCED.has(a.priority)) return;
  if (!muted()) {
    const chime = $("chime");
    chime.currentTime = 0;
    chime.play().catch(() => setStatus(t("ui.sound_off"), "down"));
  }
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification(t("ui.notify_title", { priority: t(`priority.${a.priority}`), alarm: t(`kind.${a.kind}`) }),
      { body: a.home_id, tag: `alarm-${a.id}` });
  }
}

// -- the API ------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, options.headers || {});
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401) { signOut(t("ui.session_expired")); throw new Error("401"); }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.detail || res.statusText);
  }
  return res.json();
}

// -- filters ------------------------------------------------------------------------------

function filterKey() { return `trygg.filters.${me ? me.username : ""}`; }

function filters() {
  try {
    return Object.assign({ priority: "", state: "open" }, JSON.parse(localStorage.getItem(filterKey()) || "{}"));
  } catch { return { priority: "", state: "open" }; }
}

function fillFilters() {
  const kept = filters();
  const fill = (select, values, label, value) => {
    select.replaceChildren();
    for (const v of values) {
      const option = document.createElement("option");
      option.value = v;
      option.textContent = label(v);
      select.append(option);
    }
    select.value = value;
  };
  fill($("filter-priority"), ["", ...PRIORITIES],
    (v) => (v ? t(`priority.${v}`) : t("ui.filter_any")), kept.priority);
  fill($("filter-state"), ["open", ...OPEN_STATES],
    (v) => (v === "open" ? t("ui.filter_open") : t(`state.${v}`)), kept.state);
}

function saveFilters() {
  localStorage.setItem(filterKey(), JSON.stringify({
    priority: $("filter-priority").value, state: $("filter-state").value,
  }));
  render();
}

function shown(a) {
  const f = filters();
  return (!f.priority || a.priority === f.priority) && (f.state === "open" || a.state === f.state);
}

// -- the queue ----------------------------------------------------------------------------

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function theirs(a) {
  return me && a.state === "claimed" && a.claimed_by && a.claimed_by !== me.username;
}

function stateCell(a) {
  const td = document.createElement("td");
  td.className = "state";
  let text = t(`state.${a.state}`);
  if (a.assigned_to) text += ` ${t("ui.to", { who: a.assigned_to })}`;
  else if (a.claimed_by && a.state !== "new") text += ` ${t("ui.by", { who: a.claimed_by })}`;
  td.append(text);
  const flag = (cls, label) => {
    const el = document.createElement("strong");
    el.className = cls;
    el.textContent = label;
    td.append(" ", el);
  };
  if (theirs(a)) flag("theirs-flag", t("ui.claimed_by_other", { who: a.claimed_by }));
  if (a.restored_at) flag("cleared-flag", t("ui.cleared"));
  if (again.has(a.id)) flag("again-flag", t("ui.new_again"));
  if (a.escalation) flag("escalation", t("ui.escalated", { reason: t(`escalation.${a.escalation}`) }));
  return td;
}

// How late an alarm nobody has taken is, against the organisation's answer target.
function ageClass(a, now) {
  if (a.state !== "new") return "";
  const target = (me && me.answer_target_s) || 60;
  const age = (now - Date.parse(a.received_at)) / 1000;
  if (age >= 3 * target) return "age-3";
  if (age >= target) return "age-2";
  if (age >= target / 2) return "age-1";
  return "";
}

function rowClass(a, now) {
  return [a.priority, a.state, a.escalation ? "escalated" : "", theirs(a) ? "theirs" : "",
    a.restored_at ? "cleared" : "", again.has(a.id) ? "again" : "", ageClass(a, now)]
    .filter(Boolean).join(" ");
}

function render() {
  if (!me) return;
  const open = [...alarms.values()].filter((a) => a.state !== "resolved");
  const rows = open.filter(shown)
    .sort((a, b) => RANK[a.priority] - RANK[b.priority]
      || a.received_at.localeCompare(b.received_at) || a.id - b.id);
  // Keep the keyboard where it was: on the same alarm's row, or the same button in it.
  const focused = document.activeElement;
  const focusRow = focused && focused.closest ? focused.closest("tr[data-alarm-id]") : null;
  const focusId = focusRow ? Number(focusRow.dataset.alarmId) : null;
  const focusButton = focusRow && focused !== focusRow ? focused.textContent : null;
  const body = $("alarms");
  const now = Date.now();
  body.replaceChildren();
  rows.forEach((a, i) => {
    const tr = document.createElement("tr");
    tr.className = rowClass(a, now);
    tr.dataset.alarmId = a.id;
    tr.tabIndex = focusId === null ? (i === 0 ? 0 : -1) : (a.id === focusId ? 0 : -1);
    tr.setAttribute("aria-label", `${t(`priority.${a.priority}`)}: ${t(`kind.${a.kind}`)}, ${a.home_id}`);
    tr.onclick = () => showDetail(a.id);
    tr.onkeydown = (ev) => rowKey(ev, tr, a);
    const badge = cell(t(`priority.${a.priority}`), "badge");
    tr.append(badge, cell(t(`kind.${a.kind}`)),
      cell(`${a.home_id}${a.resident_id ? " / " + a.resident_id : ""}`),
      cell(`${a.device_id} (${a.device_type})`), cell(clock(a.received_at)),
      cell(waited((now - Date.parse(a.received_at)) / 1000), "waiting"),
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
  });
  if (focusId !== null) {
    const row = body.querySelector(`tr[data-alarm-id="${focusId}"]`);
    const target = row && focusButton
      ? [...row.querySelectorAll("button")].find((b) => b.textContent === focusButton) || row
      : row;
    if (target) target.focus();
  }
  $("empty").hidden = rows.length > 0;
  const hidden = open.length - rows.length;
  $("filtered").textContent = hidden ? t("ui.filtered_out", { count: hidden }) : "";
  showTitle();
}

// Every second: the waiting times and how late each alarm is, without a re-render (which
// would disturb a form being filled in or the keyboard's place).
function tick() {
  const now = Date.now();
  for (const tr of $("alarms").querySelectorAll("tr[data-alarm-id]")) {
    const a = alarms.get(Number(tr.dataset.alarmId));
    if (!a) continue;
    tr.querySelector("td.waiting").textContent = waited((now - Date.parse(a.received_at)) / 1000);
    tr.className = rowClass(a, now);
  }
}
setInterval(tick, 1000);

function rowKey(ev, tr, a) {
  if (ev.target !== tr) return;  // keys inside a form or on a button are theirs
  const rows = [...$("alarms").querySelectorAll("tr[data-alarm-id]")];
  const i = rows.indexOf(tr);
  const move = (j) => {
    if (j < 0 || j >= rows.length) return;
    rows.forEach((r) => { r.tabIndex = -1; });
    rows[j].tabIndex = 0;
    rows[j].focus();
  };
  if (ev.key === "ArrowDown") { ev.preventDefault(); move(i + 1); }
  else if (ev.key === "ArrowUp") { ev.preventDefault(); move(i - 1); }
  else if (ev.key === "Home") { ev.preventDefault(); move(0); }
  else if (ev.key === "End") { ev.preventDefault(); move(rows.length - 1); }
  else if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); showDetail(a.id); }
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
  again.delete(a.id);
  return api(`/api/v1/alarms/${a.id}/${step}`, options)
    .then((alarm) => {
      forms.delete(a.id);
      upsert(alarm);
      const row = $("alarms").querySelector(`tr[data-alarm-id="${a.id}"]`);
      if (row) row.focus();
      if (openDetail === a.id) showDetail(a.id);
    })
    .catch((e) => setStatus(t("ui.could_not", { step: t(`action.${step}`), reason: e.message }), "down"));
}

function choose(name, values, labelOf) {
  const select = document.createElement("select");
  select.setAttribute("aria-label", name);
  for (const v of values) {
    const option = document.createElement("option");
    option.value = v;
    option.textContent = labelOf(v);
    select.append(option);
  }
  return select;
}

function openForm(a, ...controls) {
  const cell = $("alarms").querySelector(`tr[data-alarm-id="${a.id}"] td.actions`);
  cell.replaceChildren(...controls);
  forms.set(a.id, cell);
  controls[0].focus();
  cell.onkeydown = (ev) => {
    if (ev.key === "Escape") { ev.stopPropagation(); forms.delete(a.id); render(); }
  };
}

function actionsFor(a) {
  return (STEPS[a.state] || []).map((step) => {
    if (step === "assign") {
      return button(t("action.assign"), async () => {
        staff = staff || (await api("/api/v1/users")).filter((u) => u.role === "staff");
        const who = choose(t("ui.staff_member"), staff.map((u) => u.username), (v) => v);
        openForm(a, who, button(t("ui.send"), () => act(a, "assign", { staff: who.value })),
          button(t("ui.cancel"), () => { forms.delete(a.id); render(); }));
      });
    }
    if (step === "resolve") {
      return button(t("action.resolve"), () => {
        const outcome = choose(t("ui.outcome"), OUTCOMES, (v) => t(`outcome.${v}`));
        const note = document.createElement("input");
        note.placeholder = t("ui.note");
        note.setAttribute("aria-label", t("ui.note"));
        openForm(a, outcome, note, button(t("ui.resolve"), () =>
          act(a, "resolve", { outcome: outcome.value, note: note.value || null })),
          button(t("ui.cancel"), () => { forms.delete(a.id); render(); }));
      });
    }
    return button(t(`action.${step}`), () => act(a, step));
  });
}

// -- the detail of one alarm: who lives there, how to get in, and what has happened -------

let openDetail = null;

function dateTime(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: timeZone(),
  }).format(new Date(iso));
}

function ageOf(born) {
  const [y, m, d] = born.split("-").map(Number);
  const today = new Date();
  let age = today.getFullYear() - y;
  if (today.getMonth() + 1 < m || (today.getMonth() + 1 === m && today.getDate() < d)) age -= 1;
  return age;
}

function languageName(code) {
  try {
    return new Intl.DisplayNames([LOCALES[lang]], { type: "language" }).of(code) || code;
  } catch { return code; }
}

function element(tag, text, cls) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function definitions(lines) {
  const dl = document.createElement("dl");
  for (const [label, text] of lines) {
    if (!text) continue;
    dl.append(element("dt", label), element("dd", text));
  }
  return dl;
}

// The resident first (who, how to get in, whom to call, what happened lately), then the
// device and home, then this alarm's history.
function residentCard(d) {
  const card = element("section", undefined, "card resident");
  const r = d.resident;
  const name = r ? r.name + (r.born ? `, ${t("ui.age", { age: ageOf(r.born) })}` : "") : d.alarm.home_id;
  card.append(element("h3", name));
  card.append(definitions([
    [t("ui.d_address"), d.home && d.home.address],
    [t("ui.d_key_safe"), d.home && d.home.key_safe],
    [t("ui.d_language"), r && r.language && languageName(r.language)],
    [t("ui.d_notes"), [r && r.notes, d.home && d.home.notes].filter(Boolean).join(" ")],
  ]));
  if (r && r.contacts.length) {
    card.append(element("h4", t("ui.d_contacts")));
    const list = element("ul", undefined, "contacts");
    for (const c of r.contacts) {
      const li = element("li", `${c.name}${c.relation ? " (" + c.relation + ")" : ""}, `);
      const call = element("a", c.phone);
      call.href = `tel:${c.phone.replace(/[^+0-9]/g, "")}`;
      call.setAttribute("aria-label", t("ui.call", { name: c.name }) + ` ${c.phone}`);
      li.append(call);
      list.append(li);
    }
    card.append(list);
  }
  if (r) {
    card.append(element("h4", t("ui.d_recent")));
    if (!d.recent.length) card.append(element("p", t("ui.d_recent_none"), "hint"));
    else {
      const list = element("ol", undefined, "recent");
      for (const a of d.recent) {
        const result = a.outcome ? t(`outcome.${a.outcome}`) : t(`state.${a.state}`);
        list.append(element("li", t("ui.recent_line",
          { time: dateTime(a.received_at), alarm: t(`kind.${a.kind}`), result })));
      }
      card.append(list);
    }
  }
  return card;
}

async function showDetail(id) {
  const d = await api(`/api/v1/alarms/${id}`).catch((e) => { setStatus(e.message, "down"); });
  if (!d) return;
  openDetail = id;
  if (again.delete(id)) render();
  const panel = $("detail");
  const alarm = element("section", undefined, "card alarm");
  alarm.append(element("h3", t("ui.d_alarm_section")));
  const position = d.alarm.latitude != null ? `${d.alarm.latitude}, ${d.alarm.longitude}` : null;
  alarm.append(definitions([
    [t("ui.d_alarm"), `${t(`kind.${d.alarm.kind}`)} (${t(`priority.${d.alarm.priority}`)}), ${t(`state.${d.alarm.state}`)}`],
    [t("ui.d_device"), `${d.alarm.device_id} (${d.alarm.device_type})`],
    [t("ui.d_home"), d.alarm.home_id],
    [t("ui.d_gateway"), d.alarm.gateway_id],
    [t("ui.d_position"), position],
  ]));
  alarm.append(element("h4", t("ui.d_history")));
  const history = document.createElement("ol");
  for (const step of d.history) {
    const detail = Object.entries(step.detail || {})
      .map(([k, v]) => (k === "outcome" ? t(`outcome.${v}`) : k === "reason" ? t(`escalation.${v}`) : v))
      .join(", ");
    history.append(element("li",
      t("ui.history_line", { time: clock(step.at), action: t(`history.${step.action}`), who: step.by })
      + (detail ? ` (${detail})` : "")));
  }
  alarm.append(history);
  const heading = element("h2", t("ui.details"));
  heading.id = "detail-heading";
  const close = button(t("ui.close"), () => closeDetail());
  panel.replaceChildren(heading, close, residentCard(d), alarm);
  panel.hidden = false;
  panel.onkeydown = (ev) => { if (ev.key === "Escape") closeDetail(); };
  close.focus();
}

function closeDetail() {
  const id = openDetail;
  $("detail").hidden = true;
  openDetail = null;
  const row = $("alarms").querySelector(`tr[data-alarm-id="${id}"]`);
  if (row) row.focus();
}

document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && openDetail !== null) closeDetail();
});

// -- live changes -------------------------------------------------------------------------

function upsert(alarm, change) {
  const before = alarms.get(alarm.id);
  if (before && before.state !== alarm.state) forms.delete(alarm.id);  // moved on elsewhere
  alarms.set(alarm.id, alarm);
  if (alarm.state === "resolved") again.delete(alarm.id);
  if (change === "created") announce(alarm);
  else if (change && before && alarm.state !== "resolved" && alarm.event_count > before.event_count) {
    again.add(alarm.id);  // pressed again while open: new again, and heard again
    announce(alarm);
  }
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
      if (res.status === 401) { signOut(t("ui.session_expired")); return; }
      if (res.status === 403) { signOut(t("ui.not_for_role")); return; }
      if (!res.ok) throw new Error(res.statusText);
      await load();
      setStatus(t("ui.live"), "live");
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
          if (data) {
            const change = JSON.parse(data);
            upsert(change.alarm, change.type);
          }
        }
      }
    } catch (e) {
      if (!token) return;
    }
    // The stream ended (the service stopped, or the network went): say so, and grey the
    // queue, which may be out of date until the stream is back.
    setStatus(t("ui.reconnecting"), "down");
    $("queue").classList.add("stale");
    await new Promise((r) => setTimeout(r, delay));
  }
}

async function showQueue() {
  try {
    me = await api("/api/v1/me");
  } catch (e) {
    return;
  }
  $("login").hidden = true;
  $("queue").hidden = false;
  $("signout").hidden = false;
  $("mute").hidden = false;
  $("waiting").hidden = false;
  $("notify").hidden = !("Notification" in window) || Notification.permission !== "default";
  fillFilters();
  updateMute();
  stream();
}

function signOut(message) {
  token = null;
  me = null;
  sessionStorage.removeItem("trygg.token");
  if (streamAbort) streamAbort.abort();
  alarms.clear();
  again.clear();
  forms.clear();
  staff = null;
  for (const id of ["detail", "queue", "signout", "mute", "notify", "waiting"]) $(id).hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus(t("ui.signed_out"));
  showTitle();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await fetch("/api/v1/auth/token", { method: "POST", body: new URLSearchParams(new FormData(ev.target)) });
  if (res.status === 429) {
    const seconds = Number(res.headers.get("Retry-After")) || 60;
    $("login-error").textContent = t("ui.locked_out", { seconds });
    return;
  }
  if (!res.ok) { $("login-error").textContent = t("ui.wrong_login"); return; }
  token = (await res.json()).access_token;
  sessionStorage.setItem("trygg.token", token);
  $("login-error").textContent = "";
  showQueue();
});
$("signout").addEventListener("click", () => signOut());
$("lang").addEventListener("change", (ev) => {
  localStorage.setItem("trygg.lang", ev.target.value);
  setLanguage(ev.target.value);
});
$("mute").addEventListener("click", () => {
  localStorage.setItem(muteKey(), muted() ? "0" : "1");
  updateMute();
});
$("notify").addEventListener("click", async () => {
  await Notification.requestPermission();
  $("notify").hidden = Notification.permission !== "default";
});
$("filter-priority").addEventListener("change", saveFilters);
$("filter-state").addEventListener("change", saveFilters);

setLanguage(chooseLanguage()).then(() => { if (token) showQueue(); });
