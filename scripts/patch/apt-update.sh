#!/usr/bin/env bash
# Generated from scripts/patch/src/apt.sh and scripts/patch/src/common.sh by
# scripts/dev/gen-scripts.ts. Do not edit: edit src/, then run `npm run gen:scripts`.
#
# apt-update.sh — patchnanny patch script for the apt family (Debian 10+, Ubuntu 20.04+).
#
#   apt-update.sh (--dry-run | --apply) [--security-only] [--exclude PKG[,PKG...]] [--apt-mode dist-upgrade|upgrade]
#
# Speaks docs/script-contract.md: one JSON document on stdout, the human log (including apt's own
# output) on stderr, exit codes 0/2/3/4/5/6. Self-contained on purpose: the agent downloads this
# one file and verifies its SHA-256, so it sources nothing and needs nothing beyond apt, dpkg and
# bash (no jq, no python).
#
# Why `apt-get dist-upgrade` by default: `apt-get upgrade` never installs a new package and never
# removes one, so a kernel ABI bump (linux-image-amd64 depending on a newly named
# linux-image-6.1.0-N-amd64) and Proxmox meta-packages (proxmox-ve pulling new kernels) stay
# "kept back" forever; dist-upgrade is what Debian and Proxmox document for applying updates.
# `--apt-mode upgrade` gives the conservative behaviour for hosts that want it.
#
# Exclusions use apt's native mechanism, holds: the script holds only the excluded packages that
# are not held already and the EXIT trap releases exactly those on every exit path, so an admin's
# holds are never touched. The plan is read from the machine-readable `Inst`/`Remv` lines of
# `apt-get -s`, and `changed` is a diff of the dpkg database before and after, not log scraping.
set -euo pipefail

readonly SCRIPT=apt-update.sh
readonly EXCLUDE_PATTERN='^[a-z0-9*][a-z0-9+.*-]*$'
readonly OPTIONS=' --apt-mode --root '
readonly USAGE='usage: apt-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--apt-mode dist-upgrade|upgrade]'
readonly REBOOT_FLAG=/var/run/reboot-required
readonly REBOOT_PKGS=/var/run/reboot-required.pkgs
readonly SNAPSHOT_FAILED='dpkg-query (reading the package database) failed'
manager=apt

# Non-interactive always; keep existing conffiles (dpkg and ucf); C locale so apt's messages,
# which the lock detection reads, are not translated.
export DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none UCF_FORCE_CONFFOLD=1
export LC_ALL=C LANG=C
unset LANGUAGE

readonly APT_OPTS=(
  -y
  -o DPkg::Lock::Timeout=0
  -o Dpkg::Options::=--force-confdef
  -o Dpkg::Options::=--force-confold
)

# ---------------------------------------------------------------------------------------------
# Shared by every patch script (scripts/patch/src/common.sh): arguments, exit paths, JSON output.
#
# The part that includes this defines, before the include:
#   SCRIPT            the served file name (apt-update.sh), for logs and messages
#   EXCLUDE_PATTERN   the family's legal package names (docs/script-contract.md)
#   OPTIONS           " --flag … " family flags that take one value; set_option FLAG VALUE
#                     stores each (called once per flag, after the value is present)
#   USAGE             the usage line
#   manager           the manager named in the JSON (the part may change it once it found one)
# and after it, the hooks the EXIT trap calls:
#   undo_exclusions   remove exactly the holds/locks this run added; on failure set
#                     undo_failure to a message naming them and return 1
#   report_on_exit    once the environment was checked (workdir exists): whatever is worth
#                     reporting however the run ended (changes of an interrupted apply, reboot)
#
# Package data travels as records, one a line, fields separated by FS (not whitespace, so `read`
# keeps empty fields; an empty field is JSON null): the part writes the plan to
# $workdir/packages and $workdir/held ("name arch current candidate repo action") and the apply's
# changes to $workdir/changed ("name arch from to"); emit_json turns them into the document.
# ---------------------------------------------------------------------------------------------

readonly CONTRACT_VERSION=1
readonly FS=$'\x1f'
# Inside a record's advisories field: AS between advisories, AF between an id and its severity.
readonly AS=$'\x1e'
readonly AF=$'\x1d'

mode=''
# --security-only: plan and apply only the security fixes (a part that cannot sets
# SECURITY_ONLY_UNSUPPORTED to the reason before the include).
security_only=false
exclusions=()
workdir=''
undo_failure=''
err_line=''
reboot_required=false
reboot_reason=''
manager_exit_code=''
result_exit=''
result_error_code=''
result_error_message=''
in_exit_trap=false

