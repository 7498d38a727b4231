// The staff page: a home-care worker's phone. The alarms assigned to them (live, with a
// sound and a buzz for each new one), the resident's card while the alarm is theirs, the
// day's visits, and the doors they may open. Data comes from /api/v1/my; the session is
// an HttpOnly cookie no script here can read. Every word shown comes from the catalog of
// the chosen language (i18n/*.json). The service worker (sw.js) keeps only this shell.
"use strict";

const LANGUAGES = ["sv", "en"];
const LOCALES = { sv: "sv-SE", en: "en-GB" };
const RANK = { critical: 0, high: 1, normal: 2, low: 3 };
const MINE = new Set(["assigned", "on_site"]);
// How an alarm may end, as the dispatch service records it (cloud/lifecycle.py Outcome);
// "restored" is the service's own, for a device that came back by itself.
const OUTCOMES = ["help_given", "ambulance", "resolved_by_phone", "false_alarm",
  "technical_fixed", "test", "other"];
const FINAL = new Set(["done", "failed", "refused", "expired"]);
const NO_ANSWER = new Set(["no_answer", "unreachable", "expired"]);
const COMMAND_WAIT_MS = 20000;  // after this a command still not final counts as unanswered
const VIBRATION = [400, 150, 400, 150, 400];

const alarms = new Map();  // id -> StaffAlarm
const selfTaken = new Set();  // alarms this page took: no alert for those
const commands = new Map();  // command id -> its result line on the page
let me = null;
let signedIn = false;
let loaded = false;  // the list was loaded once: later arrivals are news
let streamAbort = null;
let messages = {};
let lang = "en";
let visits = [];
let visitsDay = null;
let detail = null;  // {type: "alarm" | "visit", id, data}
let openForm = null;  // "decline" | "resolve" while a form is open on the alarm's card
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
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  const other = LANGUAGES.find((l) => l !== chosen);
  $("lang").textContent = t("ui.other_language");
  $("lang").lang = other;
  tellWorker();
  if (!signedIn) setStatus(t("ui.signed_out"));
  else setStatus(t(streamLive ? "ui.live" : "ui.reconnecting"), streamLive ? "live" : "down");
  render();
  showTitle();
}

function timeZone() { return (me && me.time_zone) || undefined; }

function clock(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], {
    hour: "2-digit", minute: "2-digit", timeZone: timeZone(),
  }).format(new Date(iso));
}

function longDay(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], { dateStyle: "full", timeZone: timeZone() })
    .format(new Date(iso));
}

function waited(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

function element(tag, text, cls) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function button(label, onclick, cls) {
  const btn = element("button", label, cls);
  btn.type = "button";
  btn.onclick = onclick;
  return btn;
}

// -- theme, status, sound -------------------------------------------------------------------

function theme() {
  const kept = localStorage.getItem("trygg.theme");
  return ["light", "dark"].includes(kept) ? kept : "auto";
}

const THEME_COLOURS = { light: "#0b5d3b", dark: "#0a0f14" };  // as the header's

function applyTheme() {
  const chosen = theme();
  if (chosen === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = chosen;
  $("theme").value = chosen;
  // The phone's own bar follows the choice too.
  for (const meta of document.querySelectorAll('meta[name="theme-color"]')) {
    const own = meta.media.includes("dark") ? "dark" : "light";
    meta.content = THEME_COLOURS[chosen === "auto" ? own : chosen];
  }
}

let streamLive = false;
function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = cls || "";
}

function soundOn() { return localStorage.getItem("trygg.sound") !== "0"; }

function showSound() { $("sound").checked = soundOn(); }

function banner(text) {
  const el = $("banner");
  el.textContent = text || "";
  el.hidden = !text;
}

let soundOwed = false;  // a sound the phone would not play yet (nobody had touched the page)

function ring() {
  const chime = $("chime");
  chime.currentTime = 0;
  return chime.play();
}

// A new alarm for me, while the page is open: heard, felt and seen.
function announce(a) {
  banner(t("ui.new_assignment", { alarm: t(`kind.${a.kind}`), address: a.address || a.home_id }));
  if (a.test || !soundOn()) return;  // a technician's test is not sounded
  if (navigator.vibrate) navigator.vibrate(VIBRATION);
  // A phone plays sound only after the person has touched the page: ask for a touch,
  // and play it then.
  ring().catch(() => {
    soundOwed = true;
    banner(t("ui.tap_for_sound"));
  });
}

function payOwedSound() {
  if (!soundOwed) return;
  soundOwed = false;
  ring().catch(() => {});
  if ($("banner").textContent === t("ui.tap_for_sound")) banner("");
}

function showTitle() {
  const mine = [...alarms.values()].filter(isMine);
  const waiting = mine.filter((a) => a.state === "assigned" && !a.accepted_at).length;
  document.title = (waiting ? `(${waiting}) ` : "") + t("ui.title");
  $("alarm-count").textContent = mine.length ? String(mine.length) : "";
}

// -- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    const text = typeof detail === "string" ? detail : (detail && detail.message) || String(status);
    super(text);
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, options = {}) {
  const init = Object.assign({ credentials: "same-origin" }, options);
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.body = JSON.stringify(options.json);
    init.headers = { "Content-Type": "application/json" };
    delete init.json;
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    if (signedIn) signOut(t("ui.session_expired"));
    throw new ApiError(401, t("ui.session_expired"));
  }
  if (res.status === 403 && res.headers.get("X-Trygg-Second-Factor") === "enrol") {
    enrol();
    throw new ApiError(403, t("ui.enrol_needed"));
  }
  if (res.status === 204) return null;
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body.detail || res.statusText);
  return body;
}

