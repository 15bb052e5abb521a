#!/usr/bin/env bash
# Runs govulncheck (pinned, installed into .tools/bin) over the whole module:
# it reports the known vulnerabilities that the code can actually reach.
#
# The vulnerability database, first found wins:
#   1. $GOVULNDB if set (an https:// or file:// URL, as govulncheck -db takes);
#   2. https://vuln.go.dev, when it answers;
#   3. an offline copy built from the golang.org/x/vulndb module, which the Go
#      module proxy serves with the database's OSV files (data/osv): indexed
#      with the module's own cmd/indexdb into .tools/vulndb/VERSION/ (v1
#      layout). VULNDB_VERSION picks the module version (default: latest; a
#      copy built before is used when the proxy cannot be asked).
# Exit status: 0 clean, 3 vulnerabilities found (govulncheck's), 1 no database.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
GOVULNCHECK_VERSION=${GOVULNCHECK_VERSION:-v1.10.0}
# The indexer is pinned apart from the data: the data moves, the tool need not.
INDEXDB_VERSION=${INDEXDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
VULNDB_VERSION=${VULNDB_VERSION:-latest}
ONLINE=https://vuln.go.dev
mkdir -p "$TOOLS/bin"

installed_version() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" {print $3; exit}'; }

if [ "$(installed_version "$TOOLS/bin/govulncheck")" != "$GOVULNCHECK_VERSION" ]; then
  echo "vulncheck: installing govulncheck $GOVULNCHECK_VERSION into .tools/bin"
  GOBIN="$TOOLS/bin" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
fi

no_db() {
  cat >&2 <<EOF
vulncheck: no vulnerability database can be reached: $1
  The online database is $ONLINE (the default; nothing answered there).
  Point GOVULNDB at a copy, for example GOVULNDB=file:///path/to/vulndb
  (the v1 layout: index/db.json, index/modules.json, ID/GO-….json), or let
  this script build one from the golang.org/x/vulndb module, which needs the
  Go module proxy.
EOF
  exit 1
}

# offline_db builds (once per version) and prints the directory of a v1
# database made from the golang.org/x/vulndb module.
offline_db() {
  local ver dir src time
  # Module queries run outside the project so that go.mod and go.sum stay as they are.
  cd "${TMPDIR:-/tmp}"
  if ! ver=$(go list -m -f '{{.Version}}' "golang.org/x/vulndb@$VULNDB_VERSION" 2>/dev/null); then
    # The proxy cannot be asked: the newest copy built before, if any.
    dir=$(ls -d "$TOOLS"/vulndb/v*/ 2>/dev/null | sort | tail -1)
    [ -n "$dir" ] || return 1
    echo "vulncheck: the module proxy did not answer for golang.org/x/vulndb@$VULNDB_VERSION; using the copy in $dir" >&2
    echo "${dir%/}"
    return
  fi
  dir="$TOOLS/vulndb/$ver"
  if [ ! -s "$dir/index/modules.json" ]; then
    echo "vulncheck: building an offline database from golang.org/x/vulndb@$ver (the first time takes a few minutes)" >&2
    src=$(go mod download -json "golang.org/x/vulndb@$ver" | jq -r .Dir) && [ -d "$src/data/osv" ] || return 1
    time=$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "golang.org/x/vulndb@$ver") || return 1
    if [ "$(installed_version "$TOOLS/bin/indexdb")" != "$INDEXDB_VERSION" ]; then
      GOBIN="$TOOLS/bin" go install "golang.org/x/vulndb/cmd/indexdb@$INDEXDB_VERSION" >&2 || return 1
    fi
    rm -rf "$dir.tmp"
    "$TOOLS/bin/indexdb" -vulns "$src/data/osv" -out "$dir.tmp" >&2 || return 1
    # indexdb leaves the database's date empty: it is the module's commit time.
    printf '{"modified":"%s"}' "$time" > "$dir.tmp/index/db.json" || return 1
    gzip -kf "$dir.tmp/index/db.json" || return 1
    rm -rf "$dir"
    mv "$dir.tmp" "$dir" || return 1
  fi
  echo "$dir"
}

if [ -n "${GOVULNDB:-}" ]; then
  DB=$GOVULNDB
  echo "vulncheck: database $DB (GOVULNDB)"
elif curl -fsS -m 10 -o /dev/null "$ONLINE/index/db.json" 2>/dev/null; then
  DB=$ONLINE
  echo "vulncheck: database $DB"
else
  echo "vulncheck: $ONLINE cannot be reached; falling back to an offline copy from the golang.org/x/vulndb module"
  dir=$(offline_db) || no_db "$ONLINE is unreachable and golang.org/x/vulndb could not be fetched from the module proxy"
  DB="file://$dir"
  echo "vulncheck: database $DB, as of $(jq -r .modified "$dir/index/db.json"): vulnerabilities published later are not in it"
fi

"$TOOLS/bin/govulncheck" -db "$DB" ./...
