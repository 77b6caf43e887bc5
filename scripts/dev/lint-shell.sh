#!/usr/bin/env bash
# Runs shellcheck over every shell script in the repository (patch scripts, dev scripts, CI, fixtures).
# The parts under scripts/patch/src/ are not scripts on their own: they are checked as what they
# become, the generated scripts/patch/*-update.sh (scripts/dev/gen-scripts.ts).
set -euo pipefail
cd "$(dirname "$0")/../.."

main() {
  command -v shellcheck >/dev/null || { echo "shellcheck is missing: bash scripts/dev/install-test-deps.sh installs it" >&2; exit 1; }
  local files=()
  mapfile -t files < <(git ls-files -- '*.sh' .ci/run ':!scripts/patch/src/*')
  shellcheck --severity=style --external-sources -- "${files[@]}"
  echo "shellcheck: ${#files[@]} scripts clean"
}

main "$@"