log() { printf '%s: %s\n' "${SCRIPT%.sh}" "$*" >&2; }

# json_quote VALUE — sets json_quoted to VALUE as a JSON string literal (no subshell).
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
  json_quoted="\"$s\""
}

# json_nullable VALUE — like json_quote, but the empty string becomes null.
json_nullable() {
  if [[ -z $1 ]]; then json_quoted=null; else json_quote "$1"; fi
}

# advisories_to_json LIST — an advisories field (entries separated by AS, each "id AF severity")
# as a JSON array in json_advisories.
advisories_to_json() {
  local entry id severity sep="" rest=$1
  json_advisories="["
  while [[ -n $rest ]]; do
    entry=${rest%%"$AS"*}
    [[ $rest == *"$AS"* ]] && rest=${rest#*"$AS"} || rest=''
    id=${entry%%"$AF"*}
    severity=${entry#*"$AF"}
    [[ $entry == *"$AF"* ]] || severity=''
    json_quote "$id"; json_advisories+="$sep{\"id\":$json_quoted"
    json_nullable "$severity"; json_advisories+=",\"severity\":$json_quoted}"
    sep=","
  done
  json_advisories+="]"
}

# packages_to_json FILE — package records, sorted by name and arch, as a JSON array in json_array.
packages_to_json() {
  local name arch current candidate repo action security advisories item sep=""
  json_array="["
  while IFS=$FS read -r name arch current candidate repo action security advisories; do
    json_quote "$name"; item="{\"name\":$json_quoted"
    json_quote "$arch"; item+=",\"arch\":$json_quoted"
    json_nullable "$current"; item+=",\"current\":$json_quoted"
    json_nullable "$candidate"; item+=",\"candidate\":$json_quoted"
    json_quote "$repo"; item+=",\"repo\":$json_quoted"
    json_quote "$action"; item+=",\"action\":$json_quoted"
    case $security in
      true | false) item+=",\"security\":$security" ;;
      *) item+=",\"security\":null" ;;
    esac
    advisories_to_json "$advisories"
    item+=",\"advisories\":$json_advisories}"
    json_array+="$sep$item"
    sep=","
  done < <(LC_ALL=C sort -t "$FS" -k1,1 -k2,2 -- "$1")
  json_array+="]"
}

# classify_records FILE — add the security fields to the package records in FILE from the
# classification the part collected: `security_of[name.arch]` (true/false; unset: the
# manager's default, `security_default`: false when it has advisory data, empty = null when it
# has none) and `advisories_of[name.arch]` (the advisories field). Removals are never classified.
declare -A security_of=() advisories_of=()
security_default=''
classify_records() {
  local name arch current candidate repo action security advisories key
  [[ -f $1 ]] || return 0
  while IFS=$FS read -r name arch current candidate repo action _; do
    key=$name.$arch
    security=${security_of[$key]:-$security_default}
    advisories=${advisories_of[$key]:-}
    if [[ $action == remove ]]; then security='' advisories=''; fi
    record "$name" "$arch" "$current" "$candidate" "$repo" "$action" "$security" "$advisories"
  done <"$1" >"$1.classified"
  mv -- "$1.classified" "$1"
}

# changes_to_json FILE — change records, sorted by name and arch, as a JSON array in json_array.
changes_to_json() {
  local name arch from to item sep=""
  json_array="["
  while IFS=$FS read -r name arch from to; do
    json_quote "$name"; item="{\"name\":$json_quoted"
    json_quote "$arch"; item+=",\"arch\":$json_quoted"
    json_nullable "$from"; item+=",\"from\":$json_quoted"
    json_nullable "$to"; item+=",\"to\":$json_quoted}"
    json_array+="$sep$item"
    sep=","
  done < <(LC_ALL=C sort -t "$FS" -k1,1 -k2,2 -- "$1")
  json_array+="]"
}

# record FIELD... — one record line on stdout.
record() {
  local IFS=$FS
  printf '%s\n' "$*"
}

