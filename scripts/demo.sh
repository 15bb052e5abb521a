#!/usr/bin/env bash
# make demo: the whole system on one machine, on simulated devices.
#   InfluxDB 1.8 → cloudd (with its embedded MQTT broker, the web platform) ← gatewayd
#   ← devsim (64 bays on 2 RS-485 buses, 2 SunSpec inverters on a third, a guidance
#     sign per zone on a fourth, driven by the zone-guidance rule plugin, and two
#     doors: OSDP readers on a fifth, strikes, contacts and exit buttons on
#     simulated GPIO lines that gatewayd takes from devsim's socket, and an entry
#     and an exit lane with barriers, loops and a tag reader on the same lines)
# Everything lives in .demo/ and stops on Ctrl-C. The parts run in their own
# sessions so that Ctrl-C reaches only this script, which stops them in order.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
BIN=$ROOT/bin
BAYS=${BAYS:-64}
SPEED=${SPEED:-60}
DOORS=${DOORS:-2}

rm -rf "$DEMO"
mkdir -p "$DEMO"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }
INFLUX_PORT=$(pick_port 18086)
INFLUX_RPC=$(pick_port 18088)
MQTT_PORT=$(pick_port 11883)
API_PORT=$(pick_port 18080)
STATUS_PORT=$(pick_port 19100)

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping"
  # Newest first, one at a time: gatewayd commits and says goodbye to the
  # broker before the simulator and cloudd go away.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  echo "demo: stopped (logs and data are in $DEMO)"
}
trap cleanup INT TERM EXIT

