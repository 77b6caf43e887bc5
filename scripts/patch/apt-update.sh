#!/usr/bin/env bash
# apt-update.sh — patchnanny patch script for the apt family (Debian 10+, Ubuntu 20.04+).
#
# Speaks docs/script-contract.md: `--dry-run | --apply`, `--exclude a,b`, one JSON document on
# stdout, the human log (including apt's own output) on stderr, exit codes 0/2/3/4/5/6.
#
# Self-contained on purpose: the agent downloads this one file and verifies its SHA-256, so it
# sources nothing and needs nothing beyond apt, dpkg and bash (no jq, no python).
#
# Why `apt-get dist-upgrade` by default: `apt-get upgrade` never installs a new package and never
# removes one, so a kernel ABI bump (linux-image-amd64 depending on a newly named
# linux-image-6.1.0-N-amd64) and Proxmox meta-packages (proxmox-ve pulling new kernels) stay
# "kept back" forever; dist-upgrade is what Debian and Proxmox document for applying updates.
# `--apt-mode upgrade` gives the conservative behaviour for hosts that want it.
#
# Exclusions use apt's native mechanism, holds: the script holds only the excluded packages that
# are not held already and a trap releases exactly those on every exit path, so an admin's holds
# are never touched. The plan is read from the machine-readable `Inst`/`Remv` lines of
# `apt-get -s`, and `changed` is a diff of the dpkg database before and after, not log scraping.
set -euo pipefail

readonly CONTRACT_VERSION=1
readonly EXCLUDE_PATTERN='^[a-z0-9*][a-z0-9+.*-]*$'
readonly REBOOT_FLAG=/var/run/reboot-required
readonly REBOOT_PKGS=/var/run/reboot-required.pkgs
readonly USAGE='usage: apt-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--apt-mode dist-upgrade|upgrade]'
# Field separator of the internal package records: not whitespace, so `read` keeps empty fields.
readonly FS=$'\x1f'

# Non-interactive always; keep existing conffiles (dpkg and ucf); C locale so apt's messages,
# which the lock detection reads, are not translated.
export DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none UCF_FORCE_CONFFOLD=1
export LC_ALL=C LANG=C
unset LANGUAGE

MODE=""
APT_MODE=dist-upgrade
EXCLUDES=()
EXCLUDE_SEEN=0
ADDED_HOLDS=()
WORKDIR=""
ERR_LINE=""
CHANGES_RECORDED=0

PACKAGES_JSON="[]"
HELD_JSON="[]"
CHANGED_JSON="[]"
REBOOT_REQUIRED=false
REBOOT_REASON=""
MANAGER_EXIT_CODE=""
RESULT_EXIT=""
RESULT_ERROR_CODE=""
RESULT_ERROR_MESSAGE=""

APT_OPTS=(
  -y
  -o DPkg::Lock::Timeout=0
  -o Dpkg::Options::=--force-confdef
  -o Dpkg::Options::=--force-confold
)

