#!/usr/bin/env bash
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

# @include common.sh

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