wait_http() { # url what
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: $2 did not come up; see $DEMO/*.log" >&2
  exit 1
}

# 1. InfluxDB
mkdir -p "$DEMO/influx"/{meta,data,wal}
cat > "$DEMO/influx/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC"
[meta]
  dir = "$DEMO/influx/meta"
[data]
  dir = "$DEMO/influx/data"
  wal-dir = "$DEMO/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
  flux-enabled = true
[logging]
  level = "warn"
[monitor]
  store-enabled = false
CONF
setsid "$ROOT/.tools/bin/influxd" -config "$DEMO/influx/influxdb.conf" > "$DEMO/influxd.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$INFLUX_PORT/ping" influxd
curl -fsS -o /dev/null -XPOST "http://127.0.0.1:$INFLUX_PORT/query" --data-urlencode "q=CREATE DATABASE community"

# 2. cloudd with its embedded broker; the demo gateway gets its own credential.
PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
HASH=$(printf '%s' "$PASSWORD" | "$BIN/cloudd" hash-password)
cat > "$DEMO/credentials.yaml" <<CRED
gateways:
  - site: demo
    gateway: gw-01
    password: "$HASH"
CRED
# The HTTP API wants a bearer token: an operator token for the demo (it may
# send commands), created before cloudd starts.
API_TOKEN=$("$BIN/cloudd" token create -tokens "$DEMO/tokens.json" -name demo -role operator)
# The web platform's login: an operator account with a fresh password.
WEB_USER=manager
WEB_PASSWORD=$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$WEB_PASSWORD" | "$BIN/cloudd" user add -users "$DEMO/users.json" -name "$WEB_USER" -role operator 2>/dev/null
setsid "$BIN/cloudd" -broker-listen "127.0.0.1:$MQTT_PORT" -credentials "$DEMO/credentials.yaml" \
  -influx-url "http://127.0.0.1:$INFLUX_PORT" -influx-bucket community \
  -http "127.0.0.1:$API_PORT" -tokens "$DEMO/tokens.json" -users "$DEMO/users.json" -client-id cloudd-demo > "$DEMO/cloudd.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$API_PORT/healthz" cloudd

# 3. devsim: the lot on two pseudo-terminal buses, two inverters on a third,
# a guidance sign per zone on a fourth and the doors' OSDP readers on a
# fifth, with the doors' strikes, contacts and exit buttons and the lot's
# entry and exit lanes (barriers, loops, a tag reader) on simulated GPIO
# (gpio.simulator in the config); it writes the gateway config, with the
# plugins that drive the signs, and the credentials.sync command for its cards.
mkdir -p "$BIN/plugins"
CGO_ENABLED=0 go build -o "$BIN/plugins/" ./plugins/examples/guidance-display ./plugins/examples/zone-guidance
DEVSIM_ARGS=(parking --bays "$BAYS" --buses 2 --inverters 2 --doors "$DOORS" --lanes --lane-capacity "$BAYS" --baud 19200 --speed "$SPEED" --dir "$DEMO/dev")
echo "demo: devsim ${DEVSIM_ARGS[*]} ..."
setsid "$BIN/devsim" "${DEVSIM_ARGS[@]}" \
  --sign-plugin "$BIN/plugins/guidance-display" --guidance-plugin "$BIN/plugins/zone-guidance" \
  --write-config "$DEMO/gateway.yaml" --site demo --gateway gw-01 \
  --broker "tcp://127.0.0.1:$MQTT_PORT" --outbox "$DEMO/outbox" \
  --status-listen "127.0.0.1:$STATUS_PORT" > "$DEMO/devsim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$DEMO/gateway.yaml" ] && break; sleep 0.1; done
[ -s "$DEMO/gateway.yaml" ] || { echo "demo: devsim wrote no config; see $DEMO/devsim.log" >&2; exit 1; }
# The embedded broker wants the gateway's credential.
printf '%s\n' "$PASSWORD" > "$DEMO/mqtt.pass"
chmod 600 "$DEMO/mqtt.pass"
sed -i "s|^uplink:|uplink:\n  username: demo/gw-01\n  password_file: $DEMO/mqtt.pass|" "$DEMO/gateway.yaml"
sed -i "s|^  path: \(.*outbox.*\)|  path: \1\n  max_bytes: 64MiB|" "$DEMO/gateway.yaml"
printf 'pipeline:\n  health_interval: 10s\n  max_silence: 5m\n' >> "$DEMO/gateway.yaml"
"$BIN/gatewayctl" validate "$DEMO/gateway.yaml"

# 4. gatewayd
setsid "$BIN/gatewayd" -config "$DEMO/gateway.yaml" > "$DEMO/gatewayd.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$STATUS_PORT/healthz" gatewayd

# 5. The doors' and lanes' credentials: the cloud sends credentials.sync (the
# command devsim wrote) through cloudd's API once the gateway is online.
if [ -s "$DEMO/dev/credentials-sync.json" ]; then
  echo "demo: POST /api/v1/gateways/demo/gw-01/commands < $DEMO/dev/credentials-sync.json (grants devsim's cards)"
  synced=
  for _ in $(seq 1 30); do
    if curl -fsS -H "Authorization: Bearer $API_TOKEN" -H "Content-Type: application/json" \
        --data-binary "@$DEMO/dev/credentials-sync.json" \
        "http://127.0.0.1:$API_PORT/api/v1/gateways/demo/gw-01/commands" 2>/dev/null | grep -q '"status": *"ok"'; then
      synced=1
      break
    fi
    sleep 1
  done
  [ -n "$synced" ] || echo "demo: credentials.sync did not go through; every card will be denied (see $DEMO/cloudd.log)" >&2
fi

cat <<INFO

Luling demo is running: $BAYS simulated bays on 2 RS-485 buses (time runs ${SPEED}x),
2 SunSpec inverters on a third (following today's sun), a guidance sign per
zone on a fourth, which the gateway's zone-guidance rule keeps at the zone's free bays,
and $DOORS doors with OSDP readers on a fifth and their strikes, contacts and exit
buttons on simulated GPIO (gpio.simulator): visitors come by every few seconds.
The lot's entry lane (gate-in) and exit lane (gate-out) run barriers and vehicle
loops on simulated GPIO: visitors, residents with tags and the odd tailgater
drive in and out as the bay sensors fill and empty, and the lanes count the
lot ("gates"; docs/parking.md). The bays run ${SPEED}x, the barriers in real
time: while the lot fills, the count trails the sensors for a few minutes.

  web platform     http://127.0.0.1:$API_PORT/   log in as $WEB_USER, password $WEB_PASSWORD (operator)
  gateway status   http://127.0.0.1:$STATUS_PORT/status   (Prometheus: /metrics)
  cloudd API       http://127.0.0.1:$API_PORT/api/v1/gateways   (token below; /metrics too)
  InfluxDB         http://127.0.0.1:$INFLUX_PORT/query   database "community" (InfluxQL over HTTP, no web page; Grafana dashboards in cloud/web/grafana/)
  MQTT broker      tcp://127.0.0.1:$MQTT_PORT   (embedded in cloudd; gateway user demo/gw-01)
  logs             $DEMO/*.log

The cloudd API's operator token (kept hashed in $DEMO/tokens.json; more with
"$BIN/cloudd token create -tokens $DEMO/tokens.json -name NAME -role viewer"):
  export LULING_TOKEN=$API_TOKEN
  curl -s -H "Authorization: Bearer \$LULING_TOKEN" http://127.0.0.1:$API_PORT/api/v1/gateways/demo/gw-01

More accounts: "$BIN/cloudd user add -users $DEMO/users.json -name NAME -role viewer" (password on stdin).
The same numbers as JSON: curl -s -H "Authorization: Bearer \$LULING_TOKEN" http://127.0.0.1:$API_PORT/api/v1/sites

Ctrl-C stops everything. Live lot occupancy:
INFO
"$BIN/gatewayctl" lots -influx "http://127.0.0.1:$INFLUX_PORT" -db community -watch 2s &
PIDS+=($!)
wait "${PIDS[-1]}"
