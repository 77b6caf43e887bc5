#!/usr/bin/env bash
# Installs what the test suite needs on a bare machine of this kind, only when missing:
# the package managers the patch scripts are proven against (Debian packages), shellcheck, and
# systemd (only for `systemd-analyze verify` on the agent unit; no running systemd is needed) and
# docker-compose (validates docker-compose.yml: `config -q`; no container runtime runs here) and
# chromium (the review page's browser test drives it headless through playwright-core).
# The Temporal CLI is installed separately by install-temporal.sh (go install, cached).
set -euo pipefail

readonly PACKAGES=(dnf rpm createrepo-c zypper pacman-package-manager libarchive-tools debootstrap dpkg-dev shellcheck systemd docker-compose chromium)

main() {
  local missing=()
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $EUID -ne 0 ]]; then
    echo "missing Debian packages (install as root): ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

main "$@"