// -- the views ----------------------------------------------------------------------------

const VIEWS = ["view-alarms", "view-alarm", "view-day", "view-visit", "view-settings"];

function route() {
  const [name, id] = location.hash.replace(/^#/, "").split("/");
  return { name: name || "alarms", id: id ? Number(id) : null };
}

function show(view, tab) {
  for (const v of VIEWS) $(v).hidden = v !== view;
  for (const a of $("tabs").querySelectorAll("a")) {
    if (a.id === tab) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function focusHeading(view) {
  const heading = $(view).querySelector("h2");
  if (heading) heading.focus({ preventScroll: false });
}

async function navigate() {
  if (!signedIn || !me) return;
  const r = route();
  openForm = null;
  if (r.name === "alarm") banner("");  // the news is being looked at
  if (r.name === "alarm" && r.id) {
    detail = { type: "alarm", id: r.id, data: null };
    show("view-alarm", "tab-alarms");
    renderAlarmView();
    await loadAlarmCard(r.id);
  } else if (r.name === "visit" && r.id) {
    detail = { type: "visit", id: r.id, data: null };
    show("view-visit", "tab-day");
    await loadVisitCard(r.id);
  } else if (r.name === "day") {
    detail = null;
    show("view-day", "tab-day");
    renderDay();
    loadVisits();
  } else if (r.name === "settings") {
    detail = null;
    show("view-settings", "tab-settings");
    showPush();
  } else {
    detail = null;
    show("view-alarms", "tab-alarms");
    renderList();
  }
  focusHeading(VIEWS.find((v) => !$(v).hidden));
}

function render() {
  if (!me) return;
  renderList();
  showTitle();
  if (detail && detail.type === "alarm") renderAlarmView();
  if (!$("view-day").hidden) renderDay();
  if (detail && detail.type === "visit" && detail.data) renderVisitView();
  $("who").textContent = t("ui.signed_in_as", { who: me.username, org: me.org_name });
}

// -- my alarms ----------------------------------------------------------------------------

function isMine(a) { return !a.takeable && MINE.has(a.state); }

function byUrgency(a, b) {
  return RANK[a.priority] - RANK[b.priority] || a.received_at.localeCompare(b.received_at)
    || a.id - b.id;
}

function stateText(a) {
  if (a.takeable) return t("ui.state_takeable");
  if (a.state === "on_site") return t("ui.state_on_site");
  if (a.state === "assigned" && a.accepted_at) return t("ui.state_accepted");
  if (a.state === "assigned") return t("ui.state_assigned");
  return t(`state.${a.state}`);
}

function waitingEl(a) {
  const el = element("span", waited((Date.now() - Date.parse(a.received_at)) / 1000), "waiting");
  el.dataset.since = a.received_at;
  return el;
}

function summaryLine(a) {
  const line = element("span", undefined, "line");
  line.append(element("span", t(`priority.${a.priority}`), "badge"));
  const wait = element("span", `${t("ui.waiting")} `);
  wait.append(waitingEl(a));
  line.append(wait, element("span", stateText(a), "state"));
  if (a.test) line.append(element("span", t("ui.test"), "test-flag"));
  return line;
}

function alarmCard(a) {
  const link = element("a", undefined, `card ${a.priority}`);
  link.href = `#alarm/${a.id}`;
  link.dataset.alarmId = a.id;
  const title = element("span", t(`kind.${a.kind}`), "title");
  if (a.state === "assigned" && !a.accepted_at) {
    title.append(" ", element("span", t("ui.new_flag"), "new-flag"));
  }
  link.append(title, element("span", a.address || a.home_id), summaryLine(a));
  return link;
}

function takeableCard(a) {
  const card = element("div", undefined, `card ${a.priority}`);
  card.dataset.alarmId = a.id;
  card.append(element("span", t(`kind.${a.kind}`), "title"),
    element("span", a.address || a.home_id), summaryLine(a));
  const take = button(t("action.take"), () => take_(a), "primary");
  take.setAttribute("aria-label", t("ui.take_label", { alarm: t(`kind.${a.kind}`), address: a.address || a.home_id }));
  card.append(take);
  return card;
}

function renderList() {
  const all = [...alarms.values()].sort(byUrgency);
  const mine = all.filter(isMine);
  const takeable = all.filter((a) => a.takeable && a.state !== "resolved");
  const focusId = document.activeElement && document.activeElement.closest
    ? (document.activeElement.closest("[data-alarm-id]") || {}).dataset : null;
  $("alarm-list").replaceChildren(...mine.map((a) => {
    const li = element("li");
    li.append(alarmCard(a));
    return li;
  }));
  $("takeable-list").replaceChildren(...takeable.map((a) => {
    const li = element("li", undefined, "takeable");
    li.append(takeableCard(a));
    return li;
  }));
  $("alarms-empty").hidden = mine.length > 0;
  $("takeable-heading").hidden = takeable.length === 0;
  // Keep the keyboard on the card it was on.
  if (focusId && focusId.alarmId && !$("view-alarms").hidden) {
    const again = $("view-alarms").querySelector(`[data-alarm-id="${focusId.alarmId}"]`);
    const target = again && (again.matches("a") ? again : again.querySelector("button"));
    if (target) target.focus();
  }
}

// Every second: the waiting times, without a re-render (that would disturb a form).
setInterval(() => {
  const now = Date.now();
  for (const el of document.querySelectorAll(".waiting[data-since]")) {
    el.textContent = waited((now - Date.parse(el.dataset.since)) / 1000);
  }
}, 1000);

function upsert(a, fromStream) {
  const before = alarms.get(a.id);
  const gone = a.state === "resolved" || (!a.takeable && !MINE.has(a.state));
  if (gone) alarms.delete(a.id);
  else alarms.set(a.id, a);
  if (fromStream && !gone && isMine(a) && !(before && isMine(before)) && !selfTaken.delete(a.id)) {
    announce(a);
  }
  if (detail && detail.type === "alarm" && detail.id === a.id && gone && before) {
    // No longer mine: the resident's card goes with it.
    detail.data = null;
    detail.gone = a.state === "resolved" ? "ui.gone_resolved" : "ui.gone_elsewhere";
  }
  render();
}

async function loadAlarms() {
  const list = await api("/api/v1/my/alarms");
  const known = new Set([...alarms.values()].filter(isMine).map((a) => a.id));
  alarms.clear();
  for (const a of list) alarms.set(a.id, a);
  // Assigned while the stream was away: as news as any other.
  if (loaded) for (const a of list) if (isMine(a) && !known.has(a.id)) announce(a);
  loaded = true;
  render();
}

async function take_(a) {
  selfTaken.add(a.id);
  try {
    const taken = await api(`/api/v1/my/alarms/${a.id}/take`, { method: "POST" });
    upsert(taken, false);
    location.hash = `#alarm/${a.id}`;
  } catch (e) {
    selfTaken.delete(a.id);
    banner(t("ui.could_not", { step: t("action.take"), reason: e.message }));
  }
}

// -- one alarm ------------------------------------------------------------------------------

async function loadAlarmCard(id) {
  try {
    const data = await api(`/api/v1/my/alarms/${id}`);
    if (!detail || detail.type !== "alarm" || detail.id !== id) return;
    detail.data = data;
    detail.gone = null;
    alarms.set(id, data.alarm);
  } catch (e) {
    if (!detail || detail.id !== id) return;
    detail.gone = e.status === 404 || e.status === 403 ? "ui.gone_elsewhere" : null;
    detail.error = detail.gone ? null : e.message;
  }
  renderAlarmView();
  focusHeading("view-alarm");
}

function backLink(href, label) {
  const a = element("a", `← ${label}`, "back");
  a.href = href;
  return a;
}

function mapsLink(address, lat, lon) {
  const a = element("a", address, "big");
  const label = encodeURIComponent(address || "");
  const iPhone = /iPhone|iPad|iPod/.test(navigator.userAgent);
  if (lat != null && lon != null) {
    a.href = iPhone ? `https://maps.apple.com/?ll=${lat},${lon}&q=${label}`
      : `geo:${lat},${lon}?q=${lat},${lon}(${label})`;
  } else {
    a.href = iPhone ? `https://maps.apple.com/?q=${label}` : `geo:0,0?q=${label}`;
  }
  a.setAttribute("aria-label", t("ui.open_in_maps", { address }));
  return a;
}

function facts(lines) {
  const dl = element("dl", undefined, "facts");
  for (const [label, value] of lines) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(element("dt", label));
    const dd = element("dd");
    dd.append(value);
    dl.append(dd);
  }
  return dl;
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

// Who lives there, how to get in, and whom to call: shown only while it is mine.
function residentCard(resident, home, alarm) {
  const card = element("section", undefined, "resident");
  const name = resident
    ? resident.name + (resident.born ? `, ${t("ui.age", { age: ageOf(resident.born) })}` : "")
    : t("ui.no_resident");
  const heading = element("h3", name);
  card.setAttribute("aria-label", t("ui.resident_card"));
  card.append(heading);
  const address = home && home.address
    ? mapsLink(home.address, home.latitude, home.longitude) : null;
  const keySafe = home && home.key_safe ? element("span", home.key_safe, "key-safe") : null;
  let position = null;
  if (alarm && alarm.latitude != null && alarm.longitude != null) {
    position = mapsLink(`${alarm.latitude.toFixed(5)}, ${alarm.longitude.toFixed(5)}`,
      alarm.latitude, alarm.longitude);
  }
  let notes = null;
  const said = [resident && resident.notes, home && home.notes].filter(Boolean);
  if (said.length) {
    notes = element("div", undefined, "notes");
    notes.append(...said.map((text) => element("p", text)));
  }
  let contacts = null;
  if (resident && resident.contacts && resident.contacts.length) {
    contacts = element("ul", undefined, "contacts");
    for (const c of resident.contacts) {
      const li = element("li", `${c.name}${c.relation ? ` (${c.relation})` : ""}: `);
      const call = element("a", c.phone);
      call.href = `tel:${String(c.phone).replace(/[^+0-9]/g, "")}`;
      call.setAttribute("aria-label", `${t("ui.call", { name: c.name })} ${c.phone}`);
      li.append(call);
      contacts.append(li);
    }
  }
  card.append(facts([
    [t("ui.address"), address],
    [t("ui.key_safe"), keySafe],
    [t("ui.position"), position],
    [t("ui.language"), resident && resident.language ? languageName(resident.language) : null],
    [t("ui.notes"), notes],
    [t("ui.contacts"), contacts],
  ]));
  return card;
}

function renderAlarmView() {
  const view = $("view-alarm");
  if (!detail || detail.type !== "alarm") return;
  const a = alarms.get(detail.id) || (detail.data && detail.data.alarm);
  // Keep what the person is in the middle of: a form being filled in.
  if (openForm && view.querySelector(".form")) {
    const summary = view.querySelector(".summary");
    if (summary && a) summary.replaceChildren(...summaryLine(a).childNodes);
    return;
  }
  const focused = document.activeElement && view.contains(document.activeElement)
    ? document.activeElement.dataset.step || null : null;
  const heading = element("h2", a ? t(`kind.${a.kind}`) : t("ui.alarm"));
  heading.id = "alarm-heading";
  heading.tabIndex = -1;
  const parts = [backLink("#alarms", t("ui.my_alarms")), heading];
  if (detail.gone || !a) {
    parts.push(element("p", detail.gone ? t(detail.gone) : detail.error ? t("ui.could_not",
      { step: t("ui.alarm"), reason: detail.error }) : t("ui.loading"), "hint"));
    view.replaceChildren(...parts);
    return;
  }
  const summary = element("p", undefined, "summary");
  summary.append(...summaryLine(a).childNodes);
  parts.push(summary);
  // On the way (accepted) or there: the doors first, as the person reaches them.
  const home = detail.data && detail.data.home;
  if (detail.data && (a.accepted_at || a.state === "on_site")) {
    parts.push(doorButtons(a.locks, { alarm_id: a.id }, home));
  }
  parts.push(alarmActions(a));
  if (detail.data) parts.push(residentCard(detail.data.resident, home, a));
  view.replaceChildren(...parts);
  if (focused) {
    const again = view.querySelector(`[data-step="${focused}"]`);
    if (again) again.focus();
  }
}

function step(label, name, onclick, cls) {
  const btn = button(label, onclick, cls);
  btn.dataset.step = name;
  return btn;
}

function alarmActions(a) {
  const box = element("div", undefined, "actions");
  if (a.state === "assigned" && !a.accepted_at) {
    box.append(step(t("action.accept"), "accept", () => act(a, "accept"), "primary"),
      step(t("action.decline"), "decline", () => declineForm(a, box)));
  } else if (a.state === "assigned") {
    box.append(step(t("action.on_site"), "on-site", () => act(a, "on-site"), "primary"),
      step(t("action.resolve"), "resolve", () => resolveForm(a, box)),
      step(t("action.decline"), "decline", () => declineForm(a, box)));
  } else if (a.state === "on_site") {
    box.append(step(t("action.resolve"), "resolve", () => resolveForm(a, box), "primary"));
  }
  return box;
}

async function act(a, name, body) {
  try {
    const options = body ? { json: body } : { method: "POST" };
    const after = await api(`/api/v1/my/alarms/${a.id}/${name}`, options);
    openForm = null;
    if (name === "resolve" || name === "decline") {
      alarms.delete(a.id);
      banner(t(name === "resolve" ? "ui.resolved_done" : "ui.declined_done"));
      location.hash = "#alarms";
      render();
      return;
    }
    upsert(after, false);
    const next = $("view-alarm").querySelector(".doors button, .actions button");
    if (next) next.focus();
  } catch (e) {
    banner(t("ui.could_not", { step: t(`action.${name.replace("-", "_")}`), reason: e.message }));
  }
}

function cancelForm(box, a) {
  openForm = null;
  box.replaceWith(alarmActions(a));
  const first = $("view-alarm").querySelector(".actions button");
  if (first) first.focus();
}

function declineForm(a, box) {
  openForm = "decline";
  const form = element("form", undefined, "form actions");
  const reason = element("input");
  reason.name = "reason";
  reason.required = true;
  reason.maxLength = 500;
  const label = element("label", undefined);
  label.append(element("span", t("ui.decline_reason")), reason);
  const row = element("div", undefined, "row");
  const send = element("button", t("action.decline_send"), "primary");
  send.type = "submit";
  row.append(send, button(t("ui.cancel"), () => cancelForm(form, a)));
  form.append(label, row);
  form.onsubmit = (ev) => {
    ev.preventDefault();
    if (reason.value.trim()) act(a, "decline", { reason: reason.value.trim() });
  };
  form.onkeydown = (ev) => { if (ev.key === "Escape") cancelForm(form, a); };
  box.replaceWith(form);
  reason.focus();
}

function resolveForm(a, box) {
  openForm = "resolve";
  const form = element("form", undefined, "form actions");
  const outcome = element("select");
  outcome.name = "outcome";
  for (const o of OUTCOMES) {
    const option = element("option", t(`outcome.${o}`));
    option.value = o;
    outcome.append(option);
  }
  const note = element("textarea");
  note.name = "note";
  note.maxLength = 2000;
  const outcomeLabel = element("label");
  outcomeLabel.append(element("span", t("ui.outcome")), outcome);
  const noteLabel = element("label");
  noteLabel.append(element("span", t("ui.note")), note);
  const row = element("div", undefined, "row");
  const send = element("button", t("action.resolve_send"), "primary");
  send.type = "submit";
  row.append(send, button(t("ui.cancel"), () => cancelForm(form, a)));
  form.append(outcomeLabel, noteLabel, row);
  form.onsubmit = (ev) => {
    ev.preventDefault();
    act(a, "resolve", { outcome: outcome.value, note: note.value.trim() || null });
  };
  form.onkeydown = (ev) => { if (ev.key === "Escape") cancelForm(form, a); };
  box.replaceWith(form);
  outcome.focus();
}

// -- doors ----------------------------------------------------------------------------------

// Each door's result line, under its buttons, kept across re-renders (the stream may
// change the alarm while its door is opening).
const doorResults = new Map();

function doorResultFor(context, lock) {
  const key = `${context.alarm_id ? "alarm" : "visit"}:${context.alarm_id || context.visit_id}:${lock.id}`;
  if (!doorResults.has(key)) doorResults.set(key, doorResultEl());
  return doorResults.get(key);
}

function doorResultEl() {
  const el = element("p", undefined, "door-result");
  el.setAttribute("role", "status");
  el.setAttribute("aria-live", "assertive");
  el.hidden = true;
  return el;
}

function lockName(lock) { return lock.name || lock.id; }

function doorButtons(locks, context, home) {
  const box = element("div", undefined, "doors");
  if (!locks || !locks.length) {
    box.append(element("p", t("ui.no_lock"), "hint"));
    return box;
  }
  for (const lock of locks) {
    const row = element("div", undefined, "door");
    row.dataset.lock = lock.id;
    const result = doorResultFor(context, lock);
    const several = locks.length > 1;
    const line = element("span", lockLine(lock, several), "lock-name");
    line.dataset.lock = lock.id;
    line.dataset.several = several ? "1" : "0";
    row.append(line);
    const open = step(t("action.unlock"), `unlock-${lock.id}`,
      () => door(lock, "unlock", context, home, result), "primary");
    const shut = step(t("action.lock"), `lock-${lock.id}`, () => door(lock, "lock", context, home, result));
    if (several) {
      open.setAttribute("aria-label", t("ui.unlock_named", { lock: lockName(lock) }));
      shut.setAttribute("aria-label", t("ui.lock_named", { lock: lockName(lock) }));
    }
    row.append(open, shut, result);
    box.append(row);
  }
  return box;
}

function showResult(el, text, cls, more) {
  el.replaceChildren(text);
  if (more) el.append(element("span", more, "more"));
  el.className = `door-result ${cls || ""}`;
  el.hidden = false;
}

// What a door command came to, in words a person on a doorstep can act on.
function commandResult(el, r, home) {
  const unlock = r.action === "unlock";
  if (r.state === "done") {
    showResult(el, t(unlock ? "door.open" : "door.locked"), "ok");
  } else if (r.state === "failed" && r.reason === "jammed") {
    const keySafe = home && home.key_safe ? t("door.key_safe_is", { note: home.key_safe }) : null;
    showResult(el, t("door.jammed"), "bad", keySafe);
  } else if (r.state === "expired" || (r.state === "failed" && NO_ANSWER.has(r.reason))) {
    showResult(el, t("door.no_answer"), "bad");
  } else if (r.state === "refused") {
    showResult(el, t("door.refused_by_gateway"), "bad", r.reason ? t("door.reason", { reason: r.reason }) : null);
  } else if (r.state === "failed") {
    showResult(el, t(unlock ? "door.not_opened" : "door.not_locked"), "bad",
      r.reason ? t("door.reason", { reason: r.reason }) : null);
  } else {
    showResult(el, t(unlock ? "door.opening" : "door.locking"), "wait");
    return false;
  }
  return true;
}

// The service says why it will not (403 {"reason", "message"}; 404, 409 and 503 too).
function refusal(e) {
  if (e.detail && typeof e.detail === "object" && e.detail.reason) {
    const key = `refusal.${e.detail.reason}`;
    return key in messages ? t(key) : e.detail.message || e.detail.reason;
  }
  if (e.status === 403) return t("refusal.forbidden");
  if (e.status === 404) return t("refusal.no_such_lock");
  if (e.status === 503) return t("refusal.commands_off");
  if (e.status) return e.message;
  return t("door.no_connection");
}

async function door(lock, action, context, home, el) {
  const started = { action, state: "pending" };
  commandResult(el, started, home);
  for (const b of document.querySelectorAll(".door button")) b.disabled = true;
  try {
    const r = await api(`/api/v1/my/locks/${encodeURIComponent(lock.id)}/${action}`, { json: context });
    commands.set(r.command_id, { el, home, lock });
    if (!commandResult(el, r, home)) follow(r, el);
    else lockChanged(lock, r);
  } catch (e) {
    if (e.status === 401) return;
    showResult(el, refusal(e), "bad");
  } finally {
    for (const b of document.querySelectorAll(".door button")) b.disabled = false;
    el.scrollIntoView({ block: "nearest" });
  }
}

// Not final yet (the lock is slow): the stream tells; asking now and then covers a stream
// that is away. Past the wait it counts as no answer.
async function follow(r, el) {
  const until = Date.now() + COMMAND_WAIT_MS;
  while (Date.now() < until) {
    await new Promise((ok) => setTimeout(ok, 1000));
    const known = commands.get(r.command_id);
    if (!known || known.final) return;
    const now = await api(`/api/v1/my/commands/${encodeURIComponent(r.command_id)}`).catch(() => null);
    if (now && FINAL.has(now.state)) { commandChanged(now); return; }
  }
  if (!(commands.get(r.command_id) || {}).final) showResult(el, t("door.no_answer"), "bad");
}

function commandChanged(r) {
  const known = commands.get(r.command_id);
  if (!known || known.final) return;
  if (commandResult(known.el, r, known.home)) {
    known.final = true;
    lockChanged(known.lock, r);
  }
}

// What the locks confirmed to this page's own commands: newer than what the list said.
const confirmedLocks = new Map();

// The door's line says what the lock last confirmed.
function lockChanged(lock, r) {
  if (r.state !== "done" || !lock) return;
  confirmedLocks.set(lock.id, r.action === "unlock" ? "unlocked" : "locked");
  for (const el of document.querySelectorAll(".door .lock-name")) {
    if (el.dataset.lock === lock.id) el.textContent = lockLine(lock, el.dataset.several === "1");
  }
}

function lockLine(lock, several) {
  const known = confirmedLocks.get(lock.id) || lock.state;
  const state = known && `lock.${known}` in messages ? t(`lock.${known}`) : known || t("lock.unknown");
  return several ? `${lockName(lock)}: ${state}` : `${t("ui.door")}: ${state}`;
}

// -- my day ---------------------------------------------------------------------------------

async function loadVisits() {
  try {
    // The organisation's day, as the service counts it, is the default.
    visits = await api("/api/v1/my/visits");
    visitsDay = new Date().toISOString();
  } catch (e) {
    visits = [];
    $("day-date").textContent = t("ui.could_not", { step: t("ui.my_day"), reason: e.message });
    return;
  }
  renderDay();
}

function windowOf(v, now) {
  const from = Date.parse(v.opens_from), until = Date.parse(v.opens_until);
  if (now < from) return "before";
  if (now >= until) return "after";
  return "open";
}

function visitWindowText(v, state) {
  if (state === "open") return t("ui.window_open", { until: clock(v.opens_until) });
  if (state === "before") return t("ui.window_before", { from: clock(v.opens_from) });
  return t("ui.window_after");
}


function renderDay() {
  if (!me) return;
  $("day-date").textContent = visitsDay ? longDay(visitsDay) : t("ui.loading");
  const now = Date.now();
  const focused = document.activeElement && $("visit-list").contains(document.activeElement)
    ? document.activeElement.dataset.step : null;
  $("visit-list").replaceChildren(...visits.map((v) => {
    const li = element("li");
    const state = windowOf(v, now);
    const card = element("div", undefined, `card visit ${state}`);
    card.dataset.visitId = v.id;
    card.dataset.window = state;
    const title = element("span", `${clock(v.starts_at)}–${clock(v.ends_at)}`, "title");
    card.append(title);
    if (state === "open") {
      const link = element("a", v.address, "big");
      link.href = `#visit/${v.id}`;
      link.setAttribute("aria-label", t("ui.visit_open_card", { address: v.address }));
      card.append(link);
    } else card.append(element("span", v.address));
    if (v.note) card.append(element("span", v.note, "hint"));
    card.append(element("span", visitWindowText(v, state), `window ${state}`));
    if (state === "open") {
      card.append(doorButtons(v.locks, { visit_id: v.id }, null));
    }
    li.append(card);
    return li;
  }));
  $("day-empty").hidden = visits.length > 0 || !visitsDay;
  if (focused) {
    const again = $("visit-list").querySelector(`[data-step="${focused}"]`);
    if (again) again.focus();
  }
}

// A visit's window opens and closes by the clock: look again every 20 s.
let windows = "";
setInterval(() => {
  if ($("view-day").hidden) return;
  const now = Date.now();
  const states = visits.map((v) => windowOf(v, now)).join();
  if (states !== windows) { windows = states; renderDay(); }
}, 20000);

async function loadVisitCard(id) {
  try {
    detail.data = await api(`/api/v1/my/visits/${id}`);
    detail.error = null;
  } catch (e) {
    detail.error = e.status === 403 || e.status === 404 ? t("ui.visit_closed") : e.message;
  }
  renderVisitView();
  focusHeading("view-visit");
}

function renderVisitView() {
  const view = $("view-visit");
  if (!detail || detail.type !== "visit") return;
  const heading = element("h2", t("ui.visit"));
  heading.id = "visit-heading";
  heading.tabIndex = -1;
  const parts = [backLink("#day", t("ui.my_day")), heading];
  if (!detail.data) {
    parts.push(element("p", detail.error || t("ui.loading"), "hint"));
    view.replaceChildren(...parts);
    return;
  }
  const { visit: v, resident, home } = detail.data;
  const state = windowOf(v, Date.now());
  heading.textContent = `${t("ui.visit")} ${clock(v.starts_at)}–${clock(v.ends_at)}`;
  parts.push(element("p", visitWindowText(v, state), `window ${state}`));
  if (v.note) parts.push(element("p", v.note));
  if (state === "open") parts.push(doorButtons(v.locks, { visit_id: v.id }, home));
  parts.push(residentCard(resident, home, null));
  if (home) parts.push(awayControl(home));
  view.replaceChildren(...parts);
}

// Away mode: found the resident gone to hospital, or leaving for a week at a relative's:
// the home's inactivity rule must not count (the gateway gets it as configuration).
function awayControl(home) {
  const box = element("section", undefined, "away");
  const heading = element("h3", t("ui.away_mode"));
  const said = element("p", t(home.away ? "ui.away_yes" : "ui.away_no"));
  const toggle = element("button", t(home.away ? "ui.away_end" : "ui.away_set"), "big");
  toggle.type = "button";
  toggle.onclick = () => {
    toggle.disabled = true;
    api(`/api/v1/homes/${encodeURIComponent(home.id)}/away`,
      { method: "PUT", json: { away: !home.away } })
      .then((answer) => {
        home.away = answer.away;
        renderVisitView();
        banner(t(answer.away ? "ui.away_done" : "ui.back_done"));
      })
      .catch((e) => {
        toggle.disabled = false;
        banner(t("ui.away_failed", { reason: e.message }));
      });
  };
  box.append(heading, said, toggle);
  return box;
}

// -- live changes -------------------------------------------------------------------------

function dispatch(event, data) {
  if (event === "command") { commandChanged(data); return; }
  if (event !== "alarm" || !data.alarm) return;
  // No longer mine (declined, given to someone else, taken by a colleague): only its id.
  if (data.type === "gone") gone(data.alarm.id);
  else upsert(data.alarm, true);
}

function gone(id) {
  const before = alarms.get(id);
  alarms.delete(id);
  if (detail && detail.type === "alarm" && detail.id === id && before) {
    detail.data = null;  // the resident's card goes with it
    detail.gone = "ui.gone_elsewhere";
  }
  render();
}

async function stream() {
  // Reconnect forever, at most 5 s apart; on every (re)connect reload the list so nothing
  // assigned meanwhile is missed.
  for (let delay = 1000; signedIn; delay = Math.min(delay * 2, 5000)) {
    streamAbort = new AbortController();
    try {
      const res = await fetch("/api/v1/my/stream", { credentials: "same-origin", signal: streamAbort.signal });
      if (res.status === 401) { signOut(t("ui.session_expired")); return; }
      if (res.status === 403) { signOut(t("ui.not_for_role")); return; }
      if (!res.ok) throw new Error(res.statusText);
      await loadAlarms();
      streamLive = true;
      setStatus(t("ui.live"), "live");
      $("main").classList.remove("stale");
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
          let event = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) dispatch(event, JSON.parse(data.join("\n")));
        }
      }
    } catch (e) {
      if (!signedIn) return;
    }
    streamLive = false;
    const check = await fetch("/api/v1/me", { credentials: "same-origin" }).catch(() => null);
    if (check && check.status === 401) { signOut(t("ui.session_expired")); return; }
    setStatus(t("ui.reconnecting"), "down");
    $("main").classList.add("stale");
    await new Promise((r) => setTimeout(r, delay));
  }
}

