// Operator console: the live alarm queue. Data comes from /api/v1; changes arrive on
// the server-sent-events stream. The session is an HttpOnly cookie: no script here ever
// holds the token.
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
let signedIn = false;
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
  fillAuditActions();
  fillConsentChoices();
  fillSounds();
  updateMute();
  loadSupervision();
  if (residentData && residentData.id === residentShown) {
    consentRows(residentData.id, residentData.consents);
    $("rs-home").textContent = homeRulesText(residentData.rules.home_rules);
  }
  if (!signedIn) setStatus(t("ui.signed_out"));
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

const SOUNDS = ["chime", "bell", "pulse"];
function soundKey() { return `trygg.sound.${me ? me.username : ""}`; }
function sound() {
  const kept = localStorage.getItem(soundKey());
  return SOUNDS.includes(kept) ? kept : SOUNDS[0];
}

function fillSounds() {
  const select = $("sound");
  select.replaceChildren(...SOUNDS.map((name) => {
    const option = element("option", t(`ui.sound_${name}`));
    option.value = name;
    return option;
  }));
  select.value = sound();
  useSound();
}

// Only when it changes: setting an audio element's source again restarts its loading,
// which would cut short a sound being played.
function useSound() {
  const chime = $("chime");
  if (chime.getAttribute("src") !== `${sound()}.wav`) chime.src = `${sound()}.wav`;
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
  for (const a of alarms.values()) if (a.state === "new" && !a.test) counts[a.priority] += 1;
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
  if (!ANNOUNCED.has(a.priority) || a.test) return;  // a technician's test is not sounded
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
  const res = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  if (res.status === 401) { signOut(signedIn ? t("ui.session_expired") : ""); throw new Error("401"); }
  if (res.status === 403 && res.headers.get("X-Trygg-Second-Factor") === "enrol") {
    enrol();
    throw new Error(t("ui.enrol_needed"));
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    // A refused field (422) names where it is and what is wrong; other refusals say why.
    const detail = Array.isArray(body.detail)
      ? body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ")
      : body.detail;
    throw new Error(detail || res.statusText);
  }
  return res.json();
}

// -- filters ------------------------------------------------------------------------------

function filterKey() { return `trygg.filters.${me ? me.username : ""}`; }

function filters() {
  const base = { priority: "", state: "open", team: "" };
  try {
    return Object.assign(base, JSON.parse(localStorage.getItem(filterKey()) || "{}"));
  } catch { return base; }
}

let teams = [];  // the organisation's teams: the homes' districts

async function loadTeams() {
  teams = await api("/api/v1/teams").catch(() => []);
  fillFilters();
  render();
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
  const names = Object.fromEntries(teams.map((team) => [String(team.id), team.name]));
  fill($("filter-team"), ["", ...Object.keys(names)],
    (v) => (v ? names[v] : t("ui.filter_any")), names[kept.team] ? kept.team : "");
}

function saveFilters() {
  localStorage.setItem(filterKey(), JSON.stringify({
    priority: $("filter-priority").value, state: $("filter-state").value,
    team: $("filter-team").value,
  }));
  render();
}

function shown(a) {
  const f = filters();
  return (!f.priority || a.priority === f.priority) && (f.state === "open" || a.state === f.state)
    && (!f.team || String(a.team_id) === f.team);
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
  if (a.test) flag("test-flag", t("ui.test"));
  if (a.restored_at) flag("cleared-flag", t("ui.cleared"));
  if (again.has(a.id)) flag("again-flag", t("ui.new_again"));
  if (a.escalation_waiting) flag("escalation", t("ui.escalated", { reason: t(`escalation.${a.escalation}`) }));
  return td;
}

// How late an alarm nobody has taken is, against the organisation's answer target.
function ageClass(a, now) {
  if (a.state !== "new" || a.test) return "";
  const target = (me && me.answer_target_s) || 60;
  const age = (now - Date.parse(a.received_at)) / 1000;
  if (age >= 3 * target) return "age-3";
  if (age >= target) return "age-2";
  if (age >= target / 2) return "age-1";
  return "";
}

