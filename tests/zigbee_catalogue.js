// Every model definition of zigbee-herdsman-converters with its exposes, as JSON on
// stdout: [{model, vendor, exposes} | {model, vendor, error}]. A definition whose exposes
// are a function is asked as Zigbee2MQTT's documentation does (no device); one that
// cannot answer without a device is listed with why. Run by tests/catalogue.py.
"use strict";
const path = require("path");
const fs = require("fs");
const zhc = require("zigbee-herdsman-converters");

const dir = path.join(path.dirname(require.resolve("zigbee-herdsman-converters")), "devices");
const out = [];
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".js") && f !== "index.js").sort()) {
  const mod = require(path.join(dir, file));
  for (const definition of mod.definitions || mod.default || []) {
    let prepared;
    try {
      prepared = zhc.prepareDefinition(definition);
    } catch (e) {
      out.push({ model: String(definition.model), vendor: String(definition.vendor), error: `prepare: ${e.message}` });
      continue;
    }
    let exposes = prepared.exposes;
    if (typeof exposes === "function") {
      try {
        exposes = exposes(undefined, {});
      } catch (e) {
        out.push({ model: prepared.model, vendor: prepared.vendor, error: `exposes need a device: ${e.message}` });
        continue;
      }
    }
    out.push({ model: prepared.model, vendor: prepared.vendor, exposes: JSON.parse(JSON.stringify(exposes)) });
  }
}
process.stdout.write(JSON.stringify({ version: require("zigbee-herdsman-converters/package.json").version, models: out }));