emit_json() {
  local json_mode json_manager json_reason packages='[]' held='[]' changed='[]' error=null code message
  json_nullable "$mode"; json_mode=$json_quoted
  json_quote "$manager"; json_manager=$json_quoted
  json_nullable "$reboot_reason"; json_reason=$json_quoted
  if [[ -n $workdir ]]; then
    if [[ -f $workdir/packages ]]; then packages_to_json "$workdir/packages"; packages=$json_array; fi
    if [[ -f $workdir/held ]]; then packages_to_json "$workdir/held"; held=$json_array; fi
    if [[ -f $workdir/changed ]]; then changes_to_json "$workdir/changed"; changed=$json_array; fi
  fi
  if [[ -n $result_error_code ]]; then
    json_quote "$result_error_code"; code=$json_quoted
    json_quote "$result_error_message"; message=$json_quoted
    error="{\"code\":$code,\"message\":$message}"
  fi
  printf '{"contract":%s,"manager":%s,"mode":%s,"packages":%s,"held":%s,"changed":%s,"reboot_required":%s,"reboot_reason":%s,"manager_exit_code":%s,"error":%s}\n' \
    "$CONTRACT_VERSION" "$json_manager" "$json_mode" "$packages" "$held" "$changed" \
    "$reboot_required" "$json_reason" "${manager_exit_code:-null}" "$error"
}

# ---------------------------------------------------------------------------------------------
# Exit paths: every run ends in on_exit, which undoes the exclusions and prints the one document
# ---------------------------------------------------------------------------------------------

# fail EXIT_CODE ERROR_CODE MESSAGE — end the run; the EXIT trap cleans up and prints the JSON.
# Never call it in a subshell ($(…), a pipeline): there `exit` would end only the subshell.
fail() {
  if [[ $in_exit_trap == true ]]; then
    # A failure while the trap reports (a signal, the package database unreadable) must not end
    # the script before the document is printed; the run's own result stands.
    log "while reporting: $2: $3 (the run's result stands)"
    return 1
  fi
  log "error ($2): $3"
  result_exit=$1
  result_error_code=$2
  result_error_message=$3
  exit "$1"
}

usage_error() {
  mode=''
  fail 2 usage "$1; $USAGE"
}

on_exit() {
  local rc=$?
  trap - EXIT
  set +e
  in_exit_trap=true
  if ! undo_exclusions; then
    # A hold or lock this script added is still there: the host is not as we found it, and
    # whoever reads the result must know, whatever the outcome of the run was.
    result_exit=3
    result_error_code=environment
    result_error_message=$undo_failure
  fi
  if [[ -z $result_exit ]]; then
    if ((rc == 0)); then
      result_exit=0
    else
      result_exit=3
      result_error_code=environment
      result_error_message="unexpected failure (exit $rc) at line ${err_line:-?} of $SCRIPT"
    fi
  fi
  if [[ -n $workdir ]]; then
    report_on_exit
  fi
  emit_json
  if [[ -n $workdir ]]; then
    rm -rf -- "$workdir"
  fi
  exit "$result_exit"
}

# set_traps — first thing in main: from here on every exit path prints the JSON document.
set_traps() {
  trap on_exit EXIT
  # errtrace: functions inherit the ERR trap, so an unexpected failure reports its line.
  set -o errtrace
  trap 'err_line=$LINENO' ERR
  # A signal ends the run through the EXIT trap too (after the running command returns).
  trap 'fail 3 environment "interrupted by SIGINT"' INT
  trap 'fail 3 environment "terminated by SIGTERM"' TERM
  trap 'fail 3 environment "hung up (SIGHUP)"' HUP
}

# make_workdir — the run's scratch directory (records, logs); the EXIT trap removes it.
make_workdir() {
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/${SCRIPT%.sh}.XXXXXX") || fail 3 environment "cannot create a temporary directory"
}

# ---------------------------------------------------------------------------------------------
# Arguments (validated before anything runs)
# ---------------------------------------------------------------------------------------------