// -- the service worker and Web Push ----------------------------------------------------------

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    return await navigator.serviceWorker.register("sw.js", { scope: "./" });
  } catch (e) {
    console.warn("service worker not registered", e);
    return null;
  }
}

// The worker shows notifications in the page's language.
function tellWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.ready.then((reg) => {
    if (reg.active) reg.active.postMessage({ lang });
  }).catch(() => {});
}

function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function fromBase64Url(text) {
  const padded = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

async function currentSubscription() {
  const reg = await navigator.serviceWorker.getRegistration("./");
  return reg ? reg.pushManager.getSubscription() : null;
}

// This browser's subscription as the service knows it (by its endpoint), or null.
async function storedSubscription(sub) {
  if (!sub) return null;
  const mine = await api("/api/v1/my/push/subscriptions");
  return mine.find((s) => s.endpoint === sub.endpoint) || null;
}

function pushState(text, on) {
  $("push-state").textContent = text;
  $("push-on").hidden = on !== false;
  $("push-off").hidden = on !== true;
}

function pushFailed(e, on) {
  // No Web Push on this service (a route it lacks, or no key): say so, offer nothing.
  if (e.status === 404 || e.status === 503) pushState(t("push.unavailable"));
  else pushState(t("push.failed", { reason: e.message }), on);
}

async function showPush() {
  if (!pushSupported()) { pushState(t("push.unsupported")); return; }
  if (Notification.permission === "denied") { pushState(t("push.blocked")); return; }
  try {
    await api("/api/v1/my/push/key");
    const stored = await storedSubscription(await currentSubscription());
    pushState(t(stored ? "push.on" : "push.off"), Boolean(stored));
  } catch (e) {
    pushFailed(e, false);
  }
}

async function pushOn() {
  try {
    const key = await api("/api/v1/my/push/key");
    if ((await Notification.requestPermission()) !== "granted") {
      pushState(t("push.blocked"));
      return;
    }
    const reg = (await navigator.serviceWorker.getRegistration("./")) || (await registerWorker());
    await navigator.serviceWorker.ready;
    let sub = await reg.pushManager.getSubscription();
    if (sub) await sub.unsubscribe();  // perhaps made with another key: start afresh
    sub = await reg.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: fromBase64Url(key.public_key),
    });
    const label = (navigator.userAgentData && navigator.userAgentData.platform) || "";
    await api("/api/v1/my/push/subscriptions", { json: Object.assign(sub.toJSON(), { label }) });
    tellWorker();
    pushState(t("push.on"), true);
  } catch (e) {
    pushFailed(e, false);
  }
}

