// Technician console: the organisation's gateways with their health at a glance, a
// gateway's page with its devices (as the gateway last reported them) and what it hears
// but has not paired, and a device's page with its readings charted (uPlot, vendored). Data comes from /api/v1 (docs/wire-protocol.md, "Device states"),
// read again every few seconds. The session is an HttpOnly cookie, as in the operator
// console. Every word shown comes from the message catalog of the chosen language.
"use strict";

const LANGUAGES = ["sv", "en"];
const LOCALES = { sv: "sv-SE", en: "en-GB" };
const ROLES = new Set(["technician", "admin"]);
const REFRESH_MS = 5000;
const URGENT = ["critical", "high"];
const CLOCK_OFFSET_LIMIT_S = 30;  // a gateway clock further off than this is a fault
const LOW_BATTERY_PCT = 20;
let messages = {};
let lang = "en";
let me = null;
let signedIn = false;
let timer = null;
let gateways = [];
let devices = [];
let discovered = [];
let history = [];
let configuration = null;  // the open gateway's, as GET .../configuration gives it
let homes = [];
let deviceHistory = [];
const TYPES = ["alarm_button", "fall_detector", "door_contact", "motion", "presence", "bed_sensor", "smoke", "heat", "gas",
  "co", "water_leak", "digital_lock", "siren"];
// Devices the console can pair or take over: those whose address is all their config has.
const PAIRABLE = { zigbee2mqtt: TYPES, ble: TYPES.filter((x) => x !== "digital_lock"), ble_lock: ["digital_lock"] };
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
  document.title = t("ui.title");
  $("lang").value = chosen;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  if (!signedIn) setStatus(t("ui.signed_out"));
  render();
  if (readings && !readings.loading) renderReadings();  // the charts' words too
  if (signedIn && me) refresh();  // the status line in the new language at once
}

function timeZone() { return (me && me.time_zone) || undefined; }

function when(iso) {
  if (!iso) return t("ui.never");
  return new Intl.DateTimeFormat(LOCALES[lang], {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: timeZone(),
  }).format(new Date(iso));
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return t("ui.seconds", { n: s });
  if (s < 7200) return t("ui.minutes", { n: Math.round(s / 60) });
  if (s < 172800) return t("ui.hours", { n: Math.round(s / 3600) });
  return t("ui.days", { n: Math.round(s / 86400) });
}

function number(value, digits = 0) {
  return new Intl.NumberFormat(LOCALES[lang], { maximumFractionDigits: digits }).format(value);
}

function element(tag, text, cls) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function cell(text, cls) { return element("td", text, cls); }

// A word the gateway sent (a link's state, a fault's kind): in the catalog's words where
// it has them, as sent otherwise (a newer gateway may know more than this page).
function said(prefix, value) {
  const key = `${prefix}.${String(value).replace(/ /g, "_")}`;
  return key in messages ? messages[key] : String(value);
}

function setStatus(text, cls) {
  const el = $("status");
  el.textContent = text;
  el.className = cls || "";
}

// -- the API --------------------------------------------------------------------------------

async function api(path, options = {}) {
  const res = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  if (res.status === 401) { signOut(signedIn ? t("ui.session_expired") : ""); throw new Error("401"); }
  if (res.status === 403 && res.headers.get("X-Trygg-Second-Factor") === "enrol") {
    enrol();
    throw new Error("enrol");
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.detail || res.statusText);
  }
  return res.json();
}

// A configuration read before a save answered is older than the one the save gave:
// the page keeps the newer (else the form and its "saved" line would go back a version).
function newest(fetched) {
  const held = configuration;
  if (fetched && held && held.gateway_id === fetched.gateway_id && (held.version || 0) > (fetched.version || 0)) {
    return held;
  }
  return fetched;
}

