#!/usr/bin/env bash
# Installs (or upgrades, or removes) the patchnanny agent on this host from a release tarball
# (`npm run release`); run as root from the extracted tarball, or with --tarball. docs/agent-install.md.
#
#   install.sh --api-url URL --gate HOST:PORT --enrol-token-file FILE|- \
#              (--trusted-script-keys-file FILE | --trusted-script-keys ID:KEY[,…]) [options]
#   install.sh                       upgrade: keep /etc/patchnanny/agent.env, check it, switch version
#   install.sh --uninstall [--purge] stop, disable, remove; --purge also removes config and state
#
# Options: --namespace NS, --gate-ca PEM, --gate-server-name NAME, --family F, --hostname H, --labels env=prod,role=web,
#   --script-env NAMES, --set NAME=VALUE (repeatable), --state-dir DIR, --node PATH,
#   --tarball FILE, --root DIR (install below DIR as if it were /: the files name paths below DIR;
#   for tests and trials; no systemctl), --no-systemd (write the unit, do not call systemctl).
#
# Layout: /opt/patchnanny-agent/<version> (+ `current` link), /etc/patchnanny/agent.env (0600,
# the variables of agent-worker/config.ts, checked by the agent's --check-config before it is put in
# place), /etc/patchnanny/enrol-token (0600), /var/lib/patchnanny-agent (0700),
# /etc/systemd/system/patchnanny-agent.service.
set -euo pipefail

readonly UNIT=patchnanny-agent.service
# Paths go into an env file, a unit file and a sed expression: a plain character set only.
readonly SAFE_PATH='^/[A-Za-z0-9._/+-]*$'
# Values of the env file (runtime/env-file.ts): no space, quote, backslash, $ or backtick.
readonly SAFE_VALUE='^[^[:space:]"'"'"'\\$`]*$'

die() {
  echo "install.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

ROOT=""
ACTION=install
PURGE=0
SYSTEMD=1
TARBALL=""
NODE_BIN=""
STATE_DIR=""
TOKEN_FILE=""
KEYS_FILE=""
GATE_CA=""
declare -A SET=()
CONFIG_GIVEN=0

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
}

set_var() {
  [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "not a variable name: $1"
  [[ "$2" =~ $SAFE_VALUE ]] || die "$1: the value may not hold spaces, quotes, backslashes, \$ or backticks"
  SET[$1]="$2"
  CONFIG_GIVEN=1
}

safe_path() {
  [[ "$2" =~ $SAFE_PATH && "$2" != *//* && "$2" != */../* && "$2" != */.. ]] ||
    die "$1 must be an absolute path of letters, digits and ._/+- (got '$2')"
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --api-url) need_value "$@"; [[ "$2" =~ ^https?://[^/[:space:]]+ ]] || die "--api-url must be an http(s) URL"; set_var PATCHNANNY_API_URL "$2"; shift ;;
      --gate) need_value "$@"; [[ "$2" =~ ^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$ ]] || die "--gate must be host:port"; set_var TEMPORAL_ADDRESS "$2"; shift ;;
      --namespace) need_value "$@"; set_var TEMPORAL_NAMESPACE "$2"; shift ;;
      --gate-server-name) need_value "$@"; set_var TEMPORAL_TLS_SERVER_NAME "$2"; shift ;;
      --family) need_value "$@"; set_var PATCHNANNY_AGENT_FAMILY "$2"; shift ;;
      --hostname) need_value "$@"; set_var PATCHNANNY_AGENT_HOSTNAME "$2"; shift ;;
      --labels) need_value "$@"; [[ "$2" =~ ^[A-Za-z0-9._/=,-]*$ ]] || die "--labels must be key=value,key=value"; set_var PATCHNANNY_LABELS "$2"; shift ;;
      --script-env) need_value "$@"; set_var PATCHNANNY_SCRIPT_ENV "$2"; shift ;;
      --trusted-script-keys) need_value "$@"; set_var PATCHNANNY_TRUSTED_SCRIPT_KEYS "$2"; shift ;;
      --set) need_value "$@"; [[ "$2" == *=* ]] || die "--set takes NAME=VALUE"; set_var "${2%%=*}" "${2#*=}"; shift ;;
      --enrol-token-file) need_value "$@"; TOKEN_FILE="$2"; CONFIG_GIVEN=1; shift ;;
      --trusted-script-keys-file) need_value "$@"; KEYS_FILE="$2"; CONFIG_GIVEN=1; shift ;;
      --gate-ca) need_value "$@"; GATE_CA="$2"; CONFIG_GIVEN=1; shift ;;
      --state-dir) need_value "$@"; STATE_DIR="$2"; shift ;;
      --node) need_value "$@"; NODE_BIN="$2"; shift ;;
      --tarball) need_value "$@"; TARBALL="$2"; shift ;;
      --root) need_value "$@"; ROOT="${2%/}"; safe_path --root "$ROOT"; SYSTEMD=0; shift ;;
      --no-systemd) SYSTEMD=0 ;;
      --uninstall) ACTION=uninstall ;;
      --purge) PURGE=1 ;;
      -h | --help) usage ;;
      *) die "unknown argument $1 (--help)" ;;
    esac
    shift
  done
  ((PURGE == 0)) || [[ $ACTION == uninstall ]] || die "--purge goes with --uninstall"
  PREFIX="$ROOT/opt/patchnanny-agent"
  CONF_DIR="$ROOT/etc/patchnanny"
  CONF="$CONF_DIR/agent.env"
  UNIT_DIR="$ROOT/etc/systemd/system"
  if [[ -n "$STATE_DIR" ]]; then
    safe_path --state-dir "$STATE_DIR"
    # --uninstall --purge removes it: a name of its own, so that can never be another folder.
    [[ "$(basename "$STATE_DIR")" == *patchnanny* ]] || die "--state-dir: its last component must contain 'patchnanny'"
  else
    STATE_DIR="$ROOT/var/lib/patchnanny-agent"
  fi
}