parse_exclusions() {
  local rest=$1 entry
  # Split by expansion, not `read`, which would stop at a newline and drop the rest unchecked.
  while :; do
    entry=${rest%%,*}
    [[ $entry =~ $EXCLUDE_PATTERN ]] || usage_error "not a legal $manager package name in --exclude: '$entry'"
    exclusions+=("$entry")
    [[ $rest == *,* ]] || break
    rest=${rest#*,}
  done
}

parse_args() {
  local -A seen=()
  while (($# > 0)); do
    case $1 in
      --dry-run | --apply)
        [[ -z $mode ]] || usage_error "exactly one of --dry-run and --apply is required"
        mode=${1#--}
        ;;
      --security-only)
        [[ $security_only == false ]] || usage_error "--security-only may be given once"
        [[ -z ${SECURITY_ONLY_UNSUPPORTED:-} ]] || usage_error "--security-only: $SECURITY_ONLY_UNSUPPORTED"
        security_only=true
        ;;
      --exclude | --*)
        [[ $1 == --exclude || $OPTIONS == *" $1 "* ]] || usage_error "unknown argument: '$1'"
        (($# >= 2)) || usage_error "$1 needs a value"
        [[ -z ${seen[$1]:-} ]] || usage_error "$1 may be given once"
        seen[$1]=1
        if [[ $1 == --exclude ]]; then parse_exclusions "$2"; else set_option "$1" "$2"; fi
        shift
        ;;
      *) usage_error "unknown argument: '$1'" ;;
    esac
    shift
  done
  [[ -n $mode ]] || usage_error "exactly one of --dry-run and --apply is required"
}

# root_option DIR — the value of --root (dnf, zypper, pacman): a directory, never a flag.
root_option() {
  [[ -n $1 && $1 != -* ]] || usage_error "--root needs a directory"
  # shellcheck disable=SC2034 # apt takes no --root; the parts that do read it
  root=$1
}

# ---------------------------------------------------------------------------------------------
# Helpers every manager uses
# ---------------------------------------------------------------------------------------------

# run_manager LOGFILE COMMAND... — run COMMAND, stream its output to stderr, keep a copy in
# LOGFILE, record its exit status in manager_exit_code and return it.
run_manager() {
  local logfile=$1 rc=0
  shift
  log "running: $*"
  "$@" </dev/null 2>&1 | tee -- "$logfile" >&2 || rc=${PIPESTATUS[0]}
  manager_exit_code=$rc
  return "$rc"
}

# is_excluded NAME — whether NAME matches an --exclude entry (a simple `*` glob).
is_excluded() {
  local name=$1 pattern
  for pattern in "${exclusions[@]}"; do
    # shellcheck disable=SC2053 # the right side is a glob on purpose (`linux-image-*`)
    if [[ $name == $pattern ]]; then return 0; fi
  done
  return 1
}

# diff_snapshots BEFORE AFTER OUT — change records from two snapshots of "name arch version"
# records (extra fields ignored). Per name+arch, the versions that went away are paired in order
# with the versions that came (from → to); the rest are installs (from empty) and removals (to
# empty). Several versions of one name+arch (installonly kernels) are several records.
# record_changes — after a transaction: snapshot the package database again (each part's
# `snapshot`) and record what changed; a part that must add to the records defines
# `complete_changes`.
record_changes() {
  changes_recorded=true
  if ! snapshot "$workdir/after"; then
    fail 3 environment "$SNAPSHOT_FAILED after the transaction"
    return 1 # only inside the EXIT trap, where fail does not end the script
  fi
  diff_snapshots "$workdir/before" "$workdir/after" "$workdir/changed"
  if declare -F complete_changes >/dev/null; then complete_changes; fi
}

# report_on_exit — from the EXIT trap: an apply that ended early (failure, signal) may still have
# changed packages, so report them; and the reboot state is the host's, worth reporting after any
# run that got past the checks (each part's `detect_reboot`).
report_on_exit() {
  if [[ $apply_started == true && $changes_recorded == false ]]; then
    record_changes
  fi
  detect_reboot
}

diff_snapshots() {
  LC_ALL=C comm -3 <(cut -d "$FS" -f 1-3 -- "$1" | LC_ALL=C sort -u) <(cut -d "$FS" -f 1-3 -- "$2" | LC_ALL=C sort -u) |
    awk -v fs="$FS" '
      BEGIN { FS = fs; OFS = fs }
      {
        came = sub(/^\t/, "")
        key = $1 OFS $2
        keys[key] = 1
        if (came) to[key, ++ncame[key]] = $3; else from[key, ++ngone[key]] = $3
      }
      END {
        for (key in keys) {
          n = ncame[key] > ngone[key] ? ncame[key] : ngone[key]
          for (i = 1; i <= n; i++) print key, from[key, i], to[key, i]
        }
      }' >"$3"
}

apt_mode=dist-upgrade
added_holds=()
apply_started=false
changes_recorded=false

set_option() {
  case $1 in
    --apt-mode)
      case $2 in
        dist-upgrade | upgrade) apt_mode=$2 ;;
        *) usage_error "--apt-mode must be dist-upgrade or upgrade" ;;
      esac
      ;;
    --root) usage_error "apt has no --root; run the script inside the system (e.g. in a chroot)" ;;
  esac
}