async function refresh() {
  clearTimeout(timer);
  if (!signedIn) return;
  try {
    [gateways, devices] = await Promise.all([api("/api/v1/gateways"), api("/api/v1/devices")]);
    const open = openGateway();
    const device = openDevice() === null ? null : devices.find((d) => d.id === openDevice());
    const base = open ? `/api/v1/gateways/${encodeURIComponent(open)}` : null;
    let fetched = null;
    [discovered, history, fetched] = base
      ? await Promise.all([
        api(`${base}/discovered`), api(`${base}/events?limit=50`), api(`${base}/configuration`),
      ])
      : [[], [], null];
    if (device) {
      const at = `/api/v1/gateways/${encodeURIComponent(device.gateway_id)}`;
      [deviceHistory, fetched] = await Promise.all([
        api(`${at}/events?device_id=${encodeURIComponent(device.id)}&limit=50`), api(`${at}/configuration`),
      ]);
    }
    configuration = newest(fetched);
    if ((base || device) && !homes.length) homes = await api("/api/v1/homes");
    const now = new Intl.DateTimeFormat(LOCALES[lang], {
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: timeZone(),
    }).format(new Date());
    setStatus(t("ui.updated", { time: now }), "live");
    render();
  } catch (e) {
    if (e.message === "401" || e.message === "enrol") return;
    setStatus(t("ui.no_connection"), "down");
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

// -- what a gateway's health says -------------------------------------------------------------

function gatewayState(g) {
  if (g.online === true) return "online";
  if (g.online === false) return "offline";
  return "never_seen";
}

function waiting(g) {
  const outbox = (g.health && g.health.outbox) || {};
  return Object.values(outbox).reduce((n, level) => n + level.events, 0);
}

// The oldest alarm (critical or high) still waiting in the gateway for the dispatch ack.
function oldestAlarm(g) {
  const outbox = (g.health && g.health.outbox) || {};
  const ages = URGENT.filter((p) => outbox[p] && outbox[p].events > 0).map((p) => outbox[p].oldest_age_s);
  return ages.length ? Math.max(...ages) : null;
}

function gatewayFaults(g) {
  const faults = [];
  if (g.online === false) faults.push(t("fault.offline", { since: when(g.offline_since) }));
  const h = g.health;
  if (!h) return faults;
  if (h.store_fault) faults.push(t("fault.store", { reason: h.store_fault }));
  for (const [name, link] of Object.entries(h.links || {})) {
    if (!link.up) faults.push(t("fault.link", { link: name, state: said("link", link.state) }));
  }
  if (h.timeseries_uplink === "disconnected") faults.push(t("fault.timeseries"));
  if (h.devices_silent) faults.push(t("fault.silent_devices", { n: h.devices_silent }));
  if (h.disk_budget_used_pct !== null && h.disk_budget_used_pct >= 90) {
    faults.push(t("fault.disk", { pct: number(h.disk_budget_used_pct) }));
  }
  if (g.clock_offset_s !== null && Math.abs(g.clock_offset_s) > CLOCK_OFFSET_LIMIT_S) {
    faults.push(t("fault.clock", { offset: number(g.clock_offset_s, 1) }));
  }
  return faults;
}

function faultList(faults) {
  if (!faults.length) return element("span", t("ui.none"), "hint");
  const ul = element("ul", undefined, "fault-list");
  for (const f of faults) ul.append(element("li", f, "fault"));
  return ul;
}

// A device its gateway reported once and reports no more (removed there) is not shown;
// one registered here that no gateway has reported yet is.
function devicesOf(gatewayId) {
  return devices.filter((d) => d.gateway_id === gatewayId && (d.reported_at || !d.transport));
}

// -- the fleet --------------------------------------------------------------------------------

function renderFleet() {
  const rows = [...gateways].sort((a, b) =>
    gatewayFaults(b).length - gatewayFaults(a).length || a.id.localeCompare(b.id));
  $("gateways").replaceChildren(...rows.map((g) => {
    const tr = element("tr");
    tr.dataset.gateway = g.id;
    const name = element("td");
    const link = element("a", g.name ? `${g.name} (${g.id})` : g.id);
    link.href = `#gateway/${encodeURIComponent(g.id)}`;
    name.append(link);
    const state = gatewayState(g);
    const oldest = oldestAlarm(g);
    const faults = element("td");
    faults.append(faultList(gatewayFaults(g)));
    tr.append(
      name,
      cell(t(`state.${state}`), `state-${state}`),
      cell(when(g.last_seen_at)),
      cell(g.health ? number(waiting(g)) : "–", "num"),
      cell(oldest === null ? t("ui.none") : duration(oldest), oldest === null ? "hint" : "fault"),
      cell(number(devicesOf(g.id).length), "num"),
      faults,
      cell(g.health ? g.health.version : "–"),
    );
    return tr;
  }));
  $("fleet-empty").hidden = gateways.length > 0;
  const online = gateways.filter((g) => g.online === true).length;
  const troubled = gateways.filter((g) => gatewayFaults(g).length).length;
  $("fleet-summary").textContent = t("ui.fleet_summary", { online, total: gateways.length, troubled });
}

// -- one gateway -------------------------------------------------------------------------------

function openGateway() {
  const m = location.hash.match(/^#gateway\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

function deviceState(d) {
  const parts = [];
  if (d.contact) parts.push(t(`contact.${d.contact}`));
  if (d.lock_state) parts.push(t(`lock.${d.lock_state}`));
  if (d.online === false) parts.push(t("ui.unavailable"));
  return parts.join(", ") || "–";
}

function battery(d) {
  return d.battery_pct === null || d.battery_pct === undefined ? "–" : `${number(d.battery_pct)} %`;
}

function signal(d) {
  if (d.linkquality !== null && d.linkquality !== undefined) return t("ui.linkquality", { n: number(d.linkquality) });
  if (d.rssi_dbm !== null && d.rssi_dbm !== undefined) return t("ui.rssi", { n: number(d.rssi_dbm) });
  return "–";
}

function renderGateway(id) {
  const g = gateways.find((x) => x.id === id);
  $("gateway-heading").textContent = g ? t("ui.gateway_heading", { name: g.name || g.id, id: g.id }) : t("ui.no_such_gateway", { id });
  const health = $("gateway-health");
  health.replaceChildren();
  $("links").replaceChildren();
  if (!g) return;
  const h = g.health;
  const dl = element("dl", undefined, "health");
  const line = (label, value) => { if (value) dl.append(element("dt", label), element("dd", value)); };
  line(t("ui.col_state"), t(`state.${gatewayState(g)}`));
  line(t("ui.col_last_seen"), when(g.last_seen_at));
  if (h) {
    line(t("ui.col_version"), h.version);
    // As of the heartbeat that carried it, and running since.
    const since = g.health_at ? (Date.now() - new Date(g.health_at).getTime()) / 1000 : 0;
    line(t("ui.uptime"), duration(h.uptime_s + Math.max(0, since)));
    line(t("ui.col_outbox"), t("ui.outbox_line", {
      critical: h.outbox.critical ? h.outbox.critical.events : 0,
      high: h.outbox.high ? h.outbox.high.events : 0,
      normal: h.outbox.normal ? h.outbox.normal.events : 0,
      low: h.outbox.low ? h.outbox.low.events : 0,
    }));
    line(t("ui.readings_buffered"), number(h.readings_buffered));
    if (h.disk_budget_used_pct !== null) line(t("ui.disk_budget"), `${number(h.disk_budget_used_pct, 1)} %`);
    if (h.timeseries_uplink) line(t("ui.timeseries"), said("link", h.timeseries_uplink));
  } else {
    line(t("ui.health"), t("ui.no_health"));
  }
  if (g.clock_offset_s !== null) {
    const offset = t("ui.seconds_exact", { n: number(Math.abs(g.clock_offset_s), 1) });
    line(g.clock_offset_s < 0 ? t("ui.clock_behind") : t("ui.clock_offset"), offset);
  }
  const faults = element("div");
  faults.append(faultList(gatewayFaults(g)));
  dl.append(element("dt", t("ui.col_faults")), element("dd"));
  dl.lastChild.append(faults);
  health.append(dl);

  const head = element("tr");
  head.append(element("th", t("ui.col_transport")), element("th", t("ui.col_state")));
  const links = Object.entries((h && h.links) || {}).map(([name, link]) => {
    const tr = element("tr");
    tr.append(cell(name), cell(said("link", link.state), link.up ? "state-online" : "state-offline"));
    return tr;
  });
  $("links").append(element("thead"), element("tbody"));
  $("links").firstChild.append(head);
  $("links").lastChild.append(...links);

  const own = devicesOf(id).sort((a, b) => (b.faults || []).length - (a.faults || []).length || a.id.localeCompare(b.id));
  $("devices").replaceChildren(...own.map((d) => {
    const tr = element("tr");
    tr.dataset.device = d.id;
    const faults = element("td");
    faults.append(faultList((d.faults || []).map((f) => said("kind", f))));
    const name = element("td");
    const link = element("a", d.id);
    link.href = `#device/${encodeURIComponent(d.id)}`;
    name.append(link);
    tr.append(
      name,
      cell(said("type", d.type)),
      cell(d.home_id),
      cell(d.state_at ? when(d.last_seen_at) : t("ui.not_reported")),
      cell(battery(d), d.battery_pct !== null && d.battery_pct < LOW_BATTERY_PCT ? "num low" : "num"),
      cell(signal(d), "num"),
      cell(d.firmware || "–"),
      cell(d.checkin_due_at ? when(d.checkin_due_at) : "–"),
      cell(deviceState(d)),
      faults,
      testCell(d),
      originCell(d),
    );
    return tr;
  }));
  $("devices-empty").hidden = own.length > 0;
  renderChecklist(own);
  $("discovered").replaceChildren(...discovered.map((d) => {
    const tr = element("tr");
    const pair = element("td");
    if (PAIRABLE[d.transport] && configuration) {
      const button = element("button", t("ui.pair"));
      button.type = "button";
      button.setAttribute("aria-label", t("ui.pair_named", { address: d.address }));
      button.addEventListener("click", () => openPair(d));
      pair.append(button);
    } else {
      pair.append(element("span", t("ui.pair_in_file"), "hint"));
    }
    const what = d.model ? t("ui.said_model", { model: d.model, said: d.said || "–" }) : d.said || "–";
    tr.append(cell(d.transport), cell(d.address), cell(what), cell(when(d.first_seen)),
      cell(when(d.last_seen)), cell(number(d.messages), "num"), pair);
    return tr;
  }));
  renderConfiguration();
  renderHeartbeat(id);
  renderRules(id);
  $("discovered-empty").hidden = discovered.length > 0;
  $("history").replaceChildren(...history.map((e) => historyRow(e, true)));
  $("history-empty").hidden = history.length > 0;
}

function historyRow(e, withDevice) {
  const tr = element("tr");
  let what = said("kind", e.kind);
  if (e.restore) what = t("ui.cleared", { what });
  if (e.test) what = t("ui.as_test", { what });
  const delay = (new Date(e.received_at) - new Date(e.occurred_at));
  tr.append(cell(when(e.occurred_at)));
  if (withDevice) tr.append(cell(e.device_id));
  tr.append(cell(what, e.restore ? "hint" : ""), cell(t("ui.ms", { n: number(Math.max(0, delay)) }), "num"));
  return tr;
}

// Per home: each device's last test that came through, the ones not tested yet first.
// A lock or a camera raises no alarm of its own to test: listed, not counted.
const NO_TEST_ALARM = new Set(["digital_lock", "camera"]);

function renderChecklist(own) {
  const byHome = new Map();
  for (const d of own.filter((x) => !NO_TEST_ALARM.has(x.type))) byHome.set(d.home_id, [...(byHome.get(d.home_id) || []), d]);
  $("checklist").replaceChildren(...[...byHome.keys()].sort().map((home) => {
    const list = byHome.get(home).sort((a, b) => Boolean(a.last_test_at) - Boolean(b.last_test_at) || a.id.localeCompare(b.id));
    const tested = list.filter((d) => d.last_test_at).length;
    const box = element("div", undefined, "checklist");
    box.dataset.home = home;
    box.append(element("h4", t("ui.checklist_home", { home, tested, total: list.length }),
      tested === list.length ? "state-online" : ""));
    const ul = element("ul");
    ul.append(...list.map((d) => element("li", d.last_test_at
      ? t("ui.checklist_tested", { device: d.id, when: when(d.last_test_at), ms: number(d.last_test_delay_ms) })
      : t("ui.checklist_untested", { device: d.id }), d.last_test_at ? "" : "low")));
    const others = own.filter((x) => x.home_id === home && NO_TEST_ALARM.has(x.type)).map((x) => x.id).sort();
    if (others.length) box.append(element("p", t("ui.checklist_no_test", { devices: others.join(", ") }), "hint"));
    box.append(ul);
    return box;
  }));
}

// -- the configuration the centre keeps (docs/configuration.md) ------------------------------

function renderConfiguration() {
  const el = $("configuration-state");
  const c = configuration;
  if (!c) { el.textContent = ""; return; }
  const args = {
    version: c.version, applied: c.applied_version === null ? "–" : c.applied_version,
    who: c.created_by || "", when: c.created_at ? when(c.created_at) : "",
    why: c.command ? (c.command.detail || c.command.reason || c.command.state) : "",
  };
  el.textContent = t(`ui.config_${c.delivery}`, args);
  el.className = ["refused", "failed"].includes(c.delivery) ? "fault" : c.delivery === "applied" ? "state-online" : "hint";
  renderConfigured(c);
}

// The devices of the newest version, each as the gateway has it: in force (it reports
// the device as set by the centre) or not (yet). A version refused is corrected here:
// what made it refused removed, saved as a new version.
function renderConfigured(c) {
  $("configured-table").hidden = !c.devices.length;
  $("configured").replaceChildren(...c.devices.map((x) => {
    const tr = element("tr");
    tr.dataset.configured = x.id;
    const there = devices.find((d) => d.id === x.id && d.gateway_id === c.gateway_id && d.origin === "remote" && d.reported_at);
    const change = element("td");
    const b = element("button", t("ui.remove"));
    b.type = "button";
    b.setAttribute("aria-label", t("ui.remove_configured_named", { device: x.id }));
    b.addEventListener("click", () => configure((list) => list.filter((y) => y.id !== x.id), x.id));
    change.append(b);
    tr.append(cell(x.id), cell(said("type", x.type)), cell(x.home),
      cell(there ? t("ui.in_force") : t("ui.not_in_force"), there ? "state-online" : "hint"), change);
    return tr;
  }));
}

function originCell(d) {
  const td = element("td", said("origin", d.origin || "config"));
  const configured = configuration && configuration.devices.some((x) => x.id === d.id);
  const button = (key, label, action) => {
    const b = element("button", t(key));
    b.type = "button";
    b.setAttribute("aria-label", t(label, { device: d.id }));
    b.addEventListener("click", action);
    td.append(" ", b);
  };
  if (d.origin === "paired" && configuration && PAIRABLE[d.transport] && d.address) {
    // Paired on the gateway (an installation without network): the centre takes it over.
    button("ui.take_over", "ui.take_over_named", () => configure((list) => [...list, {
      id: d.id, type: d.type, transport: d.transport, address: d.address, home: d.home_id,
    }], d.id));
  } else if (configured && d.origin === "remote") {
    button("ui.remove", "ui.remove_named", () => configure((list) => list.filter((x) => x.id !== d.id), d.id));
  }
  return td;
}

// A new version of the configuration: the devices as ``change`` makes them from the
// newest ones, the homes and heartbeat as they are. A change someone made meanwhile
// is a 409: said, and the page shows theirs.
async function configure(change, device, homes, heartbeat) {
  const c = configuration;
  const body = {
    base_version: c.version, devices: change(c.devices), homes: homes || c.homes,
    heartbeat_interval_s: heartbeat === undefined ? c.heartbeat_interval_s : heartbeat,
  };
  const url = `/api/v1/gateways/${encodeURIComponent(c.gateway_id)}/configuration`;
  try {
    configuration = await api(url, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    render();
    return null;
  } catch (e) {
    if (e.message === "401" || e.message === "enrol") return e.message;
    if (!$("gateway").hidden) {
      $("configuration-state").textContent = t("ui.config_not_saved", { device, why: e.message });
      $("configuration-state").className = "fault";
    }
    return e.message;
  }
}

// -- a home's rules, in the centre's configuration -------------------------------------------

const NIGHT_DEFAULT = "22:00-07:00";
let rulesFor = null;  // the gateway whose homes the form lists

function homeRule(id) {
  return (configuration.homes || []).find((h) => h.id === id) || { id };
}

function fillRules(id) {
  const form = $("home-rules");
  const rule = homeRule(id);
  form.elements.night.value = rule.night || NIGHT_DEFAULT;
  form.elements.door_open_at_night.checked = Boolean(rule.door_open_at_night);
  form.elements.bed_exit_min.value = String(Math.round((rule.bed_exit_return_s || 0) / 60));
  form.elements.inactivity_h.value = String((rule.inactivity_s || 0) / 3600);
  form.elements.inactivity_window.value = rule.inactivity_window || "07:00-22:00";
  form.elements.away.checked = Boolean(rule.away);
  $("home-rules-error").textContent = "";
}

// The form is drawn when the gateway's page opens (and its homes change), not at every
// refresh: what a technician is typing stays.
function renderRules(gatewayId) {
  const form = $("home-rules");
  if (!configuration) { form.hidden = true; return; }
  const ids = [...new Set([...devicesOf(gatewayId).map((d) => d.home_id),
    ...(configuration.homes || []).map((h) => h.id)])].sort();
  const key = `${gatewayId}|${ids.join(",")}`;
  form.hidden = ids.length === 0;
  if (rulesFor === key) return;
  rulesFor = key;
  const select = form.elements.home;
  const chosen = ids.includes(select.value) ? select.value : ids[0];
  select.replaceChildren(...ids.map((id) => {
    const o = element("option", id);
    o.value = id;
    return o;
  }));
  if (chosen) { select.value = chosen; fillRules(chosen); }
}

$("home-rules").elements.home.addEventListener("change", (ev) => fillRules(ev.target.value));

$("home-rules").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const id = form.elements.home.value;
  const rule = { ...homeRule(id), id, night: form.elements.night.value.trim(),
    door_open_at_night: form.elements.door_open_at_night.checked,
    bed_exit_return_s: Number(form.elements.bed_exit_min.value) * 60,
    inactivity_s: Math.round(Number(form.elements.inactivity_h.value) * 3600),
    inactivity_window: form.elements.inactivity_window.value.trim(),
    away: form.elements.away.checked };
  const failed = await configure((list) => list, id,
    [...(configuration.homes || []).filter((h) => h.id !== id), rule]);
  if (failed) { $("home-rules-error").textContent = t("ui.config_not_saved", { device: id, why: failed }); return; }
  $("configuration-state").focus();
});

let pairing = null;  // the discovered device the form is for

function openPair(d) {
  pairing = d;
  const form = $("pair");
  form.reset();
  $("pair-heading").textContent = t("ui.pair_heading", { address: d.address, transport: d.transport });
  form.elements.type.replaceChildren(...PAIRABLE[d.transport].map((x) => {
    const o = element("option", said("type", x));
    o.value = x;
    return o;
  }));
  form.elements.home.replaceChildren(...homes.map((h) => {
    const o = element("option", h.address ? `${h.id}: ${h.address}` : h.id);
    o.value = h.id;
    return o;
  }));
  $("pair-key-field").hidden = d.transport !== "ble";
  // The type its own description suggests (Zigbee2MQTT's exposes): offered, to confirm.
  const suggested = PAIRABLE[d.transport].includes(d.suggested_type) ? d.suggested_type : null;
  if (suggested) form.elements.type.value = suggested;
  $("pair-suggested").textContent = suggested
    ? t("ui.pair_suggested", { type: said("type", suggested), model: d.model || d.address }) : "";
  $("pair-error").textContent = "";
  form.hidden = false;
  form.elements.id.focus();
}

$("pair").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = pairing;
  const form = new FormData(ev.target);
  const entry = { id: String(form.get("id")).trim(), type: form.get("type"), transport: d.transport,
    address: d.address, home: form.get("home") };
  const resident = String(form.get("resident") || "").trim();
  if (resident) entry.resident = resident;
  const key = String(form.get("bindkey") || "").trim();
  if (key && d.transport === "ble") entry.bindkey = key;
  if (configuration.devices.some((x) => x.id === entry.id) || devices.some((x) => x.id === entry.id)) {
    $("pair-error").textContent = t("ui.pair_taken", { id: entry.id });
    return;
  }
  const failed = await configure((list) => [...list, entry], entry.id);
  if (failed) { $("pair-error").textContent = t("ui.config_not_saved", { device: entry.id, why: failed }); return; }
  ev.target.hidden = true;
  pairing = null;
  $("configuration-state").focus();
});

$("pair-cancel").addEventListener("click", () => {
  $("pair").hidden = true;
  pairing = null;
});

// -- the heartbeat interval, in the centre's configuration -----------------------------------

let heartbeatFor = null;  // the gateway and version the form was filled from

function renderHeartbeat(gatewayId) {
  const form = $("heartbeat");
  form.hidden = !configuration;
  if (!configuration) return;
  const key = `${gatewayId}|${configuration.version}`;
  if (heartbeatFor === key) return;  // what a technician is typing stays
  heartbeatFor = key;
  const s = configuration.heartbeat_interval_s;
  form.elements.seconds.value = s === null || s === undefined ? "" : String(s);
  $("heartbeat-error").textContent = "";
}

$("heartbeat").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const raw = ev.target.elements.seconds.value.trim();
  const seconds = raw === "" ? null : Number(raw);
  const failed = await configure((list) => list, t("ui.heartbeat"), undefined, seconds);
  if (failed) { $("heartbeat-error").textContent = t("ui.config_not_saved", { device: t("ui.heartbeat"), why: failed }); return; }
  $("configuration-state").focus();
});

