#!/usr/bin/env bash
# zypper-update.sh — patch a SLES 15+ / openSUSE Leap 15+ system with zypper.
#
#   zypper-update.sh (--dry-run | --apply) [--security-only] [--exclude PKG[,PKG...]] [--root DIR]
#
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
# Self-contained on purpose: the agent downloads this one file and verifies its SHA-256.
#
# How each contract step maps onto zypper:
# - refresh:  zypper refresh (checks every repository's repomd; exit 7 = locked, else failure;
#             106 = a repository was skipped, which is a refresh failure too: a stale repo is
#             a wrong plan). Later calls use --no-refresh so they see exactly that metadata.
# - plan:     zypper --xmlout update --dry-run --download-in-advance — the same command and
#             solver run as the apply, parsed from its <install-summary>. Repositories come
#             from zypper --xmlout search --details (the summary does not name them).
# - apply:    zypper update --download-in-advance. In advance so libzypp's file-conflict check
#             sees every package: libzypp runs rpm with --force, and a package downloaded "as
#             needed" is excluded from the check, so a conflicting file would silently be
#             overwritten instead of failing the transaction (exit 8).
# - exclude:  zypper addlock for the names not already locked; the EXIT trap removes exactly
#             those again (pre-existing locks are never touched).
# - held:     zypper --xmlout list-updates --all (newer versions regardless of locks),
#             filtered by --exclude.
# - changed:  rpm -qa before and after (per name+arch, so a multiversion kernel shows up as a
#             newly installed version).
# - reboot:   zypper needs-rebooting (exit 102). libzypp touches ROOT/run/reboot-needed when a
#             package that provides installhint(reboot-needed) (kernels, glibc, systemd, ...) or
#             is listed in /etc/zypp/needreboot is installed, and needs-rebooting honours --root.
# - --root:   zypper --root DIR plus ZYPP_LOCKFILE_ROOT=DIR (the lock a zypper inside DIR would
#             take, DIR/run/zypp.pid, not the host's), ZYPP_LOGFILE=DIR/var/log/zypper.log and,
#             when DIR/var/tmp exists, ZYPPTMPDIR=DIR/var/tmp, so the host is never touched.
#             rpm gets --dbpath of the rpmdb libzypp uses: DIR/usr/lib/sysimage/rpm when present,
#             else DIR/var/lib/rpm (explicit, because rpm's own default differs between distros).
set -euo pipefail

readonly SCRIPT=zypper-update.sh
readonly EXCLUDE_PATTERN='^[A-Za-z0-9_*][A-Za-z0-9_+.*-]*$'
readonly OPTIONS=' --root '
readonly USAGE='usage: zypper-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]'
readonly ZYPPER_EXIT_ZYPP_LOCKED=7
readonly ZYPPER_EXIT_INF_REBOOT_NEEDED=102
readonly SNAPSHOT_FAILED='rpm -qa (reading the package database) failed'
manager=zypper

# @include common.sh

root=''
added_locks=()
zypper_cmd=()
zypper_output=''
rpm_cmd=()
apply_started=false
changes_recorded=false

set_option() { root_option "$2"; }

check_environment() {
  command -v zypper >/dev/null || fail 3 environment 'zypper is not installed'
  command -v rpm >/dev/null || fail 3 environment 'rpm is not installed'
  [[ $(id -u) == 0 ]] || fail 3 environment 'must run as root'
  zypper_cmd=(zypper --non-interactive)
  rpm_cmd=(rpm)
  if [[ -n $root ]]; then
    root=${root%/}
    [[ -d $root/ ]] || fail 3 environment "--root is not a directory: $root/"
    [[ -d $root/etc/zypp/repos.d ]] || fail 3 environment "--root has no etc/zypp/repos.d: $root/"
    local dbpath=/var/lib/rpm
    [[ -d $root/usr/lib/sysimage/rpm ]] && dbpath=/usr/lib/sysimage/rpm
    [[ -d $root$dbpath ]] || fail 3 environment "--root has no rpm database: $root$dbpath"
    export ZYPP_LOCKFILE_ROOT="$root/" ZYPP_LOGFILE="$root/var/log/zypper.log"
    # libzypp's scratch dirs (default /var/tmp/zypp.*) too, when the root has a /var/tmp
    [[ -d $root/var/tmp ]] && export ZYPPTMPDIR="$root/var/tmp"
    zypper_cmd+=(--root "$root/")
    rpm_cmd+=(--root "$root/" --dbpath "$dbpath")
  fi
  make_workdir
}

# run_zypper ARGS... — run zypper, keep its stdout (XML) in zypper_output, return its exit code.
run_zypper() {
  local code=0
  zypper_output=$("${zypper_cmd[@]}" "$@") || code=$?
  manager_exit_code=$code
  return "$code"
}

