#!/usr/bin/env bash
# shellcheck over every shell script in the repository (patch scripts, dev scripts, CI, fixtures).
set -euo pipefail
cd "$(dirname "$0")/../.."

main() {
  command -v shellcheck >/dev/null || { echo "shellcheck is missing: bash scripts/dev/install-test-deps.sh installs it" >&2; exit 1; }
  local files=()
  mapfile -t files < <(git ls-files -- '*.sh' .ci/run)
  shellcheck --severity=style --external-sources -- "${files[@]}"
  echo "shellcheck: ${#files[@]} scripts clean"
}

main "$@"