// -- one device: what its gateway said of it, its readings over days, its history ------------

function openDevice() {
  const m = location.hash.match(/^#device\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

// Units by the metric's name as the gateway writes it (devices/codecs: battery_pct, …).
const UNITS = [["_pct", "%"], ["_c", "°C"], ["_mv", "mV"], ["_hpa", "hPa"], ["_ppm", "ppm"],
  ["_dbm", "dBm"], ["_lux", "lx"]];
const SIGNAL_METRICS = ["linkquality", "rssi_dbm"];
// Measures with a whole scale drawn on it (a battery at 9 % looks low, not mid-chart).
const FULL_SCALE = { "%": [0, 100], linkquality: [0, 255] };

function unitOf(metric) {
  const hit = UNITS.find(([suffix]) => metric.endsWith(suffix));
  return hit ? hit[1] : "";
}

function withUnit(value, metric) {
  const unit = unitOf(metric);
  return unit ? `${number(value, 1)} ${unit}` : number(value, 1);
}

let charts = [];  // the uPlot charts drawn, destroyed before the next are
let readings = null;  // { key: device|hours, at: ms, body | error }
const READINGS_EVERY_MS = 60_000;

function dropCharts() {
  for (const c of charts) c.destroy();
  charts = [];
  readings = null;
}

async function loadReadings(id, force) {
  const hours = Number($("readings-period").value);
  const key = `${id}|${hours}`;
  if (!force && readings && readings.key === key && Date.now() - readings.at < READINGS_EVERY_MS) return;
  if (!me.readings) {  // no time-series store here: nothing to ask for
    readings = { key, at: Date.now(), none: true };
    renderReadings();
    return;
  }
  readings = { key, at: Date.now(), loading: true };
  renderReadings();
  try {
    const body = await api(`/api/v1/devices/${encodeURIComponent(id)}/readings?hours=${hours}`);
    if (readings && readings.key === key) readings = { key, at: Date.now(), body };
  } catch (e) {
    if (e.message === "401" || e.message === "enrol") return;
    if (readings && readings.key === key) readings = { key, at: Date.now(), error: e.message };
  }
  renderReadings();
}

function axisTime(span) {
  const options = span > 2 * 86400
    ? { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }
    : { hour: "2-digit", minute: "2-digit" };
  const format = new Intl.DateTimeFormat(LOCALES[lang], { ...options, timeZone: timeZone() });
  return (seconds) => format.format(new Date(seconds * 1000));
}

// One chart per metric (each has its own unit and scale), signal first after the battery.
function renderReadings() {
  const state = $("readings-state");
  const box = $("charts");
  for (const c of charts) c.destroy();
  charts = [];
  box.replaceChildren();
  if (!readings || readings.loading) { state.textContent = t("ui.readings_loading"); state.className = "hint"; return; }
  if (readings.error) { state.textContent = t("ui.readings_unavailable", { why: readings.error }); state.className = "fault"; return; }
  if (readings.none) { state.textContent = t("ui.readings_no_store"); state.className = "hint"; return; }
  const body = readings.body;
  const order = (m) => (m === "battery_pct" ? 0 : SIGNAL_METRICS.includes(m) ? 1 : 2);
  const series = body.series.filter((x) => x.points.length)
    .sort((a, b) => order(a.metric) - order(b.metric) || a.metric.localeCompare(b.metric));
  const span = (new Date(body.end) - new Date(body.start)) / 1000;
  state.textContent = series.length
    ? t("ui.readings_line", { n: series.length, step: duration(body.step_s) })
    : t("ui.readings_none", { period: $("readings-period").selectedOptions[0].textContent });
  state.className = series.length ? "" : "hint";
  const label = axisTime(span);
  const width = Math.max(280, Math.min(900, box.clientWidth || 600));
  for (const x of series) {
    const figure = element("figure", undefined, "chart");
    figure.dataset.metric = x.metric;
    const name = said("metric", x.metric);
    const values = x.points.map((p) => p[1]);
    const [at, last] = x.points[x.points.length - 1];
    const summary = t("ui.chart_summary", {
      metric: name, last: withUnit(last, x.metric), when: label(at),
      low: withUnit(Math.min(...values), x.metric), high: withUnit(Math.max(...values), x.metric),
    });
    const caption = element("figcaption", summary);
    const plot = element("div");
    plot.setAttribute("role", "img");
    plot.setAttribute("aria-label", summary);
    figure.append(caption, plot);
    box.append(figure);
    const unit = unitOf(x.metric);
    charts.push(new uPlot({
      width, height: 180,
      scales: {
        x: { time: true, range: [new Date(body.start) / 1000, new Date(body.end) / 1000] },
        y: FULL_SCALE[unit || x.metric] ? { range: FULL_SCALE[unit || x.metric] } : {},
      },
      axes: [
        { values: (u, splits) => splits.map(label), space: span > 2 * 86400 ? 110 : 60 },
        { values: (u, splits) => splits.map((v) => (unit ? `${number(v, 1)} ${unit}` : number(v, 1))), size: 70 },
      ],
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}, { label: name, stroke: "#0b57d0", width: 2, spanGaps: true, points: { show: x.points.length < 60 } }],
    }, [x.points.map((p) => p[0]), values], plot));
  }
}