# fail_zypper CODE WHAT [EXIT_CODE ERROR_CODE] — map a zypper failure onto the contract's exit
# codes: a held lock is exit 4, anything else EXIT_CODE (default 6, transaction).
fail_zypper() {
  local code=$1 what=$2 on_failure=${3:-6} error_code=${4:-transaction}
  ((code == ZYPPER_EXIT_ZYPP_LOCKED)) &&
    fail 4 lock "zypper is locked by another process (exit $code during $what)"
  fail "$on_failure" "$error_code" "zypper $what failed with exit $code"
}

# 100-105 are zypper's informational exit codes (updates pending, reboot/restart needed, ...);
# 106 (a repository was skipped) and 107 (an rpm scriptlet failed) are not success.
zypper_ok() { (($1 == 0 || ($1 >= 100 && $1 <= 105))); }

# snapshot FILE — "name arch [epoch:]version-release" records from the rpm database (gpg-pubkey
# entries are keys, not packages).
snapshot() {
  local output
  output=$("${rpm_cmd[@]}" -qa --qf "%{NAME}$FS%{ARCH}$FS%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n") || return 1
  { grep -v "^gpg-pubkey$FS" <<<"$output" || true; } | LC_ALL=C sort >"$1"
}

refresh_metadata() {
  log 'refreshing repositories (zypper refresh)'
  local code=0
  "${zypper_cmd[@]}" refresh >&2 || code=$?
  manager_exit_code=$code
  ((code == 0)) || fail_zypper "$code" refresh 5 refresh
}

