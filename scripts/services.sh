#!/usr/bin/env bash
# Installs the real services that tests and the demo use, if they are missing:
#   - Mosquitto from the OS packages (apt-get),
#   - InfluxDB OSS 1.8.10 built with `go install` into .tools/bin,
#   - Chromium from the OS packages, for the web platform's browser test.
# Safe to run again: it only installs what is not there.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

have_mosquitto() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

if ! have_mosquitto; then
  echo "services: installing mosquitto from the OS packages"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
  # The package may start a system broker on 1883; the project never uses it.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
fi
have_mosquitto || { echo "services: mosquitto is still missing" >&2; exit 1; }

have_chromium() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}
if ! have_chromium; then
  echo "services: installing chromium from the OS packages (browser test of the web platform)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
have_chromium || { echo "services: chromium is still missing" >&2; exit 1; }

if [ ! -x "$TOOLS/influxd" ]; then
  echo "services: building influxd 1.8.10 into .tools/bin (about a minute the first time)"
  GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10
fi
"$TOOLS/influxd" version >/dev/null 2>&1 || { echo "services: $TOOLS/influxd does not run" >&2; exit 1; }
echo "services: mosquitto $(command -v mosquitto || echo /usr/sbin/mosquitto), influxd $TOOLS/influxd, chromium $(command -v chromium || command -v chromium-browser)"