let setupFor = null;  // the device and version the form was filled from

function renderDevice(id) {
  const d = devices.find((x) => x.id === id);
  $("device-heading").textContent = d
    ? t("ui.device_heading", { device: d.id, type: said("type", d.type), home: d.home_id })
    : t("ui.no_such_device", { id });
  const facts = $("device-facts");
  facts.replaceChildren();
  $("device-history").replaceChildren();
  $("device-setup").hidden = true;
  if (!d) return;
  $("device-back").href = `#gateway/${encodeURIComponent(d.gateway_id)}`;
  $("device-back").textContent = t("ui.back_to_gateway", { gateway: d.gateway_id });
  const dl = element("dl", undefined, "health");
  const line = (label, value, cls) => { if (value) dl.append(element("dt", label), element("dd", value, cls)); };
  line(t("ui.col_last_seen"), d.state_at ? when(d.last_seen_at) : t("ui.not_reported"));
  line(t("ui.col_battery"), battery(d), d.battery_pct !== null && d.battery_pct < LOW_BATTERY_PCT ? "low" : "");
  line(t("ui.col_signal"), signal(d));
  line(t("ui.col_firmware"), d.firmware || "–");
  line(t("ui.col_transport"), d.transport ? (d.address ? `${d.transport} ${d.address}` : d.transport) : "–");
  line(t("ui.col_checkin_due"), d.checkin_due_at ? when(d.checkin_due_at) : "–");
  line(t("ui.col_device_state"), deviceState(d));
  line(t("ui.col_origin"), said("origin", d.origin || "config"));
  dl.append(element("dt", t("ui.col_faults")), element("dd"));
  dl.lastChild.append(faultList((d.faults || []).map((f) => said("kind", f))));
  facts.append(dl);
  renderSetup(d);
  $("device-history").replaceChildren(...deviceHistory.map((e) => historyRow(e, false)));
  $("device-history-empty").hidden = deviceHistory.length > 0;
  loadReadings(d.id, false);
}