add_locks() {
  ((${#exclusions[@]})) || return 0
  local locked name code=0
  run_zypper --xmlout locks || code=$?
  ((code == 0)) || fail_zypper "$code" locks 3 environment
  locked=$(awk 'BEGIN { RS = "<" } /^name>/ { sub(/^name>/, ""); print }' <<<"$zypper_output")
  for name in "${exclusions[@]}"; do
    if grep -qxF -- "$name" <<<"$locked"; then
      log "lock on $name already exists; leaving it alone"
      continue
    fi
    added_locks+=("$name") # recorded first: the trap removes it even if addlock half-worked
    code=0
    "${zypper_cmd[@]}" addlock "$name" >&2 || code=$?
    manager_exit_code=$code
    ((code == 0)) || fail_zypper "$code" "addlock $name" 3 environment
  done
}

# Remove exactly the locks this run added; retried because another zypper may hold the lock.
undo_exclusions() {
  ((${#added_locks[@]})) || return 0
  local attempt code
  for attempt in 1 2 3 4 5; do
    code=0
    "${zypper_cmd[@]}" removelock "${added_locks[@]}" >&2 || code=$?
    if ((code == 0)); then
      added_locks=()
      return 0
    fi
    log "zypper removelock failed with exit $code (attempt $attempt)"
    sleep 2
  done
  undo_failure="could not remove the zypper locks this run added: ${added_locks[*]} (run: zypper removelock ${added_locks[*]})"
  return 1
}

# Solvables of an XML document as "tag section type name edition arch edition-old repo" lines,
# one per <solvable>/<update>; "-" for an absent attribute.
xml_solvables() {
  awk '
    function attr(s, n,   i, v) {
      i = index(s, " " n "=\"")
      if (!i) return "-"
      v = substr(s, i + length(n) + 3)
      v = substr(v, 1, index(v, "\"") - 1)
      gsub(/&lt;/, "<", v); gsub(/&gt;/, ">", v); gsub(/&quot;/, "\"", v); gsub(/&apos;/, "\047", v)
      gsub(/&amp;/, "\\&", v)
      return v == "" ? "-" : v
    }
    function flush() { if (pending != "") print pending " " alias; pending = ""; alias = "-" }
    BEGIN { RS = "<"; section = "-"; alias = "-" }
    /^to-[a-z-]+>/ { section = substr($0, 4, index($0, ">") - 4) }
    /^\/to-[a-z-]+>/ { section = "-" }
    /^(solvable|update)[ \/>]/ {
      flush()
      tag = substr($0, 1, index($0, " ") - 1)
      type = attr($0, "type"); if (type == "-") type = attr($0, "kind")
      pending = tag " " section " " type " " attr($0, "name") " " attr($0, "edition") " " \
        attr($0, "arch") " " attr($0, "edition-old")
      r = attr($0, "repository"); if (r != "-") alias = r
    }
    /^source / { alias = attr($0, "alias") }
    END { flush() }
  '
}

compute_held() {
  ((${#exclusions[@]})) || return 0
  local code=0 tag section type name edition arch old repo
  run_zypper --no-refresh --xmlout list-updates --all || code=$?
  zypper_ok "$code" || fail_zypper "$code" 'list-updates --all'
  while read -r tag section type name edition arch old repo; do
    [[ $tag == update && $type == package ]] || continue
    is_excluded "$name" || continue
    [[ $old != - ]] || old=''
    record "$name" "$arch" "$old" "$edition" "$repo" upgrade
  done < <(xml_solvables <<<"$zypper_output") >"$workdir/held"
}

# repo_of NAME EDITION ARCH SEARCH_LINES — the repository alias offering that exact solvable.
repo_of() {
  local tag section type name edition arch old repo
  while read -r tag section type name edition arch old repo; do
    if [[ $name == "$1" && $edition == "$2" && $arch == "$3" && $repo != '(System Packages)' ]]; then
      printf '%s' "$repo"
      return
    fi
  done <<<"$4"
  printf 'unknown'
}

# upgrade_command — what plans and applies: `update`, or under --security-only
# `patch --category security` (the packages of the needed security patches).
upgrade_command() {
  if [[ $security_only == true ]]; then
    upgrade_cmd=(patch --category security)
  else
    upgrade_cmd=(update)
  fi
}

# classify_plan — the security classification (issue 16) from the repositories' patches
# (updateinfo): the packages the needed patches of category security would install are security
# fixes; when the repositories publish no patches at all, null, never a guess.
classify_plan() {
  local code=0 tag section type name edition arch old repo patches=0
  run_zypper --no-refresh --xmlout list-patches --all || code=$?
  zypper_ok "$code" || fail_zypper "$code" 'list-patches --all'
  patches=$(xml_solvables <<<"$zypper_output" | awk '$3 == "patch"' | wc -l)
  if ((patches == 0)); then
    classify_records "$workdir/packages"
    return 0
  fi
  code=0
  run_zypper --no-refresh --xmlout patch --dry-run --category security || code=$?
  if ! zypper_ok "$code"; then
    # A lock (an --exclude, an admin's) on a package of a needed patch is a solver conflict
    # (exit 4): the plan stands, unclassified (null) rather than guessed.
    log "patch --dry-run --category security failed with exit $code: the plan is not classified"
    classify_records "$workdir/packages"
    return 0
  fi
  security_default=false
  while read -r tag section type name edition arch old repo; do
    [[ $tag == solvable && $type == package && $section != remove ]] || continue
    security_of[$name.$arch]=true
  done < <(xml_solvables <<<"$zypper_output")
  classify_records "$workdir/packages"
}

compute_plan() {
  local code=0 tag section type name edition arch old repo plan search='' names=() upgrade_cmd
  upgrade_command
  run_zypper --no-refresh --xmlout "${upgrade_cmd[@]}" --dry-run --download-in-advance || code=$?
  zypper_ok "$code" || fail_zypper "$code" "${upgrade_cmd[*]} --dry-run"
  plan=$(xml_solvables <<<"$zypper_output" | awk '$1 == "solvable" && $3 == "package"' | sort -u -k4,4 -k5,5)
  : >"$workdir/packages"
  [[ -n $plan ]] || return 0
  mapfile -t names < <(awk '{ print $4 }' <<<"$plan" | sort -u)
  code=0
  run_zypper --no-refresh --xmlout search --details --match-exact -t package "${names[@]}" || code=$?
  zypper_ok "$code" || fail_zypper "$code" 'search --details'
  search=$(xml_solvables <<<"$zypper_output")
  while read -r tag section type name edition arch old repo; do
    [[ $old != - ]] || old=''
    case $section in
      upgrade | downgrade)
        record "$name" "$arch" "$old" "$edition" "$(repo_of "$name" "$edition" "$arch" "$search")" "$section" ;;
      install)
        record "$name" "$arch" '' "$edition" "$(repo_of "$name" "$edition" "$arch" "$search")" install ;;
      remove)
        record "$name" "$arch" "$edition" '' '@System' remove ;;
      *) log "not reported in the plan: $section $name $edition" ;;
    esac
  done <<<"$plan" >"$workdir/packages"
}

apply_update() {
  local code=0 upgrade_cmd
  upgrade_command
  apply_started=true
  log "updating (zypper ${upgrade_cmd[*]} --download-in-advance)"
  "${zypper_cmd[@]}" --no-refresh "${upgrade_cmd[@]}" --download-in-advance >&2 || code=$?
  manager_exit_code=$code
  record_changes
  zypper_ok "$code" || fail_zypper "$code" "${upgrade_cmd[*]}"
}

detect_reboot() {
  local code=0
  "${zypper_cmd[@]}" needs-rebooting >&2 || code=$?
  if ((code == ZYPPER_EXIT_INF_REBOOT_NEEDED)); then
    reboot_required=true
    reboot_reason="zypper needs-rebooting: core libraries or services were updated ($root/run/reboot-needed)"
  elif ((code != 0)) && [[ -e $root/run/reboot-needed ]]; then
    # zypper without needs-rebooting: the flag file it would read
    reboot_required=true
    reboot_reason="$root/run/reboot-needed exists (set by libzypp after a reboot-needed update)"
  fi
}

main() {
  set_traps
  parse_args "$@"
  check_environment
  snapshot "$workdir/before" || fail 3 environment "$SNAPSHOT_FAILED"
  refresh_metadata
  add_locks
  compute_held
  compute_plan
  classify_plan
  if [[ $mode == apply ]]; then
    apply_update
  fi
}

main "$@"
