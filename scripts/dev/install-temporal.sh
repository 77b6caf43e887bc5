#!/usr/bin/env bash
# Print the path of a Temporal CLI, installing it with `go install` into a cache outside the
# clone when missing (about 3 minutes cold, a 250 MB binary). TEMPORAL_CLI overrides the path.
# v1.5.1 is the newest tag `go install` accepts; it embeds Temporal server 1.29.1 and the Web UI.
set -euo pipefail

readonly VERSION=1.5.1

main() {
  if [[ -n "${TEMPORAL_CLI:-}" ]]; then
    [[ -x "$TEMPORAL_CLI" ]] || { echo "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable" >&2; exit 1; }
    echo "$TEMPORAL_CLI"
    return
  fi
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/patchnanny/temporal-${VERSION}"
  mkdir -p "$dir"
  # One install at a time: a second caller (another clone's npm test) waits here, then finds the
  # binary. Two concurrent go installs of one module into one cache corrupt each other's build.
  exec 9>"$dir/.lock"
  flock 9
  if [[ ! -x "$dir/temporal" ]]; then
    command -v go >/dev/null || { echo "go is required to install the Temporal CLI" >&2; exit 1; }
    mkdir -p "$dir"
    echo "installing Temporal CLI v${VERSION} into $dir (go install, ~3 min the first time)" >&2
    # Build into a temporary GOBIN, then rename: an interrupted install never leaves a half binary.
    local tmp
    tmp="$(mktemp -d "$dir/.install.XXXXXX")"
    CGO_ENABLED=0 GOBIN="$tmp" go install "github.com/temporalio/cli/cmd/temporal@v${VERSION}" >&2
    mv "$tmp/temporal" "$dir/temporal"
    rmdir "$tmp"
  fi
  echo "$dir/temporal"
}

main "$@"
