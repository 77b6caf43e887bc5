#!/usr/bin/env bash
# zypper-update.sh — patch a SLES 15+ / openSUSE Leap 15+ system with zypper.
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
#
#   zypper-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]
#
# Self-contained on purpose: the agent downloads this one file and verifies its hash.
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
# - exclude:  zypper addlock for the names not already locked; an EXIT trap removes exactly
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

readonly MANAGER=zypper
readonly EXCLUDE_PATTERN='^[A-Za-z0-9_*][A-Za-z0-9_+.*-]*$'
readonly USAGE='usage: zypper-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]'
readonly ZYPPER_EXIT_ZYPP_LOCKED=7
readonly ZYPPER_EXIT_INF_REBOOT_NEEDED=102

mode=''
root=''
exclusions=()
added_locks=()
zypper_cmd=()
zypper_output=''
rpm_cmd=()
installed_before=''
installed_after=''

json_mode=null
json_packages=()
json_held=()
json_changed=()
reboot_required=false
reboot_reason=null
manager_exit_code=null
error_json=null
finished=false

log() { printf 'zypper-update: %s\n' "$*" >&2; }

json_string() {
  local s=$1 out='' c i
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  if [[ $s == *[$'\001'-$'\037']* ]]; then
    for ((i = 0; i < ${#s}; i++)); do
      c=${s:i:1}
      if [[ $c == [$'\001'-$'\037'] ]]; then
        printf -v c '\\u%04x' "'$c"
      fi
      out+=$c
    done
    s=$out
  fi
  printf '"%s"' "$s"
}

json_or_null() { if [[ -n $1 && $1 != - ]]; then json_string "$1"; else printf 'null'; fi; }

json_array() {
  local IFS=,
  printf '[%s]' "$*"
}

emit_json() {
  printf '{"contract":1,"manager":"%s","mode":%s,"packages":%s,"held":%s,"changed":%s,' \
    "$MANAGER" "$json_mode" "$(json_array "${json_packages[@]}")" \
    "$(json_array "${json_held[@]}")" "$(json_array "${json_changed[@]}")"
  printf '"reboot_required":%s,"reboot_reason":%s,"manager_exit_code":%s,"error":%s}\n' \
    "$reboot_required" "$reboot_reason" "$manager_exit_code" "$error_json"
}

# Remove exactly the locks this run added; retried because another zypper may hold the lock.
remove_added_locks() {
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
  log "could not remove the locks this run added: ${added_locks[*]}"
  return 1
}

# finish CODE [ERROR_CODE MESSAGE] — undo our locks, print the one JSON document and exit.
finish() {
  local code=$1
  finished=true
  remove_added_locks || true
  if (($# > 1)); then
    error_json="{\"code\":$(json_string "$2"),\"message\":$(json_string "$3")}"
    log "error ($2): $3"
  fi
  emit_json
  exit "$code"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
on_exit() {
  local code=$?
  if [[ $finished == false ]]; then
    finished=true
    remove_added_locks || true
    local why="unexpected failure (exit $code)"
    ((code > 128)) && why="terminated by signal $((code - 128))"
    error_json="{\"code\":\"environment\",\"message\":$(json_string "$why")}"
    emit_json
    exit 3
  fi
}

usage() { finish 2 usage "$1; $USAGE"; }

parse_exclusions() {
  local list=$1 name
  [[ -n $list ]] || usage '--exclude needs at least one package name'
  [[ $list != *, && $list != ,* && $list != *,,* ]] || usage "--exclude has an empty entry: $list"
  IFS=, read -r -a exclusions <<<"$list"
  for name in "${exclusions[@]}"; do
    [[ $name =~ $EXCLUDE_PATTERN ]] || usage "not a legal zypper package name: $name"
  done
}

parse_args() {
  local exclude_seen=false root_seen=false
  while (($#)); do
    case $1 in
      --dry-run | --apply)
        [[ -z $mode ]] || usage 'exactly one of --dry-run or --apply is allowed'
        mode=${1#--}
        ;;
      --exclude)
        (($# >= 2)) || usage '--exclude needs a value'
        [[ $exclude_seen == false ]] || usage '--exclude may be given once'
        exclude_seen=true
        parse_exclusions "$2"
        shift
        ;;
      --root)
        (($# >= 2)) || usage '--root needs a directory'
        [[ $root_seen == false ]] || usage '--root may be given once'
        root_seen=true
        root=$2
        [[ -n $root ]] || usage '--root needs a directory'
        shift
        ;;
      *) usage "unknown argument: $1" ;;
    esac
    shift
  done
  [[ -n $mode ]] || usage 'one of --dry-run or --apply is required'
  json_mode=$(json_string "$mode")
}

check_environment() {
  command -v zypper >/dev/null || finish 3 environment 'zypper is not installed'
  command -v rpm >/dev/null || finish 3 environment 'rpm is not installed'
  [[ $(id -u) == 0 ]] || finish 3 environment 'must run as root'
  zypper_cmd=(zypper --non-interactive)
  rpm_cmd=(rpm)
  if [[ -n $root ]]; then
    root=${root%/}
    [[ -d $root/ ]] || finish 3 environment "--root is not a directory: $root/"
    [[ -d $root/etc/zypp/repos.d ]] || finish 3 environment "--root has no etc/zypp/repos.d: $root/"
    local dbpath=/var/lib/rpm
    [[ -d $root/usr/lib/sysimage/rpm ]] && dbpath=/usr/lib/sysimage/rpm
    [[ -d $root$dbpath ]] || finish 3 environment "--root has no rpm database: $root$dbpath"
    export ZYPP_LOCKFILE_ROOT="$root/" ZYPP_LOGFILE="$root/var/log/zypper.log"
    # libzypp's scratch dirs (default /var/tmp/zypp.*) too, when the root has a /var/tmp
    [[ -d $root/var/tmp ]] && export ZYPPTMPDIR="$root/var/tmp"
    zypper_cmd+=(--root "$root/")
    rpm_cmd+=(--root "$root/" --dbpath "$dbpath")
  fi
}

# run_zypper ARGS... — run zypper, keep its stdout in zypper_output, return its exit code.
run_zypper() {
  local code=0
  zypper_output=$("${zypper_cmd[@]}" "$@") || code=$?
  manager_exit_code=$code
  return "$code"
}

# fail_zypper CODE WHAT — map a zypper failure onto the contract's exit codes.
fail_zypper() {
  local code=$1 what=$2 on_failure=${3:-6} error_code=${4:-transaction}
  ((code == ZYPPER_EXIT_ZYPP_LOCKED)) &&
    finish 4 lock "zypper is locked by another process (exit $code during $what)"
  finish "$on_failure" "$error_code" "zypper $what failed with exit $code"
}

# 100-105 are zypper's informational exit codes (updates pending, reboot/restart needed, ...);
# 106 (a repository was skipped) and 107 (an rpm scriptlet failed) are not success.
zypper_ok() { (($1 == 0 || ($1 >= 100 && $1 <= 105))); }

# read_installed before|after — "name arch [epoch:]version-release" lines from the rpm
# database (gpg-pubkey entries are keys, not packages).
read_installed() {
  local output code=0
  output=$("${rpm_cmd[@]}" -qa --qf '%{NAME} %{ARCH} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n') || code=$?
  if ((code != 0)); then
    finish 3 environment "rpm -qa (reading the package database) failed with exit $code"
  fi
  output=$(grep -v '^gpg-pubkey ' <<<"$output" | sort || true)
  if [[ $1 == before ]]; then installed_before=$output; else installed_after=$output; fi
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

package_json() { # name arch current candidate repo action
  printf '{"name":%s,"arch":%s,"current":%s,"candidate":%s,"repo":%s,"action":%s}' \
    "$(json_string "$1")" "$(json_string "$2")" "$(json_or_null "$3")" "$(json_or_null "$4")" \
    "$(json_string "$5")" "$(json_string "$6")"
}

is_excluded() {
  local name=$1 pattern
  for pattern in "${exclusions[@]}"; do
    # shellcheck disable=SC2053  # the pattern is a glob on purpose (only * is legal)
    [[ $name == $pattern ]] && return 0
  done
  return 1
}

compute_held() {
  ((${#exclusions[@]})) || return 0
  local code=0 tag section type name edition arch old repo
  run_zypper --no-refresh --xmlout list-updates --all || code=$?
  zypper_ok "$code" || fail_zypper "$code" 'list-updates --all'
  while read -r tag section type name edition arch old repo; do
    [[ $tag == update && $type == package ]] || continue
    is_excluded "$name" || continue
    json_held+=("$(package_json "$name" "$arch" "$old" "$edition" "$repo" upgrade)")
  done < <(xml_solvables <<<"$zypper_output" | sort -k4,4)
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

compute_plan() {
  local code=0 tag section type name edition arch old repo plan search='' names=()
  run_zypper --no-refresh --xmlout update --dry-run --download-in-advance || code=$?
  zypper_ok "$code" || fail_zypper "$code" 'update --dry-run'
  plan=$(xml_solvables <<<"$zypper_output" | awk '$1 == "solvable" && $3 == "package"' | sort -u -k4,4 -k5,5)
  [[ -n $plan ]] || return 0
  mapfile -t names < <(awk '{ print $4 }' <<<"$plan" | sort -u)
  code=0
  run_zypper --no-refresh --xmlout search --details --match-exact -t package "${names[@]}" || code=$?
  zypper_ok "$code" || fail_zypper "$code" 'search --details'
  search=$(xml_solvables <<<"$zypper_output")
  while read -r tag section type name edition arch old repo; do
    case $section in
      upgrade | downgrade)
        json_packages+=("$(package_json "$name" "$arch" "$old" "$edition" \
          "$(repo_of "$name" "$edition" "$arch" "$search")" "$section")") ;;
      install)
        json_packages+=("$(package_json "$name" "$arch" - "$edition" \
          "$(repo_of "$name" "$edition" "$arch" "$search")" install)") ;;
      remove)
        json_packages+=("$(package_json "$name" "$arch" "$edition" - '@System' remove)") ;;
      *) log "not reported in the plan: $section $name $edition" ;;
    esac
  done <<<"$plan"
}

apply_update() {
  local code=0
  log 'updating (zypper update --download-in-advance)'
  "${zypper_cmd[@]}" --no-refresh update --download-in-advance >&2 || code=$?
  manager_exit_code=$code
  read_installed after
  compute_changed
  zypper_ok "$code" && return
  check_reboot # a failed transaction may still have installed a reboot-needing package
  fail_zypper "$code" update
}

# Per name+arch: one version replaced by one other is from→to; anything else is installs/removals.
compute_changed() {
  local name arch from to
  json_changed=()
  while read -r name arch from to; do
    [[ -n $name ]] || continue
    json_changed+=("$(printf '{"name":%s,"arch":%s,"from":%s,"to":%s}' "$(json_string "$name")" \
      "$(json_string "$arch")" "$(json_or_null "$from")" "$(json_or_null "$to")")")
  done < <(
    { awk '{ print "B", $0 }' <<<"$installed_before"; awk '{ print "A", $0 }' <<<"$installed_after"; } | awk '
      NF == 4 { key = $2 " " $3; keys[key] = 1; seen[$1 " " key " " $4] = 1; list[$1 " " key] = list[$1 " " key] " " $4 }
      END {
        for (key in keys) {
          nr = split(list["B " key], before, " "); na = split(list["A " key], after, " ")
          r = 0; a = 0
          for (i = 1; i <= nr; i++) if (!(("A " key " " before[i]) in seen)) removed[++r] = before[i]
          for (i = 1; i <= na; i++) if (!(("B " key " " after[i]) in seen)) added[++a] = after[i]
          if (r == 1 && a == 1) { print key, removed[1], added[1]; continue }
          for (i = 1; i <= r; i++) print key, removed[i], "-"
          for (i = 1; i <= a; i++) print key, "-", added[i]
        }
      }' | sort
  )
}

check_reboot() {
  local code=0
  "${zypper_cmd[@]}" needs-rebooting >&2 || code=$?
  if ((code == ZYPPER_EXIT_INF_REBOOT_NEEDED)); then
    reboot_required=true
    reboot_reason=$(json_string "zypper needs-rebooting: core libraries or services were updated ($root/run/reboot-needed)")
  elif ((code != 0)) && [[ -e $root/run/reboot-needed ]]; then
    # zypper without needs-rebooting: the flag file it would read
    reboot_required=true
    reboot_reason=$(json_string "$root/run/reboot-needed exists (set by libzypp after a reboot-needed update)")
  fi
}

main() {
  trap on_exit EXIT
  # A signal becomes an exit, so the EXIT trap still cleans up and prints the JSON document.
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
  parse_args "$@"
  check_environment
  read_installed before
  refresh_metadata
  add_locks
  compute_held
  compute_plan
  [[ $mode == apply ]] && apply_update
  check_reboot
  finish 0
}

main "$@"