log() { printf 'apt-update: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# JSON output (pure bash)
# ---------------------------------------------------------------------------------------------

# json_quote VALUE — sets JSON_QUOTED to VALUE as a JSON string literal.
json_quote() {
  local s=$1 i c hex
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  if [[ $s == *[[:cntrl:]]* ]]; then
    for ((i = 1; i < 32; i++)); do
      printf -v hex '%02x' "$i"
      printf -v c '%b' "\\x$hex"
      s=${s//"$c"/\\u00$hex}
    done
  fi
  JSON_QUOTED="\"$s\""
}

# json_nullable VALUE — like json_quote, but the empty string becomes null.
json_nullable() {
  if [[ -z $1 ]]; then JSON_QUOTED=null; else json_quote "$1"; fi
}

# packages_to_json FILE — records "name FS arch FS current FS candidate FS repo FS action",
# sorted by name, as a JSON array in JSON_ARRAY.
packages_to_json() {
  local name arch current candidate repo action item sep=""
  JSON_ARRAY="["
  while IFS=$FS read -r name arch current candidate repo action; do
    json_quote "$name"; item="{\"name\":$JSON_QUOTED"
    json_quote "$arch"; item+=",\"arch\":$JSON_QUOTED"
    json_nullable "$current"; item+=",\"current\":$JSON_QUOTED"
    json_nullable "$candidate"; item+=",\"candidate\":$JSON_QUOTED"
    json_quote "$repo"; item+=",\"repo\":$JSON_QUOTED"
    json_quote "$action"; item+=",\"action\":$JSON_QUOTED}"
    JSON_ARRAY+="$sep$item"
    sep=","
  done < <(LC_ALL=C sort -t "$FS" -k1,1 -k2,2 -- "$1")
  JSON_ARRAY+="]"
}

# changes_to_json FILE — records "name FS arch FS from FS to", sorted, as JSON_ARRAY.
changes_to_json() {
  local name arch from to item sep=""
  JSON_ARRAY="["
  while IFS=$FS read -r name arch from to; do
    json_quote "$name"; item="{\"name\":$JSON_QUOTED"
    json_quote "$arch"; item+=",\"arch\":$JSON_QUOTED"
    json_nullable "$from"; item+=",\"from\":$JSON_QUOTED"
    json_nullable "$to"; item+=",\"to\":$JSON_QUOTED}"
    JSON_ARRAY+="$sep$item"
    sep=","
  done < <(LC_ALL=C sort -t "$FS" -k1,1 -k2,2 -- "$1")
  JSON_ARRAY+="]"
}

emit_json() {
  local mode error="null" reason exit_code
  json_nullable "$MODE"; mode=$JSON_QUOTED
  json_nullable "$REBOOT_REASON"; reason=$JSON_QUOTED
  exit_code=${MANAGER_EXIT_CODE:-null}
  if [[ -n $RESULT_ERROR_CODE ]]; then
    local code message
    json_quote "$RESULT_ERROR_CODE"; code=$JSON_QUOTED
    json_quote "$RESULT_ERROR_MESSAGE"; message=$JSON_QUOTED
    error="{\"code\":$code,\"message\":$message}"
  fi
  printf '{"contract":%s,"manager":"apt","mode":%s,"packages":%s,"held":%s,"changed":%s,"reboot_required":%s,"reboot_reason":%s,"manager_exit_code":%s,"error":%s}\n' \
    "$CONTRACT_VERSION" "$mode" "$PACKAGES_JSON" "$HELD_JSON" "$CHANGED_JSON" \
    "$REBOOT_REQUIRED" "$reason" "$exit_code" "$error"
}

# ---------------------------------------------------------------------------------------------
# Exit paths
# ---------------------------------------------------------------------------------------------

# fail EXIT_CODE ERROR_CODE MESSAGE — end the run; the EXIT trap cleans up and prints the JSON.
fail() {
  RESULT_EXIT=$1
  RESULT_ERROR_CODE=$2
  RESULT_ERROR_MESSAGE=$3
  log "error ($2): $3"
  exit "$1"
}

usage_error() {
  MODE=""
  fail 2 usage "$1; $USAGE"
}

on_exit() {
  local rc=$?
  trap - EXIT
  set +e
  if ! release_holds; then
    # A hold this script added could not be removed: the host is not as we found it, and whoever
    # reads the result must know, whatever the outcome of the run was.
    RESULT_EXIT=3
    RESULT_ERROR_CODE=environment
    RESULT_ERROR_MESSAGE="could not remove the temporary apt holds on: ${ADDED_HOLDS[*]} (run: apt-mark unhold ${ADDED_HOLDS[*]})"
  fi
  if [[ -z $RESULT_EXIT ]]; then
    if ((rc == 0)); then
      RESULT_EXIT=0
    else
      RESULT_EXIT=3
      RESULT_ERROR_CODE=environment
      RESULT_ERROR_MESSAGE="unexpected failure (exit $rc) at line ${ERR_LINE:-?} of apt-update.sh"
    fi
  fi
  # An apply that ended early (failure, signal) may still have changed packages: report them.
  if [[ $MODE == apply && -f $WORKDIR/before && $CHANGES_RECORDED -eq 0 ]]; then
    record_changes
  fi
  # The reboot flag is the host's state, worth reporting after any run that got past the checks.
  if [[ -n $WORKDIR ]]; then
    detect_reboot
  fi
  emit_json
  if [[ -n $WORKDIR ]]; then
    rm -rf -- "$WORKDIR"
  fi
  exit "$RESULT_EXIT"
}

# ---------------------------------------------------------------------------------------------
# Arguments (validated before anything runs)
# ---------------------------------------------------------------------------------------------

parse_excludes() {
  local rest=$1 entry
  ((EXCLUDE_SEEN == 0)) || usage_error "--exclude may be given once"
  EXCLUDE_SEEN=1
  # Split by expansion, not `read`, which would stop at a newline and drop the rest unchecked.
  while :; do
    entry=${rest%%,*}
    [[ $entry =~ $EXCLUDE_PATTERN ]] || usage_error "illegal package name in --exclude: '$entry'"
    EXCLUDES+=("$entry")
    [[ $rest == *,* ]] || break
    rest=${rest#*,}
  done
}

parse_args() {
  while (($# > 0)); do
    case $1 in
      --dry-run | --apply)
        [[ -z $MODE ]] || usage_error "exactly one of --dry-run and --apply is required"
        MODE=${1#--}
        ;;
      --exclude)
        (($# >= 2)) || usage_error "--exclude needs a value"
        parse_excludes "$2"
        shift
        ;;
      --apt-mode)
        (($# >= 2)) || usage_error "--apt-mode needs a value"
        case $2 in
          dist-upgrade | upgrade) APT_MODE=$2 ;;
          *) usage_error "--apt-mode must be dist-upgrade or upgrade" ;;
        esac
        shift
        ;;
      --root) usage_error "apt has no --root; run the script inside the system (e.g. in a chroot)" ;;
      *) usage_error "unknown argument: '$1'" ;;
    esac
    shift
  done
  [[ -n $MODE ]] || usage_error "exactly one of --dry-run and --apply is required"
}

check_environment() {
  ((EUID == 0)) || fail 3 environment "must run as root"
  local tool
  for tool in apt-get apt-mark dpkg dpkg-query; do
    command -v "$tool" >/dev/null 2>&1 || fail 3 environment "$tool not found; is this an apt system?"
  done
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/apt-update.XXXXXX") || fail 3 environment "cannot create a temporary directory"
}

# ---------------------------------------------------------------------------------------------
# Running apt
# ---------------------------------------------------------------------------------------------

# run_manager LOGFILE COMMAND... — run COMMAND, stream its output to stderr, keep a copy in
# LOGFILE, record its exit status in MANAGER_EXIT_CODE and return it.
run_manager() {
  local logfile=$1 rc=0
  shift
  log "running: $*"
  "$@" </dev/null 2>&1 | tee -- "$logfile" >&2 || rc=${PIPESTATUS[0]}
  MANAGER_EXIT_CODE=$rc
  return "$rc"
}

# lock_failure LOGFILE — print the line saying another package manager holds a lock; fails when
# there is none. apt-get exits 100 with "Could not get lock ..." / "Unable to acquire the dpkg
# frontend lock" / "Unable to lock directory"; dpkg (under apt-mark) says "... lock was locked by
# another process".
lock_failure() {
  grep -m 1 -E 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the )?(administration )?directory|lock (is|was) locked by another process|status database (area )?is locked' -- "$1"
}

# last_error LOGFILE — the last "E:" line of an apt log (or its last line), for error messages.
last_error() {
  local line last="" err=""
  while IFS= read -r line; do
    if [[ -n $line ]]; then last=$line; fi
    if [[ $line == E:* || $line == dpkg:\ error* ]]; then err=$line; fi
  done <"$1"
  printf '%s' "${err:-$last}"
}

fetch_failure() {
  grep -m 1 -E '^(W|E): (Failed to fetch|Some index files failed to download)' -- "$1"
}

refresh_metadata() {
  local logfile=$WORKDIR/update.log line
  if ! run_manager "$logfile" apt-get "${APT_OPTS[@]}" update; then
    if line=$(lock_failure "$logfile"); then fail 4 lock "another process holds the package manager lock: $line"; fi
    fail 5 refresh "apt-get update failed: $(fetch_failure "$logfile" || last_error "$logfile")"
  fi
  # Depending on the apt version an unreachable repository is only a warning and apt-get update
  # exits 0, keeping the old index; a stale index is a wrong plan, so that fails the refresh too.
  if line=$(fetch_failure "$logfile"); then
    fail 5 refresh "apt-get update could not fetch every repository: $line"
  fi
}

# ---------------------------------------------------------------------------------------------
# Package database
# ---------------------------------------------------------------------------------------------

# snapshot_installed FILE — "name FS arch FS version" of every package dpkg has on disk
# (anything but not-installed and config-files).
snapshot_installed() {
  local out=$1 name arch version status
  : >"$out"
  while IFS=$FS read -r name arch version status; do
    case ${status:1:1} in
      n | c | "") continue ;;
    esac
    printf '%s%s%s%s%s\n' "$name" "$FS" "$arch" "$FS" "$version" >>"$out"
  done < <(dpkg-query -W -f "\${Package}$FS\${Architecture}$FS\${Version}$FS\${db:Status-Abbrev}\n")
}

# diff_snapshots BEFORE AFTER OUT — "name FS arch FS from FS to" for every package that differs.
diff_snapshots() {
  local name arch version key
  local -A before=() after=() seen=()
  while IFS=$FS read -r name arch version; do before["$name$FS$arch"]=$version; done <"$1"
  while IFS=$FS read -r name arch version; do after["$name$FS$arch"]=$version; done <"$2"
  : >"$3"
  for key in "${!before[@]}" "${!after[@]}"; do
    [[ -z ${seen[$key]:-} ]] || continue
    seen[$key]=1
    if [[ ${before[$key]:-} != "${after[$key]:-}" ]]; then
      printf '%s%s%s%s\n' "$key" "$FS" "${before[$key]:-}" "$FS${after[$key]:-}" >>"$3"
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# Exclusions: globs expanded against installed packages, applied as temporary apt holds
# ---------------------------------------------------------------------------------------------

is_excluded() {
  local name=$1 pattern
  for pattern in "${EXCLUDES[@]}"; do
    # shellcheck disable=SC2053 # the right side is a glob on purpose (`linux-image-*`)
    if [[ $name == $pattern ]]; then return 0; fi
  done
  return 1
}

apply_holds() {
  ((${#EXCLUDES[@]} > 0)) || return 0
  local name line held_list logfile=$WORKDIR/hold.log
  local -A already_held=() to_hold=()
  held_list=$(apt-mark showhold) || fail 3 environment "apt-mark showhold failed"
  while IFS= read -r name; do
    if [[ -n $name ]]; then already_held[${name%%:*}]=1; fi
  done <<<"$held_list"
  while IFS= read -r name; do
    if is_excluded "$name" && [[ -z ${already_held[$name]:-} ]]; then to_hold[$name]=1; fi
  done < <(snapshot_names)
  ((${#to_hold[@]} > 0)) || { log "nothing to hold: excluded packages are not installed or already held"; return 0; }
  # Recorded before holding, so the trap releases even a partially applied hold.
  ADDED_HOLDS=("${!to_hold[@]}")
  if ! run_manager "$logfile" apt-mark hold "${ADDED_HOLDS[@]}"; then
    if line=$(lock_failure "$logfile"); then fail 4 lock "another process holds the package manager lock: $line"; fi
    fail 6 transaction "apt-mark hold failed: $(last_error "$logfile")"
  fi
}

snapshot_names() {
  local name arch version
  while IFS=$FS read -r name arch version; do printf '%s\n' "$name"; done <"$WORKDIR/before"
}

release_holds() {
  local attempt name held_list
  local -a still_held
  local -A held
  # Another package manager may have taken the dpkg lock meanwhile: wait for it rather than
  # leaving our holds behind. Only holds actually in place are released, so a hold step that
  # never happened (lock held) costs no waiting.
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    ((${#ADDED_HOLDS[@]} > 0)) || return 0
    held_list=$(apt-mark showhold) || held_list=""
    held=()
    while IFS= read -r name; do
      if [[ -n $name ]]; then held[${name%%:*}]=1; fi
    done <<<"$held_list"
    still_held=()
    for name in "${ADDED_HOLDS[@]}"; do
      if [[ -n ${held[$name]:-} ]]; then still_held+=("$name"); fi
    done
    ADDED_HOLDS=("${still_held[@]}")
    ((${#ADDED_HOLDS[@]} > 0)) || return 0
    if apt-mark unhold "${ADDED_HOLDS[@]}" >&2; then
      ADDED_HOLDS=()
      return 0
    fi
    log "apt-mark unhold failed (attempt $attempt), retrying"
    sleep 3
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------

# repo_label RELEASES — "Debian:12/stable, Debian-Security:12/stable-security" -> the suites,
# "stable,stable-security".
repo_label() {
  local part label="" suite
  local -a parts
  IFS=',' read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    # apt prints [Label:][Version/]Archive, or the site when the repo has no Release file.
    part=${part# }
    suite=${part##*/}
    suite=${suite##*:}
    if [[ -n $suite && ,$label, != *",$suite,"* ]]; then label+=${label:+,}$suite; fi
  done
  printf '%s' "$label"
}

# parse_simulation LOGFILE OUT — the `Inst`/`Remv` lines of `apt-get -s` as package records:
#   Inst pkg [1.0] (2.0 Debian:12/stable [amd64])   upgrade (or downgrade)
#   Inst pkg (2.0 Debian:12/stable [amd64])         install (a new dependency)
#   Remv pkg [1.0]                                  remove
parse_simulation() {
  local logfile=$1 out=$2 line name arch current candidate repo action
  local re_inst='^Inst ([^ ]+)( \[([^]]*)\])? \(([^ ]+) (.*) \[([^] ]+)\]\)'
  local re_remv='^Remv ([^ ]+) \[([^]]*)\]'
  local -A seen=()
  : >"$out"
  while IFS= read -r line; do
    if [[ $line =~ $re_inst ]]; then
      name=${BASH_REMATCH[1]}
      current=${BASH_REMATCH[3]}
      candidate=${BASH_REMATCH[4]}
      repo=$(repo_label "${BASH_REMATCH[5]}")
      arch=${BASH_REMATCH[6]}
      if [[ -z $current ]]; then
        action=install
      elif dpkg --compare-versions "$candidate" lt "$current"; then
        action=downgrade
      else
        action=upgrade
      fi
    elif [[ $line =~ $re_remv ]]; then
      name=${BASH_REMATCH[1]}
      current=${BASH_REMATCH[2]}
      candidate=""
      repo=""
      arch=$(installed_arch "${name%%:*}")
      action=remove
    else
      continue
    fi
    if [[ $name == *:* ]]; then
      arch=${name##*:}
      name=${name%%:*}
    fi
    [[ -z ${seen[$name:$arch]:-} ]] || continue
    seen[$name:$arch]=1
    printf '%s\n' "$name$FS$arch$FS$current$FS$candidate$FS$repo$FS$action" >>"$out"
  done <"$logfile"
}

installed_arch() {
  local name arch version
  while IFS=$FS read -r name arch version; do
    if [[ $name == "$1" ]]; then
      printf '%s' "$arch"
      return 0
    fi
  done <"$WORKDIR/before"
  printf 'unknown'
}

# simulate NAME [APT-GET OPTION...] — `apt-get -s <mode>`: the solver path apply takes.
simulate() {
  local name=$1 line logfile=$WORKDIR/$1.log
  shift
  if ! run_manager "$logfile" apt-get -s "${APT_OPTS[@]}" "$@" "$APT_MODE"; then
    if line=$(lock_failure "$logfile"); then fail 4 lock "another process holds the package manager lock: $line"; fi
    fail 6 transaction "apt-get -s $APT_MODE failed: $(last_error "$logfile")"
  fi
  parse_simulation "$logfile" "$WORKDIR/$name.records"
}

compute_plan() {
  simulate plan
  packages_to_json "$WORKDIR/plan.records"
  PACKAGES_JSON=$JSON_ARRAY
  ((${#EXCLUDES[@]} > 0)) || return 0
  # `held`: what the excluded packages would do without the holds. --ignore-hold ignores every
  # hold, ours and the admin's, so an excluded package the admin already held is reported too.
  # Even in a simulation apt-get refuses (exit 100, "Held packages were changed and -y was used
  # without --allow-change-held-packages") unless told the change is allowed; -s changes nothing.
  simulate unheld --ignore-hold --allow-change-held-packages
  local name rest
  : >"$WORKDIR/held.records"
  while IFS=$FS read -r name rest; do
    if is_excluded "$name"; then printf '%s\n' "$name$FS$rest" >>"$WORKDIR/held.records"; fi
  done <"$WORKDIR/unheld.records"
  packages_to_json "$WORKDIR/held.records"
  HELD_JSON=$JSON_ARRAY
}

# ---------------------------------------------------------------------------------------------
# Apply, changes, reboot
# ---------------------------------------------------------------------------------------------

apply_plan() {
  local line logfile=$WORKDIR/apply.log
  if run_manager "$logfile" apt-get "${APT_OPTS[@]}" "$APT_MODE"; then
    record_changes
    return 0
  fi
  if line=$(lock_failure "$logfile"); then fail 4 lock "another process holds the package manager lock: $line"; fi
  fail 6 transaction "apt-get $APT_MODE failed: $(last_error "$logfile")"
}

record_changes() {
  CHANGES_RECORDED=1
  snapshot_installed "$WORKDIR/after"
  diff_snapshots "$WORKDIR/before" "$WORKDIR/after" "$WORKDIR/changed.records"
  changes_to_json "$WORKDIR/changed.records"
  CHANGED_JSON=$JSON_ARRAY
}

detect_reboot() {
  [[ -e $REBOOT_FLAG ]] || return 0
  REBOOT_REQUIRED=true
  local name names=""
  if [[ -r $REBOOT_PKGS ]]; then
    while IFS= read -r name; do
      if [[ -n $name && ", $names," != *", $name,"* ]]; then names+=${names:+, }$name; fi
    done <"$REBOOT_PKGS"
  fi
  if [[ -n $names ]]; then
    REBOOT_REASON="reboot required by: $names"
  else
    REBOOT_REASON="$REBOOT_FLAG exists"
  fi
}

main() {
  trap on_exit EXIT
  # errtrace: functions inherit the ERR trap, so an unexpected failure reports its line.
  set -o errtrace
  trap 'ERR_LINE=$LINENO' ERR
  trap 'fail 3 environment "interrupted by SIGINT"' INT
  trap 'fail 3 environment "terminated by SIGTERM"' TERM
  parse_args "$@"
  check_environment
  refresh_metadata
  snapshot_installed "$WORKDIR/before"
  apply_holds
  compute_plan
  if [[ $MODE == apply ]]; then
    apply_plan
  fi
}

main "$@"