function rowClass(a, now) {
  return [a.priority, a.state, a.escalation_waiting ? "escalated" : "", theirs(a) ? "theirs" : "",
    a.restored_at ? "cleared" : "", again.has(a.id) ? "again" : "", a.test ? "test" : "",
    ageClass(a, now)]
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

// Away mode: the resident is away (at a relative's, in hospital), so the home's
// inactivity rule must not count; the gateway gets it as configuration.
function awayControl(d) {
  const home = d.home;
  const row = element("p", t(home.away ? "ui.away_yes" : "ui.away_no"), "away");
  const toggle = button(t(home.away ? "ui.away_end" : "ui.away_set"), () => {
    toggle.disabled = true;
    api(`/api/v1/homes/${encodeURIComponent(home.id)}/away`, {
      method: "PUT", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ away: !home.away }),
    })
      .then((said) => {
        setStatus(t(said.away ? "ui.away_done" : "ui.back_done"), "up");
        if (openDetail === d.alarm.id) showDetail(d.alarm.id);
      })
      .catch((e) => {
        toggle.disabled = false;
        setStatus(t("ui.away_failed", { reason: e.message }), "down");
      });
  });
  row.append(" ", toggle);
  return row;
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
  if (d.home && me && me.role !== "admin") card.append(awayControl(d));
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

// -- the map: the safe zone, the positions reported, the home ------------------------------

let detailMap = null;

function metres(a, b) {
  const rad = Math.PI / 180, dLat = (b[0] - a[0]) * rad, dLon = (b[1] - a[1]) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a[0] * rad) * Math.cos(b[0] * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(h));
}

function mapSummary(d) {
  const last = d.positions[d.positions.length - 1];
  if (!last) return t("ui.map_home_only");
  const where = `${last.latitude.toFixed(5)}, ${last.longitude.toFixed(5)}`;
  // How far to trust it: the device's own accuracy, and how old its fix was.
  const fix = last.accuracy_m != null && last.fix_age_s != null
    ? ` ${t("ui.map_fix", { m: Math.round(last.accuracy_m), s: Math.round(last.fix_age_s) })}` : "";
  if (!d.zone) return `${t("ui.map_last", { time: clock(last.at), where })}${fix}`;
  const out = metres([d.zone.latitude, d.zone.longitude], [last.latitude, last.longitude]) - d.zone.radius_m;
  const distance = out > 0 ? t("ui.map_outside", { m: Math.round(out) }) : t("ui.map_inside");
  return `${t("ui.map_last", { time: clock(last.at), where })} ${distance}${fix}`;
}

function drawMap(el, d) {
  if (!window.L) { el.textContent = t("ui.map_unavailable"); return null; }
  const tiles = me && me.map_tiles;
  const map = L.map(el, { attributionControl: Boolean(tiles), zoomSnap: 0.25 });
  if (tiles) L.tileLayer(tiles.url, { attribution: tiles.attribution, maxZoom: 19 }).addTo(map);
  else el.classList.add("plain");  // no tile server: a plain, scaled background
  L.control.scale({ imperial: false }).addTo(map);
  const layers = [];
  if (d.zone) {
    layers.push(L.circle([d.zone.latitude, d.zone.longitude],
      { radius: d.zone.radius_m, color: "#1e6b34", weight: 2, fillOpacity: 0.08, className: "zone" })
      .bindTooltip(t("ui.map_zone")));
  }
  const path = d.positions.map((p) => [p.latitude, p.longitude]);
  if (path.length > 1) {
    layers.push(L.polyline(path, { color: "#b3261e", weight: 2, dashArray: "4 4", className: "track" }));
  }
  d.positions.forEach((p, i) => {
    const last = i === d.positions.length - 1;
    if (last && p.accuracy_m) {  // the circle the resident is within, as the device said
      layers.push(L.circle([p.latitude, p.longitude],
        { radius: p.accuracy_m, color: "#b3261e", weight: 1, fillOpacity: 0.1, className: "accuracy" }));
    }
    layers.push(L.circleMarker([p.latitude, p.longitude], {
      radius: last ? 8 : 4, color: "#b3261e", fillOpacity: last ? 0.9 : 0.4,
      className: last ? "position last" : "position",
    }).bindTooltip(clock(p.at)));
  });
  if (d.home && d.home.latitude != null) {
    layers.push(L.circleMarker([d.home.latitude, d.home.longitude],
      { radius: 7, color: "#10263d", fillColor: "#ffffff", fillOpacity: 1, className: "home" })
      .bindTooltip(t("ui.map_home")));
  }
  // The view first (a circle's own bounds need a map), then the layers on it.
  const bounds = L.latLngBounds(path);
  if (d.zone) bounds.extend(L.latLng(d.zone.latitude, d.zone.longitude).toBounds(d.zone.radius_m * 2));
  if (d.home && d.home.latitude != null) bounds.extend([d.home.latitude, d.home.longitude]);
  map.fitBounds(bounds.pad(0.3), { maxZoom: 17 });
  L.featureGroup(layers).addTo(map);
  return map;
}