check_environment() {
  ((EUID == 0)) || fail 3 environment "must run as root"
  local tool
  for tool in apt-get apt-mark dpkg dpkg-query; do
    command -v "$tool" >/dev/null 2>&1 || fail 3 environment "$tool not found; is this an apt system?"
  done
  make_workdir
}

# ---------------------------------------------------------------------------------------------
# Running apt
# ---------------------------------------------------------------------------------------------

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

# fail_apt LOGFILE WHAT — a failed apt command: a held lock is exit 4, anything else exit 6.
fail_apt() {
  local line
  if line=$(lock_failure "$1"); then fail 4 lock "another process holds the package manager lock: $line"; fi
  fail 6 transaction "$2 failed: $(last_error "$1")"
}

refresh_metadata() {
  local logfile=$workdir/update.log line
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

# snapshot FILE — "name arch version" records of every package dpkg has on disk (anything but
# not-installed and config-files).
snapshot() {
  local out=$1 name arch version status
  : >"$out"
  while IFS=$FS read -r name arch version status; do
    case ${status:1:1} in
      n | c | "") continue ;;
    esac
    record "$name" "$arch" "$version" >>"$out"
  done < <(dpkg-query -W -f "\${Package}$FS\${Architecture}$FS\${Version}$FS\${db:Status-Abbrev}\n")
}

# ---------------------------------------------------------------------------------------------
# Exclusions: globs expanded against installed packages, applied as temporary apt holds
# ---------------------------------------------------------------------------------------------

# held_names — the names apt-mark reports as held (without an :arch suffix), one a line.
held_names() {
  local list name
  list=$(apt-mark showhold) || return 1
  while IFS= read -r name; do
    if [[ -n $name ]]; then printf '%s\n' "${name%%:*}"; fi
  done <<<"$list"
}

