#!/bin/sh
# The compose stack's own steps (docker/compose.yaml), runnable without Docker too: every
# directory comes from the environment. Nothing secret is shipped: `secrets` makes each
# one at the first start, and keeps it on every later one.
#
#   entry.sh secrets   the secrets: token-signing key, database, InfluxDB, the first
#                      administrator, the home broker's two logins
#   entry.sh setup     the dispatch service's command key, the first administrator, the
#                      demo organisation's gateway and its bundle, the dispatch broker's
#                      TLS, logins and ACL, the gateway's configuration, the home broker's
#                      logins and ACL (needs the database)
#   entry.sh cloud     run the dispatch service with those secrets
set -eu

SECRETS=${TRYGG_SECRETS_DIR:-/secrets}
BROKER=${TRYGG_BROKER_DIR:-/broker}
GATEWAY=${TRYGG_GATEWAY_DIR:-/gateway-config}
HOME_BROKER=${TRYGG_HOME_BROKER_DIR:-/home-broker}
TEMPLATE=${TRYGG_GATEWAY_TEMPLATE:-/app/docker/gateway.toml}
DB_HOST=${TRYGG_DB_HOST:-postgres}
BROKER_HOST=${TRYGG_BROKER_HOST:-mosquitto}
BROKER_PORT=${TRYGG_BROKER_PORT:-8883}
BROKER_LISTEN=${TRYGG_BROKER_LISTEN:-0.0.0.0}
ORG=${TRYGG_ORG:-demo}
GATEWAY_ID=${TRYGG_GATEWAY_ID:-gw-0042}
# Who reads what: the database's password its server (uid 999 in the postgres image), the
# brokers' files mosquitto (uid 1883 in eclipse-mosquitto), the rest Trygg (uid 10001,
# docker/Dockerfile).
POSTGRES_UID=${TRYGG_POSTGRES_UID:-999}
MOSQUITTO_UID=${TRYGG_MOSQUITTO_UID:-1883}
TRYGG_UID=${TRYGG_UID:-10001}

own() {  # own USER:GROUP FILE...: only as root (in the stack); alone, you own them
  owner=$1
  shift
  chmod 640 "$@"
  if [ "$(id -u)" = 0 ]; then chown "$owner" "$@"; fi
}

own_tree() {
  uid=$1
  shift
  if [ "$(id -u)" = 0 ]; then chown -R "$uid:$uid" "$@"; fi
}

secret() {  # secret NAME: a new random secret unless one is kept
  if [ ! -s "$SECRETS/$1" ]; then
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' >"$SECRETS/$1")
    echo "made $SECRETS/$1"
  fi
}

read_secret() {
  tr -d '\n' <"$SECRETS/$1"
}

cloud_env() {
  TRYGG_ENVIRONMENT=production
  TRYGG_DATABASE_URL=${TRYGG_DATABASE_URL:-"postgresql+asyncpg://trygg:$(read_secret postgres-password)@$DB_HOST/trygg"}
  TRYGG_SECRET_KEY=$(read_secret secret-key)
  TRYGG_COMMAND_KEY_FILE=$SECRETS/command-key.pem
  TRYGG_METRICS_TOKEN=$(read_secret metrics-token)
  export TRYGG_ENVIRONMENT TRYGG_DATABASE_URL TRYGG_SECRET_KEY TRYGG_COMMAND_KEY_FILE
  export TRYGG_METRICS_TOKEN
}

broker_config() {
  # TRYGG_BROKER_RUN_AS: the user a broker started as root runs as (mosquitto's own here).
  trygg cloud broker-config --out "$BROKER" --hostname "$BROKER_HOST" --port "$BROKER_PORT" \
    --listen "$BROKER_LISTEN" ${TRYGG_BROKER_RUN_AS:+--run-as "$TRYGG_BROKER_RUN_AS"}
}