async function showDetail(id) {
  const d = await api(`/api/v1/alarms/${id}`).catch((e) => { setStatus(e.message, "down"); });
  if (!d) return;
  openDetail = id;
  if (again.delete(id)) render();
  const panel = $("detail");
  const alarm = element("section", undefined, "card alarm");
  alarm.append(element("h3", t("ui.d_alarm_section")));
  const position = d.alarm.latitude != null && !d.positions.length
    ? `${d.alarm.latitude}, ${d.alarm.longitude}` : null;
  alarm.append(definitions([
    [t("ui.d_alarm"), `${t(`kind.${d.alarm.kind}`)} (${t(`priority.${d.alarm.priority}`)}), ${t(`state.${d.alarm.state}`)}`],
    [t("ui.d_device"), `${d.alarm.device_id} (${d.alarm.device_type})`],
    [t("ui.d_home"), d.alarm.home_id],
    [t("ui.d_gateway"), d.alarm.gateway_id],
    [t("ui.d_position"), position],
  ]));
  const located = d.positions.length || d.zone || (d.home && d.home.latitude != null);
  let mapEl = null;
  if (located) {
    mapEl = element("div", undefined, "map");
    mapEl.id = "map";
    mapEl.setAttribute("role", "region");
    mapEl.setAttribute("aria-label", mapSummary(d));
    alarm.append(mapEl, element("p", mapSummary(d), "map-summary"));
  }
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
  if (detailMap) { detailMap.remove(); detailMap = null; }
  panel.replaceChildren(heading, close, residentCard(d), alarm);
  panel.hidden = false;
  if (mapEl) detailMap = drawMap(mapEl, d);
  panel.onkeydown = (ev) => { if (ev.key === "Escape") closeDetail(); };
  close.focus();
}

function closeDetail() {
  const id = openDetail;
  $("detail").hidden = true;
  openDetail = null;
  if (detailMap) { detailMap.remove(); detailMap = null; }
  const row = $("alarms").querySelector(`tr[data-alarm-id="${id}"]`);
  if (row) row.focus();
}

document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && openDetail !== null) closeDetail();
});


// -- the supervisor's view: today's service level, escalations, who is on, the audit log --

const SUPERVISORS = new Set(["supervisor", "admin"]);
const AUDIT_ACTIONS = ["auth", "alarm", "resident", "home", "user", "team", "gateway", "device",
  "command"];
let supervising = false;
let supervisionTimer = null;

function seconds(v) { return v == null ? t("ui.no_value") : t("ui.seconds", { n: Math.round(v) }); }
function share(v) { return v == null ? t("ui.no_value") : t("ui.share", { pct: (v * 100).toFixed(1) }); }

function table(el, headings, rows) {
  const head = element("thead");
  const tr = element("tr");
  for (const h of headings) { const th = element("th", h); th.scope = "col"; tr.append(th); }
  head.append(tr);
  const body = element("tbody");
  for (const row of rows) {
    const r = element("tr");
    for (const v of row) r.append(element("td", v));
    body.append(r);
  }
  el.replaceChildren(head, body);
}

