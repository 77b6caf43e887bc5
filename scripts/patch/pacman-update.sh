#!/usr/bin/env bash
# pacman-update.sh — patch an Arch Linux system with pacman.
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
#
#   pacman-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]
#
# Self-contained on purpose: the agent downloads this one file and verifies its hash.
#
# How each contract step maps onto pacman:
# - refresh:  pacman -Syy. A plain -Sy skips a database whose timestamp looks current and
#             can miss a changed repository; -Syy always downloads.
# - plan:     pacman -Sup --print-format '%n %v %r %l' — the same -Su transaction, printed.
#             Current versions come from pacman -Q. pacman 6.0 has no %a, so the arch is read
#             from the package file name in %l (name-version-arch.pkg.tar.*).
# - exclude:  pacman --ignore (transient, nothing to undo). A pre-existing IgnorePkg in
#             pacman.conf is the admin's hold and is never edited.
# - held:     installed packages matched by --exclude whose sync candidate (pacman -Sp NAME)
#             is newer (vercmp).
# - changed:  pacman -Q before and after the transaction.
# - reboot:   the running kernel (uname -r) against the kernels installed under
#             ROOT/usr/lib/modules/<kver>/vmlinuz (what Arch kernel packages ship). If kernels
#             are installed but none matches the running one, its modules are gone: reboot.
# - lock:     pacman refuses with exit 1 while ROOT/var/lib/pacman/db.lck exists; a failure with
#             that file present is reported as a lock (exit 4).
# Removals caused by replaces/conflicts are not printed by --print; they show up in `changed`.
set -euo pipefail

readonly MANAGER=pacman
readonly EXCLUDE_PATTERN='^[a-z0-9@_+*][a-z0-9@._+*-]*$'
readonly USAGE='usage: pacman-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]'

mode=''
root=''
exclusions=()
pacman_cmd=()
declare -A installed_before=()
declare -A installed_after=()

json_mode=null
json_packages=()
json_held=()
json_changed=()
reboot_required=false
reboot_reason=null
manager_exit_code=null
error_json=null
finished=false

log() { printf 'pacman-update: %s\n' "$*" >&2; }

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

json_or_null() { if [[ -n $1 ]]; then json_string "$1"; else printf 'null'; fi; }

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