async function pushOff() {
  try {
    const sub = await currentSubscription();
    const stored = await storedSubscription(sub);
    if (stored) await api(`/api/v1/my/push/subscriptions/${stored.id}`, { method: "DELETE" });
    if (sub) await sub.unsubscribe();
    pushState(t("push.off"), false);
  } catch (e) {
    pushFailed(e, true);
  }
}

// -- signing in and out ---------------------------------------------------------------------

async function showPage() {
  try {
    me = await api("/api/v1/me");
  } catch (e) {
    return;
  }
  if (me.role !== "staff") {
    signedIn = true;  // so that signing out ends the session
    signOut(t("ui.not_for_role"));
    return;
  }
  signedIn = true;
  $("enrol").hidden = true;
  $("login").hidden = true;
  $("tabs").hidden = false;
  banner("");
  render();
  navigate();
  stream();
}

function signOut(message, everywhere = false) {
  const was = signedIn;
  signedIn = false;
  endSession(was, everywhere);
  me = null;
  loaded = false;
  streamLive = false;
  if (streamAbort) streamAbort.abort();
  alarms.clear();
  commands.clear();
  doorResults.clear();
  confirmedLocks.clear();
  visits = [];
  visitsDay = null;
  detail = null;
  for (const v of [...VIEWS, "tabs", "enrol"]) $(v).hidden = true;
  // Nothing of the person's day stays on the screen.
  for (const id of ["view-alarm", "view-visit", "alarm-list", "takeable-list", "visit-list"]) {
    $(id).replaceChildren();
  }
  $("login").hidden = false;
  $("code-field").hidden = true;
  $("login").elements.code.value = "";
  $("login-error").textContent = message || "";
  banner("");
  setStatus(t("ui.signed_out"));
  document.title = t("ui.title");
}