function levelRow(name, s) {
  return [name, String(s.alarms), share(s.claimed_within_60s_share), share(s.claimed_within_180s_share),
    seconds(s.median_s_to_claim), seconds(s.p90_s_to_claim)];
}

async function loadSupervision() {
  if (!supervising) return;
  const today = await api("/api/v1/statistics/today").catch((e) => { setStatus(e.message, "down"); });
  if (!today) return;
  const day = new Intl.DateTimeFormat(LOCALES[lang], { dateStyle: "full", timeZone: today.time_zone })
    .format(new Date(`${today.day}T12:00:00Z`));
  $("supervision-heading").textContent = t("ui.sv_heading", { day });
  const total = today.service_level.total;
  const figures = [[t("ui.sv_alarms"), String(total.alarms)],
    [t("ui.sv_within_60"), share(total.claimed_within_60s_share)],
    [t("ui.sv_within_180"), share(total.claimed_within_180s_share)],
    [t("ui.sv_median"), seconds(total.median_s_to_claim)],
    [t("ui.sv_p90"), seconds(total.p90_s_to_claim)]];
  $("sv-summary").replaceChildren(...figures.map(([label, value]) => {
    const box = element("div", undefined, "figure");
    box.append(element("span", value, "value"), element("span", label, "label"));
    return box;
  }));
  const columns = [t("ui.sv_alarms"), t("ui.sv_within_60"), t("ui.sv_within_180"), t("ui.sv_median"), t("ui.sv_p90")];
  table($("sv-operators"), [t("ui.sv_operator"), ...columns],
    today.service_level.operators.map((o) => levelRow(o.operator, o)));
  table($("sv-teams"), [t("ui.sv_team"), ...columns],
    today.service_level.teams.map((o) => levelRow(o.team, o)));
  const list = (el, items, text) => {
    el.replaceChildren(...(items.length ? items.map((i) => element("li", text(i))) : [element("li", t("ui.sv_none"), "hint")]));
  };
  list($("sv-escalations"), today.escalations, (a) =>
    `${t(`priority.${a.priority}`)}: ${t(`kind.${a.kind}`)}, ${a.home_id} — ${t(`escalation.${a.escalation}`)}, ${t(`state.${a.state}`)}`);
  list($("sv-online"), today.online, (u) =>
    `${u.username} (${t(`role.${u.role}`)}${u.team ? ", " + u.team : ""})`);
}

async function searchAudit() {
  const form = new FormData($("audit-search"));
  const query = new URLSearchParams({ limit: "100" });
  for (const key of ["actor", "action", "target"]) {
    const value = String(form.get(key) || "").trim();
    if (value) query.set(key, value);
  }
  const rows = await api(`/api/v1/audit?${query}`).catch((e) => { setStatus(e.message, "down"); });
  if (!rows) return;
  const el = $("audit");
  if (!rows.length) { el.replaceChildren(element("caption", t("ui.sv_no_audit"))); return; }
  table(el, [t("ui.sv_time"), t("ui.sv_actor"), t("ui.sv_role"), t("ui.sv_action"), t("ui.sv_target"), t("ui.sv_detail")],
    rows.map((r) => [dateTime(r.at), r.actor, t(`role.${r.role}`), t(`audit.${r.action}`), r.target,
      Object.entries(r.detail || {}).map(([k, v]) => `${k}: ${v}`).join(", ")]));
}

function fillAuditActions() {
  const select = $("audit-action");
  const kept = select.value;
  select.replaceChildren();
  const any = element("option", t("ui.filter_any"));
  any.value = "";
  select.append(any);
  for (const family of AUDIT_ACTIONS) {
    for (const key of Object.keys(messages).filter((k) => k.startsWith(`audit.${family}.`))) {
      const option = element("option", t(key));
      option.value = key.slice("audit.".length);
      select.append(option);
    }
  }
  select.value = kept;
}

function setSupervising(on) {
  supervising = on && me && SUPERVISORS.has(me.role);
  $("supervision").hidden = !supervising;
  $("supervise").setAttribute("aria-pressed", supervising ? "true" : "false");
  clearInterval(supervisionTimer);
  if (supervising) {
    loadSupervision();
    searchAudit();
    loadResidents();
    supervisionTimer = setInterval(loadSupervision, 20000);
  }
}