add_holds() {
  ((${#exclusions[@]} > 0)) || return 0
  local name
  local -a pkgs=()
  while IFS=$FS read -r name _; do
    if is_excluded "$name"; then pkgs+=("$name"); fi
  done <"$workdir/before"
  hold_packages "${pkgs[@]}"
}

# hold_packages NAME... — hold those of NAME that are not held already, for this run only.
hold_packages() {
  local name held_list logfile=$workdir/hold.log
  local -A already_held=() to_hold=()
  held_list=$(held_names) || fail 3 environment "apt-mark showhold failed"
  while IFS= read -r name; do
    if [[ -n $name ]]; then already_held[$name]=1; fi
  done <<<"$held_list"
  for name in "$@"; do
    if [[ -z ${already_held[$name]:-} ]]; then to_hold[$name]=1; fi
  done
  ((${#to_hold[@]} > 0)) || { log "nothing to hold: the packages are not installed or already held"; return 0; }
  # Recorded before holding, so the trap releases even a partially applied hold.
  local -a new=("${!to_hold[@]}")
  added_holds+=("${new[@]}")
  run_manager "$logfile" apt-mark hold "${new[@]}" || fail_apt "$logfile" "apt-mark hold"
}

# hold_non_security — --security-only: hold, for this run, every installed package the plan
# upgrades from a source that is not a security suite, so that apt's own solver (holds
# respected, an admin's too) plans and applies only the security fixes and what they need.
hold_non_security() {
  local name arch current candidate repo action security
  local -a pkgs=()
  while IFS=$FS read -r name arch current candidate repo action security _; do
    if [[ -n $current && $security != true ]]; then pkgs+=("$name"); fi
  done <"$workdir/packages"
  ((${#pkgs[@]} > 0)) || return 0
  hold_packages "${pkgs[@]}"
}

undo_exclusions() {
  local attempt name held_list
  local -a still_held
  local -A held
  # Another package manager may have taken the dpkg lock meanwhile: wait for it rather than
  # leaving our holds behind. Only holds actually in place are released, so a hold step that
  # never happened (lock held) costs no waiting.
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    ((${#added_holds[@]} > 0)) || return 0
    held_list=$(held_names) || held_list=""
    held=()
    while IFS= read -r name; do
      if [[ -n $name ]]; then held[$name]=1; fi
    done <<<"$held_list"
    still_held=()
    for name in "${added_holds[@]}"; do
      if [[ -n ${held[$name]:-} ]]; then still_held+=("$name"); fi
    done
    added_holds=("${still_held[@]}")
    ((${#added_holds[@]} > 0)) || return 0
    if apt-mark unhold "${added_holds[@]}" >&2; then
      added_holds=()
      return 0
    fi
    log "apt-mark unhold failed (attempt $attempt), retrying"
    sleep 3
  done
  undo_failure="could not remove the temporary apt holds on: ${added_holds[*]} (run: apt-mark unhold ${added_holds[*]})"
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

# installed_arch NAME — its architecture in the snapshot taken before the run.
installed_arch() {
  local name arch
  while IFS=$FS read -r name arch _; do
    if [[ $name == "$1" ]]; then
      printf '%s' "$arch"
      return 0
    fi
  done <"$workdir/before"
  printf 'unknown'
}

# parse_simulation LOGFILE OUT — the `Inst`/`Remv` lines of `apt-get -s` as package records:
#   Inst pkg [1.0] (2.0 Debian:12/stable [amd64])   upgrade (or downgrade)
#   Inst pkg (2.0 Debian:12/stable [amd64])         install (a new dependency)
#   Remv pkg [1.0]                                  remove
parse_simulation() {
  local logfile=$1 out=$2 line name arch current candidate repo action security
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
    # Security classification (issue 16): the candidate comes from a security suite — Debian's
    # `<codename>-security` (archive `stable-security`), Ubuntu's `<series>-security`. apt
    # names no advisories.
    security=false
    if [[ $action == remove ]]; then
      security=''
    elif [[ ,$repo, == *-security,* ]]; then
      security=true
    fi
    record "$name" "$arch" "$current" "$candidate" "$repo" "$action" "$security" '' >>"$out"
  done <"$logfile"
}

# simulate OUT [APT-GET OPTION...] — `apt-get -s <mode>`, the solver path apply takes, as records.
simulate() {
  local out=$1 logfile=$1.log
  shift
  run_manager "$logfile" apt-get -s "${APT_OPTS[@]}" "$@" "$apt_mode" || fail_apt "$logfile" "apt-get -s $apt_mode"
  parse_simulation "$logfile" "$out"
}

compute_plan() {
  simulate "$workdir/packages"
  if [[ $security_only == true ]]; then
    hold_non_security
    simulate "$workdir/packages"
  fi
  ((${#exclusions[@]} > 0)) || return 0
  # `held`: what the excluded packages would do without the holds. --ignore-hold ignores every
  # hold, ours and the admin's, so an excluded package the admin already held is reported too.
  # Even in a simulation apt-get refuses (exit 100, "Held packages were changed and -y was used
  # without --allow-change-held-packages") unless told the change is allowed; -s changes nothing.
  # The solver that became apt's default after 3.0 (sid's 3.3.5; opt-in `--solver 3.0` in trixie's
  # 3.0) keeps held packages back even with --ignore-hold, so this one simulation asks for the
  # classic solver by name (`internal`, known to every apt since 0.8.16); plan and apply keep
  # apt's default.
  simulate "$workdir/unheld" -o APT::Solver=internal --ignore-hold --allow-change-held-packages
  local name rest
  while IFS=$FS read -r name rest; do
    if is_excluded "$name"; then printf '%s\n' "$name$FS$rest"; fi
  done <"$workdir/unheld" >"$workdir/held"
}

# ---------------------------------------------------------------------------------------------
# Apply, changes, reboot
# ---------------------------------------------------------------------------------------------

apply_plan() {
  local logfile=$workdir/apply.log
  apply_started=true
  run_manager "$logfile" apt-get "${APT_OPTS[@]}" "$apt_mode" || fail_apt "$logfile" "apt-get $apt_mode"
  record_changes
}

detect_reboot() {
  [[ -e $REBOOT_FLAG ]] || return 0
  reboot_required=true
  local name names=""
  if [[ -r $REBOOT_PKGS ]]; then
    while IFS= read -r name; do
      if [[ -n $name && ", $names," != *", $name,"* ]]; then names+=${names:+, }$name; fi
    done <"$REBOOT_PKGS"
  fi
  if [[ -n $names ]]; then
    reboot_reason="reboot required by: $names"
  else
    reboot_reason="$REBOOT_FLAG exists"
  fi
}

main() {
  set_traps
  parse_args "$@"
  check_environment
  refresh_metadata
  snapshot "$workdir/before" || fail 3 environment "$SNAPSHOT_FAILED"
  add_holds
  compute_plan
  if [[ $mode == apply ]]; then
    apply_plan
  fi
}

main "$@"