// A device the centre configured: its type, home, resident, and how often it must be
// heard (empty: its type's default), changed into a new version of the configuration.
function renderSetup(d) {
  const form = $("device-setup");
  const entry = configuration && configuration.devices.find((x) => x.id === d.id);
  form.hidden = !entry;
  if (!entry) return;
  const key = `${d.id}|${configuration.version}|${homes.length}`;
  if (setupFor === key) return;  // what a technician is typing stays
  setupFor = key;
  const types = PAIRABLE[entry.transport] || [entry.type];
  form.elements.type.replaceChildren(...[...new Set([entry.type, ...types])].map((x) => {
    const o = element("option", said("type", x));
    o.value = x;
    return o;
  }));
  const ids = [...new Set([entry.home, ...homes.map((h) => h.id)])];
  form.elements.home.replaceChildren(...ids.map((id) => {
    const h = homes.find((x) => x.id === id);
    const o = element("option", h && h.address ? `${h.id}: ${h.address}` : id);
    o.value = id;
    return o;
  }));
  form.elements.type.value = entry.type;
  form.elements.home.value = entry.home;
  form.elements.resident.value = entry.resident || "";
  form.elements.minutes.value = entry.checkin_s ? String(Math.round(entry.checkin_s / 60)) : "";
  $("device-setup-said").textContent = "";
}

