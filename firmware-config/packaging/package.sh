#!/usr/bin/env bash
# Builds luling-gateway_VERSION_ARCH.deb for armhf (GOARM=7) and arm64 (and
# amd64 for bench-testing) into dist/: gatewayd, gatewayctl and devsim, the
# systemd units (gatewayd, and the first-boot bundle installer), an example
# config, and the docs. The package creates the luling user, enables the
# service and starts it once the config is filled in or a provisioning
# bundle is found (luling-firstboot). Purge removes all of it.
#
#   VERSION=1.2.3 ARCHES="amd64" DIST=dir package.sh
# VERSION defaults to version.sh (from git tags), ARCHES to armhf arm64 amd64.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkg=firmware-config/packaging
VERSION=${VERSION:-$($pkg/version.sh)}
DIST=${DIST:-dist}
mkdir -p "$DIST"
for debarch in ${ARCHES:-armhf arm64 amd64}; do
  case $debarch in
  armhf) goarch=arm goarm=7 ;;
  arm64) goarch=arm64 goarm= ;;
  amd64) goarch=amd64 goarm= ;;
  *) echo "package.sh: architecture $debarch: want armhf, arm64 or amd64" >&2; exit 2 ;;
  esac
  root=$(mktemp -d)
  chmod 755 "$root"
  mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/sbin" "$root/lib/systemd/system" "$root/usr/share/luling" "$root/usr/share/doc/luling-gateway"
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
    -o "$root/usr/bin/" ./cmd/gatewayd ./cmd/gatewayctl ./cmd/devsim
  # gatewayd hands a config that uses plugins over to gatewayd-full (the
  # same daemon with the plugin host linked in; docs/plugins.md).
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm go build -trimpath -tags luling_full -ldflags "-s -w -X main.version=$VERSION" \
    -o "$root/usr/bin/gatewayd-full" ./cmd/gatewayd
  install -m 644 $pkg/gatewayd.service $pkg/luling-firstboot.service $pkg/luling-firstboot.path "$root/lib/systemd/system/"
  install -m 755 $pkg/luling-firstboot "$root/usr/sbin/"
  # Not a conffile: postinst copies it to /etc/luling/gateway.yaml once, and
  # a provisioning bundle replaces that without dpkg asking about it.
  install -m 644 $pkg/gateway.yaml "$root/usr/share/luling/gateway.yaml.example"
  install -m 644 docs/installer.md docs/config.md docs/mqtt-payloads.md docs/influxdb-schema.md LICENSE "$root/usr/share/doc/luling-gateway/"
  install -m 755 $pkg/debian/postinst $pkg/debian/prerm $pkg/debian/postrm "$root/DEBIAN/"
  cat > "$root/DEBIAN/control" <<CONTROL
Package: luling-gateway
Version: $VERSION
Architecture: $debarch
Maintainer: Luling maintainers <luling@localhost>
Depends: passwd
Section: net
Priority: optional
Description: Luling edge gateway for parking lots and secure communities
 gatewayd reads parking sensors, access-control and BIPV devices over
 RS-485 and GPIO, keeps every reading in a durable outbox and forwards it
 over MQTT. gatewayctl validates configs and scans buses; devsim simulates
 devices for bench tests.
CONTROL
  dpkg-deb --root-owner-group --build "$root" "$DIST/luling-gateway_${VERSION}_${debarch}.deb" >/dev/null
  rm -rf "$root"
  echo "$DIST/luling-gateway_${VERSION}_${debarch}.deb"
done