// -- a resident's consents and home rules (supervisors, administrators) -----------------
// Consents gate a service for the resident (the door lock, camera checks, positions);
// the rules are what the home's gateways run for them, the strictest of its residents'.

const CONSENT_SERVICES = ["lock", "camera", "position"];
const GIVEN_BY = ["resident", "cohabitant", "representative"];
let residentShown = null;
let residentData = null;  // what is shown, to show again in another language

function options(select, values, prefix) {
  const kept = select.value;
  select.replaceChildren(...values.map((v) => {
    const option = element("option", t(`${prefix}.${v}`));
    option.value = v;
    return option;
  }));
  if (kept) select.value = kept;
}

function fillConsentChoices() {
  options($("rs-service"), CONSENT_SERVICES, "consent");
  options($("rs-given-by"), GIVEN_BY, "given_by");
}

function said(text, cls) {
  const el = $("rs-said");
  el.textContent = text;
  el.className = cls || "";
}

async function loadResidents() {
  const residents = await api("/api/v1/residents").catch((e) => { said(e.message, "down"); });
  if (!residents) return;
  const select = $("rs-resident");
  const kept = residentShown || select.value;
  const none = element("option", t("ui.rs_choose"));
  none.value = "";
  select.replaceChildren(none, ...residents.map((r) => {
    const option = element("option", `${r.name} (${r.home_id})`);
    option.value = r.id;
    return option;
  }));
  select.value = residents.some((r) => r.id === kept) ? kept : "";
  if (select.value) showResident(select.value);
}

function consentRows(id, consents) {
  const head = element("thead");
  const tr = element("tr");
  for (const key of ["ui.rs_service", "ui.rs_given_by", "ui.rs_recorded", "ui.rs_valid_from", "ui.rs_withdrawn", "ui.col_actions"]) {
    const th = element("th", t(key));
    th.scope = "col";
    tr.append(th);
  }
  head.append(tr);
  const body = element("tbody");
  for (const c of consents) {
    const row = element("tr");
    const who = t(`given_by.${c.given_by}`) + (c.given_by_name ? `: ${c.given_by_name}` : "");
    row.append(element("td", t(`consent.${c.service}`)), element("td", who),
      element("td", `${c.recorded_by}, ${dateTime(c.recorded_at)}`), element("td", dateTime(c.valid_from)),
      element("td", c.withdrawn_at ? `${c.withdrawn_by}, ${dateTime(c.withdrawn_at)}` : t("ui.rs_in_force")));
    const cell = element("td");
    if (!c.withdrawn_at) {
      const withdraw = button(t("ui.rs_withdraw"), () => {
        withdraw.disabled = true;
        api(`/api/v1/residents/${encodeURIComponent(id)}/consents/${c.id}/withdraw`, { method: "POST" })
          .then(() => { said(t("ui.rs_withdrawn_done", { service: t(`consent.${c.service}`) }), "up"); showResident(id); })
          .catch((e) => { withdraw.disabled = false; said(t("ui.rs_failed", { reason: e.message }), "down"); });
      });
      withdraw.setAttribute("aria-label", `${t("ui.rs_withdraw")}: ${t(`consent.${c.service}`)}, ${who}`);
      cell.append(withdraw);
    }
    row.append(cell);
    body.append(row);
  }
  if (!consents.length) {
    const row = element("tr");
    const cell = element("td", t("ui.rs_no_consent"));
    cell.colSpan = 6;
    row.append(cell);
    body.append(row);
  }
  $("rs-consents").replaceChildren(head, body);
}

function homeRulesText(home) {
  const parts = [];
  if (home.inactivity_s) {
    parts.push(t("ui.rs_home_inactivity", { hours: home.inactivity_s / 3600, window: home.inactivity_window }));
  }
  if (home.bed_exit_return_s) parts.push(t("ui.rs_home_bed_exit", { min: home.bed_exit_return_s / 60 }));
  if (home.door_open_at_night) parts.push(t("ui.rs_home_door"));
  if (home.wandering_s) parts.push(t("ui.rs_home_wandering", { min: home.wandering_s / 60 }));
  return t("ui.rs_home_runs", { rules: parts.length ? parts.join("; ") : t("ui.rs_home_none") });
}