cmd_secrets() {
  mkdir -p "$SECRETS"
  for name in secret-key postgres-password influxdb-password influxdb-token admin-password \
    zigbee2mqtt-password gateway-home-password technician-token metrics-token \
    grafana-password; do
    secret "$name"
  done
  # The database's password: its server, and Trygg by group; InfluxDB's: its image's
  # entrypoint, whose user this stack does not choose.
  own "$POSTGRES_UID:$TRYGG_UID" "$SECRETS/postgres-password"
  own "$TRYGG_UID:$TRYGG_UID" "$SECRETS/secret-key" "$SECRETS/zigbee2mqtt-password"
  chmod 644 "$SECRETS/influxdb-password" "$SECRETS/influxdb-token"
  # The token VictoriaMetrics scrapes the dispatch service's /metrics with, and Grafana's
  # admin password: read by those images' own users, which this stack does not choose.
  chmod 644 "$SECRETS/metrics-token" "$SECRETS/grafana-password"
}

cmd_setup() {
  cloud_env
  mkdir -p "$BROKER" "$GATEWAY" "$HOME_BROKER"
  # The key commands are signed with: the gateway's bundle carries its public half.
  if [ ! -s "$TRYGG_COMMAND_KEY_FILE" ]; then
    trygg cloud command-key new --out "$TRYGG_COMMAND_KEY_FILE"
  fi
  own "$TRYGG_UID:$TRYGG_UID" "$TRYGG_COMMAND_KEY_FILE" "$TRYGG_COMMAND_KEY_FILE.pub"
  trygg cloud add-user "$ORG" admin --role admin --password "$(read_secret admin-password)" \
    --exists-ok
  echo "first administrator: admin, password in the secrets volume (admin-password)"

  # The CA and server certificate first: the gateway's bundle carries the CA.
  broker_config
  if [ ! -s "$GATEWAY/bundle/gateway-uplink.toml" ]; then
    trygg cloud add-gateway "$ORG" "$GATEWAY_ID" --name "Compose gateway" \
      --bundle "$GATEWAY/bundle" --broker-host "$BROKER_HOST" --broker-port "$BROKER_PORT" \
      --ca-cert "$BROKER/ca.crt" --ca-file-on-gateway "$GATEWAY/bundle/ca.crt"
  fi
  broker_config  # again, now that the gateway has a login

  # The gateway's configuration: the template with its secrets, and from the bundle its
  # uplink and the keys it trusts commands from ([commands], dispatch-keys.json).
  sed -e "s|@GATEWAY_HOME_PASSWORD@|$(read_secret gateway-home-password)|" \
    -e "s|@INFLUXDB_TOKEN@|$(read_secret influxdb-token)|" \
    -e "s|@TECHNICIAN_TOKEN@|$(read_secret technician-token)|" "$TEMPLATE" >"$GATEWAY/gateway.toml.new"
  {
    echo
    cat "$GATEWAY/bundle/gateway-uplink.toml"
  } >>"$GATEWAY/gateway.toml.new"
  chmod 600 "$GATEWAY/gateway.toml.new"
  mv "$GATEWAY/gateway.toml.new" "$GATEWAY/gateway.toml"
  trygg gateway check-config --config "$GATEWAY/gateway.toml"

  # The home broker: Zigbee2MQTT's login and the gateway's, and the ACL that lets only
  # the gateway publish /set.
  python - "$HOME_BROKER/passwd" "$(read_secret zigbee2mqtt-password)" \
    "$(read_secret gateway-home-password)" <<'PY'
import sys
from cloud.credentials import mosquitto_hash
path, zigbee2mqtt, gateway = sys.argv[1:]
with open(path, "w") as f:
    f.write(f"zigbee2mqtt:{mosquitto_hash(zigbee2mqtt)}\n")
    f.write(f"trygg-gateway:{mosquitto_hash(gateway)}\n")
PY
  trygg gateway broker-acl --config "$GATEWAY/gateway.toml" --out "$HOME_BROKER/acl"
  own_tree "$TRYGG_UID" "$GATEWAY"
  own_tree "$MOSQUITTO_UID" "$BROKER" "$HOME_BROKER"
}

cmd_cloud() {
  cloud_env
  set -a
  . "$BROKER/dispatch.main.env"
  set +a
  TRYGG_MQTT_HOST=$BROKER_HOST
  TRYGG_MQTT_PORT=$BROKER_PORT
  export TRYGG_MQTT_HOST TRYGG_MQTT_PORT
  exec trygg cloud run "$@"
}

case "${1:-}" in
  secrets) cmd_secrets ;;
  setup) cmd_setup ;;
  cloud) shift && cmd_cloud "$@" ;;
  *) echo "usage: entry.sh secrets|setup|cloud [trygg cloud run options]" >&2 && exit 2 ;;
esac