$("device-setup").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = openDevice();
  const form = ev.target.elements;
  const resident = form.resident.value.trim();
  const minutes = form.minutes.value.trim();
  const failed = await configure((list) => list.map((x) => {
    if (x.id !== id) return x;
    const { checkin_s: _c, resident: _r, ...rest } = x;
    const entry = { ...rest, type: form.type.value, home: form.home.value };
    if (resident) entry.resident = resident;
    if (minutes) entry.checkin_s = Number(minutes) * 60;
    return entry;
  }), id);
  const note = $("device-setup-said");
  if (failed) { note.textContent = t("ui.config_not_saved", { device: id, why: failed }); note.className = "error"; return; }
  note.textContent = t("ui.device_saved", { version: configuration.version });
  note.className = "hint";
});

$("readings-period").addEventListener("change", () => {
  const id = openDevice();
  if (id !== null) loadReadings(id, true);
});

// -- test alarms ------------------------------------------------------------------------------

// What each device's test from this page came to, kept across the page's refreshes.
const tests = new Map();

function testCell(d) {
  const td = element("td");
  const last = d.last_test_at
    ? t("ui.test_line", { when: when(d.last_test_at), ms: number(d.last_test_delay_ms) })
    : t("ui.no_test");
  td.append(element("span", last, d.last_test_at ? "" : "hint"));
  if ((d.actions || []).includes("test")) {
    const button = element("button", t("ui.send_test"));
    button.type = "button";
    button.setAttribute("aria-label", t("ui.send_test_named", { device: d.id }));
    button.addEventListener("click", () => sendTest(d));
    td.append(" ", button);
  }
  const said = tests.get(d.id);
  if (said) td.append(element("p", said.text, `test-result ${said.cls}`));
  return td;
}