# The release to install: the folder this script is in (an extracted tarball), or --tarball.
find_release() {
  if [[ -n "$TARBALL" ]]; then
    [[ -f "$TARBALL" ]] || die "--tarball $TARBALL: no such file"
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    tar -xzf "$TARBALL" -C "$WORK"
    local tops=("$WORK"/patchnanny-agent-*)
    [[ ${#tops[@]} -eq 1 && -d "${tops[0]}" ]] || die "$TARBALL is not a patchnanny agent release"
    SRC="${tops[0]}"
  else
    SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  fi
  [[ -f "$SRC/VERSION" && -f "$SRC/dist/agent-worker/main.js" ]] ||
    die "$SRC is not an extracted release: run this from the tarball npm run release builds, or pass --tarball"
  VERSION=$(<"$SRC/VERSION")
  [[ "$VERSION" =~ ^[0-9A-Za-z.+-]+$ ]] || die "bad VERSION in $SRC"
}

find_node() {
  if [[ -z "$NODE_BIN" ]]; then
    NODE_BIN=$(command -v node) || die "Node.js 20 or newer is required (not found on PATH; or pass --node)"
  fi
  safe_path --node "$NODE_BIN"
  [[ -x "$NODE_BIN" ]] || die "--node $NODE_BIN is not executable"
  "$NODE_BIN" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    die "Node.js 20 or newer is required ($NODE_BIN is $("$NODE_BIN" --version))"
}

# Copy an input file into /etc/patchnanny with a mode; "-" reads standard input (keeps a token out of argv).
take_file() {
  local from="$1" to="$2" mode="$3"
  local tmp
  tmp=$(mktemp "$CONF_DIR/.take.XXXXXX")
  if [[ "$from" == - ]]; then cat >"$tmp"; else cat -- "$from" >"$tmp" || die "cannot read $from"; fi
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$to"
}

prepare_dirs() {
  install -d -m 0755 "$ROOT/opt" "$PREFIX" "$UNIT_DIR"
  install -d -m 0700 "$CONF_DIR" "$STATE_DIR"
  chmod 0700 "$CONF_DIR" "$STATE_DIR"
}

# The configuration for the given flags, written to a temporary file next to agent.env.
write_config() {
  local out="$1"
  if [[ -n "$TOKEN_FILE" ]]; then
    take_file "$TOKEN_FILE" "$CONF_DIR/enrol-token" 0600
    local token
    token=$(<"$CONF_DIR/enrol-token")
    [[ "$token" =~ ^[A-Za-z0-9_.:-]+$ ]] || die "the enrolment token must be one line of letters, digits and _.:-"
    SET[PATCHNANNY_ENROL_TOKEN_FILE]="$CONF_DIR/enrol-token"
  fi
  if [[ -n "$KEYS_FILE" ]]; then
    take_file "$KEYS_FILE" "$CONF_DIR/trusted-script-keys" 0644
    SET[PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE]="$CONF_DIR/trusted-script-keys"
  fi
  if [[ -n "$GATE_CA" ]]; then
    take_file "$GATE_CA" "$CONF_DIR/gate-ca.pem" 0644
    SET[TEMPORAL_TLS_CA]="$CONF_DIR/gate-ca.pem"
  fi
  SET[PATCHNANNY_AGENT_STATE_DIR]="$STATE_DIR"
  [[ -n "${SET[PATCHNANNY_API_URL]:-}" && -n "${SET[TEMPORAL_ADDRESS]:-}" ]] ||
    die "a new configuration needs --api-url and --gate (and --enrol-token-file, trusted script keys)"
  {
    echo "# patchnanny agent configuration, written by install.sh $VERSION (docs/agent-install.md)."
    echo "# systemd reads it (EnvironmentFile=); check an edit with:"
    echo "#   $NODE_BIN $PREFIX/current/dist/agent-worker/main.js --check-config $CONF"
    local name
    while IFS= read -r name; do echo "$name=${SET[$name]}"; done < <(printf '%s\n' "${!SET[@]}" | sort)
  } >"$out"
}

# Check with the release's own agent (the AgentEnv schema); a refused file never replaces agent.env.
check_config() {
  if ! "$NODE_BIN" "$SRC/dist/agent-worker/main.js" --check-config "$1"; then
    rm -f "$1"
    die "the agent refuses this configuration (above); nothing was installed"
  fi
}

install_release() {
  local staging="$PREFIX/.staging-$VERSION"
  rm -rf "$staging"
  cp -R -- "$SRC" "$staging"
  chmod -R u+rwX,go+rX,go-w "$staging"
  rm -rf "${PREFIX:?}/$VERSION"
  mv -- "$staging" "$PREFIX/$VERSION"
  local previous=""
  [[ -L "$PREFIX/current" ]] && previous=$(readlink "$PREFIX/current")
  ln -sfn "$VERSION" "$PREFIX/.current"
  mv -Tf "$PREFIX/.current" "$PREFIX/current"
  # Keep the previous version for a rollback (point `current` back), remove older ones.
  local dir
  for dir in "$PREFIX"/*; do
    [[ -d "$dir" && ! -L "$dir" ]] || continue
    dir=$(basename "$dir")
    [[ "$dir" == "$VERSION" || "$dir" == "$previous" ]] || rm -rf "${PREFIX:?}/$dir"
  done
}

install_unit() {
  local tmp
  tmp=$(mktemp "$UNIT_DIR/.$UNIT.XXXXXX")
  sed -e "s|/usr/bin/node |$NODE_BIN |" -e "s|/opt/patchnanny-agent|$PREFIX|g" -e "s|/etc/patchnanny|$CONF_DIR|g" \
    "$SRC/$UNIT" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$UNIT_DIR/$UNIT"
}

do_install() {
  find_release
  find_node
  prepare_dirs
  local tmp
  tmp=$(mktemp "$CONF_DIR/.agent.env.XXXXXX")
  if ((CONFIG_GIVEN)); then
    write_config "$tmp"
  elif [[ -f "$CONF" ]]; then
    cat -- "$CONF" >"$tmp" # an upgrade keeps the configuration; the new agent checks it
  else
    rm -f "$tmp"
    die "no $CONF yet: give --api-url, --gate, --enrol-token-file and trusted script keys"
  fi
  check_config "$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$CONF"
  install_release
  install_unit
  echo "installed patchnanny agent $VERSION in $PREFIX/$VERSION (current), config $CONF, state $STATE_DIR"
  if ((SYSTEMD)); then
    systemctl daemon-reload
    systemctl enable "$UNIT"
    # --no-block: a running apply is never interrupted, so a restart may wait for it.
    systemctl restart --no-block "$UNIT"
    echo "started $UNIT: journalctl -u $UNIT -f; an admin accepts the host unless its token was pre-accepted"
  else
    echo "not calling systemctl (--root/--no-systemd): unit in $UNIT_DIR/$UNIT"
  fi
}

do_uninstall() {
  if [[ -f "$CONF" ]]; then
    local configured
    configured=$(sed -n 's/^PATCHNANNY_AGENT_STATE_DIR=//p' "$CONF")
    [[ -z "$configured" ]] || STATE_DIR="$configured"
  fi
  if ((SYSTEMD)) && [[ -f "$UNIT_DIR/$UNIT" ]]; then
    # Stopping waits for a running apply to finish (TimeoutStopSec in the unit).
    systemctl disable --now "$UNIT"
  fi
  rm -f "$UNIT_DIR/$UNIT"
  if ((SYSTEMD)); then systemctl daemon-reload; fi
  rm -rf "$PREFIX"
  if ((PURGE)); then
    safe_path PATCHNANNY_AGENT_STATE_DIR "$STATE_DIR"
    [[ "$(basename "$STATE_DIR")" == *patchnanny* ]] || die "not purging $STATE_DIR: not a patchnanny folder"
    rm -rf "$CONF_DIR" "$STATE_DIR"
    echo "removed the agent, its configuration ($CONF_DIR) and its state ($STATE_DIR); revoke it in the API too"
  else
    echo "removed the agent; kept $CONF_DIR and $STATE_DIR (its identity: a reinstall is the same agent). --purge removes them"
  fi
}

main() {
  parse_args "$@"
  [[ -n "$ROOT" || $EUID -eq 0 ]] || die "run as root (or with --root DIR for a trial install)"
  umask 022
  if [[ $ACTION == uninstall ]]; then do_uninstall; else do_install; fi
}

main "$@"
