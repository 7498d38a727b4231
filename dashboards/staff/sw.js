// The staff page's service worker: it keeps the page's shell (its HTML, script, style,
// catalogs, icons and sound) so the page opens on a bad connection and installs as an
// app, and it shows Web Push notifications of new assignments. It never keeps anything
// from /api/: a resident's card, an alarm or a visit stays on the server.
"use strict";

const VERSION = "trygg-staff-1";
const SHELL = [
  "./", "index.html", "app.js", "style.css", "manifest.webmanifest", "i18n/sv.json",
  "i18n/en.json", "icon.svg", "icon-192.png", "icon-512.png", "chime.wav",
];
const SETTINGS = "trygg-staff-settings";  // the page's language, for the notifications
const LANGUAGES = ["sv", "en"];

const scope = new URL(self.registration.scope);
const shellUrls = new Set(SHELL.map((path) => new URL(path, scope).href));

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name !== VERSION && name !== SETTINGS) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

// Only the shell, and only GET: the network first (a new version shows at once), the
// kept copy when the network fails. Everything else, the API above all, goes past.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  url.hash = "";
  url.search = "";
  if (!shellUrls.has(url.href)) return;
  event.respondWith((async () => {
    const cache = await caches.open(VERSION);
    try {
      const fresh = await fetch(request);
      if (fresh.ok && fresh.type === "basic") await cache.put(url.href, fresh.clone());
      return fresh;
    } catch (e) {
      const kept = await cache.match(url.href);
      if (kept) return kept;
      throw e;
    }
  })());
});

self.addEventListener("message", (event) => {
  const chosen = event.data && event.data.lang;
  if (!LANGUAGES.includes(chosen)) return;
  event.waitUntil(caches.open(SETTINGS).then((c) => c.put("lang", new Response(chosen))));
});

async function language() {
  const kept = await (await caches.open(SETTINGS)).match("lang");
  if (kept) return kept.text();
  for (const wanted of self.navigator.languages || []) {
    const base = wanted.toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

async function catalog(lang) {
  const url = new URL(`i18n/${lang}.json`, scope).href;
  const res = (await caches.match(url)) || (await fetch(url));
  return res.json();
}

// The push carries no resident data (docs/staff.md, "Web Push"): what, how urgent, when.
async function notify(payload) {
  const known = typeof payload.kind === "string" && Number.isInteger(payload.alarm_id);
  const lang = await language();
  const messages = await catalog(lang).catch(() => ({}));
  const say = (key, fallback) => messages[key] || fallback;
  const kind = say(`kind.${payload.kind}`, payload.kind || "");
  const priority = say(`priority.${payload.priority}`, payload.priority || "");
  const title = known ? say("push.title", "{priority}: {alarm}")
    .replace("{priority}", priority).replace("{alarm}", kind) : "Trygg";
  const at = new Date(typeof payload.at === "string" ? payload.at : NaN);
  const when = Number.isNaN(at.getTime()) ? "" : new Intl.DateTimeFormat(
    lang === "sv" ? "sv-SE" : "en-GB", { hour: "2-digit", minute: "2-digit" }).format(at);
  const body = known ? say("push.body", "Assigned to you at {time}.").replace("{time}", when)
    : say("push.generic", "Something new for you: open Trygg.");
  // Only a well-formed push names an alarm; anything else is the one plain notification.
  const id = known ? payload.alarm_id : null;
  await self.registration.showNotification(title, {
    body,
    tag: id ? `alarm-${id}` : "trygg",
    renotify: true,
    requireInteraction: payload.priority === "critical",
    icon: new URL("icon-192.png", scope).href,
    badge: new URL("icon-192.png", scope).href,
    vibrate: [400, 150, 400, 150, 400],
    data: id ? { alarm_id: id } : {},
  });
}

self.addEventListener("push", (event) => {
  let payload = null;
  try {
    payload = event.data ? event.data.json() : null;
  } catch (e) {
    payload = null;  // not JSON: shown as the plain notification below
  }
  if (!payload || typeof payload !== "object") payload = {};
  // A push must show something (the browser insists): an unknown one says only "open".
  event.waitUntil(notify(payload.type === "assigned" ? payload : {}));
});

// A tap on the notification: the page, already open or opened now, on that alarm.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const id = event.notification.data && event.notification.data.alarm_id;
  const target = new URL(id ? `./#alarm/${id}` : "./", scope).href;
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const page = open.find((c) => c.url.startsWith(scope.href));
    if (page) {
      await page.focus();
      if (id) page.postMessage({ open: id });
      return;
    }
    await self.clients.openWindow(target);
  })());
});