// A test alarm through the whole way: signed by the dispatch service, raised by the
// gateway as the device's own alarm, back as a test (never paging anyone).
async function sendTest(d) {
  const show = (text, cls) => { tests.set(d.id, { text, cls }); render(); };
  show(t("ui.test_sending"), "wait");
  const before = d.last_test_at;
  try {
    const command = await api(`/api/v1/gateways/${encodeURIComponent(d.gateway_id)}/commands`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ device_id: d.id, action: "test" }),
    });
    const issued = new Date(command.issued_at).getTime();
    for (let i = 0; i < 30; i += 1) {
      await new Promise((ok) => setTimeout(ok, 500));
      const now = await api(`/api/v1/commands/${encodeURIComponent(command.id)}`);
      if (["failed", "refused", "expired"].includes(now.state)) {
        show(t("ui.test_failed", { reason: now.reason || now.state }), "fault");
        return;
      }
      devices = await api("/api/v1/devices");
      const back = devices.find((x) => x.id === d.id);
      if (back && back.last_test_at && back.last_test_at !== before) {
        const ms = new Date(back.last_test_at).getTime() - issued;
        show(t("ui.test_through", { ms: number(Math.max(0, ms)) }), "state-online");
        return;
      }
    }
    show(t("ui.test_lost"), "fault");
  } catch (e) {
    if (e.message !== "401") show(t("ui.test_failed", { reason: e.message }), "fault");
  }
}