// Behind the signed-out screen: this phone's push subscription goes first (whoever uses
// a shared phone next is not to be told this person's alarms), then the session ends.
async function endSession(was, everywhere) {
  if (was && pushSupported()) await pushOff().catch(() => {});
  if (was || everywhere) {
    await fetch(`/api/v1/auth/logout${everywhere ? "?everywhere=true" : ""}`,
      { method: "POST", credentials: "same-origin" }).catch(() => {});
  }
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  if (!form.get("code")) form.delete("code");
  const res = await fetch("/api/v1/auth/session", {
    method: "POST", body: new URLSearchParams(form), credentials: "same-origin",
  }).catch(() => null);
  if (!res) { $("login-error").textContent = t("ui.no_connection"); return; }
  if (res.status === 429) {
    const seconds = Number(res.headers.get("Retry-After")) || 60;
    $("login-error").textContent = t("ui.locked_out", { seconds });
    return;
  }
  if (res.status === 401 && res.headers.get("X-Trygg-Second-Factor") === "code") {
    const first = $("code-field").hidden;
    $("code-field").hidden = false;
    $("login").elements.code.focus();
    $("login-error").textContent = first ? t("ui.code_needed") : t("ui.code_wrong");
    return;
  }
  if (!res.ok) { $("login-error").textContent = t("ui.wrong_login"); return; }
  $("login-error").textContent = "";
  $("code-field").hidden = true;
  $("login").elements.code.value = "";
  ev.target.elements.password.value = "";
  const who = await res.json();
  if (who.enrol_second_factor) enrol(); else showPage();
});