# finish CODE [ERROR_CODE MESSAGE] — print the one JSON document and exit.
finish() {
  local code=$1
  if (($# > 1)); then
    error_json="{\"code\":$(json_string "$2"),\"message\":$(json_string "$3")}"
    log "error ($2): $3"
  fi
  finished=true
  emit_json
  exit "$code"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
on_exit() {
  local code=$?
  if [[ $finished == false ]]; then
    finished=true
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
    [[ $name =~ $EXCLUDE_PATTERN ]] || usage "not a legal pacman package name: $name"
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
  command -v pacman >/dev/null || finish 3 environment 'pacman is not installed'
  command -v vercmp >/dev/null || finish 3 environment 'vercmp (part of pacman) is not installed'
  [[ $(id -u) == 0 ]] || finish 3 environment 'must run as root'
  pacman_cmd=(pacman --noconfirm)
  if [[ -n $root ]]; then
    root=${root%/}
    [[ -d $root/ ]] || finish 3 environment "--root is not a directory: $root/"
    [[ -f $root/etc/pacman.conf && -d $root/var/lib/pacman ]] ||
      finish 3 environment "--root has no etc/pacman.conf and var/lib/pacman: $root/"
    # Everything pacman reads or writes lives under ROOT, so the host is never touched.
    pacman_cmd+=(--root "$root/" --dbpath "$root/var/lib/pacman/"
      --cachedir "$root/var/cache/pacman/pkg/" --config "$root/etc/pacman.conf"
      --gpgdir "$root/etc/pacman.d/gnupg/" --hookdir "$root/etc/pacman.d/hooks/"
      --logfile "$root/var/log/pacman.log")
  fi
}

lock_is_held() { [[ -e $root/var/lib/pacman/db.lck ]]; }

# read_installed before|after — name → version from the local package database.
read_installed() {
  local name version output code=0
  output=$("${pacman_cmd[@]}" -Q) || code=$?
  if ((code != 0)); then
    manager_exit_code=$code
    finish 3 environment "pacman -Q (reading the local package database) failed with exit $code"
  fi
  while read -r name version; do
    [[ -n $name ]] || continue
    if [[ $1 == before ]]; then
      installed_before["$name"]=$version
    else
      installed_after["$name"]=$version
    fi
  done <<<"$output"
}

installed_arch() {
  local desc="$root/var/lib/pacman/local/$1-$2/desc"
  [[ -f $desc ]] && sed -n '/^%ARCH%$/{n;p;q}' "$desc"
}

# arch_from_location NAME VERSION LOCATION — name-version-arch.pkg.tar.* → arch
arch_from_location() {
  local file=${3##*/} arch
  arch=${file#"$1-$2-"}
  arch=${arch%%.pkg.tar*}
  if [[ $arch == "$file" || -z $arch || $arch == */* ]]; then arch=unknown; fi
  printf '%s' "$arch"
}

refresh_metadata() {
  log 'refreshing package databases (pacman -Syy)'
  local code=0
  "${pacman_cmd[@]}" -Syy --noprogressbar >&2 || code=$?
  manager_exit_code=$code
  ((code == 0)) && return
  lock_is_held && finish 4 lock "pacman database is locked ($root/var/lib/pacman/db.lck exists)"
  finish 5 refresh "pacman -Syy failed with exit $code"
}

is_excluded() {
  local name=$1 pattern
  for pattern in "${exclusions[@]}"; do
    # shellcheck disable=SC2053  # the pattern is a glob on purpose (only * is legal)
    [[ $name == $pattern ]] && return 0
  done
  return 1
}

package_json() { # name arch current candidate repo action
  printf '{"name":%s,"arch":%s,"current":%s,"candidate":%s,"repo":%s,"action":%s}' \
    "$(json_string "$1")" "$(json_string "$2")" "$(json_or_null "$3")" "$(json_or_null "$4")" \
    "$(json_string "$5")" "$(json_string "$6")"
}

action_for() { # current candidate
  [[ -n $1 ]] || { printf 'install'; return; }
  local cmp
  cmp=$(vercmp "$2" "$1")
  if ((cmp < 0)); then printf 'downgrade'; else printf 'upgrade'; fi
}

ignore_args() {
  ((${#exclusions[@]})) || return 0
  local IFS=,
  printf '%s\0' --ignore "${exclusions[*]}"
}

compute_plan() {
  local name version repo location current output code=0 ignore=()
  mapfile -d '' -t ignore < <(ignore_args)
  output=$("${pacman_cmd[@]}" -Sup --print-format '%n %v %r %l' "${ignore[@]}") || code=$?
  if ((code != 0)); then
    manager_exit_code=$code
    finish 6 transaction "pacman -Sup (planning the upgrade) failed with exit $code"
  fi
  while read -r name version repo location; do
    [[ -n $name && -n $location ]] || continue
    current=${installed_before[$name]:-}
    json_packages+=("$(package_json "$name" "$(arch_from_location "$name" "$version" "$location")" \
      "$current" "$version" "$repo" "$(action_for "$current" "$version")")")
  done < <(sort <<<"$output")
}

compute_held() {
  local name version repo location current
  ((${#exclusions[@]})) || return 0
  while read -r current; do
    is_excluded "$current" || continue
    # An explicit target is printed even when ignored; a name in no repository is skipped.
    while read -r name version repo location; do
      [[ $name == "$current" ]] || continue
      (($(vercmp "$version" "${installed_before[$name]}") > 0)) || continue
      json_held+=("$(package_json "$name" "$(arch_from_location "$name" "$version" "$location")" \
        "${installed_before[$name]}" "$version" "$repo" upgrade)")
    done < <("${pacman_cmd[@]}" -Sp --print-format '%n %v %r %l' "$current" 2>/dev/null || true)
  done < <(printf '%s\n' "${!installed_before[@]}" | sort)
}

apply_upgrade() {
  local code=0 ignore=()
  mapfile -d '' -t ignore < <(ignore_args)
  log "upgrading (pacman -Su ${ignore[*]})"
  "${pacman_cmd[@]}" -Su --noprogressbar "${ignore[@]}" >&2 || code=$?
  manager_exit_code=$code
  read_installed after
  compute_changed
  ((code == 0)) && return
  check_reboot # a failed transaction may still have left a newer kernel installed
  lock_is_held && finish 4 lock "pacman database is locked ($root/var/lib/pacman/db.lck exists)"
  finish 6 transaction "pacman -Su failed with exit $code"
}

compute_changed() {
  local name from to arch
  json_changed=()
  while read -r name; do
    from=${installed_before[$name]:-}
    to=${installed_after[$name]:-}
    [[ $from != "$to" ]] || continue
    arch=$(installed_arch "$name" "${to:-$from}" || true)
    [[ -n $arch ]] || arch=unknown
    json_changed+=("$(printf '{"name":%s,"arch":%s,"from":%s,"to":%s}' "$(json_string "$name")" \
      "$(json_string "$arch")" "$(json_or_null "$from")" "$(json_or_null "$to")")")
  done < <(printf '%s\n' "${!installed_before[@]}" "${!installed_after[@]}" | sort -u)
}

check_reboot() {
  local modules="$root/usr/lib/modules" running dir kernels=()
  running=$(uname -r)
  for dir in "$modules"/*/; do
    [[ -f ${dir}vmlinuz ]] || continue
    dir=${dir%/}
    kernels+=("$(cat "$dir/pkgbase" 2>/dev/null || printf 'kernel') ${dir##*/}")
  done
  ((${#kernels[@]})) || return 0
  [[ -f $modules/$running/vmlinuz ]] && return 0
  reboot_required=true
  local IFS=,
  reboot_reason=$(json_string "running kernel $running is no longer installed; installed: ${kernels[*]}")
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
  compute_held
  compute_plan
  [[ $mode == apply ]] && apply_upgrade
  check_reboot
  finish 0
}

main "$@"