function render() {
  if (!signedIn || !me) return;
  const open = openGateway();
  const device = openDevice();
  $("fleet").hidden = open !== null || device !== null;
  $("gateway").hidden = open === null;
  $("device").hidden = device === null;
  if (device !== null) renderDevice(device);
  else if (open === null) renderFleet();
  else renderGateway(open);
}

window.addEventListener("hashchange", () => {
  if (openDevice() === null) dropCharts();
  render();
  refresh();
  let heading = $("fleet-heading");
  if (openGateway() !== null) heading = $("gateway-heading");
  if (openDevice() !== null) heading = $("device-heading");
  heading.focus();
});

// -- signing in and out --------------------------------------------------------------------------

async function showConsole() {
  try {
    me = await api("/api/v1/me");
  } catch (e) {
    return;
  }
  signedIn = true;
  $("login").hidden = true;
  $("enrol").hidden = true;
  $("signout").hidden = false;
  if (!ROLES.has(me.role)) {
    $("not-for-you").textContent = t("ui.not_for_role", { role: t(`role.${me.role}`) });
    $("not-for-you").hidden = false;
    setStatus(t("ui.signed_in_as", { user: me.username }));
    return;
  }
  $("not-for-you").hidden = true;
  await refresh();
}

function signOut(message) {
  if (signedIn) {
    fetch("/api/v1/auth/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
  }
  signedIn = false;
  me = null;
  clearTimeout(timer);
  for (const id of ["fleet", "gateway", "device", "signout", "enrol", "not-for-you"]) $(id).hidden = true;
  dropCharts();
  $("login").hidden = false;
  $("code-field").hidden = true;
  $("login").elements.code.value = "";
  $("login-error").textContent = message || "";
  setStatus(t("ui.signed_out"));
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
  const who = await res.json();
  if (who.enrol_second_factor) enrol(); else showConsole();
});

async function enrol() {
  signedIn = true;
  $("login").hidden = true;
  $("fleet").hidden = true;
  $("gateway").hidden = true;
  $("device").hidden = true;
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
  showConsole();
});
$("signout").addEventListener("click", () => signOut());
$("lang").addEventListener("change", (ev) => {
  localStorage.setItem("trygg.lang", ev.target.value);
  setLanguage(ev.target.value);
});

// Signed in already (the cookie survives a reload)? /me says.
setLanguage(chooseLanguage()).then(() => showConsole());