function fillRules(view) {
  const form = $("rs-rules");
  const r = view.rules;
  const [from, to] = r.inactivity_window.split("-");
  form.elements.inactivity_h.value = r.inactivity_h;
  form.elements.window_from.value = from;
  form.elements.window_to.value = to;
  form.elements.inactivity_pre_alarm_s.value = r.inactivity_pre_alarm_s;
  form.elements.bed_exit_return_min.value = r.bed_exit_return_min;
  form.elements.door_open_at_night.checked = r.door_open_at_night;
  form.elements.wandering_min.value = r.wandering_min;
  $("rs-home").textContent = homeRulesText(view.home_rules);
}

async function showResident(id) {
  residentShown = id || null;
  $("rs-detail").hidden = !id;
  if (!id) return;
  const path = `/api/v1/residents/${encodeURIComponent(id)}`;
  try {
    const [consents, rules] = await Promise.all([api(`${path}/consents`), api(`${path}/rules`)]);
    if (residentShown !== id) return;  // another was chosen meanwhile
    residentData = { id, consents, rules };
    consentRows(id, consents);
    fillRules(rules);
  } catch (e) {
    said(t("ui.rs_failed", { reason: e.message }), "down");
  }
}

function recordConsent() {
  const id = residentShown;
  const form = new FormData($("rs-consent"));
  const body = { service: form.get("service"), given_by: form.get("given_by") };
  const name = String(form.get("given_by_name") || "").trim();
  if (name) body.given_by_name = name;
  api(`/api/v1/residents/${encodeURIComponent(id)}/consents`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  })
    .then((c) => {
      $("rs-consent").elements.given_by_name.value = "";
      said(t("ui.rs_recorded_done", { service: t(`consent.${c.service}`) }), "up");
      showResident(id);
    })
    .catch((e) => said(t("ui.rs_failed", { reason: e.message }), "down"));
}

function saveRules() {
  const id = residentShown;
  const f = $("rs-rules").elements;
  const body = {
    inactivity_h: Number(f.inactivity_h.value),
    inactivity_window: `${f.window_from.value}-${f.window_to.value}`,
    inactivity_pre_alarm_s: Number(f.inactivity_pre_alarm_s.value),
    bed_exit_return_min: Number(f.bed_exit_return_min.value),
    door_open_at_night: f.door_open_at_night.checked,
    wandering_min: Number(f.wandering_min.value),
  };
  api(`/api/v1/residents/${encodeURIComponent(id)}/rules`, {
    method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  })
    .then((view) => {
      if (residentData && residentData.id === id) residentData.rules = view;
      fillRules(view);
      const sent = Object.entries(view.gateways).map(([g, v]) => t("ui.rs_version", { gateway: g, version: v }));
      said(sent.length ? t("ui.rs_saved_sent", { gateways: sent.join(", ") }) : t("ui.rs_saved"), "up");
    })
    .catch((e) => said(t("ui.rs_failed", { reason: e.message }), "down"));
}

// -- live changes -------------------------------------------------------------------------

function upsert(alarm, change) {
  const before = alarms.get(alarm.id);
  // An answer overtaken by a newer state (a claim's response arriving after the stream
  // told of the acknowledgement that followed it) changes nothing.
  if (before && new Date(alarm.updated_at) < new Date(before.updated_at)) return;
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
  for (let delay = 1000; signedIn; delay = Math.min(delay * 2, 5000)) {
    streamAbort = new AbortController();
    try {
      const res = await fetch("/api/v1/alarms/stream", {
        credentials: "same-origin", signal: streamAbort.signal,
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
            if (supervising && (change.type === "escalated" || change.alarm.state !== "new")) loadSupervision();
          }
        }
      }
    } catch (e) {
      if (!signedIn) return;
    }
    // A session that ended (signed out elsewhere, the account disabled) ends here too.
    const check = await fetch("/api/v1/me", { credentials: "same-origin" }).catch(() => null);
    if (check && check.status === 401) { signOut(t("ui.session_expired")); return; }
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
  signedIn = true;
  $("enrol").hidden = true;
  $("login").hidden = true;
  $("everywhere").hidden = false;
  $("queue").hidden = false;
  $("signout").hidden = false;
  $("mute").hidden = false;
  $("waiting").hidden = false;
  $("notify").hidden = !("Notification" in window) || Notification.permission !== "default";
  $("supervise").hidden = !SUPERVISORS.has(me.role);
  $("sound-choice").hidden = false;
  fillSounds();
  fillFilters();
  loadTeams();
  fillAuditActions();
  setSupervising(localStorage.getItem(`trygg.supervising.${me.username}`) === "1");
  updateMute();
  stream();
}

