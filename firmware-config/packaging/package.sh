#!/usr/bin/env bash
# Builds luling-gateway_VERSION_ARCH.deb for armhf (GOARM=7) and arm64 (and
# amd64 for bench-testing) into dist/: gatewayd, gatewayctl and devsim, the
# systemd unit, an example config, and the docs. The package creates the
# luling user, enables the service and starts it once the config is filled in.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=${VERSION:-$(git describe --tags --always 2>/dev/null | sed 's/^v//;s/[^0-9A-Za-z.+~-]/./g' || echo 0.0.0)}
case "$VERSION" in [0-9]*) ;; *) VERSION="0.0.0+$VERSION" ;; esac
mkdir -p dist
for target in armhf:arm:7 arm64:arm64: amd64:amd64:; do
  IFS=: read -r debarch goarch goarm <<<"$target"
  root=$(mktemp -d)
  chmod 755 "$root"
  mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/luling" "$root/usr/share/doc/luling-gateway"
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
    -o "$root/usr/bin/" ./cmd/gatewayd ./cmd/gatewayctl ./cmd/devsim
  install -m 644 firmware-config/packaging/gatewayd.service "$root/lib/systemd/system/"
  install -m 644 firmware-config/packaging/gateway.yaml "$root/etc/luling/gateway.yaml"
  install -m 644 docs/installer.md docs/config.md docs/mqtt-payloads.md docs/influxdb-schema.md LICENSE "$root/usr/share/doc/luling-gateway/"
  install -m 755 firmware-config/packaging/debian/postinst firmware-config/packaging/debian/prerm "$root/DEBIAN/"
  echo /etc/luling/gateway.yaml > "$root/DEBIAN/conffiles"
  cat > "$root/DEBIAN/control" <<CONTROL
Package: luling-gateway
Version: $VERSION
Architecture: $debarch
Maintainer: Luling maintainers <luling@localhost>
Depends: adduser
Section: net
Priority: optional
Description: Luling edge gateway for parking lots and secure communities
 gatewayd reads parking sensors, access-control and BIPV devices over
 RS-485 and GPIO, keeps every reading in a durable outbox and forwards it
 over MQTT. gatewayctl validates configs and scans buses; devsim simulates
 devices for bench tests.
CONTROL
  dpkg-deb --root-owner-group --build "$root" "dist/luling-gateway_${VERSION}_${debarch}.deb" >/dev/null
  rm -rf "$root"
  echo "dist/luling-gateway_${VERSION}_${debarch}.deb"
done
