#!/usr/bin/env bash
# pacman-update.sh — patch an Arch Linux system with pacman.
#
#   pacman-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]
#
# Speaks docs/script-contract.md: one JSON document on stdout, the human log on stderr.
# Self-contained on purpose: the agent downloads this one file and verifies its SHA-256.
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

readonly SCRIPT=pacman-update.sh
readonly EXCLUDE_PATTERN='^[a-z0-9@_+*][a-z0-9@._+*-]*$'
readonly SECURITY_ONLY_UNSUPPORTED='pacman has no advisory data, so it cannot tell a security fix from any other update'
readonly OPTIONS=' --root '
readonly USAGE='usage: pacman-update.sh (--dry-run | --apply) [--exclude PKG[,PKG...]] [--root DIR]'
readonly SNAPSHOT_FAILED='pacman -Q (reading the local package database) failed'
manager=pacman

# @include common.sh

root=''
pacman_cmd=()
ignore_opts=()
declare -A installed=()
apply_started=false
changes_recorded=false

set_option() { root_option "$2"; }

undo_exclusions() { :; } # --ignore is per invocation: nothing to undo

check_environment() {
  command -v pacman >/dev/null || fail 3 environment 'pacman is not installed'
  command -v vercmp >/dev/null || fail 3 environment 'vercmp (part of pacman) is not installed'
  [[ $(id -u) == 0 ]] || fail 3 environment 'must run as root'
  pacman_cmd=(pacman --noconfirm)
  if [[ -n $root ]]; then
    root=${root%/}
    [[ -d $root/ ]] || fail 3 environment "--root is not a directory: $root/"
    [[ -f $root/etc/pacman.conf && -d $root/var/lib/pacman ]] ||
      fail 3 environment "--root has no etc/pacman.conf and var/lib/pacman: $root/"
  fi
  make_workdir
  if [[ -n $root ]]; then
    # Everything pacman reads or writes lives under ROOT, so the host is never touched.
    pacman_cmd+=(--root "$root/" --dbpath "$root/var/lib/pacman/"
      --cachedir "$root/var/cache/pacman/pkg/" --config "$root/etc/pacman.conf"
      --gpgdir "$(root_dir_or_empty etc/pacman.d/gnupg)/" --hookdir "$(root_dir_or_empty etc/pacman.d/hooks)/"
      --logfile "$root/var/log/pacman.log")
  fi
  if ((${#exclusions[@]})); then
    local IFS=,
    ignore_opts=(--ignore "${exclusions[*]}")
  fi
}

# root_dir_or_empty DIR — ROOT/DIR when it exists, else an empty directory of the run: pacman 7
# refuses a --gpgdir or --hookdir that does not exist (6.0 accepted one), and a root without a
# keyring or hooks must not borrow the host's. An empty gpgdir verifies nothing: a repository
# that requires signatures then fails, as it would on that system.
root_dir_or_empty() {
  if [[ -d $root/$1 ]]; then
    printf '%s' "$root/$1"
  else
    mkdir -p -- "$workdir/empty/$1" && printf '%s' "$workdir/empty/$1"
  fi
}

lock_is_held() { [[ -e $root/var/lib/pacman/db.lck ]]; }

# snapshot FILE — "name arch version" records of the local package database; the arch is left
# empty (pacman -Q has none) and looked up for the changed packages only.
snapshot() {
  local name version output
  output=$("${pacman_cmd[@]}" -Q) || { manager_exit_code=$? && return 1; }
  while read -r name version; do
    if [[ -n $name ]]; then record "$name" '' "$version"; fi
  done <<<"$output" >"$1"
}

# installed_arch NAME VERSION — the arch in the package's local database entry.
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
  ((code == 0)) && return 0
  lock_is_held && fail 4 lock "pacman database is locked ($root/var/lib/pacman/db.lck exists)"
  fail 5 refresh "pacman -Syy failed with exit $code"
}

action_for() { # current candidate
  [[ -n $1 ]] || { printf 'install'; return; }
  local cmp
  cmp=$(vercmp "$2" "$1")
  if ((cmp < 0)); then printf 'downgrade'; else printf 'upgrade'; fi
}

compute_plan() {
  local name version repo location current output code=0
  output=$("${pacman_cmd[@]}" -Sup --print-format '%n %v %r %l' "${ignore_opts[@]}") || code=$?
  if ((code != 0)); then
    manager_exit_code=$code
    fail 6 transaction "pacman -Sup (planning the upgrade) failed with exit $code"
  fi
  while read -r name version repo location; do
    [[ -n $name && -n $location ]] || continue
    current=${installed[$name]:-}
    record "$name" "$(arch_from_location "$name" "$version" "$location")" \
      "$current" "$version" "$repo" "$(action_for "$current" "$version")"
  done <<<"$output" >"$workdir/packages"
}

compute_held() {
  local name version repo location current
  ((${#exclusions[@]})) || return 0
  while read -r current; do
    is_excluded "$current" || continue
    # An explicit target is printed even when ignored; a name in no repository is skipped.
    while read -r name version repo location; do
      [[ $name == "$current" ]] || continue
      (($(vercmp "$version" "${installed[$name]}") > 0)) || continue
      record "$name" "$(arch_from_location "$name" "$version" "$location")" \
        "${installed[$name]}" "$version" "$repo" upgrade
    done < <("${pacman_cmd[@]}" -Sp --print-format '%n %v %r %l' "$current" 2>/dev/null || true)
  done < <(printf '%s\n' "${!installed[@]}" | LC_ALL=C sort) >"$workdir/held"
}

# complete_changes — pacman's snapshot records no arch: add each changed package's from the
# package database (record_changes in common.sh calls this when a part defines it).
complete_changes() {
  local name arch from to
  mv -- "$workdir/changed" "$workdir/changes"
  while IFS=$FS read -r name arch from to; do
    arch=$(installed_arch "$name" "${to:-$from}" || true)
    record "$name" "${arch:-unknown}" "$from" "$to"
  done <"$workdir/changes" >"$workdir/changed"
}

apply_upgrade() {
  local code=0
  apply_started=true
  log "upgrading (pacman -Su ${ignore_opts[*]})"
  "${pacman_cmd[@]}" -Su --noprogressbar "${ignore_opts[@]}" >&2 || code=$?
  manager_exit_code=$code
  record_changes
  ((code == 0)) && return 0
  lock_is_held && fail 4 lock "pacman database is locked ($root/var/lib/pacman/db.lck exists)"
  fail 6 transaction "pacman -Su failed with exit $code"
}

detect_reboot() {
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
  reboot_reason="running kernel $running is no longer installed; installed: ${kernels[*]}"
}

main() {
  local name version
  set_traps
  parse_args "$@"
  check_environment
  snapshot "$workdir/before" || fail 3 environment "$SNAPSHOT_FAILED"
  while IFS=$FS read -r name _ version; do installed[$name]=$version; done <"$workdir/before"
  refresh_metadata
  compute_held
  compute_plan
  if [[ $mode == apply ]]; then
    apply_upgrade
  fi
}

main "$@"