function signOut(message, everywhere = false) {
  if (signedIn || everywhere) {
    // Ends the session at the service and drops the cookie (its answer does not matter).
    fetch(`/api/v1/auth/logout${everywhere ? "?everywhere=true" : ""}`,
      { method: "POST", credentials: "same-origin" }).catch(() => {});
  }
  signedIn = false;
  me = null;
  if (streamAbort) streamAbort.abort();
  alarms.clear();
  again.clear();
  forms.clear();
  staff = null;
  setSupervising(false);
  for (const id of ["detail", "queue", "signout", "everywhere", "mute", "notify", "waiting",
    "supervise", "enrol", "sound-choice"]) $(id).hidden = true;
  $("login").hidden = false;
  $("code-field").hidden = true;
  $("login").elements.code.value = "";
  $("login-error").textContent = message || "";
  setStatus(t("ui.signed_out"));
  showTitle();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  if (!form.get("code")) form.delete("code");
  const res = await fetch("/api/v1/auth/session", {
    method: "POST", body: new URLSearchParams(form), credentials: "same-origin",
  });
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
  const who = await res.json();
  if (who.enrol_second_factor) enrol(); else showQueue();
});

// Setting up the second factor: scan the code (or type the key), note the recovery
// codes, confirm with a first code.
async function enrol() {
  signedIn = true;
  $("login").hidden = true;
  $("queue").hidden = true;
  $("signout").hidden = false;
  const res = await fetch("/api/v1/auth/second-factor", { method: "POST", credentials: "same-origin" });
  if (!res.ok) { signOut(t("ui.session_expired")); return; }
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
  showQueue();
});
$("signout").addEventListener("click", () => signOut());
$("everywhere").addEventListener("click", () => signOut(t("ui.signed_out_everywhere"), true));
$("lang").addEventListener("change", (ev) => {
  localStorage.setItem("trygg.lang", ev.target.value);
  setLanguage(ev.target.value);
});
$("sound").addEventListener("change", (ev) => {
  localStorage.setItem(soundKey(), ev.target.value);
  useSound();
  if (!muted()) $("chime").play().catch(() => {});  // let the operator hear it
});
$("mute").addEventListener("click", () => {
  localStorage.setItem(muteKey(), muted() ? "0" : "1");
  updateMute();
});
$("notify").addEventListener("click", async () => {
  await Notification.requestPermission();
  $("notify").hidden = Notification.permission !== "default";
});
$("supervise").addEventListener("click", () => {
  setSupervising(!supervising);
  localStorage.setItem(`trygg.supervising.${me.username}`, supervising ? "1" : "0");
  if (supervising) $("supervision-heading").scrollIntoView();
});
$("audit-search").addEventListener("submit", (ev) => { ev.preventDefault(); searchAudit(); });
$("rs-resident").addEventListener("change", (ev) => { said(""); showResident(ev.target.value); });
$("rs-consent").addEventListener("submit", (ev) => { ev.preventDefault(); recordConsent(); });
$("rs-rules").addEventListener("submit", (ev) => { ev.preventDefault(); saveRules(); });
$("filter-priority").addEventListener("change", saveFilters);
$("filter-state").addEventListener("change", saveFilters);
$("filter-team").addEventListener("change", saveFilters);

// Signed in already (the cookie survives a reload)? /me says.
setLanguage(chooseLanguage()).then(() => showQueue());
