#!/usr/bin/env bash
# Print the directory holding the official Temporal server (`temporal-server`), its SQL admin
# tool (`temporal-sql-tool`) and the PostgreSQL schema files, installing them with `go install`
# into a cache outside the clone when missing (about 3 minutes cold for both binaries).
# These are the same programs the compose file runs from the official images, built from source
# because containers cannot run on this machine kind. TEMPORAL_SERVER_DIR overrides the path.
set -euo pipefail

readonly VERSION=1.29.1
readonly MODULE=go.temporal.io/server

main() {
  if [[ -n "${TEMPORAL_SERVER_DIR:-}" ]]; then
    check "$TEMPORAL_SERVER_DIR"
    echo "$TEMPORAL_SERVER_DIR"
    return
  fi
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/patchnanny/temporal-server-${VERSION}"
  mkdir -p "$dir"
  # One install at a time (see install-temporal.sh): a second caller waits, then finds it complete.
  exec 9>"$dir/.lock"
  flock 9
  if ! complete "$dir"; then
    command -v go >/dev/null || { echo "go is required to install the Temporal server" >&2; exit 1; }
    mkdir -p "$dir"
    echo "installing Temporal server v${VERSION} and its SQL tool into $dir (go install, ~3 min the first time)" >&2
    # Build into a temporary folder, then rename: an interrupted install never leaves half of it.
    local tmp
    tmp="$(mktemp -d "$dir/.install.XXXXXX")"
    CGO_ENABLED=0 GOBIN="$tmp" go install "${MODULE}/cmd/server@v${VERSION}" "${MODULE}/cmd/tools/sql@v${VERSION}" >&2
    local src
    src="$(go env GOMODCACHE)/${MODULE}@v${VERSION}/schema/postgresql/v12"
    mkdir -p "$tmp/schema/postgresql/v12"
    cp -R "$src/temporal" "$src/visibility" "$tmp/schema/postgresql/v12/"
    chmod -R u+w "$tmp/schema"
    rm -rf "$dir/schema"
    mv "$tmp/schema" "$dir/schema"
    mv "$tmp/sql" "$dir/temporal-sql-tool"
    mv "$tmp/server" "$dir/temporal-server"
    rmdir "$tmp"
  fi
  check "$dir"
  echo "$dir"
}

complete() {
  [[ -x "$1/temporal-server" && -x "$1/temporal-sql-tool" && -d "$1/schema/postgresql/v12/temporal/versioned" && -d "$1/schema/postgresql/v12/visibility/versioned" ]]
}

check() {
  complete "$1" || { echo "$1 does not hold temporal-server, temporal-sql-tool and schema/postgresql/v12" >&2; exit 1; }
}

main "$@"