// Setting up the second factor (staff open doors: they sign in with one).
async function enrol() {
  $("login").hidden = true;
  for (const v of [...VIEWS, "tabs"]) $(v).hidden = true;
  const res = await fetch("/api/v1/auth/second-factor", { method: "POST", credentials: "same-origin" });
  if (!res.ok) { signOut(t("ui.session_expired"), true); return; }
  const e = await res.json();
  const qr = $("enrol-qr");
  qr.alt = t("ui.enrol_qr");
  qr.src = `data:image/svg+xml;base64,${btoa(e.qr_svg)}`;
  $("enrol-secret").textContent = e.secret.match(/.{1,4}/g).join(" ");
  $("enrol-codes").replaceChildren(...e.recovery_codes.map((c) => element("li", c)));
  $("enrol-error").textContent = "";
  $("enrol").hidden = false;
  $("enrol").elements.code.focus();
}

$("enrol").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const code = String(new FormData(ev.target).get("code") || "").trim();
  const res = await fetch("/api/v1/auth/second-factor/confirm", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code }),
  });
  if (!res.ok) { $("enrol-error").textContent = t("ui.code_wrong"); return; }
  ev.target.reset();
  showPage();
});

$("lang").addEventListener("click", () => {
  const other = LANGUAGES.find((l) => l !== lang);
  localStorage.setItem("trygg.lang", other);
  setLanguage(other);
});
$("theme").addEventListener("change", (ev) => {
  if (ev.target.value === "auto") localStorage.removeItem("trygg.theme");
  else localStorage.setItem("trygg.theme", ev.target.value);
  applyTheme();
});
$("sound").addEventListener("change", (ev) => {
  localStorage.setItem("trygg.sound", ev.target.checked ? "1" : "0");
});
$("sound-test").addEventListener("click", () => {
  ring().catch(() => {});
  if (navigator.vibrate) navigator.vibrate(VIBRATION);
});
$("push-on").addEventListener("click", pushOn);
$("push-off").addEventListener("click", pushOff);
$("signout").addEventListener("click", () => signOut());
$("everywhere").addEventListener("click", () => signOut(t("ui.signed_out_everywhere"), true));
// Any touch or key lets the page play sound: the one it owes, now.
document.addEventListener("pointerdown", payOwedSound);
document.addEventListener("keydown", payOwedSound);
window.addEventListener("hashchange", navigate);
// A notification tapped while the page is open: the worker says which alarm.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (ev) => {
    if (ev.data && ev.data.open) location.hash = `#alarm/${Number(ev.data.open)}`;
  });
}

applyTheme();
showSound();
registerWorker();
// Signed in already (the cookie survives a reload)? /me says.
setLanguage(chooseLanguage()).then(() => showPage());
